"""The only code that creates files: O_EXCL|O_NOFOLLOW creation, atomic publish for content, mode or ownership."""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import NamedTuple

from snackwatch.spec import RESERVED_PREFIX, Snack

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Staged(NamedTuple):
    """A snack written whole to a temp file in its directory, not yet published: `identity` is the final file's."""

    temp: str
    identity: os.stat_result


def create_snack(directory_fd: int, name: str, snack: Snack) -> bool:
    """Create file `name` for `snack` unless anything (file, dir, symlink, even dangling) holds the name: False if
    the name was taken.

    A plain snack is one O_CREAT|O_EXCL|O_NOFOLLOW open: an empty file is complete the moment it
    exists. A snack with content or mode is written to a temp file in the pantry, then published
    with link(), which never replaces: a crash leaves at worst a temp file, never a half-written snack.
    """
    if snack.content is None and snack.mode is None:
        try:
            os.close(os.open(name, _CREATE_FLAGS, 0o666, dir_fd=directory_fd))
        except FileExistsError:
            return False
        return True
    return publish(directory_fd, stage(directory_fd, snack), name)


def create_plain_snacks(directory_fd: int, names: list[str]) -> list[bool | OSError]:
    """Create many plain (empty, default-mode) snacks: True created, False name taken, or the error; in order.

    The same O_CREAT|O_EXCL|O_NOFOLLOW create as create_snack(), in one tight loop: the burst path.
    """
    results: list[bool | OSError] = []
    append, create, close = results.append, os.open, os.close
    for name in names:
        try:
            close(create(name, _CREATE_FLAGS, 0o666, dir_fd=directory_fd))
        except FileExistsError:
            append(False)
        except OSError as error:
            append(error)
        else:
            append(True)
    return results


def temp_name() -> str:
    """A fresh temp file name: `.snackwatch-PID-HEX.tmp` (leftovers.py knows it back)."""
    return f"{RESERVED_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.tmp"


def stage(directory_fd: int, snack: Snack) -> Staged:
    """Write `snack` whole to a new temp file in the directory: its inode is the published file's, so its identity
    can be recorded before the name appears (see publish()).

    0600 until every byte is written: another user racing the temp file never reads a secret snack's content.
    """
    temp = temp_name()
    fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        if snack.content:
            view = memoryview(snack.content.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
        os.fchmod(fd, snack.mode if snack.mode is not None else 0o666 & ~_umask())
        if snack.content:
            os.fsync(fd)  # the bytes are on disk before the name is: never a half-written snack after a power cut
        return Staged(temp, os.fstat(fd))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=directory_fd)
        raise
    finally:
        os.close(fd)


def publish(directory_fd: int, staged: Staged, name: str) -> bool:
    """Give the staged file its name with link(), which never replaces: False if the name was taken.
    The temp name is removed either way."""
    try:
        os.link(staged.temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.temp, dir_fd=directory_fd)
    return True


def _umask() -> int:
    """The process umask (the mode a plain create would get). Reading it means setting it: set to 0o077 for the
    instant in between, so a file another thread creates meanwhile can only come out more private."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
