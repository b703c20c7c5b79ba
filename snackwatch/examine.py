"""Reads one existing entry for the drift comparison, from its directory's fd: lstat, readlink, bounded content."""

from __future__ import annotations

import os
import stat

from snackwatch.drift import Aspect, drift_of
from snackwatch.spec import Snack

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def drift_at(directory_fd: int, name: str, snack: Snack) -> list[Aspect]:
    """The drifting aspects of the entry `name` (nothing followed: fstatat AT_SYMLINK_NOFOLLOW, readlinkat, and
    the content read through an O_NOFOLLOW|O_NONBLOCK fd checked to be the same regular file). FileNotFoundError
    if it is gone; other OSErrors raised."""
    info = os.lstat(name, dir_fd=directory_fd)
    target = None
    content = None
    if stat.S_ISLNK(info.st_mode) and snack.type == "symlink":
        target = os.readlink(name, dir_fd=directory_fd)
    elif stat.S_ISREG(info.st_mode) and snack.declares_content:
        wanted = len(snack.payload() or b"")
        content = read_bounded(directory_fd, name, info, wanted + 1) if info.st_size == wanted else None
    return drift_of(snack, info, target, content, os.geteuid())


def read_bounded(directory_fd: int, name: str, info: os.stat_result, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `name`, if it is still the file `info` describes (else None)."""
    fd = os.open(name, _READ_FLAGS, dir_fd=directory_fd)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return None
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
