"""The safe path walk: a pantry is resolved like systemd's chase(CHASE_SAFE); below it, no symlink is ever followed."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from snackwatch.apply import make_directory
from snackwatch.perms import Perms, owner_text, user_name
from snackwatch.plan import Kind
from snackwatch.spec import DIRECTORY_MODE

MAX_SYMLINKS = 40  # like the kernel's and chase()'s bound
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directories on the way to the pantry are only walked through: an O_PATH fd is cheaper to open (Linux).
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
# Told (directory fd, name) before the walk looks `name` up in that directory (held.py guards what it looks at).
Step = Callable[[int, str], None]


class BlockedPath(Exception):
    """Something other than a directory (or a symlink we may not follow, or a directory owned by someone not
    trusted) is on the way to a snack's directory: `path`, its `kind` and `owner`; str() is the line users read."""

    def __init__(self, kind: Kind, path: str = "", owner: int | None = None, trusted: Sequence[int] = ()) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.path = path
        self.owner = owner
        self.trusted = tuple(trusted)  # set for a directory refused for its owner

    def __str__(self) -> str:
        where = self.path or "a path on the way"
        if self.trusted and self.owner is not None:
            allowed = " or ".join(user_name(uid) for uid in self.trusted)
            return f"{where} is owned by {owner_text(self.owner)}, not by {allowed}: not used"
        owned = f" owned by {user_name(self.owner)}" if self.owner is not None else ""
        if self.kind is Kind.SYMLINK:
            return f"{where} is a symlink{owned}: not followed"
        return f"{where} is a {self.kind.value}{owned}, not a directory"


class WalkRules(NamedTuple):
    """How the walk treats one pantry: who may own the directories on the way (root, the daemon's euid and the
    spec's declared owner), and what a directory it creates gets (`makers` by path, else `default`)."""

    owners: tuple[int, ...]
    makers: Mapping[str, Perms]
    default: Perms = Perms(DIRECTORY_MODE)

    def perms(self, path: str) -> Perms:
        return self.makers.get(path, self.default)


_ABOVE = Perms(DIRECTORY_MODE)  # directories created above a pantry: 0755, the daemon's


def kind_of(mode: int) -> Kind:
    """Classify an lstat() mode."""
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIRECTORY
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    return Kind.OTHER


def open_directory(
    directory: str, pantry: str, *, create: bool, rules: WalkRules | None = None, step: Step | None = None
) -> int:
    """An fd for `directory` under `pantry` (an absolute path), creating missing directories with `create`.

    The pantry is walked from "/" (open_pantry); the rest one component at a time with O_NOFOLLOW: below the
    pantry nothing is followed. Raises BlockedPath for a symlink or non-directory in the way (with `rules`, also for
    a directory owned by anyone but root, the euid or the declared owner), FileNotFoundError for a missing
    directory when not creating. With `rules`, a directory created gets its declared mode, owner and group.
    `step` is told each (directory fd, name) before that name is looked up (opened, created, read as a link).
    """
    fd = open_pantry(pantry, create=create, rules=rules, step=step)
    return fd if directory == pantry else _descend_to(fd, pantry, directory, create=create, rules=rules, step=step)


