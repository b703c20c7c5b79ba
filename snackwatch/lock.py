"""One daemon per spec: an flock()ed pid file in the runtime directory, released by the kernel on exit."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from snackwatch.errors import AlreadyRunning, SnackwatchError
from snackwatch.trusted import choose_directory, open_trusted_directory, open_trusted_file

RUNTIME_PURPOSE = "runtime directory (lock files)"
PROC_LOCKS = Path("/proc/locks")


def runtime_dir() -> Path:
    """Where locks live: RuntimeDirectory=; as root /run/snackwatch; else $XDG_RUNTIME_DIR, /tmp/snackwatch-UID."""
    return choose_directory(
        "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR", "/run/snackwatch", f"/tmp/snackwatch-{os.geteuid()}"
    )


def resolved_config(config: Path) -> str:
    """The config's path however it is spelled (relative, through `..` or a symlinked directory): its directory
    resolved, its own name kept, so a spec that is itself a symlink (stow, a ConfigMap file) may be re-pointed."""
    path = os.fsdecode(config)
    head, name = os.path.split(path)
    if name in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head or "."), name)


def instance_name(config: Path) -> str:
    """A file-name-safe key for one daemon's config (spec file or directory): stem plus a hash of its resolved
    path, so every spelling of one config finds the same lock and status file."""
    resolved = resolved_config(config)
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:16]
    return f"{Path(resolved).stem}-{digest}"


def lock_path(spec: Path) -> Path:
    """The lock file for a config."""
    return runtime_dir() / f"{instance_name(spec)}.lock"


def flock_holders(locks: str, device: int, inode: int) -> set[int]:
    """The pids /proc/locks shows holding an exclusive flock on (device, inode); waiters ("->") hold nothing.

    A line reads `N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF`, major and minor in hex.
    """
    wanted = (os.major(device), os.minor(device), inode)
    holders = set()
    for line in locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1:4] != ["FLOCK", "ADVISORY", "WRITE"]:
            continue
        try:
            major, minor, ino = fields[5].split(":")
            where = (int(major, 16), int(minor, 16), int(ino))
        except ValueError:
            continue
        if where == wanted and fields[4].isdigit():
            holders.add(int(fields[4]))
    return holders


def proven_holder(fd: int) -> int | None:
    """The pid written in the open lock file `fd`, if the kernel says that process holds the lock on it.

    None when no process holds it; -1 when one does but it is not the pid written there. Without
    /proc/locks (not Linux), a held lock vouches for the pid (the file is in a directory only we can write).
    """
    written = os.pread(fd, 64, 0).decode(errors="replace").split()
    pid = int(written[0]) if written and written[0].isdigit() else -1
    info = os.fstat(fd)
    if pid > 0 and len(written) > 1 and written[1].isdigit() and _holds(pid, int(written[1]), info):
        return pid
    try:
        holders = flock_holders(PROC_LOCKS.read_text(), info.st_dev, info.st_ino)
    except FileNotFoundError:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    if not holders:
        return None
    return pid if pid in holders else -1


def _holds(pid: int, lock_fd: int, info: os.stat_result) -> bool:
    """The cheap proof: /proc/PID/fdinfo/FD lists the locks held through that open file (a few hundred bytes,
    where /proc/locks lists every lock on the host and costs 10 ms to read on a busy machine)."""
    try:
        text = Path(f"/proc/{pid}/fdinfo/{lock_fd}").read_text()
    except OSError:
        return False
    locks = "\n".join(line.partition(":")[2] for line in text.splitlines() if line.startswith("lock:"))
    return pid in flock_holders(locks, info.st_dev, info.st_ino)


def open_runtime_dir(path: Path, *, create: bool) -> int:
    """An fd for the runtime directory; one that cannot be used (a file on its path, no permission, read-only)
    is a SnackwatchError naming what it is for. FileNotFoundError if it is missing and not `create`."""
    try:
        return open_trusted_directory(path, RUNTIME_PURPOSE, create=create)
    except FileNotFoundError:
        if not create:
            raise
        raise SnackwatchError(
            f"{path}: cannot be used as snackwatch's {RUNTIME_PURPOSE}: a parent is missing"
        ) from None
    except (FileExistsError, NotADirectoryError):
        why = "a file stands on its path where a directory must be"
        raise SnackwatchError(f"{path}: cannot be used as snackwatch's {RUNTIME_PURPOSE}: {why}") from None
    except OSError as error:
        why = error.strerror or str(error)
        raise SnackwatchError(f"{path}: cannot be used as snackwatch's {RUNTIME_PURPOSE}: {why}") from None


def running_pid(spec: Path) -> int | None:
    """The pid of the daemon proven to hold this config's lock; None if none runs; -1 if the holder is unproven."""
    return instance_pid(instance_name(spec))


def instance_pid(instance: str) -> int | None:
    """running_pid() by instance name (as the state directory's file names carry it)."""
    path = runtime_dir() / f"{instance}.lock"
    try:
        directory = open_runtime_dir(path.parent, create=False)
    except FileNotFoundError:
        return None
    try:
        fd = open_trusted_file(directory, path, os.O_RDONLY, "lock file")
    except FileNotFoundError:
        return None
    finally:
        os.close(directory)
    try:
        return proven_holder(fd)
    finally:
        os.close(fd)


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22): with the pid, who it is."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = text.rpartition(b")")[2].split()  # the name (field 2) may hold spaces and parentheses
    return int(fields[19]) if len(fields) > 19 else None


class SpecLock:
    """Held for the daemon's lifetime; raises AlreadyRunning with the holder's pid, UntrustedPath for an unsafe
    runtime directory or lock file."""

    def __init__(self, spec: Path) -> None:
        self.path = lock_path(spec)
        directory = open_runtime_dir(self.path.parent, create=True)
        try:
            self.fd = open_trusted_file(directory, self.path, os.O_RDWR | os.O_CREAT, "lock file")
        except OSError as error:
            raise SnackwatchError(f"{self.path}: cannot open the lock file: {error.strerror or error}") from None
        finally:
            os.close(directory)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = proven_holder(self.fd)
            os.close(self.fd)
            raise AlreadyRunning(spec, holder if holder is not None and holder > 0 else None) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} {self.fd}\n".encode(), 0)  # who holds it, and through which fd

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)
