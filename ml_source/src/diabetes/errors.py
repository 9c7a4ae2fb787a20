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


def first_line(error: BaseException, limit: int | None = None) -> str:
    """An error as one line: the first line of its message (at most `limit` characters), or its
    type's name when it has no message. An error built from several texts (pyarrow packs its
    message that way) reads as those texts joined, not as a tuple."""
    args = error.args
    several = len(args) > 1 and all(isinstance(arg, str) for arg in args)
    lines = ("; ".join(args) if several else str(error)).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line[:limit] if limit else line
