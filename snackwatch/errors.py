"""Typed errors that carry what a user needs to act: file, line, snack, errno text."""

from __future__ import annotations

import errno
from pathlib import Path


class SnackwatchError(Exception):
    """Base of every error snackwatch reports to the user as one line."""


class SpecError(SnackwatchError):
    """An invalid spec: `path:line: message` (line is None when the file itself is the problem)."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        self.also: list[SpecError] = []  # further independent errors in the same file (`check` prints them all)
        super().__init__(str(self))

    def __str__(self) -> str:
        path = str(self.path)
        if not path.isprintable():  # a conf.d file named with an escape sequence: show it escaped, not raw
            path = repr(path)[1:-1]
        where = f"{path}:{self.line}" if self.line is not None else path
        return f"{where}: {self.message}"


class SpecBeingWritten(SpecError):
    """The spec file is open for writing by another process: it is read once its writer closes it."""


class AlreadyRunning(SnackwatchError):
    """Another daemon holds the lock for this spec."""

    def __init__(self, spec: Path, pid: int | None) -> None:
        self.spec = spec
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"already running ({who}) for spec {spec}")


class UntrustedPath(SnackwatchError):
    """A directory or file snackwatch keeps its own lock or state in is not safely its own."""

    def __init__(self, path: Path | str, purpose: str, why: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: not safe as snackwatch's {purpose}: {why}")


def error_text(error: OSError | None) -> str:
    """An OSError as users read it: 'No space left on device (ENOSPC)'."""
    if error is None:
        return "unknown error"
    code = errno.errorcode.get(error.errno or 0, "")
    return f"{error.strerror or error} ({code})" if code else str(error)
