"""The only code that creates files: O_EXCL|O_NOFOLLOW creation, atomic publish for content or mode."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from snackwatch.spec import RESERVED_PREFIX, Snack

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_pantry(pantry: Path) -> int:
    """An fd for the pantry directory, so every name below is resolved inside it and nowhere else."""
    return os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def ensure_pantry(pantry: Path) -> bool:
    """Create the pantry (and parents) if missing; True if it had to be created."""
    if os.path.isdir(pantry):
        return False
    os.makedirs(pantry, exist_ok=True)
    return True


def create_snack(pantry_fd: int, snack: Snack) -> bool:
    """Create `snack` unless anything (file, dir, symlink, even dangling) holds its name; True if created.

    A plain snack is one O_CREAT|O_EXCL|O_NOFOLLOW open: an empty file is complete the moment it
    exists. A snack with content or mode is written to a temp file in the pantry, then published
    with link(), which never replaces: a crash leaves at worst a temp file, never a half-written snack.
    """
    if snack.content is None and snack.mode is None:
        try:
            os.close(os.open(snack.name, _CREATE_FLAGS, 0o666, dir_fd=pantry_fd))
        except FileExistsError:
            return False
        return True
    return _publish(pantry_fd, snack)


def _publish(pantry_fd: int, snack: Snack) -> bool:
    temp = f"{RESERVED_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, _CREATE_FLAGS, 0o666, dir_fd=pantry_fd)
    try:
        try:
            if snack.content:
                view = memoryview(snack.content.encode("utf-8"))
                while view:
                    view = view[os.write(fd, view) :]
            if snack.mode is not None:
                os.fchmod(fd, snack.mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, snack.name, src_dir_fd=pantry_fd, dst_dir_fd=pantry_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=pantry_fd)
    return True
