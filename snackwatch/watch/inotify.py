"""inotify on the loop's own thread, through watchdog's libc bindings: the kernel protocol, aliases and relevance.

Compared with watchdog's InotifyFD thread this saves a thread hop and the GIL hand-off per event, builds no event
objects, and sees IN_Q_OVERFLOW (wd -1) directly. The reads never block. One inode reached by several paths
(`shared` and `link -> shared`) is one kernel watch: it keeps every path (alias) with its roles, its mask is the
union, and each event is told to every alias. Watches are added on what the safe walk opened (/proc/self/fd/N).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import time
from collections.abc import Collection, Container, Mapping

from loguru import logger

from snackwatch.dirty import BURST, Mark
from snackwatch.watch.roles import Roles
from snackwatch.watch.source import Armed, Marks, Sink, Source, WatchLimitError, open_watched
from snackwatch.watch.specfiles import SpecFiles
from snackwatch.watch.storm import StormGuard

try:  # Linux only; absent elsewhere.
    from watchdog.observers.inotify_c import (
        InotifyConstants,
        WatchDescriptor,
        inotify_add_watch,
        inotify_init,
        inotify_rm_watch,
    )

    HAVE_INOTIFY = True
except (ImportError, OSError):  # pragma: no cover - exercised on macOS
    HAVE_INOTIFY = False

_FS_ENCODING = sys.getfilesystemencoding()

if HAVE_INOTIFY:
    C = InotifyConstants
    # IN_MOVED_TO: a rename over a snack may put a symlink or directory in its place. No IN_CREATE:
    # our own restores would wake us for nothing.
    # IN_ATTRIB only while something fails (watch_attributes): a touch/chmod storm then costs nothing.
    _SNACK_MASK = C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_DELETE_SELF | C.IN_MOVE_SELF
    # A spec directory is heard for names only (a spec made, replaced, re-pointed, removed); each spec file's
    # own inode for writes in place (SpecFiles): a log appended beside the spec is not heard at all.
    # IN_MODIFY: a spec being written is not read until its writer closes it (IN_CLOSE_WRITE).
    _SPEC_MASK = C.IN_CREATE | C.IN_MOVED_TO | C.IN_MOVED_FROM | C.IN_DELETE
    _SPEC_CONTENT = C.IN_CLOSE_WRITE | C.IN_MODIFY | C.IN_ATTRIB  # on the file's inode, or a wide directory's
    _SPEC_FILE_MASK = _SPEC_CONTENT | C.IN_DELETE_SELF | C.IN_MOVE_SELF
    _SNACK_GONE = C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO
    _SELF_GONE = C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_IGNORED
    # Only where enforced entries are: their writes (closed) and attribute changes (chmod, chown) in place.
    _CHANGE_MASK = C.IN_CLOSE_WRITE | C.IN_ATTRIB | C.IN_MOVED_TO
    _CHANGED = C.IN_CLOSE_WRITE | C.IN_ATTRIB
    _LINK_MASK = C.IN_CREATE | C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO  # a name replaced in a parent
    _PARENT_SELF = C.IN_DELETE_SELF | C.IN_MOVE_SELF  # what every watched directory hears of itself
    # A parent whose links are all steady (plain directories, each watched): a removal (IN_DELETE: an rmdir
    # while someone holds the directory open delays its IN_DELETE_SELF), not the creates and renames of an
    # app saving beside it.
    _STEADY_MASK = C.IN_DELETE
    _EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
    _READ_SIZE = 65536
    # A parent's unrelated name counts for this many: muting a parent loses nothing (its watched names are looked
    # up on the storm's schedule), so 1,000 a second (20,000 / 20) are enough to mute it.
    _PARENT_WEIGHT = 20
    _READS_PER_WAKE = 4  # full reads at most per wake-up: an attacker who keeps the queue full cannot hold the loop
    _EVENT_MAX = 16 + 256  # one event with the longest name (NAME_MAX + its NUL)
    _LONE_MASKS = frozenset((C.IN_DELETE, C.IN_MOVED_FROM))  # a file unlinked or renamed away, and nothing more
    _LONE_READ = 1024  # a read of more than a few removals is no lone deletion: the turn takes it (bursts)


_OWN, _PARENT_NOISE, _MEANT, _QUIET = object(), object(), object(), object()  # what an event off the hot path was


def _libc_error(what: str) -> OSError:
    code = ctypes.get_errno()
    if code in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return WatchLimitError(code, f"{what}: {os.strerror(code)}")
    return OSError(code, os.strerror(code), what)


def _on_fd(fd: int) -> bytes:
    """The path that makes inotify_add_watch watch exactly what `fd` is (the kernel follows this magic link
    to the open directory itself, not to a path resolved again)."""
    return f"/proc/self/fd/{fd}".encode()


class InotifyWatches(Source):
    """The kernel's watches: one per inode, every path (alias) that reaches it with its roles, each mask the union of
    what they need; a watch is added on what the safe walk opened (/proc/self/fd/N)."""

    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink
        fd = inotify_init()
        if fd < 0:
            raise _libc_error("inotify_init")
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        self.fd = fd
        self.by_wd: dict[int, dict[str, Roles]] = {}  # wd -> every path that reached it, with its roles
        self.by_dir: dict[str, int] = {}
        self.snacks_only: dict[int, str] = {}  # the hot path: watches of one plain snack directory
        self.links_only: dict[int, frozenset[bytes]] = {}  # parents: only these names in them matter
        self.attributes = False
        self.storm = StormGuard()  # its storms in force set the muted masks
        self.change_storm = StormGuard()  # writes/chmods of other names where enforced entries are: muted apart
        self.spec_files = SpecFiles(self._add_file_watch, lambda wd: inotify_rm_watch(self.fd, WatchDescriptor(wd)))

    def fileno(self) -> int | None:
        return self.fd

    def _mask(
        self,
        roles: Roles,
        *,
        muted: bool = False,
        enforced: bool = False,
        changes_muted: bool = False,
        wide: bool = False,
    ) -> int:
        snacks = (_SNACK_MASK | (C.IN_ATTRIB if self.attributes else 0)) if roles.snacks else 0
        if enforced and roles.snacks:
            snacks |= _CHANGE_MASK
        links = _LINK_MASK if roles.named else _STEADY_MASK if roles.links else 0
        if muted:
            snacks &= ~(_SNACK_GONE | _CHANGED)  # scanned instead: enforced entries are put back by the scans
            if not roles.primary:  # a parent in a storm: looked at on schedule
                links = 0
        if changes_muted:
            snacks &= ~_CHANGED  # removals still heard; the enforced names are checked on the guard's schedule
        specs = (_SPEC_MASK | (_SPEC_CONTENT if wide else 0)) if roles.specs else 0
        return int(C.IN_ONLYDIR | _PARENT_SELF | snacks | specs | links)

    def _add_file_watch(self, fd: int) -> int:
        wd = inotify_add_watch(self.fd, _on_fd(fd), _SPEC_FILE_MASK)
        if wd < 0:
            raise _libc_error("spec file")
        return wd

    def arm(self, wanted: dict[str, Roles]) -> Armed:
        """The directories, then each spec file's own inode."""
        result = super().arm(wanted)
        self._refresh_spec_files()
        return result

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None:
        """New spec names (a reload: a spec symlink may lead elsewhere now): their files are watched anew."""
        super().track_specs(spec_names)
        self._refresh_spec_files()

    def _refresh_spec_files(self, only: str | None = None) -> None:
        """Watch the spec files as they are now; a directory holding one that cannot be watched is heard whole."""
        for directory in self.spec_files.refresh(self.spec_names, only):
            wd = self.by_dir.get(directory)
            if wd is not None and wd in self.by_wd:
                self._readd(wd)

    def _spec_file_event(self, wd: int, mask: int, keys: set[tuple[str, str]]) -> bool:
        """A spec file written, closed, chmod'ed, moved or removed: told for every name that reaches it."""
        mark = Mark.SPEC_WRITE if mask & C.IN_MODIFY else Mark.SPEC
        for directory, name in list(keys):
            self.sink(mark, directory, name)
        if mask & _SELF_GONE:
            self.spec_files.gone(wd, moved=bool(mask & C.IN_MOVE_SELF))
        return True

    def _union(self, wd: int) -> Roles:
        roles = Roles(False, False)
        for alias in self.by_wd[wd].values():
            roles |= alias
        return roles

    def _readd(self, wd: int) -> None:
        """Set a watch's mask to what all its aliases need, through the safe walk again; an alias that no longer
        reaches it (or that the walk now refuses) is dropped."""
        aliases = self.by_wd[wd]
        roles = self._union(wd)
        enforced = any(d in self.enforced for d in aliases)
        mask = self._mask(
            roles,
            muted=wd in self.storm.muted,
            enforced=enforced,
            changes_muted=wd in self.change_storm.muted,
            wide=any(d in self.spec_files.wide for d in aliases),
        )
        for directory, own in list(aliases.items()):
            try:
                fd = open_watched(directory, own, self.roots, self.rules)
            except OSError:
                self._alias_gone(wd, directory)
                continue
            try:
                again = inotify_add_watch(self.fd, _on_fd(fd), mask)
            finally:
                os.close(fd)
            if again == wd:
                break
            if again >= 0 and again not in self.by_wd:  # the path leads elsewhere now: let the armer redo it
                inotify_rm_watch(self.fd, WatchDescriptor(again))
            self._alias_gone(wd, directory)
        self._refresh_fast_path(wd)

    def _refresh_fast_path(self, wd: int) -> None:
        aliases = self.by_wd.get(wd, {})
        self._drop_fast_path(wd)
        if len(aliases) == 1:
            [(directory, roles)] = aliases.items()
            if roles == Roles(snacks=True, specs=False):
                self.snacks_only[wd] = directory
        roles = self._union(wd) if aliases else Roles(False, False)
        if aliases and not roles.primary:  # a parent watched only for the names that lead somewhere
            self.links_only[wd] = frozenset(os.fsencode(name) for name in roles.links)

    def _drop_fast_path(self, wd: int) -> None:
        self.snacks_only.pop(wd, None)
        self.links_only.pop(wd, None)

    def watch_attributes(self, on: bool) -> None:
        self.attributes = on
        for wd in [wd for wd in self.by_wd if self._union(wd).snacks]:
            if wd in self.by_wd:
                self._readd(wd)

    def track_enforced(self, enforced: Mapping[str, Collection[str]]) -> None:
        """Widen (or narrow again) the masks of the directories that gain (or lose) enforced entries."""
        before, self.enforced = set(self.enforced), enforced
        for directory in before.symmetric_difference(enforced):
            wd = self.by_dir.get(directory)
            if wd is not None and wd in self.by_wd:
                self._readd(wd)

    def _watch(self, directory: str, roles: Roles, fd: int) -> None:
        mask = self._mask(roles, enforced=directory in self.enforced, wide=directory in self.spec_files.wide)
        wd = inotify_add_watch(self.fd, _on_fd(fd), mask)
        if wd < 0:
            raise _libc_error(directory)
        aliases = self.by_wd.setdefault(wd, {})
        aliases[directory] = roles
        self.by_dir[directory] = wd
        if len(aliases) > 1:  # another path already reached this inode: widen the mask to serve all
            self._readd(wd)
        self._refresh_fast_path(wd)

    def _unwatch(self, directory: str) -> None:
        wd = self.by_dir.pop(directory, None)
        if wd is None:
            return
        aliases = self.by_wd.get(wd, {})
        aliases.pop(directory, None)
        if aliases:
            self._readd(wd)
            return
        self.by_wd.pop(wd, None)
        self._drop_fast_path(wd)
        inotify_rm_watch(self.fd, WatchDescriptor(wd))  # fails harmlessly if the kernel already dropped it

    def _alias_gone(self, wd: int, directory: str) -> None:
        """`directory` no longer reaches the watched inode: forget it and tell the loop."""
        roles = self.by_wd[wd].pop(directory)
        if not self.by_wd[wd]:
            del self.by_wd[wd]
            self._drop_fast_path(wd)
            inotify_rm_watch(self.fd, WatchDescriptor(wd))  # fails harmlessly if the kernel dropped it
        self.by_dir.pop(directory, None)
        self.dead.add(directory)
        self.sink(Mark.GONE, directory, "")  # re-armed: the way to it (and below) is walked and watched again
        if roles.specs or not roles.primary:  # the way to a spec may lead elsewhere now
            self.sink(Mark.SPEC, directory, "")

    def _parent_only(self, wd: int) -> bool:
        """A watch held only for names that lead to a watched directory (a pantry's parent, an ancestor)."""
        roles = self._union(wd) if wd in self.by_wd else Roles(False, False)
        return bool(roles.links) and not roles.primary

    def close(self) -> None:
        os.close(self.fd)


