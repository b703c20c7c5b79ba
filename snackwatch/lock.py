"""One daemon per spec: an flock()ed pid file in the runtime directory, released by the kernel on exit."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from snackwatch.errors import AlreadyRunning


def directory_from_env(systemd: str, xdg: str, for_root: str, for_user: str) -> Path:
    """The directory systemd gives the unit ($systemd), else $xdg/snackwatch, else `for_root` when root
    (the system unit's directory, so `sudo snackwatch ...` meets the service), else `for_user`."""
    if os.environ.get(systemd):
        return Path(os.environ[systemd].split(":")[0])
    if os.environ.get(xdg):
        return Path(os.environ[xdg]) / "snackwatch"
    return Path(for_root if os.geteuid() == 0 else os.path.expanduser(for_user))


def runtime_dir() -> Path:
    """Where the lock lives: RuntimeDirectory=, $XDG_RUNTIME_DIR, /run/snackwatch (root), /tmp/snackwatch-UID."""
    return directory_from_env(
        "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR", "/run/snackwatch", f"/tmp/snackwatch-{os.getuid()}"
    )


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
