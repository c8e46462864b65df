"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input the user can fix (missing data, unknown name, impossible size).

    The message must be one line that says what is wrong and what to do.
    """


def unwritable(path: object, err: OSError) -> UserError:
    """The one line for a folder or file that cannot be written (permissions, full disk)."""
    import errno

    reason = err.strerror or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return UserError(
            f"cannot write {path} ({reason}); free some space and rerun with --resume "
            "(nothing half-written was kept)"
        )
    return UserError(f"cannot write to {path} ({reason}); choose a writable folder with --out")


class Interrupted(BaseException):  # noqa: N818 - it is what happened, not a failure
    """SIGINT or SIGTERM arrived; ``where`` is the last progress seen (may be empty).

    A ``BaseException``, as ``KeyboardInterrupt``: handlers of ``Exception`` (a corrupt
    file, an optional cache) must not swallow a request to stop."""

    def __init__(self, signal_name: str = "SIGINT", where: str = "") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.where = where
