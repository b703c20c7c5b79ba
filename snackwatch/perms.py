"""Who owns what snackwatch creates, and its mode: set on fds (fchown, fchmod), never through a path."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Collection
from typing import NamedTuple

from snackwatch.libc import last_error, libc

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
_AT_EMPTY_PATH = 0x1000
_NO_ACL = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


class Perms(NamedTuple):
    """What a created entry gets: its mode, and its owner and group (None: the daemon's euid and egid)."""

    mode: int
    owner: int | None = None
    group: int | None = None

    def ids(self) -> tuple[int, int]:
        """The uid and gid the entry must end up with: declared, else the daemon's own (never a setgid directory's)."""
        return (
            self.owner if self.owner is not None else os.geteuid(),
            self.group if self.group is not None else os.getegid(),
        )


def chown_fd(fd: int, info: os.stat_result, perms: Perms) -> None:
    """Give the open entry `fd` (as `info` shows it) its owner and group, if it has not got them: one fchown.
    EPERM (not root, no CAP_CHOWN, or a group we are not in) is raised: a failure for that entry."""
    uid, gid = perms.ids()
    if info.st_uid != uid or info.st_gid != gid:
        os.fchown(fd, uid if info.st_uid != uid else -1, gid if info.st_gid != gid else -1)


def strip_acl(fd: int, *, directory: bool = False) -> None:
    """Remove the ACL an entry inherited from its directory's default ACL, so only its mode says who may read it
    (a default ACL never widens a declared mode). A filesystem without ACLs, or no ACL: nothing to do."""
    for name in (ACL_ACCESS, ACL_DEFAULT) if directory else (ACL_ACCESS,):
        try:
            os.removexattr(fd, name)
        except OSError as error:
            if error.errno not in _NO_ACL:
                raise


def has_default_acl(directory_fd: int) -> bool:
    """Whether entries created in the directory inherit a default ACL (one fgetxattr per directory pass)."""
    try:
        os.getxattr(directory_fd, ACL_DEFAULT)
    except OSError:
        return False
    return True


def inherits_foreign_group(directory: os.stat_result) -> bool:
    """Whether an entry created in `directory` would get another group than ours: a setgid directory's group."""
    return bool(directory.st_mode & stat.S_ISGID) and directory.st_gid != os.getegid()


def chown_symlink(path_fd: int, perms: Perms) -> None:
    """fchownat(fd, "", AT_EMPTY_PATH) on an O_PATH|O_NOFOLLOW fd of a symlink: the link itself, by its fd, so a
    name swapped meanwhile can never redirect the change (Python's os.chown has no AT_EMPTY_PATH)."""
    uid, gid = perms.ids()
    lib = libc()
    if lib is None:
        raise OSError(errno.ENOSYS, "no C library to call fchownat")
    if lib.fchownat(path_fd, b"", uid, gid, _AT_EMPTY_PATH) != 0:
        raise last_error()


def user_name(uid: int) -> str:
    """`alice`, or `uid 1234` for a uid without a name."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def owner_text(uid: int) -> str:
    """`nobody (uid 65534)`, `root (uid 0)`, or `uid 1234`: how a line names who owns something."""
    name = user_name(uid)
    return name if name.startswith("uid ") else f"{name} (uid {uid})"


def trusted_owners(declared: Collection[int]) -> list[int]:
    """Who may own a directory on the walk: root, the daemon's euid, and the owners the spec declares."""
    return list(dict.fromkeys([0, os.geteuid(), *sorted(declared)]))
