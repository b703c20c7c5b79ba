"""The only code that creates entries: files (O_EXCL, atomic publish), directories and symlinks, chowned on fds."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from typing import NamedTuple

from snackwatch.libc import last_error, libc
from snackwatch.perms import Perms, chown_fd, chown_symlink, has_default_acl, inherits_foreign_group, strip_acl
from snackwatch.spec import FILE_MODE, RESERVED_PREFIX, Snack

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PLAIN_NODE = stat.S_IFREG | FILE_MODE  # an empty regular file, for mknodat
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


class PlainFixes(NamedTuple):
    """What a plain file created in one directory needs besides its create (`fix` None: nothing, the common case):
    asked of the directory once per pass, or once while a targeted repair holds the directory (held.py)."""

    fix: Callable[[int], None] | None


class Staged(NamedTuple):
    """A snack written whole to a temp file in its directory, not yet published: `identity` is the final file's."""

    temp: str
    identity: os.stat_result


def create_snack(directory_fd: int, name: str, snack: Snack, fixes: PlainFixes | None = None) -> bool:
    """Create `name` for `snack` (a file, directory or symlink) unless anything (file, dir, symlink, even dangling)
    holds the name: False if the name was taken.

    A plain snack is one O_CREAT|O_EXCL|O_NOFOLLOW open: an empty file is complete the moment it exists. A file
    with content, mode or owner is written to a temp file in the pantry, then published with link(), which never
    replaces: a crash leaves at worst a temp file, never a half-written snack. `fixes`: the directory's, if known.
    """
    if snack.type == "directory":
        fd = make_directory(directory_fd, name, Perms(snack.final_mode(), snack.owner, snack.group))
        if fd is None:
            return False
        os.close(fd)
        return True
    if snack.type == "symlink":
        return make_symlink(directory_fd, name, snack.target or "", Perms(0o777, snack.owner, snack.group))
    if snack.is_plain:
        result = create_plain_snacks(directory_fd, [name], fixes)[0]
        if isinstance(result, OSError):
            raise result
        return result
    if _name_taken(directory_fd, name):  # e.g. our own publish heard back (IN_MOVED_TO): no content written twice
        return False
    return publish(directory_fd, stage(directory_fd, snack), name)


def _name_taken(directory_fd: int, name: str) -> bool:
    """Anything holds the name (a dangling symlink too); publish() still never replaces what comes after."""
    try:
        os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def create_plain_snacks(directory_fd: int, names: list[str], fixes: PlainFixes | None = None) -> list[bool | OSError]:
    """Create many plain (empty, default-mode) snacks: True created, False name taken, or the error; in order.

    Each file is FILE_MODE (0644) whatever the umask, in our own group even in a setgid directory, and without the
    ACL a default ACL would give it: the directory is asked once, and only a file that needs it is fixed on its
    fd. With nothing to fix (the common case), each is one mknodat of a regular file (_made_plain)."""
    fix = (fixes or plain_fixes(directory_fd)).fix
    if fix is None:
        return _made_plain(directory_fd, names)
    return _opened_plain(directory_fd, names, fix)


def _made_plain(directory_fd: int, names: list[str]) -> list[bool | OSError]:
    """Plain files made by mknodat(S_IFREG): in the kernel the very create an O_CREAT|O_EXCL open makes
    (vfs_create: the umask, a setgid directory's group, a default ACL all apply alike; any name there, even a
    dangling symlink, is EEXIST and never followed), without a file opened and closed: ~30 % less time per file.
    Anything else mknodat refuses (a syscall filter, a filesystem without it) goes to the open from that name on,
    whose result is the answer."""
    results: list[bool | OSError] = []
    append, node = results.append, os.mknod
    for name in names:
        try:
            node(name, _PLAIN_NODE, 0, dir_fd=directory_fd)
        except FileExistsError:
            append(False)
        except OSError:
            return results + _opened_plain(directory_fd, names[len(results) :], None)
        else:
            append(True)
    return results


def _opened_plain(directory_fd: int, names: list[str], fix: Callable[[int], None] | None) -> list[bool | OSError]:
    """The same O_CREAT|O_EXCL|O_NOFOLLOW create as create_snack(), in one tight loop, `fix` applied on each fd."""
    results: list[bool | OSError] = []
    append, create, close = results.append, os.open, os.close
    for name in names:
        try:
            fd = create(name, _CREATE_FLAGS, FILE_MODE, dir_fd=directory_fd)
        except FileExistsError:
            append(False)
            continue
        except OSError as error:
            append(error)
            continue
        try:
            if fix is not None:
                fix(fd)
        except OSError as error:
            append(error)  # the file exists, empty and private: the retry finds it present
        else:
            append(True)
        finally:
            close(fd)
    return results


def plain_fixes(directory_fd: int) -> PlainFixes:
    """What a plain file created in this directory needs besides its create: its default ACL stripped, its group
    made ours (a setgid directory), its mode set against the umask."""
    acl = has_default_acl(directory_fd)
    foreign = inherits_foreign_group(os.fstat(directory_fd))
    masked = bool(_umask() & FILE_MODE)
    if not (acl or foreign or masked):
        return PlainFixes(None)
    gid = os.getegid()

    def fix(fd: int) -> None:
        if acl:
            strip_acl(fd)
        if foreign:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, FILE_MODE)

    return PlainFixes(fix)


