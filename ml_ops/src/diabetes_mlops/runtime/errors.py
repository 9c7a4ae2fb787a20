"""Errors a user can fix. Every one derives from `UserError` (diabetes.errors, shared with the
pure library's DataValidationError): the local runner and the CLI catch that one class and print
its message, no traceback."""

from diabetes.errors import InputRefused, UserError, first_line

__all__ = [
    "InputRefused",
    "ModelNotFoundError",
    "ParameterError",
    "TrackingStoreError",
    "UserError",
    "first_line",
    "sdk_error_line",
]


class ParameterError(InputRefused, ValueError):
    """A job or notebook parameter is missing or has a value the step cannot use."""


class ModelNotFoundError(UserError, LookupError):
    """The registry has no such model, version or alias."""


class TrackingStoreError(UserError, RuntimeError):
    """The MLflow tracking store refuses writes (a read-only database or folder)."""


def sdk_error_line(error: BaseException) -> str:
    """A databricks-sdk error as one line, without the client config the SDK appends to 401 and
    403 messages (". Config: host=..., token=***": databricks/sdk/core.py, wrap_debug_info)."""
    return first_line(error).split(". Config: ")[0]
