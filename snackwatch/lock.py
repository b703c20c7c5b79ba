"""One daemon per spec: an flock()ed pid file in the runtime directory, released by the kernel on exit."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from snackwatch.errors import AlreadyRunning


def runtime_dir() -> Path:
    """$RUNTIME_DIRECTORY (systemd), else $XDG_RUNTIME_DIR/snackwatch, else /tmp/snackwatch-UID."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "snackwatch"
    return Path(f"/tmp/snackwatch-{os.getuid()}")


def lock_path(spec: Path) -> Path:
    """The lock file for a spec: named by a hash of its absolute path."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(spec))).hexdigest()[:16]
    return runtime_dir() / f"{spec.stem}-{digest}.lock"


class SpecLock:
    """Held for the daemon's lifetime; raises AlreadyRunning with the holder's pid."""

    def __init__(self, spec: Path) -> None:
        self.path = lock_path(spec)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise AlreadyRunning(spec, int(holder) if holder.isdigit() else None) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)