def make_directory(parent_fd: int, name: str, perms: Perms) -> int | None:
    """mkdirat `name` 0700, then set its owner, group and mode on an O_DIRECTORY|O_NOFOLLOW fd of it (after
    dropping an inherited ACL): the fd, or None if the name was taken. If it cannot get its owner (EPERM), the
    empty directory is removed again and the error raised: a failure, retried with backoff."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        return None
    try:
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None  # swapped for something else in between: not ours
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            os.close(fd)
            return None  # not the directory we made (moved away and replaced in between): left alone
        strip_acl(fd, directory=True)
        _mode_then_owner(fd, info, perms)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=parent_fd)
        raise
    return fd


def make_symlink(directory_fd: int, name: str, target: str, perms: Perms) -> bool:
    """symlinkat `target` (stored as given, never resolved) at `name`: False if the name was taken. With an owner
    or group to set, the link is made under a temp name, chowned by its O_PATH fd, then published like a staged
    file (never replacing; the symlink itself, never what it points to)."""
    uid, gid = perms.ids()
    needs_owner = uid != os.geteuid() or gid != os.getegid() or inherits_foreign_group(os.fstat(directory_fd))
    if not needs_owner:
        try:
            os.symlink(target, name, dir_fd=directory_fd)
        except FileExistsError:
            return False
        return True
    temp = temp_name()
    os.symlink(target, temp, dir_fd=directory_fd)
    try:
        fd = os.open(temp, _PATH_FLAGS, dir_fd=directory_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                raise FileExistsError(errno.EEXIST, "temp symlink replaced", temp)
            chown_symlink(fd, perms)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=directory_fd)
        raise
    return _publish_name(directory_fd, temp, name, theirs=uid != os.geteuid())


def temp_name() -> str:
    """A fresh temp file name: `.snackwatch-PID-HEX.tmp` (leftovers.py knows it back)."""
    return f"{RESERVED_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.tmp"


def stage(directory_fd: int, snack: Snack) -> Staged:
    """Write `snack` whole to a new temp file in the directory: its inode is the published file's, so its identity
    can be recorded before the name appears (see publish()).

    0600 and without an inherited ACL until every byte is written: another user racing the temp file never reads a
    secret snack's content. Then its mode (fchmod), its owner and group (fchown), fsync.
    """
    temp = temp_name()
    fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        strip_acl(fd)
        payload = snack.payload()
        if payload:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        _mode_then_owner(fd, os.fstat(fd), Perms(snack.final_mode(), snack.owner, snack.group))
        if payload:
            os.fsync(fd)  # the bytes are on disk before the name is: never a half-written snack after a power cut
        return Staged(temp, os.fstat(fd))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=directory_fd)
        raise
    finally:
        os.close(fd)


def _mode_then_owner(fd: int, info: os.stat_result, perms: Perms) -> None:
    """fchmod, then fchown: once the entry is another user's, changing its mode would need CAP_FOWNER (the shipped
    unit has only CAP_CHOWN). The fchmod also drops a setgid bit inherited from a setgid parent. A setuid/setgid
    mode, which a chown clears, is set again after it (that alone needs CAP_FOWNER)."""
    os.fchmod(fd, perms.mode)
    chown_fd(fd, info, perms)
    if perms.mode & (stat.S_ISUID | stat.S_ISGID) and stat.S_IMODE(os.fstat(fd).st_mode) != perms.mode:
        os.fchmod(fd, perms.mode)


def publish(directory_fd: int, staged: Staged, name: str) -> bool:
    """Give the staged file its name without ever replacing one: False if the name was taken. The temp name is
    gone either way. Our own file is link()ed; one already given to another owner is renamed with
    RENAME_NOREPLACE, since linking another user's file needs CAP_FOWNER (fs.protected_hardlinks)."""
    return _publish_name(directory_fd, staged.temp, name, theirs=staged.identity.st_uid != os.geteuid())


def _publish_name(directory_fd: int, temp: str, name: str, *, theirs: bool) -> bool:
    try:
        if theirs and rename_noreplace(directory_fd, temp, name):
            return True
        os.link(temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=directory_fd)
    return True


def rename_noreplace(directory_fd: int, old: str, new: str) -> bool:
    """renameat2(RENAME_NOREPLACE) within a directory: True if renamed, False where the filesystem or kernel
    has no such rename (then the caller links); FileExistsError if `new` exists; other errors raised."""
    renameat2 = getattr(libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(directory_fd, os.fsencode(old), directory_fd, os.fsencode(new), _RENAME_NOREPLACE) == 0:
        return True
    error = last_error()
    if error.errno in (errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(error.errno, error.strerror, new)


def _umask() -> int:
    """The process umask (the mode a plain create would get). Reading it means setting it: set to 0o077 for the
    instant in between, so a file another thread creates meanwhile can only come out more private."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
