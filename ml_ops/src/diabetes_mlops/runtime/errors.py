"""Errors a user can fix. Every one derives from `UserError` (diabetes.errors, shared with the
pure library's DataValidationError): the local runner and the CLI catch that one class and print
its message, no traceback."""

from diabetes.errors import InputRefused, UserError

__all__ = [
    "InputRefused",
    "ModelNotFoundError",
    "ParameterError",
    "TrackingStoreError",
    "UserError",
    "first_line",
    "require_choice",
]


class ParameterError(InputRefused, ValueError):
    """A job or notebook parameter is missing or has a value the step cannot use."""


class ModelNotFoundError(UserError, LookupError):
    """The registry has no such model, version or alias."""


class TrackingStoreError(UserError, RuntimeError):
    """The MLflow tracking store refuses writes (a read-only database or folder)."""


def require_choice(parameter: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParameterError(
            f"parameter '{parameter}': expected one of {', '.join(allowed)}, got {value!r}"
        )


def first_line(error: BaseException, limit: int | None = None) -> str:
    """An error as one line: the first line of its message (at most `limit` characters), or its
    type's name when it has no message. An error built from several texts (pyarrow packs its
    message that way) reads as those texts joined, not as a tuple."""
    args = error.args
    several = len(args) > 1 and all(isinstance(arg, str) for arg in args)
    lines = ("; ".join(args) if several else str(error)).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line[:limit] if limit else line
