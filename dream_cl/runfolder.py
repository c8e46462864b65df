"""Output folders: one writer at a time, and never another run's files overwritten.

Every command that writes a folder (``run``, ``distill``, ``coreset``, ``compare``,
``evaluate --out``) holds an exclusive advisory lock on ``FOLDER/.dream-cl.lock`` for its
whole run (:class:`FolderLock`). The kernel drops an ``fcntl`` lock when its process dies,
however it dies, so a killed run never leaves a stale lock behind; the file itself stays
(removing a lock file races with a process opening it) and records the holder's PID.

Each run folder records which command wrote it in ``config.json`` (``"command"``, beside
the resolved configuration). :func:`inspect_folder` says what a folder holds, so that a
command can refuse a folder that is not its own run (:func:`claim`), continue an earlier
run of exactly the same command, and leave a ``--resume`` to the command's own checks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dream_cl.errors import UserError, unwritable

LOCK_FILE = ".dream-cl.lock"
CONFIG_FILE = "config.json"
TEMP_SUFFIX = ".tmp"
"""Atomic writes go through ``.NAME.XXXXXXXX.tmp`` beside their target (see utils)."""

Kind = Literal["empty", "same", "own", "foreign", "missing"]


class FolderLock:
    """An exclusive, non-blocking ``fcntl`` lock on ``folder/.dream-cl.lock``.

    Taking it creates the folder if needed; giving it back after a failure removes a folder
    this lock created that holds nothing but the lock file, so a refused command leaves
    nothing behind. A second process asking for a held lock gets one line naming the PID.
    """

    def __init__(self, folder: str | Path, name: str = LOCK_FILE) -> None:
        self.folder = Path(folder)
        self.name = name
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> FolderLock:
        import fcntl

        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {folder} is a file; choose a folder")
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / self.name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise unwritable(folder, err) from None
        self._created = missing
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise unwritable(folder, err) from None
            who = f"process {holder}" if holder else "another process"
            raise UserError(
                f"{self.guarded} is in use by dream-cl {who}; wait for it to finish or choose "
                "another --out"
            ) from None
        try:  # a lock on a file another process just removed guards nothing
            same = os.fstat(fd).st_ino == os.stat(folder / self.name).st_ino
        except OSError:
            same = False
        if not same:
            os.close(fd)
            raise UserError(f"{folder} changed while locking it; run the command again")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @property
    def guarded(self) -> Path:
        """What the lock guards: the folder, or the one file ``.NAME.lock`` is named after
        (an evaluation's record)."""
        if self.name == LOCK_FILE:
            return self.folder
        return self.folder / self.name.removeprefix(".").removesuffix(".lock")

    def release(self, failed: bool = False) -> None:
        if self._fd is None:
            return
        if failed and self._created:
            # nothing but our lock file in folders we made: leave no trace
            try:
                if [p.name for p in self.folder.iterdir()] == [self.name]:
                    (self.folder / self.name).unlink()
                    for p in self._created:
                        p.rmdir()
            except OSError:
                pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.release(failed=exc_type is not None)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete what killed atomic writes left under ``folder`` (``.NAME.XXXX.tmp`` files).

    Only safe while holding the folder's lock: no other writer can be mid-write.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.rglob(f".*{TEMP_SUFFIX}"):
        # an evaluation writing its models' checkpoints holds only its JSON file's lock
        if any(part.endswith(".partial") for part in p.relative_to(folder).parts[:-1]):
            continue
        if p.is_file() and p.name.count(".") >= 3:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _ignored(name: str) -> bool:
    """Locks, temporaries and an evaluation's models in training (``.NAME.json.partial``)."""
    return name.startswith(".") and name.endswith((TEMP_SUFFIX, ".lock", ".partial"))


def command_of(saved: Any) -> str | None:
    """The command recorded in a ``config.json`` (folders from before the record: by shape)."""
    if not isinstance(saved, dict):
        return None
    if isinstance(saved.get("command"), str):
        return saved["command"]
    if "framework" in saved and "ipc" in saved:
        return "distill"  # the engine's flat configuration
    if isinstance(saved.get("config"), dict) and "provenance" in saved:
        return "run"
    return None


@dataclass(frozen=True)
class FolderState:
    """What a folder holds, seen by ``command`` about to write ``config``.

    ``kind``: ``missing`` (no folder), ``empty`` (nothing but a lock or temporaries),
    ``same`` (an earlier run of this command with exactly this configuration), ``own``
    (a run of this command with other settings) or ``foreign`` (anything else).
    """

    kind: Kind
    saved: dict[str, Any] | None = None
    what: str = ""


def inspect_folder(folder: str | Path, command: str, config: dict[str, Any]) -> FolderState:
    folder = Path(folder)
    if not folder.exists():
        return FolderState("missing")
    if not folder.is_dir():
        return FolderState("foreign", what="a file")
    names = sorted(p.name for p in folder.iterdir() if not _ignored(p.name))
    if not names:
        return FolderState("empty")
    if command == "compare" and CONFIG_FILE not in names and "comparison.json" in names:
        return FolderState("own", None, "the output of `dream-cl compare`")  # before config.json
    config_path = folder / CONFIG_FILE
    saved: Any = None
    if config_path.is_file():
        try:
            saved = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            saved = None
    found = command_of(saved)
    if found != command:
        what = f"the output of `dream-cl {found}`" if found else _describe(folder, names)
        return FolderState("foreign", saved if isinstance(saved, dict) else None, what)
    same = _comparable(saved) == _comparable(config)
    return FolderState("same" if same else "own", saved, f"the output of `dream-cl {command}`")


def _comparable(record: dict[str, Any]) -> Any:
    """A configuration as JSON would give it back, without the provenance of the machine."""
    return json.loads(json.dumps({k: v for k, v in record.items() if k != "provenance"}))


def _describe(folder: Path, names: list[str]) -> str:
    if "meta.json" in names and CONFIG_FILE not in names:
        return "an image set (coreset or older artifact)"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"other files ({shown})"


def refuse_foreign(folder: Path, state: FolderState, command: str) -> UserError:
    return UserError(
        f"--out {folder} holds {state.what}, not an earlier `dream-cl {command}`; choose an "
        "empty or new folder for --out"
    )


def claim(
    folder: str | Path,
    command: str,
    config: dict[str, Any],
    resume: bool,
    resumable: bool = True,
) -> FolderState:
    """Decide whether ``command`` may write ``folder``; raise the one-line refusal if not.

    Allowed: a missing or empty folder; an earlier run of exactly the same command and
    configuration (it is continued); with ``resume``, a run of this command (its own checks
    then compare the settings). Refused: anything else, in particular another command's
    run or unknown files, and a run of other settings without ``resume``.
    """
    folder = Path(folder)
    state = inspect_folder(folder, command, config)
    if state.kind == "foreign":
        raise refuse_foreign(folder, state, command)
    if state.kind == "own" and not resume:
        what = "pass --resume to continue it or choose" if resumable else "choose"
        raise UserError(
            f"{folder} already holds a `dream-cl {command}` of other settings; {what} another --out"
        )
    return state


def refuse_if_foreign(folder: str | Path, command: str) -> None:
    """The early, cheap part of :func:`claim` (before data is loaded): another command's
    run or unknown files are refused at once."""
    state = inspect_folder(folder, command, {})
    if state.kind == "foreign":
        raise refuse_foreign(Path(folder), state, command)


def check_output_file(target: str | Path, command: str, is_own: Callable[[Path], bool]) -> None:
    """A command writes a file only where there is none, or over that command's own earlier
    output (``is_own``); anything else (a set's ``images.pt``, a run's ``config.json``) is
    refused with one line before any work."""
    target = Path(target)
    if target.is_dir():
        raise UserError(f"--out {target} is a folder; give the file to write")
    if target.exists() and not is_own(target):
        raise UserError(
            f"--out {target} exists and is not the output of an earlier `dream-cl {command}`; "
            "choose another file"
        )


def is_png(path: Path) -> bool:
    """A PNG picture (what ``show`` draws), by its signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def record(command: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``config.json`` of a run folder: the command, its configuration and extras."""
    return {"command": command, "config": config, **extra}


@contextlib.contextmanager
def claimed(
    folder: str | Path,
    command: str | None = None,
    lock_name: str | None = None,
    clean: bool = True,
) -> Iterator[FolderLock]:
    """Hold ``folder`` for a whole command: an exclusive lock (rank 0's, under torchrun),
    then the temporaries of killed writes removed. Another command's folder is refused
    before the lock file is made; a failed command leaves no folder it created behind."""
    from dream_cl.distributed import agree

    folder = Path(folder)
    lock = FolderLock(folder, lock_name or LOCK_FILE)

    def take() -> None:
        if command is not None:
            refuse_if_foreign(folder, command)
        lock.acquire()
        if clean:
            remove_temporaries(folder)

    agree(take)
    try:
        yield lock
    except BaseException:
        lock.release(failed=True)
        raise
    lock.release()
