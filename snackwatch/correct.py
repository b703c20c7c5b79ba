"""Puts enforced aspects of an existing entry back: content by a new file renamed over the name, mode and owner on an
O_NOFOLLOW fd of the entry, a target by a new symlink renamed over, a wrong kind moved aside; never through a path."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable

from snackwatch.apply import create_snack, make_symlink, stage, temp_name
from snackwatch.drift import Aspect
from snackwatch.perms import Perms, chown_symlink
from snackwatch.spec import Snack

DISPLACED = ".snackwatch-displaced-"  # NAME.snackwatch-displaced-TIMESTAMP: where a wrong kind is moved aside
_OPEN_FLAGS = {
    "file": os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
    "directory": os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
    "symlink": getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC,
}
_IS_KIND = {"file": stat.S_ISREG, "directory": stat.S_ISDIR, "symlink": stat.S_ISLNK}


class HardLinked(OSError):
    """A file with other names (hard links): changing its mode or owner would change theirs; left as it is."""


class Raced(OSError):
    """The entry changed kind or identity between the look and the correction: nothing was changed."""


def correct(
    directory_fd: int,
    name: str,
    snack: Snack,
    aspects: list[Aspect],
    before_publish: Callable[[os.stat_result], None] | None = None,
) -> str:
    """Put `aspects` (enforced, drifting) of the entry `name` back; returns the name a wrong kind was moved aside
    to ("" if none). Raises OSError (Raced if the entry changed under us: the next event looks again).
    `before_publish`: told the identity of a new file before it replaces the old one (a pruning spec's record)."""
    wanted = {aspect.name for aspect in aspects}
    if "type" in wanted:
        displaced = displace(directory_fd, name)
        if not create_snack(directory_fd, name, snack):
            raise Raced(17, "the name was taken again right after the entry was moved aside", name)
        return displaced
    if "content" in wanted:
        replace_file(directory_fd, name, snack, before_publish)  # the new file has the declared mode and owner
        return ""
    if "target" in wanted:
        replace_symlink(directory_fd, name, snack)
        return ""
    set_perms(directory_fd, name, snack, mode="mode" in wanted, owner="owner" in wanted, group="group" in wanted)
    return ""


def displace(directory_fd: int, name: str) -> str:
    """Move the entry at `name` aside to `NAME.snackwatch-displaced-TIMESTAMP` (never replacing, never deleted)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = f"{name}{DISPLACED}{stamp}"
    for attempt in range(100):
        candidate = aside if attempt == 0 else f"{aside}.{attempt}"
        try:
            _rename_noreplace(directory_fd, name, candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(17, "no free name to move the entry aside to", aside)


def _rename_noreplace(directory_fd: int, old: str, new: str) -> None:
    from snackwatch.apply import rename_noreplace  # noqa: PLC0415  (ctypes only where a kind is moved aside)

    if rename_noreplace(directory_fd, old, new):
        return
    os.link(old, new, src_dir_fd=directory_fd, dst_dir_fd=directory_fd, follow_symlinks=False)  # never replaces
    os.unlink(old, dir_fd=directory_fd)


def replace_file(
    directory_fd: int, name: str, snack: Snack, before_publish: Callable[[os.stat_result], None] | None = None
) -> None:
    """Write the declared bytes to a new temp file (mode, owner and group set on its fd, fsynced), then rename it
    over `name`: a reader sees the old file or the new one, whole; a hard link at the name keeps its other names
    and bytes (the name is replaced, nothing is written through it)."""
    staged = stage(directory_fd, snack)
    try:
        if before_publish is not None:
            before_publish(staged.identity)
        os.rename(staged.temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged.temp, dir_fd=directory_fd)
        raise


def replace_symlink(directory_fd: int, name: str, snack: Snack) -> None:
    """A new symlink with the declared text (and owner), under a temp name, renamed over `name`."""
    temp = temp_name()
    if not make_symlink(directory_fd, temp, snack.target or "", Perms(0o777, snack.owner, snack.group)):
        raise Raced(17, "temp symlink name taken", temp)
    try:
        os.rename(temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=directory_fd)
        raise


def set_perms(directory_fd: int, name: str, snack: Snack, *, mode: bool, owner: bool, group: bool) -> None:
    """fchmod / fchown on an O_NOFOLLOW fd of the entry (O_PATH for a symlink, changed by AT_EMPTY_PATH), after
    checking the fd is of the declared kind: a name swapped meanwhile is never changed through."""
    fd = os.open(name, _OPEN_FLAGS[snack.type], dir_fd=directory_fd)
    try:
        info = os.fstat(fd)
        if not _IS_KIND[snack.type](info.st_mode):
            raise Raced(40, f"no longer a {snack.type}", name)
        if snack.type == "file" and info.st_nlink > 1:  # as systemd-tmpfiles: the other names share the inode
            raise HardLinked(errno.EPERM, f"has {info.st_nlink} hard links: its mode and owner are not changed", name)
        uid = (snack.owner if snack.owner is not None else os.geteuid()) if owner else info.st_uid
        gid = snack.group if group and snack.group is not None else info.st_gid
        if snack.type == "symlink":
            if (uid, gid) != (info.st_uid, info.st_gid):
                chown_symlink(fd, Perms(0o777, uid, gid))
            return
        if mode:
            os.fchmod(fd, snack.final_mode())
        if (uid, gid) != (info.st_uid, info.st_gid):
            os.fchown(fd, uid, gid)
            wanted = snack.final_mode() if mode else stat.S_IMODE(info.st_mode)
            if wanted & (stat.S_ISUID | stat.S_ISGID):  # a chown clears them: set again (needs CAP_FOWNER)
                os.fchmod(fd, wanted)
    finally:
        os.close(fd)
