"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input the user can fix (missing data, unknown name, impossible size).

    The message must be one line that says what is wrong and what to do.
    """