def _lone_removals(
    buffer: bytes,
    snacks_only: Mapping[int, str],
    relevant: Mapping[str, Container[str]],
    ignore: str | None,
    lone: list[tuple[str, str]],
) -> bool:
    """Whether `buffer` (at most _LONE_READ bytes) holds only removals of declared names in plain snack
    directories, each appended to `lone` as (directory, name); parsed in this one call: the lone deletion's latency."""
    offset, end = 0, len(buffer)
    if not end or end > _LONE_READ:
        return False
    while offset < end:
        wd, mask, _, length = _EVENT.unpack_from(buffer, offset)
        start, offset = offset + 16, offset + 16 + length
        directory = snacks_only.get(wd)
        if directory is None or mask not in _LONE_MASKS:
            return False
        name = buffer[start:offset].rstrip(b"\0").decode(_FS_ENCODING, "surrogateescape")
        wanted = relevant.get(directory)
        if wanted is None or name not in wanted or (ignore is not None and name.startswith(ignore)):
            return False
        lone.append((directory, name))
    return True


class InotifySource(InotifyWatches):
    """inotify read on the loop's own thread: the daemon polls fileno() and calls read_events(); storms are muted
    in the kernel mask and looked at on the storm guard's schedule."""

    def __init__(self, marks: Marks, ignore_prefix: str) -> None:
        super().__init__(marks.mark)
        self.marks = marks
        self.ignore = os.fsencode(ignore_prefix) if ignore_prefix else None
        self.ignore_text = ignore_prefix or None
        self.link_ids: dict[int, dict[str, tuple[int, int] | None]] = {}  # muted parents: what their names were
        self.noise = 0  # events read that meant nothing, since start (read pacing's input)
        self.bursting = False  # the last read brought more than a burst of removals (the rest is read 4 at a time)

    def noise_heard(self) -> int:
        return self.noise

    def next_due(self) -> float | None:
        due = [when for when in (self.storm.next_due(), self.change_storm.next_due()) if when is not None]
        return min(due, default=None)

    def _mute_storms(self, now: float) -> None:
        """Past the storm limit of unrelated events a second in a directory, stop hearing them one by one (the
        kernel queues nothing more for them) and look on the guard's schedule instead: a snack directory is
        scanned, a parent (or ancestor) has the names it watches for looked up (has the pantry been re-pointed?)."""
        for wd in self.storm.storms(now):
            directory = self.snacks_only.get(wd)
            parent = directory is None and self._parent_only(wd)
            if directory is None and not parent:
                continue
            if parent:
                self.link_ids[wd] = self._link_identities(wd)
                directory = next(iter(self.by_wd[wd]))
            self._readd(wd)
            if directory is not None and self.storm.tell(directory, now):
                logger.bind(event="storm", directory=directory).info(
                    "event storm in {} ({} unrelated events in under a second): {} every {:g} ms instead of "
                    "event by event",
                    directory,
                    self.storm.count(wd) // (_PARENT_WEIGHT if parent else 1),
                    "looking at the names it leads to" if parent else "scanning it",
                    self.storm.policy.scan * 1000,
                )

    def storm_scans(self, now: float) -> set[str]:
        due, over = self.storm.scans(now, self.by_wd)
        for wd in over:  # hear its events again
            self.link_ids.pop(wd, None)
            self._readd(wd)
        for wd in [wd for wd in due if wd in self.link_ids]:
            self._look_at_links(wd)
        self._check_changes_muted(now)
        return {self.snacks_only[wd] for wd in due if wd in self.snacks_only}

    def _check_changes_muted(self, now: float) -> None:
        """A directory whose writes and chmods are muted (another user's storm of them beside enforced entries):
        its enforced names are marked for a check on the guard's schedule; once the storm is over, heard again."""
        due, over = self.change_storm.scans(now, self.snacks_only)
        for wd in over:
            self._readd(wd)
        for directory in [self.snacks_only[wd] for wd in due if wd in self.snacks_only]:
            for name in self.enforced.get(directory, ()):
                self.sink(Mark.CHANGED, directory, name)

    def _link_identities(self, wd: int) -> dict[str, tuple[int, int] | None]:
        """What each watched name in a parent is now (device, inode of the entry itself), None if absent."""
        found: dict[str, tuple[int, int] | None] = {}
        for directory, roles in self.by_wd.get(wd, {}).items():
            for name in roles.links:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    found[path] = None
                else:
                    found[path] = (info.st_dev, info.st_ino)
        return found

    def _look_at_links(self, wd: int) -> None:
        """A muted parent's scan: a watched name that changed (re-pointed, re-created, removed) is told."""
        now_ids = self._link_identities(wd)
        for path, identity in now_ids.items():
            if self.link_ids[wd].get(path, identity) != identity:
                self.sink(Mark.GONE, path, "")
                self.sink(Mark.SPEC, path, "")
        self.link_ids[wd] = now_ids

    def read_events(self, lone: list[tuple[str, str]] | None = None) -> bool:
        """The hot path: removals in snack directories, marked in one batch. A name that no snack or nested directory
        has is noise (another user's churn in a shared pantry, an app saving beside a pantry): counted for the storm
        guard and dropped here, at most a nudge. Our own temp files are dropped before anything is counted. One read
        per wake-up (_read: a mass deletion's first buffer is repaired before the rest is read). `lone` (an empty
        list): a read of only removals (unlink, rename away) of declared names in plain snack directories puts them
        there unmarked and answers True (the loop restores them before its turn); any other is marked as always."""
        if lone is None:
            return self._read(None)
        try:
            buffer = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return self._read(b"")
        if _lone_removals(buffer, self.snacks_only, self.relevant, self.ignore_text, lone):
            if self.change_storm.noise:  # as any read does: a storm of writes beside enforced entries is muted
                for wd in self.change_storm.storms(time.monotonic()):
                    self._readd(wd)
            return True
        lone.clear()
        return self._read(buffer)

    def _read(self, first: bytes | None) -> bool:
        """Read (up to _READS_PER_WAKE full buffers, `first` already read: b"" for an empty queue) and mark. A short
        read emptied the queue, so no second read is made to hear EAGAIN. A full read holding more than a burst of
        removals ends the reading when the last one did not: the first of a mass deletion is repaired before the
        rest of it is read (its scan restores the rest too)."""
        removed: set[tuple[str, str]] = set()
        changed: set[tuple[str, str]] = set()  # enforced names written or chmod'ed in place
        relevant, ignore, storm = self.relevant, self.ignore_text, self.storm
        noise = quiet = 0
        other = parent_noise = False
        reads = 0
        while True:
            try:
                buffer = os.read(self.fd, _READ_SIZE) if first is None else first
            except BlockingIOError:
                break
            first = None
            offset, end = 0, len(buffer)
            while offset + 16 <= end:
                wd, mask, _, length = _EVENT.unpack_from(buffer, offset)
                start, offset = offset + 16, offset + 16 + length
                directory = self.snacks_only.get(wd)
                if directory is not None and mask & _CHANGED and length and not mask & _SNACK_GONE:
                    quiet += self._changed(wd, directory, buffer[start:offset], changed)
                    continue
                if directory is None or not mask & _SNACK_GONE or not length:
                    heard = self._slow_event(wd, mask, buffer[start:offset].rstrip(b"\0"))
                    other, quiet = other or heard is _MEANT, quiet + (heard is not _MEANT and heard is not _OWN)
                    parent_noise = parent_noise or heard is _PARENT_NOISE
                    continue
                name = buffer[start:offset].rstrip(b"\0").decode(_FS_ENCODING, "surrogateescape")
                if ignore is not None and name.startswith(ignore):
                    continue
                wanted = relevant.get(directory)
                if wanted is not None and name not in wanted:
                    noise += 1
                    storm.heard(wd)
                    continue
                removed.add((directory, name))
            reads += 1
            if end < _READ_SIZE - _EVENT_MAX or reads >= _READS_PER_WAKE:  # the queue is empty, or a storm keeps it
                break  # full: the turn runs (repairs, the storm guard's mute) before the rest is read
            if len(removed) > BURST and not self.bursting:  # a mass deletion's first buffer: repaired (a scan
                break  # makes every missing snack of a directory) before the rest of it is read
        self.bursting = len(removed) > BURST
        self.noise += noise + quiet
        return self._told(removed, changed, noise=noise, storms=bool(noise or parent_noise), other=other)

    def _told(
        self, removed: set[tuple[str, str]], changed: set[tuple[str, str]], *, noise: int, storms: bool, other: bool
    ) -> bool:
        """After a read: storms muted, what was seen marked; False if it was only noise."""
        if storms:
            self._mute_storms(time.monotonic())
        for wd in self.change_storm.storms(time.monotonic()) if self.change_storm.noise else ():
            self._readd(wd)
        for directory, name in changed:
            self.sink(Mark.CHANGED, directory, name)
        if removed:
            self.marks.mark_snacks(removed)  # the burst rule is the dirty set's (dirty.split_bursts)
            return True
        if noise and self.attributes:  # something fails: a removal may have freed space for it
            self.sink(Mark.NUDGE, "", "")
            return True
        return other or bool(changed)

    def _changed(self, wd: int, directory: str, raw: bytes, changed: set[tuple[str, str]]) -> bool:
        """A write or attribute change in a directory holding enforced entries: an enforced name is marked for
        a check; another name is noise (counted like an unrelated removal: a storm of it is muted); our own
        temp files are dropped. True if it was noise."""
        name = raw.rstrip(b"\0").decode(_FS_ENCODING, "surrogateescape")
        if self.ignore_text is not None and name.startswith(self.ignore_text):
            return False
        if name in self.enforced.get(directory, ()):
            changed.add((directory, name))
            return False
        self.change_storm.heard(wd)
        return True

    def _slow_event(self, wd: int, mask: int, raw: bytes) -> object:
        """An event off the hot path: our own name (_OWN), a name a parent does not lead through (_PARENT_NOISE,
        counted for the storm guard), one that meant something (_MEANT), or nothing (_QUIET)."""
        if self.ignore is not None and raw.startswith(self.ignore):
            return _OWN  # our own temp file: not even noise
        links = self.links_only.get(wd)
        if links is not None and raw and raw not in links:
            self.storm.heard(wd, _PARENT_WEIGHT)  # churn in a 1777 parent: its storm is muted too, and sooner
            return _PARENT_NOISE
        return _MEANT if self._event(wd, mask, raw) else _QUIET

    def _event(self, wd: int, mask: int, name: bytes) -> bool:
        """Mark what one event means for every path that reaches its watch; False if it meant nothing."""
        if mask & C.IN_Q_OVERFLOW:
            self.sink(Mark.OVERFLOW, "", "")
            return True
        if (keys := self.spec_files.names.get(wd)) is not None:
            return self._spec_file_event(wd, mask, keys)
        aliases = self.by_wd.get(wd)
        if aliases is None:
            return False  # a watch we already dropped
        if mask & _SELF_GONE:  # the directory was removed, moved away or unmounted
            if mask & C.IN_MOVE_SELF:  # the kernel keeps watching a moved directory: let it go
                inotify_rm_watch(self.fd, WatchDescriptor(wd))
            for directory in list(aliases):
                self._alias_gone(wd, directory)
            return True
        if not name:
            if mask & C.IN_ATTRIB and self._union(wd).snacks:
                self.sink(Mark.NUDGE, next(iter(aliases)), "")
                return True
            return False
        text = os.fsdecode(name)
        meant = False
        for directory, roles in list(aliases.items()):
            if roles.snacks and mask & _SNACK_GONE:
                self.sink(Mark.SNACK, directory, text)
                meant = True
            if roles.specs and self.is_spec_name(directory, text):
                self.sink(Mark.SPEC_WRITE if mask & C.IN_MODIFY else Mark.SPEC, directory, text)
                if mask & _LINK_MASK:  # a spec made, replaced or re-pointed: its inode (or another's) is watched
                    self._refresh_spec_files(directory)
                meant = True
            if roles.snacks and mask & _CHANGED and text in self.enforced.get(directory, ()):
                self.sink(Mark.CHANGED, directory, text)  # an enforced entry written or chmod'ed in place
                meant = True
            if text in roles.links and mask & _LINK_MASK:  # a watched directory's path re-pointed or re-created
                child = os.path.join(directory, text)
                self.sink(Mark.GONE, child, "")
                self.sink(Mark.SPEC, child, "")
                meant = True
        return meant
