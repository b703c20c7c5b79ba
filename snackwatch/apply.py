"""The only code that creates files: O_EXCL|O_NOFOLLOW creation, atomic publish for content or mode."""

from __future__ import annotations

import contextlib
import os
import secrets

from snackwatch.spec import RESERVED_PREFIX, Snack

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_snack(directory_fd: int, name: str, snack: Snack, *, identity: bool = False) -> os.stat_result | bool:
    """Create file `name` for `snack` unless anything (file, dir, symlink, even dangling) holds the name.

    Returns False if the name was taken, else True, or the new file's stat when `identity` is asked for
    (it goes into the ownership record of a pruning spec).

    A plain snack is one O_CREAT|O_EXCL|O_NOFOLLOW open: an empty file is complete the moment it
    exists. A snack with content or mode is written to a temp file in the pantry, then published
    with link(), which never replaces: a crash leaves at worst a temp file, never a half-written snack.
    """
    if snack.content is None and snack.mode is None:
        try:
            fd = os.open(name, _CREATE_FLAGS, 0o666, dir_fd=directory_fd)
        except FileExistsError:
            return False
        try:
            return os.fstat(fd) if identity else True
        finally:
            os.close(fd)
    return _publish(directory_fd, name, snack)


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


def _publish(directory_fd: int, name: str, snack: Snack) -> os.stat_result | bool:
    temp = f"{RESERVED_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.tmp"
    # 0600 until every byte is written: another user racing the temp file never reads a secret snack's content.
    fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        try:
            if snack.content:
                view = memoryview(snack.content.encode("utf-8"))
                while view:
                    view = view[os.write(fd, view) :]
            os.fchmod(fd, snack.mode if snack.mode is not None else 0o666 & ~_umask())
            os.fsync(fd)
            identity = os.fstat(fd)
        finally:
            os.close(fd)
        os.link(temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=directory_fd)
    return identity


def _umask() -> int:
    """The process umask (the mode a plain create would get). Reading it means setting it: set to 0o077 for the
    instant in between, so a file another thread creates meanwhile can only come out more private."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
