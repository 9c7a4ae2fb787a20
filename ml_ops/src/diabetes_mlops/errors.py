"""Errors a user can fix; the local runner and the CLI print these as one line, no traceback."""


class ParameterError(ValueError):
    """A job or notebook parameter is missing or has a value the step cannot use."""


class ModelNotFoundError(LookupError):
    """The registry has no such model, version or alias."""


class TrackingStoreError(RuntimeError):
    """The MLflow tracking store refuses writes (a read-only database or folder)."""


def require_choice(parameter: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParameterError(
            f"parameter '{parameter}': expected one of {', '.join(allowed)}, got {value!r}"
        )
