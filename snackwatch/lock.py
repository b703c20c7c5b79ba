"""One daemon per spec: an flock()ed pid file in the runtime directory, released by the kernel on exit."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from snackwatch.errors import AlreadyRunning


def runtime_dir() -> Path:
    """$RUNTIME_DIRECTORY (systemd), else $XDG_RUNTIME_DIR/snackwatch, else /run/snackwatch for root
    (what the system unit's RuntimeDirectory= is, so `sudo snackwatch status` finds the service), else
    /tmp/snackwatch-UID."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "snackwatch"
    if os.geteuid() == 0:
        return Path("/run/snackwatch")
    return Path(f"/tmp/snackwatch-{os.getuid()}")


def instance_name(config: Path) -> str:
    """A file-name-safe key for one daemon's config (spec file or directory): stem plus a path hash."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(config))).hexdigest()[:16]
    return f"{config.stem}-{digest}"


def lock_path(spec: Path) -> Path:
    """The lock file for a config."""
    return runtime_dir() / f"{instance_name(spec)}.lock"


def running_pid(spec: Path) -> int | None:
    """The pid of the daemon holding this config's lock, or None if no daemon runs for it."""
    try:
        fd = os.open(lock_path(spec), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(holder) if holder.isdigit() else -1
    else:
        return None
    finally:
        os.close(fd)


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
