"""The safe path walk: a pantry is resolved like systemd's chase(CHASE_SAFE); below it, no symlink is ever followed."""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from snackwatch.plan import Kind

MAX_SYMLINKS = 40  # like the kernel's and chase()'s bound
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directories on the way to the pantry are only walked through: an O_PATH fd is cheaper to open (Linux).
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class BlockedPath(Exception):
    """Something other than a directory (or a symlink we may not follow) is on the way to a snack's directory."""

    def __init__(self, kind: Kind) -> None:
        super().__init__(kind.value)
        self.kind = kind


def kind_of(mode: int) -> Kind:
    """Classify an lstat() mode."""
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIRECTORY
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    return Kind.OTHER


def open_directory(directory: str, pantry: str, *, create: bool) -> int:
    """An fd for `directory` under `pantry` (an absolute path), creating missing directories with `create`.

    The pantry is walked from "/" (open_pantry); the rest one component at a time with O_NOFOLLOW: below the
    pantry nothing is followed. Raises BlockedPath for a symlink or non-directory in the way, FileNotFoundError
    for a missing directory when not creating.
    """
    fd = open_pantry(pantry, create=create)
    if directory == pantry:
        return fd
    for part in directory[len(os.path.join(pantry, "")) :].split(os.sep):
        fd = _descend(fd, part, create=create)
    return fd


def open_pantry(pantry: str, *, create: bool) -> int:
    """An fd for `pantry`, walked from "/" with O_NOFOLLOW|O_DIRECTORY from directory fds (mkdirat with `create`).

    A symlink on the way is followed only when it and the directory holding it are owned by root or by us and
    that directory is writable by no one else (so not in /tmp, nor in a directory another user owns): the
    release-layout `current -> v1` is followed, a symlink another user could plant or swap in is a conflict
    (BlockedPath). At most MAX_SYMLINKS are followed.
    """
    todo = _components(pantry)
    fd, flags = os.open("/", _WALK), _WALK
    followed = 0
    try:
        while todo:
            part = todo.pop()
            flags = _WALK if todo else _DIRECTORY  # only the pantry itself is opened for reading
            try:
                child = _open_child(fd, part, flags, create=create)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link = os.lstat(part, dir_fd=fd)
                if not stat.S_ISLNK(link.st_mode):
                    raise BlockedPath(kind_of(link.st_mode)) from None
                followed += 1
                if followed > MAX_SYMLINKS or not _trusted_link(link, os.fstat(fd)):
                    raise BlockedPath(Kind.SYMLINK) from None
                target = os.readlink(part, dir_fd=fd)
                todo.extend(_components(target))
                flags = _WALK  # the directory holding the link, unless the target restarts at "/"
                if not target.startswith("/"):
                    continue
                child = os.open("/", _WALK)
            os.close(fd)
            fd = child
        if flags != _DIRECTORY:  # the pantry is "/", or a link to "." or "/": reopen it for reading
            child = os.open(".", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _components(path: str) -> list[str]:
    """The components of `path` to walk, last first (a stack)."""
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


def _open_child(parent_fd: int, part: str, flags: int, *, create: bool) -> int:
    try:
        return os.open(part, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # made in between: open it
        os.mkdir(part, 0o777, dir_fd=parent_fd)
    return os.open(part, flags, dir_fd=parent_fd)


def _trusted_link(link: os.stat_result, holder: os.stat_result) -> bool:
    return link.st_uid in (0, os.geteuid()) and _trusted_holder(holder)


def _trusted_holder(holder: os.stat_result) -> bool:
    """A directory whose symlinks the walk may follow: owned by root or by us, writable by no one else."""
    return holder.st_uid in (0, os.geteuid()) and not holder.st_mode & _WRITABLE_BY_OTHERS


def may_hold_followed_links(directory: str) -> bool:
    """Whether a symlink in `directory` could be followed by the pantry walk (the watcher watches such ones)."""
    try:
        return stat.S_ISDIR((info := os.lstat(directory)).st_mode) and _trusted_holder(info)
    except OSError:
        return False


def _descend(parent_fd: int, part: str, *, create: bool) -> int:
    """Open a child directory of `parent_fd` below the pantry, never through a symlink; `parent_fd` is closed."""
    try:
        try:
            return _open_child(parent_fd, part, _DIRECTORY, create=create)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise BlockedPath(kind_of(os.lstat(part, dir_fd=parent_fd).st_mode)) from None
            raise
    finally:
        os.close(parent_fd)
