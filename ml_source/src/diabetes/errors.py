"""The one base of every error a user can fix by changing what they gave (a file, a parameter, a
setting): callers catch `UserError` and show its message, never a traceback."""


class UserError(Exception):
    """An error whose message says what is wrong and where, one line per problem.

    `exit_code` is what a command returns for it: 2 when the input was refused before anything
    ran, 1 when the work itself could not be done."""

    exit_code = 1


class InputRefused(UserError):
    """Input refused before any work started (a command-line exit code of 2)."""

    exit_code = 2
