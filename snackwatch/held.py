"""Snack directories held open between targeted repairs: the safe walk's fd, kept only while nothing could have
changed where that walk would lead (a guard inotify instance on every directory it looked in, the mount table,
the directory's owner). When in doubt the fd is dropped and the walk runs again."""

from __future__ import annotations

import os
import resource
import select
import struct
import time
from collections import OrderedDict
from collections.abc import Container
from typing import TYPE_CHECKING, NamedTuple

from snackwatch.apply import PlainFixes, plain_fixes
from snackwatch.chase import open_directory
from snackwatch.desired import Desired
from snackwatch.libc import libc

if TYPE_CHECKING:
    import ctypes

# The kernel's inotify ABI (linux/inotify.h): the guard's own instance, polled by the loop only while something is held.
_IN_ATTRIB, _IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x4, 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_UNMOUNT, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
_IN_ONLYDIR = 0x1000000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
# A name looked up in a directory created, removed, renamed either way or re-owned (chown, chmod: IN_ATTRIB, which
# also tells the directory's own owner or mode changed), or the directory itself moved or removed.
GUARD_MASK = (
    _IN_ATTRIB | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
)
_SELF = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT | _IN_IGNORED  # the watched directory itself: all it guards
_EVENT = struct.Struct("iIII")
GUARD_READ = 4096  # at most this much is parsed between repairs: a fuller queue (churn in /tmp) drops everything
_EVENT_MAX = 16 + 256
HELD_MAX = 256  # held directories at most (and an eighth of the fd limit): the least recently used one goes
# Released this long after the last repair that used one: an fd pins its mount (`umount` says busy), a watch does
# not. Deletions in a burst, or one every few hundred ms, are served by the held fds; an isolated one walks.
HOLD_IDLE = 2.0
FLOOD_PAUSE = 1.0  # after a flooded guard (a storm beside a held path) nothing is held this long: plain walks


class _Held(NamedTuple):
    fd: int
    wds: tuple[int, ...]  # the guard's watches this directory depends on
    fixes: list[PlainFixes]  # what a plain file created there needs (ACL, setgid group, umask): asked once
    owners: Container[int] | None  # who may own it (the walk's rules, fixed while held: a new desired state drops it)


class _Unguarded(Exception):
    """A directory on the way could not be watched (permissions, inotify limits): the walk's fd is not held."""


def _libc() -> ctypes.CDLL | None:
    """The C library's inotify calls, where it has them (Linux)."""
    lib = libc()
    wanted = ("inotify_init1", "inotify_add_watch", "inotify_rm_watch")
    return lib if lib is not None and all(hasattr(lib, name) for name in wanted) else None