def open_pantry(pantry: str, *, create: bool, rules: WalkRules | None = None, step: Step | None = None) -> int:
    """An fd for `pantry`, walked from "/" with O_NOFOLLOW|O_DIRECTORY from directory fds (mkdirat with `create`).

    A symlink on the way is followed only when it and the directory holding it are owned by root or by us and
    that directory is writable by no one else (so not in /tmp, nor in a directory another user owns): the
    release-layout `current -> v1` is followed, a symlink another user could plant or swap in is a conflict
    (BlockedPath). At most MAX_SYMLINKS are followed. With `rules`, every directory walked must be owned by one of
    `rules.owners` (like systemd-tmpfiles' safe chase), and the pantry, created, gets its declared perms.
    """
    todo = _components(pantry)
    fd, flags = os.open("/", _WALK), _WALK
    walked: list[str] = []  # where the walk is, for the lines that name what is in the way
    followed = 0
    try:
        _check_owner(fd, walked, rules)
        while todo:
            part = todo.pop()
            flags = _WALK if todo else _DIRECTORY  # only the pantry itself is opened for reading
            perms = _ABOVE if todo or rules is None else rules.perms(pantry)
            if step is not None:
                step(fd, part)
            try:
                child = _open_child(fd, part, flags, create=create, perms=perms)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                followed += 1
                target = _followed_link(fd, part, _path([*walked, part]), followed)
                todo.extend(_components(target))
                flags = _WALK  # the directory holding the link, unless the target restarts at "/"
                if not target.startswith("/"):
                    continue
                child = os.open("/", _WALK)
                walked = []
            else:
                if part == "..":
                    walked = walked[:-1]
                else:
                    walked.append(part)
            os.close(fd)
            fd = child
            _check_owner(fd, walked, rules)
        if flags != _DIRECTORY:  # the pantry is "/", or a link to "." or "/": reopen it for reading
            child = os.open(".", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _followed_link(fd: int, part: str, here: str, followed: int) -> str:
    """The target of the symlink `part` in the directory `fd`, if the walk may follow it (the `followed`-th);
    BlockedPath naming it (`here`), its kind and owner otherwise, or when `part` is no symlink at all."""
    link = os.lstat(part, dir_fd=fd)
    if not stat.S_ISLNK(link.st_mode):
        raise BlockedPath(kind_of(link.st_mode), here, link.st_uid) from None
    if followed > MAX_SYMLINKS or not _trusted_link(link, os.fstat(fd)):
        raise BlockedPath(Kind.SYMLINK, here, link.st_uid) from None
    return os.readlink(part, dir_fd=fd)


def _check_owner(fd: int, where: str | list[str], rules: WalkRules | None) -> None:
    """BlockedPath unless the directory `fd` (at `where`: a path, or the walked components) is owned by someone
    the rules trust (no rules: no check)."""
    if rules is not None and (owner := os.fstat(fd).st_uid) not in rules.owners:
        path = where if isinstance(where, str) else _path(where)
        raise BlockedPath(Kind.DIRECTORY, path, owner, rules.owners)


def _path(components: list[str]) -> str:
    return "/" + "/".join(components)


def _components(path: str) -> list[str]:
    """The components of `path` to walk, last first (a stack)."""
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


def _open_child(parent_fd: int, part: str, flags: int, *, create: bool, perms: Perms) -> int:
    try:
        return os.open(part, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    fd = make_directory(parent_fd, part, perms)
    if fd is not None:
        return fd
    return os.open(part, flags, dir_fd=parent_fd)  # made in between by someone else: open it (and check it)


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


def _descend(
    parent_fd: int, part: str, path: str, *, create: bool, rules: WalkRules | None, step: Step | None = None
) -> int:
    """Open a child directory of `parent_fd` below the pantry, never through a symlink; `parent_fd` is closed."""
    try:
        if step is not None:
            step(parent_fd, part)
        try:
            perms = rules.perms(path) if rules is not None else _ABOVE
            fd = _open_child(parent_fd, part, _DIRECTORY, create=create, perms=perms)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                info = os.lstat(part, dir_fd=parent_fd)
                raise BlockedPath(kind_of(info.st_mode), path, info.st_uid) from None
            raise
    finally:
        os.close(parent_fd)
    if rules is not None:
        try:
            _check_owner(fd, path, rules)
        except BlockedPath:
            os.close(fd)
            raise
    return fd


def open_below(parent_fd: int, parent: str, directory: str, *, create: bool, rules: WalkRules | None = None) -> int:
    """An fd for `directory`, a directory below `parent` (whose fd, opened by this module's walk, is `parent_fd`),
    by the same descent as open_directory's below its pantry: one component at a time, nothing followed, each
    directory owner-checked with `rules`, created with `create`. `parent_fd` stays open (the caller's)."""
    return _descend_to(os.dup(parent_fd), parent, directory, create=create, rules=rules)


def _descend_to(
    fd: int, parent: str, directory: str, *, create: bool, rules: WalkRules | None, step: Step | None = None
) -> int:
    """From `fd` (of `parent`, closed on the way) down to `directory`, one component at a time (_descend)."""
    path = parent.rstrip("/")
    for part in directory[len(os.path.join(parent, "")) :].split(os.sep):
        path = f"{path}/{part}"
        fd = _descend(fd, part, path, create=create, rules=rules, step=step)
    return fd
