"""The only module that imports watchdog: turns filesystem events into dirty marks and (re)arms watches.

Two sources, one contract: record what was seen on a `Marks` object (which directory, which name) and
do nothing else; the daemon decides what it means.
- "inotify" (Linux default): watchdog's libc inotify bindings, read on the daemon's own thread (the
  loop polls fileno()). Raw events arrive at once (no 0.5 s move pairing, no thread hop),
  IN_Q_OVERFLOW is seen directly, and idle costs no wakeups.
- "observer": watchdog's platform Observer (FSEvents on macOS, inotify on Linux) or, with
  "polling", its PollingObserver: what every other platform gets, and the fallback when inotify
  limits are hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import struct
import sys
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler, FileSystemMovedEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from snackwatch.chase import may_hold_followed_links
from snackwatch.choices import BACKENDS
from snackwatch.dirty import BURST, Mark

try:  # Linux only; absent elsewhere.
    from watchdog.observers import inotify_move_event_grouper
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


Sink = Callable[[Mark, str, str], None]


class Marks(Protocol):
    """Where watch sources record what they saw: one mark at a time, or a batch of removed snack names."""

    def mark(self, mark: Mark, directory: str, name: str) -> None: ...

    def mark_snacks(self, names: set[tuple[str, str]], scan: set[str]) -> None: ...


POLL_INTERVAL = 1.0
STORM_NOISE = 20_000  # unrelated removals in one directory within a second that make it a storm
STORM_SCAN = 0.02  # during a storm, the directory is scanned this often instead of heard event by event
STORM_MUTE = 1.0  # ...for this long, then heard again (and muted again if the storm goes on)
STORM_TELL = 60.0  # a storm in one directory is logged at most this often
_FS_ENCODING = sys.getfilesystemencoding()

# Overflow: the inotify source reads IN_Q_OVERFLOW (wd -1) itself. watchdog's Observer only logs it as a
# warning and never tells handlers, so on that path its log record is the signal (_OverflowLogHandler).
# Either way the daemon logs one "full resync" line of its own, so watchdog's record is not propagated.
_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify_c")
_INOTIFY_LOG.propagate = False


class WatchLimitError(OSError):
    """inotify cannot be had (instances or watches exhausted)."""


def _is_limit(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True)
class Roles:
    """Why a directory is watched: it holds snacks, specs, or both; `links`: names in it that lead to a
    watched directory (a pantry or spec directory, maybe a symlink), so re-pointing or re-creating one is seen."""

    snacks: bool
    specs: bool
    links: frozenset[str] = frozenset()

    @property
    def primary(self) -> bool:
        """Watched for its own sake (not only as the parent of one that is)."""
        return self.snacks or self.specs

    def __or__(self, other: Roles) -> Roles:
        return Roles(self.snacks or other.snacks, self.specs or other.specs, self.links | other.links)


def roles_for(snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> dict[str, Roles]:
    """What to watch: every snack and spec directory, the parent of each top one (it sees it re-pointed or
    re-created), and the ancestors above that which could hold a symlink snackwatch follows (owned by root or
    by us, not writable by others: `/srv` in `/srv/app -> releases/v2`). World-writable ancestors such as /tmp
    are not watched: no symlink there is followed, and their churn would cost."""
    snack_set, spec_set = set(snack_dirs), set(spec_dirs)
    wanted = {d: Roles(d in snack_set, d in spec_set) for d in snack_set | spec_set}
    for directory in list(wanted):
        child, (parent, name) = directory, os.path.split(directory)
        if parent in snack_set:
            continue
        while parent and parent != child:
            wanted[parent] = wanted.get(parent, Roles(False, False)) | Roles(False, False, frozenset({name}))
            child, (parent, name) = parent, os.path.split(parent)
            if not may_hold_followed_links(parent):  # no symlink followed there: nothing above to watch
                break
    return wanted


@dataclass
class Armed:
    """What an arm() did: directories it could not watch, and watches it re-created (directory replaced)."""

    failures: dict[str, OSError] = field(default_factory=dict)
    readded: set[str] = field(default_factory=set)


class Watcher:
    """Watches snack directories and spec directories with the chosen backend, falling back to polling."""

    def __init__(self, marks: Marks, backend: str = "auto", *, ignore_prefix: str = "") -> None:
        """`ignore_prefix`: names starting with it are our own temp files and never marked."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown watcher backend {backend!r}")
        if backend == "auto":
            backend = "inotify" if HAVE_INOTIFY else "observer"
        self.marks = marks
        self.backend = backend
        self.ignore_prefix = ignore_prefix
        self.relevant: Mapping[str, Container[str]] = {}
        self.spec_names: Mapping[str, Container[str]] = {}
        self.attributes = False
        self._source: _Source | None = None

    def track(self, relevant: Mapping[str, Container[str]]) -> None:
        """The names that matter in each snack directory: removals of other names are noise (a nudge at most)."""
        self.relevant = relevant
        if self._source is not None:
            self._source.relevant = relevant

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None:
        """The names that matter in each spec directory: changes to other files there are not spec changes."""
        self.spec_names = spec_names
        if self._source is not None:
            self._source.spec_names = spec_names

    def watch_attributes(self, on: bool) -> None:
        """Hear permission changes in snack directories (only while something fails: a chmod storm costs nothing)."""
        if on != self.attributes:
            self.attributes = on
            if self._source is not None:
                self._source.watch_attributes(on)

    def storm_scans(self, now: float) -> set[str]:
        """Directories whose removals are not heard one by one during a storm: scan them now (see STORM_NOISE)."""
        return self._source.storm_scans(now) if self._source is not None else set()

    def next_due(self) -> float | None:
        """When a storm-muted directory is next due for its scan (None: no storm)."""
        return self._source.next_due() if self._source is not None else None

    @property
    def resync_interval(self) -> float | None:
        """How often the daemon must run a full pass on this backend: polling snapshots can miss a change."""
        return POLL_INTERVAL if self.backend == "polling" else None

    def arm(self, snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> Armed:
        """Watch exactly these directories, re-creating any watch whose directory was replaced or died."""
        wanted = roles_for(snack_dirs, spec_dirs)
        try:
            return self._ensure_source().arm(wanted)
        except WatchLimitError as error:
            if self.backend == "polling":
                raise
            logger.bind(event="watch_limit").warning(
                "inotify limit reached ({}); falling back to polling every {:g} s "
                "(raise fs.inotify.max_user_watches / max_user_instances to fix)",
                error.strerror,
                POLL_INTERVAL,
            )
            self.close()
            self.backend = "polling"
            return self._ensure_source().arm(wanted)

    def _ensure_source(self) -> _Source:
        if self._source is None:
            inotify = self.backend == "inotify"
            self._source = (
                _InotifySource(self.marks, self.ignore_prefix)
                if inotify
                else _ObserverSource(self.marks.mark, self.backend, self.ignore_prefix)
            )
            self._source.relevant = self.relevant
            self._source.spec_names = self.spec_names
            self._source.watch_attributes(self.attributes)
        return self._source

    def fileno(self) -> int | None:
        return self._source.fileno() if self._source is not None else None

    def read_events(self) -> bool:
        """Read what the kernel queued (inotify backend); False if it was only noise (nothing to repair)."""
        return self._source.read_events() if self._source is not None else False

    def close(self) -> None:
        """Stop watching and join watchdog's threads."""
        if self._source is not None:
            self._source.close()
            self._source = None


class _Source:
    """Diff-based arming shared by both backends: a watch is kept while its directory is the same and alive.

    Inode numbers are reused, so a replaced directory can look the same to stat(): `dead` (filled from
    watchdog's thread when a watched directory goes away) is what tells a live watch from a stale one.
    """

    def __init__(self) -> None:
        self.armed: dict[str, tuple[tuple[int, int], Roles]] = {}
        self.dead: set[str] = set()
        self.relevant: Mapping[str, Container[str]] = {}
        self.spec_names: Mapping[str, Container[str]] = {}  # per spec directory; absent: every name matters

    def is_spec_name(self, directory: str, name: str) -> bool:
        wanted = self.spec_names.get(directory)
        return wanted is None or name in wanted

    def watch_attributes(self, on: bool) -> None:
        """Whether attribute changes in snack directories matter (the inotify source narrows its mask)."""

    def storm_scans(self, now: float) -> set[str]:
        return set()

    def next_due(self) -> float | None:
        return None

    def arm(self, wanted: dict[str, Roles]) -> Armed:
        """Failures and re-created watches are told only for primary directories (parents are best effort)."""
        result = Armed()
        for directory in [d for d in self.armed if d not in wanted]:
            self._unwatch(directory)
            del self.armed[directory]
        self._roles_changed(wanted)
        for directory, roles in wanted.items():
            try:
                info = os.stat(directory)
            except OSError as error:
                if roles.primary:
                    result.failures[directory] = error
                continue
            state = ((info.st_dev, info.st_ino), roles)
            if self.armed.get(directory) == state and directory not in self.dead:
                continue
            if directory in self.armed:
                self._unwatch(directory)
                if roles.primary:
                    result.readded.add(directory)
            self.dead.discard(directory)
            try:
                self._watch(directory, roles)
            except WatchLimitError:
                raise
            except OSError as error:
                self.armed.pop(directory, None)
                if roles.primary:
                    result.failures[directory] = error
                continue
            self.armed[directory] = state
        return result

    def _roles_changed(self, wanted: dict[str, Roles]) -> None:
        """The directories and roles about to be watched (the Observer's handler reads them)."""

    def fileno(self) -> int | None:
        """An fd for the loop to poll and then call read_events(); None where watchdog's threads deliver."""
        return None

    def read_events(self) -> bool:
        """Read what is pending on fileno() and mark it; never blocks. False if it was only noise."""
        return False

    def _watch(self, directory: str, roles: Roles) -> None:
        raise NotImplementedError

    def _unwatch(self, directory: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# --- inotify on the daemon's own thread, through watchdog's libc bindings ---------------------------

if HAVE_INOTIFY:
    C = InotifyConstants
    # IN_MOVED_TO: a rename over a snack may put a symlink or directory in its place. No IN_CREATE:
    # our own restores would wake us for nothing.
    # IN_ATTRIB only while something fails (watch_attributes): a touch/chmod storm then costs nothing.
    _SNACK_MASK = C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_DELETE_SELF | C.IN_MOVE_SELF
    # IN_MODIFY: a spec being written is not read until its writer closes it (IN_CLOSE_WRITE).
    _SPEC_MASK = (
        C.IN_CLOSE_WRITE | C.IN_MODIFY | C.IN_CREATE | C.IN_MOVED_TO | C.IN_MOVED_FROM | C.IN_DELETE | C.IN_ATTRIB
    )
    _SNACK_GONE = C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO
    _SELF_GONE = C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_IGNORED
    _LINK_MASK = C.IN_CREATE | C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO  # a name replaced in a parent
    _EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name


def _libc_error(what: str) -> OSError:
    code = ctypes.get_errno()
    if code in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return WatchLimitError(code, f"{what}: {os.strerror(code)}")
    return OSError(code, os.strerror(code), what)


class _InotifySource(_Source):
    """inotify read on the loop's own thread: the daemon polls fileno() and calls read_events().

    Compared with watchdog's InotifyFD thread this saves a thread hop and the GIL hand-off per event,
    builds no event objects, and sees IN_Q_OVERFLOW (wd -1) directly. The reads never block.
    One inode reached by several paths (`shared` and `link -> shared`) is one kernel watch: the watch
    keeps every path (alias) with its roles, its mask is the union, and each event is told to every alias.
    """

    def __init__(self, marks: Marks, ignore_prefix: str) -> None:
        super().__init__()
        self.marks = marks
        self.sink = marks.mark
        self.ignore = os.fsencode(ignore_prefix) if ignore_prefix else None
        self.ignore_text = ignore_prefix or None
        fd = inotify_init()
        if fd < 0:
            raise _libc_error("inotify_init")
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        self.fd = fd
        self.by_wd: dict[int, dict[str, Roles]] = {}  # wd -> every path that reached it, with its roles
        self.by_dir: dict[str, int] = {}
        self.snacks_only: dict[int, str] = {}  # the hot path: watches of one plain snack directory
        self.attributes = False
        self.noise: dict[int, int] = {}  # unrelated removals per watch since `noise_since`
        self.noise_since = time.monotonic()
        self.muted: dict[int, tuple[float, float]] = {}  # wd -> (hear removals again at, next scan at)
        self.storm_told: dict[str, float] = {}  # directory -> when its last storm was logged

    def fileno(self) -> int | None:
        return self.fd

    def _mute_if_stormy(self, now: float) -> None:
        """Past STORM_NOISE unrelated removals a second in a directory, stop hearing its removals one by one
        (the kernel queues nothing more for them) and scan it every STORM_SCAN instead, for STORM_MUTE."""
        if now - self.noise_since < 1.0:
            stormy = [wd for wd, count in self.noise.items() if count > STORM_NOISE and wd not in self.muted]
        else:
            stormy = []
            self.noise.clear()
            self.noise_since = now
        for wd in stormy:
            directory = self.snacks_only.get(wd)
            if directory is None:
                continue
            self.muted[wd] = (now + STORM_MUTE, now)
            self._readd(wd)
            if now - self.storm_told.get(directory, -STORM_TELL) >= STORM_TELL:
                self.storm_told[directory] = now
                logger.bind(event="storm", directory=directory).info(
                    "event storm in {} ({} unrelated removals in under a second): scanning it every {:g} ms "
                    "instead of event by event",
                    directory,
                    self.noise[wd],
                    STORM_SCAN * 1000,
                )

    def storm_scans(self, now: float) -> set[str]:
        due = set()
        for wd, (until, scan_at) in list(self.muted.items()):
            directory = self.snacks_only.get(wd)
            if directory is None:  # the watch went away meanwhile
                del self.muted[wd]
                continue
            if now >= until:  # hear removals again (one last scan covers the switch)
                del self.muted[wd]
                self._readd(wd)
                due.add(directory)
            elif now >= scan_at:
                self.muted[wd] = (until, now + STORM_SCAN)
                due.add(directory)
        return due

    def next_due(self) -> float | None:
        return min((min(until, scan_at) for until, scan_at in self.muted.values()), default=None)

    def _mask(self, roles: Roles, *, muted: bool = False) -> int:
        snacks = (_SNACK_MASK | (C.IN_ATTRIB if self.attributes else 0)) if roles.snacks else 0
        if muted:
            snacks &= ~_SNACK_GONE
        return int(C.IN_ONLYDIR | snacks | (_SPEC_MASK if roles.specs else 0) | (_LINK_MASK if roles.links else 0))

    def _union(self, wd: int) -> Roles:
        roles = Roles(False, False)
        for alias in self.by_wd[wd].values():
            roles |= alias
        return roles

    def _readd(self, wd: int) -> None:
        """Set a watch's mask to what all its aliases need; an alias that no longer reaches it is dropped."""
        aliases = self.by_wd[wd]
        roles = self._union(wd)
        for directory in list(aliases):
            again = inotify_add_watch(self.fd, os.fsencode(directory), self._mask(roles, muted=wd in self.muted))
            if again == wd:
                break
            if again >= 0 and again not in self.by_wd:  # the path leads elsewhere now: let the armer redo it
                inotify_rm_watch(self.fd, WatchDescriptor(again))
            self._alias_gone(wd, directory)
        self._refresh_fast_path(wd)

    def _refresh_fast_path(self, wd: int) -> None:
        aliases = self.by_wd.get(wd, {})
        self.snacks_only.pop(wd, None)
        if len(aliases) == 1:
            [(directory, roles)] = aliases.items()
            if roles == Roles(snacks=True, specs=False):
                self.snacks_only[wd] = directory

    def watch_attributes(self, on: bool) -> None:
        self.attributes = on
        for wd in [wd for wd in self.by_wd if self._union(wd).snacks]:
            if wd in self.by_wd:
                self._readd(wd)

    def _watch(self, directory: str, roles: Roles) -> None:
        wd = inotify_add_watch(self.fd, os.fsencode(directory), self._mask(roles))
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
        self.snacks_only.pop(wd, None)
        inotify_rm_watch(self.fd, WatchDescriptor(wd))  # fails harmlessly if the kernel already dropped it

    def _alias_gone(self, wd: int, directory: str) -> None:
        """`directory` no longer reaches the watched inode: forget it and tell the loop."""
        roles = self.by_wd[wd].pop(directory)
        if not self.by_wd[wd]:
            del self.by_wd[wd]
            self.snacks_only.pop(wd, None)
            inotify_rm_watch(self.fd, WatchDescriptor(wd))  # fails harmlessly if the kernel dropped it
        self.by_dir.pop(directory, None)
        self.dead.add(directory)
        if roles.snacks:
            self.sink(Mark.GONE, directory, "")
        if roles.specs:
            self.sink(Mark.SPEC, directory, "")

    def read_events(self) -> bool:
        # The hot path: removals in snack directories, marked in one batch. A name that no snack or nested
        # directory has is noise (another user's churn in a shared pantry): dropped here, at most a nudge.
        # Past BURST relevant removals in one directory it is scanned whole, so names are no longer kept.
        removed: set[tuple[str, str]] = set()
        counts: dict[int, int] = {}
        scan: set[str] = set()
        relevant = self.relevant
        noise = other = False
        while True:
            try:
                buffer = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset, end = 0, len(buffer)
            while offset + 16 <= end:
                wd, mask, _, length = _EVENT.unpack_from(buffer, offset)
                start, offset = offset + 16, offset + 16 + length
                directory = self.snacks_only.get(wd)
                if directory is None or not mask & _SNACK_GONE or not length:
                    other = self._event(wd, mask, buffer[start:offset].rstrip(b"\0")) or other
                    continue
                name = buffer[start:offset].rstrip(b"\0").decode(_FS_ENCODING, "surrogateescape")
                wanted = relevant.get(directory)
                if wanted is not None and name not in wanted:
                    noise = True
                    self.noise[wd] = self.noise.get(wd, 0) + 1
                    continue
                if directory in scan or (directory, name) in removed:  # a burst counts names, not events
                    continue
                count = counts[wd] = counts.get(wd, 0) + 1
                if count > BURST:
                    scan.add(directory)
                elif self.ignore_text is None or not name.startswith(self.ignore_text):
                    removed.add((directory, name))
        if noise:
            self._mute_if_stormy(time.monotonic())
        if removed or scan:
            self.marks.mark_snacks({(d, n) for d, n in removed if d not in scan} if scan else removed, scan)
            return True
        if noise:
            self.sink(Mark.NUDGE, "", "")  # a removal may have freed space for a failing repair
        return other

    def _event(self, wd: int, mask: int, name: bytes) -> bool:
        """Mark what one event means for every path that reaches its watch; False if it meant nothing."""
        if mask & C.IN_Q_OVERFLOW:
            self.sink(Mark.OVERFLOW, "", "")
            return True
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
        if self.ignore is not None and name.startswith(self.ignore):
            return False
        text = os.fsdecode(name)
        meant = False
        for directory, roles in list(aliases.items()):
            if roles.snacks and mask & _SNACK_GONE:
                self.sink(Mark.SNACK, directory, text)
                meant = True
            if roles.specs and self.is_spec_name(directory, text):
                self.sink(Mark.SPEC_WRITE if mask & C.IN_MODIFY else Mark.SPEC, directory, text)
                meant = True
            if text in roles.links and mask & _LINK_MASK:  # a watched directory's path re-pointed or re-created
                child = os.path.join(directory, text)
                self.sink(Mark.GONE, child, "")
                self.sink(Mark.SPEC, child, "")
                meant = True
        return meant

    def close(self) -> None:
        os.close(self.fd)


# --- watchdog's Observer: platform (FSEvents / inotify) or polling --------------------------------


class _OverflowLogHandler(logging.Handler):
    """watchdog's Observer only *logs* IN_Q_OVERFLOW ("Inotify queue overflowed") and never tells
    handlers; its log record is the one signal that reaches us on this path, so we listen for it."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.sink(Mark.OVERFLOW, "", "")


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: turns an event into marks for every watched path it concerns."""

    def __init__(
        self,
        sink: Sink,
        roles: dict[str, Roles],
        aliases: dict[str, set[str]],
        dead: set[str],
        *,
        ignore_prefix: str,
        is_spec_name: Callable[[str, str], bool],
    ) -> None:
        self.sink = sink
        self.is_spec_name = is_spec_name
        self.ignore = ignore_prefix
        self.roles = roles  # shared with the source, which updates them on arm()
        self.aliases = aliases  # real path -> the watched paths that reach it (watches follow symlinks)
        self.dead = dead

    def _paths(self, path: str) -> tuple[str, ...]:
        return tuple(self.aliases.get(path, ())) or (path,)

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        paths = [os.fsdecode(event.src_path)]
        if isinstance(event, FileSystemMovedEvent) and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        for path in paths:
            real_parent, name = os.path.split(path)
            if self.ignore and name.startswith(self.ignore):
                continue
            for own_path in self._paths(path):
                self._own(own_path, kind)
            for parent in self._paths(real_parent):
                self._child(parent, name, kind)

    def _own(self, path: str, kind: str) -> None:
        own = self.roles.get(path)
        if own is not None and own.primary and kind in ("deleted", "moved", "created"):
            if kind != "created":  # removed, moved away, or replaced by a rename over it
                self.dead.add(path)
            self.sink(Mark.GONE, path, "")
            if own.specs:
                self.sink(Mark.SPEC, path, "")
        if own is not None and own.snacks and kind == "attrib":
            self.sink(Mark.NUDGE, path, "")

    def _child(self, parent: str, name: str, kind: str) -> None:
        roles = self.roles.get(parent)
        if roles is None:
            return
        path = os.path.join(parent, name)
        if name in roles.links and kind in ("deleted", "moved", "created"):
            self.sink(Mark.GONE, path, "")  # a watched directory's path (or one above it), re-pointed
            self.sink(Mark.SPEC, path, "")
        if roles.specs and self.is_spec_name(parent, name):
            if kind == "modified" and HAVE_INOTIFY:  # Linux tells the close: wait for it
                self.sink(Mark.SPEC_WRITE, parent, name)
            elif kind in ("created", "moved", "deleted", "closed", "modified"):
                self.sink(Mark.SPEC, parent, name)
        if roles.snacks and kind in ("deleted", "moved"):
            self.sink(Mark.SNACK, parent, name)


class _ObserverSource(_Source):
    def __init__(self, sink: Sink, backend: str, ignore_prefix: str) -> None:
        super().__init__()
        self.observer: BaseObserver = PollingObserver(timeout=POLL_INTERVAL) if backend == "polling" else Observer()
        self.overflow = _OverflowLogHandler(sink)
        _INOTIFY_LOG.addHandler(self.overflow)
        if HAVE_INOTIFY:
            # Level-based: a move is "src gone, dest appeared". Pairing moves buys us nothing and
            # costs 0.5 s per moved-away snack, so the grouper releases IN_MOVED_FROM at once.
            inotify_move_event_grouper.InotifyMoveEventGrouper.delay = 0.0
        self.roles: dict[str, Roles] = {}
        self.aliases: dict[str, set[str]] = {}
        self.handler = _Handler(
            sink, self.roles, self.aliases, self.dead, ignore_prefix=ignore_prefix, is_spec_name=self.is_spec_name
        )
        self.watches: dict[str, tuple[str, ObservedWatch]] = {}  # path -> (real path, its watch)
        self.observer.start()

    def _roles_changed(self, wanted: dict[str, Roles]) -> None:
        # Parents (Roles.links) tell us when a top directory is moved away or re-pointed: the Observer
        # reports no IN_MOVE_SELF.
        self.roles.clear()
        self.roles.update(wanted)

    def _watch(self, directory: str, roles: Roles) -> None:
        # Watches follow symlinks and watchdog reports real paths: `aliases` maps them back to every watched
        # path that reaches the same directory (`shared` and `link -> shared`).
        real = os.path.realpath(directory)
        try:
            watch = self.observer.schedule(self.handler, directory, follow_symlink=True)
        except OSError as error:
            if _is_limit(error):
                raise WatchLimitError(error.errno, error.strerror) from None
            raise
        self.watches[directory] = (real, watch)
        self.aliases.setdefault(real, set()).add(directory)

    def _unwatch(self, directory: str) -> None:
        real, watch = self.watches.pop(directory, ("", None))
        if watch is None:
            return
        self.aliases.get(real, set()).discard(directory)
        if not self.aliases.get(real):
            self.aliases.pop(real, None)
        with contextlib.suppress(KeyError):
            self.observer.unschedule(watch)

    def close(self) -> None:
        _INOTIFY_LOG.removeHandler(self.overflow)
        self.observer.stop()
        self.observer.join()