def held_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(HELD_MAX, soft // 8)) if soft != resource.RLIM_INFINITY else HELD_MAX


class HeldDirectories:
    """Per snack directory, the fd a targeted repair's safe walk ended on, with the guard watches that keep it true.

    The fill walks as always (chase.open_directory, every rule kept) and, before each name it looks up, watches the
    directory it looks in (GUARD_MASK). A use first polls the guard and an own /proc/self/mountinfo fd at once (one
    syscall): any event on a name the walk looked up, any change of a directory walked through (moved, removed,
    owner or mode), an overflowed or flooded queue, any mount change, drops what it may concern; then the held
    directory's owner is checked against the walk's rules again (fstat: a chown since is refused like the walk
    would) and a removed one (no links) is dropped. A new desired state drops everything (the rules may differ).
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else held_limit()
        self.entries: OrderedDict[str, _Held] = OrderedDict()
        self.watching: dict[int, dict[str, frozenset[bytes]]] = {}  # wd -> directory -> names looked up there
        self.guard: int | None = None  # the inotify fd, made on the first fill, kept until close() (see drop_all)
        self.mounts: int | None = None  # our own mountinfo fd (polling resets its event: the loop's is not shared)
        self.poller = select.poll()
        self.desired: Desired | None = None
        self.libc: ctypes.CDLL | None = None  # loaded with the guard
        self.loaded = False
        self.last_used = 0.0  # the loop's clock at the last repair served or filled here
        self.flooded_at: float | None = None  # time.monotonic() of the last flood
        self.backlog = 0  # bytes of the guard's queue read since the last repair here (uses and catch-ups)

    def open(self, desired: Desired, directory: str) -> tuple[int, bool]:
        """An fd for `directory` (a desired snack directory, created if missing) and whether it is held here (then
        the caller must not close it). Raises what the safe walk raises (BlockedPath, OSError)."""
        if desired is not self.desired:
            self.drop_all()
            self.desired = desired
        if self.guard is not None and (ready := self.poller.poll(0)):
            self._check(ready)
        held = self.entries.get(directory)
        if held is not None:
            info = os.fstat(held.fd)  # the owner still trusted (a chown since is refused as the walk would), linked
            if info.st_nlink > 0 and (held.owners is None or info.st_uid in held.owners):
                self.entries.move_to_end(directory)
                return held.fd, True
            self.drop(directory)
        return self._fill(desired, directory)

    def used(self, now: float) -> None:
        """A repair used the held directories at `now` (the loop's clock): they are kept HOLD_IDLE longer."""
        self.last_used = now
        self.backlog = 0

    def catch_up(self) -> bool:
        """While something is held, the loop's turn woken by the guard (an app's saves in the pantry's parent) polls
        it and the mount fd and reads what came, as a use would: the next repair's poll then finds the queue empty
        instead of parsing it on the deletion's path. With nothing held, nothing is polled or read. True if
        anything was dropped (the release deadline moved)."""
        if not self.entries or not (ready := self.poller.poll(0)):
            return False
        count = len(self.entries)
        self._check(ready)
        return len(self.entries) != count

    def next_due(self) -> float | None:
        """When the held fds are released if no repair uses them meanwhile (None: nothing held, nothing due)."""
        return self.last_used + HOLD_IDLE if self.entries else None

    def release_if_idle(self, now: float) -> None:
        if self.entries and now >= self.last_used + HOLD_IDLE:
            self.drop_all()

    def _check(self, ready: list[tuple[int, int]]) -> None:
        """Drop what the guard's events or a mount change may concern (`ready`: its poll; a read of what came)."""
        for fd, _ in ready:
            if fd == self.mounts:
                self.drop_all()
                return
            if fd == self.guard:
                self._read()

    def _read(self) -> None:
        """One bounded read of the guard's queue: each event drops the held directories it may concern."""
        assert self.guard is not None
        try:
            buffer = os.read(self.guard, GUARD_READ)
        except BlockingIOError:
            return
        self.backlog += len(buffer)
        if self.backlog > GUARD_READ - _EVENT_MAX:  # flooded since the last repair: walking again is cheaper
            self.drop_all()
            self._drain()
            self.flooded_at = time.monotonic()
            return
        watching, offset, end = self.watching, 0, len(buffer)
        while offset + 16 <= end:  # saves beside a held path (a busy parent) come here before each repair: lean
            wd, mask, _, length = _EVENT.unpack_from(buffer, offset)
            start, offset = offset + 16, offset + 16 + length
            if mask & _IN_Q_OVERFLOW:
                self.drop_all()
                return
            concerned = watching.get(wd)
            if not concerned:
                continue
            name = buffer[start:offset].rstrip(b"\0")
            for names in concerned.values():  # the common case, another name: no list built, no call made
                if mask & _SELF or not name or name in names:
                    break
            else:
                continue
            for directory in [d for d, names in concerned.items() if mask & _SELF or not name or name in names]:
                self.drop(directory)

    def _fill(self, desired: Desired, directory: str) -> tuple[int, bool]:
        """Walk to `directory`, watching each directory before a name is looked up in it; held if all could be."""
        pantry, rules = desired.roots[directory], desired.walk_rules(directory)
        while len(self.entries) >= self.limit:  # the least recently used go first
            self.drop(next(iter(self.entries)))
        flooded = self.flooded_at is not None and time.monotonic() < self.flooded_at + FLOOD_PAUSE
        guard = self._guard() if directory != "/" and not flooded else None
        if guard is None:
            return open_directory(directory, pantry, create=True, rules=rules), False
        looked: dict[int, set[bytes]] = {}

        def step(fd: int, name: str) -> None:
            assert self.libc is not None
            wd = int(self.libc.inotify_add_watch(guard, f"/proc/self/fd/{fd}".encode(), GUARD_MASK))
            if wd < 0:
                raise _Unguarded
            looked.setdefault(wd, set()).add(os.fsencode(name))

        try:
            fd = open_directory(directory, pantry, create=True, rules=rules, step=step)
        except _Unguarded:
            self._forget_unused(looked)
            return open_directory(directory, pantry, create=True, rules=rules), False
        except BaseException:
            self._forget_unused(looked)
            raise
        for wd, names in looked.items():
            self.watching.setdefault(wd, {})[directory] = frozenset(names)
        self.entries[directory] = _Held(fd, tuple(looked), [], rules.owners if rules is not None else None)
        return fd, True

    def plain_fixes(self, directory: str) -> PlainFixes | None:
        """What a plain file created in the held `directory` needs, asked of it once while it is held: a change of
        its ACL, mode or group is an attribute change its parent's guard watch hears, which drops it."""
        held = self.entries.get(directory)
        if held is None:
            return None
        if not held.fixes:
            held.fixes.append(plain_fixes(held.fd))
        return held.fixes[0]

    def _guard(self) -> int | None:
        """The guard's inotify fd (and our mountinfo fd), made on first use; None where inotify cannot be had."""
        if not self.loaded:
            self.libc, self.loaded = _libc(), True
        if self.guard is not None or self.libc is None:
            return self.guard
        fd = int(self.libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            return None
        try:
            self.mounts = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(fd)  # no mount table to watch: a mount over a held directory would go unseen
            return None
        self.guard = fd
        self.poller.register(fd, select.POLLIN)
        self.poller.register(self.mounts, select.POLLPRI)
        return fd

    def _forget_unused(self, looked: dict[int, set[bytes]]) -> None:
        for wd in looked:
            if wd not in self.watching and self.guard is not None and self.libc is not None:
                self.libc.inotify_rm_watch(self.guard, wd)

    def drop(self, directory: str) -> None:
        """Close the held fd of `directory` (if any) and the guard watches nothing else needs."""
        held = self.entries.pop(directory, None)
        if held is None:
            return
        os.close(held.fd)
        for wd in held.wds:
            concerned = self.watching.get(wd, {})
            concerned.pop(directory, None)
            if not concerned:
                self.watching.pop(wd, None)
                if self.guard is not None and self.libc is not None:
                    self.libc.inotify_rm_watch(self.guard, wd)

    def drop_all(self) -> None:
        """Close every held fd and remove every guard watch. The guard itself stays open: closing an inotify fd that
        had watches waits for the kernel to reap them (an SRCU grace period: ~5 ms, up to 20), on the loop's thread;
        removing a watch does not wait."""
        for held in self.entries.values():
            os.close(held.fd)
        self.entries.clear()
        self.backlog = 0
        if self.guard is not None and self.libc is not None:
            for wd in self.watching:
                self.libc.inotify_rm_watch(self.guard, wd)
        self.watching.clear()

    def _drain(self) -> None:
        """Read away a flooded queue (its watches are gone): at most 32 full reads, the rest is read at a later use
        (events of watches no longer kept are skipped)."""
        assert self.guard is not None
        for _ in range(32):
            try:
                if len(os.read(self.guard, 65536)) < 65536 - _EVENT_MAX:
                    return
            except BlockingIOError:
                return

    def _close_guard(self) -> None:
        for fd in (self.guard, self.mounts):
            if fd is not None:
                self.poller.unregister(fd)
                os.close(fd)
        self.guard = self.mounts = None
        self.watching.clear()

    def close(self) -> None:
        self.drop_all()
        self._close_guard()
        self.desired = None
