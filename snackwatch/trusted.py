"""The directories and files snackwatch keeps to itself: its own, writable by no one else, never via a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from snackwatch.errors import UntrustedPath
from snackwatch.perms import owner_text

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO planted in its place never hangs us


def choose_directory(systemd: str, xdg: str, for_root: str, for_user: str) -> Path:
    """The directory systemd gives the unit ($systemd); else `for_root` as root, whatever XDG variables say
    (they may be another user's, inherited through su or sudo -E); else $xdg/snackwatch; else `for_user`."""
    given = os.environ.get(systemd, "").split(":")[0]
    if os.path.isabs(given):
        return Path(given)
    if os.geteuid() == 0:
        return Path(for_root)
    base = os.environ.get(xdg, "")
    if os.path.isabs(base):  # the XDG spec: a relative value is invalid and ignored
        return Path(base) / "snackwatch"
    return Path(os.path.expanduser(for_user))


def open_trusted_directory(path: Path, purpose: str, *, create: bool) -> int:
    """An fd for `path`, snackwatch's `purpose` directory: made 0700 if missing (with `create`), then refused
    (UntrustedPath) unless it is a real directory, not a symlink, owned by this user and writable by no one else.

    Files in it are then opened relative to this fd, so the directory checked is the directory used.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        fd = os.open(path, _DIRECTORY_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UntrustedPath(path, purpose, "it is a symlink or not a directory") from None
        raise
    problem = _ownership_problem(os.fstat(fd))
    if problem:
        os.close(fd)
        raise UntrustedPath(path, purpose, problem)
    return fd


def open_trusted_file(directory_fd: int, path: Path, flags: int, purpose: str) -> int:
    """Open `path.name` in the trusted directory `directory_fd` without following a symlink, then refuse
    (UntrustedPath) anything but a regular file owned by this user, writable by no one else, with one link.
    A file it creates is 0600."""
    try:
        fd = os.open(path.name, flags | _FILE_FLAGS, 0o600, dir_fd=directory_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UntrustedPath(path, purpose, "it is a symlink") from None
        raise
    info = os.fstat(fd)
    problem = "it is not a regular file" if not stat.S_ISREG(info.st_mode) else _ownership_problem(info)
    if not problem and info.st_nlink != 1:
        problem = f"it has {info.st_nlink} hard links"
    if problem:
        os.close(fd)
        raise UntrustedPath(path, purpose, problem)
    return fd


def _ownership_problem(info: os.stat_result) -> str:
    euid = os.geteuid()
    if info.st_uid != euid:
        return f"it is owned by {owner_text(info.st_uid)}, not by {owner_text(euid)} that snackwatch runs as: not used"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its mode {stat.S_IMODE(info.st_mode):04o} lets others write to it (chmod go-w, or remove it)"
    return ""
