"""The only module that imports watchdog: turns filesystem events into dirty marks and (re)arms watches.

Two sources, one contract (call `sink(Mark, directory, name)` and nothing else, on watchdog's thread):
- "inotify" (Linux default): a callback on watchdog's InotifyFD, the low-level reader under its
  Observer. Raw events arrive at once (no 0.5 s move pairing), IN_Q_OVERFLOW arrives as a callback,
  and the reader blocks in poll() with no timeout, so idle costs no wakeups.
- "observer": watchdog's platform Observer (FSEvents on macOS, inotify on Linux) or, with
  "polling", its PollingObserver: what every other platform gets, and the fallback when inotify
  limits are hit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler, FileSystemMovedEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from snackwatch.spec import RESERVED_PREFIX

try:  # Linux only; absent elsewhere.
    from watchdog.observers import inotify_move_event_grouper
    from watchdog.observers.inotify_c import CallbackId, InotifyConstants, InotifyEvent, InotifyFD, WatchDescriptor

    HAVE_INOTIFY = True
except (ImportError, OSError):  # pragma: no cover - exercised on macOS
    HAVE_INOTIFY = False


class Mark(Enum):
    """What a filesystem event says the daemon should look at."""

    SNACK = "snack"  # a name in a snack directory was deleted, moved away or replaced (implies NUDGE)
    NUDGE = "nudge"  # something changed that may unblock failing repairs (permissions, freed space)
    GONE = "gone"  # a watched snack directory was removed, moved or unmounted
    SPEC = "spec"  # something changed in a spec directory
    OVERFLOW = "overflow"  # the kernel dropped events: only a full resync is safe


Sink = Callable[[Mark, str, str], None]
BACKENDS = ("auto", "inotify", "observer", "polling")
POLL_INTERVAL = 1.0

# watchdog logs IN_Q_OVERFLOW as a warning; we report it ourselves as "full resync", once.
_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify_c")
_INOTIFY_LOG.propagate = False


class WatchLimitError(OSError):
    """inotify cannot be had (instances or watches exhausted)."""


def _is_limit(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True)
class Roles:
    """Why a directory is watched: it holds snacks, specs, or both."""

    snacks: bool
    specs: bool


@dataclass
class Armed:
    """What an arm() did: directories it could not watch, and watches it re-created (directory replaced)."""

    failures: dict[str, OSError] = field(default_factory=dict)
    readded: set[str] = field(default_factory=set)


class Watcher:
    """Watches snack directories and spec directories with the chosen backend, falling back to polling."""

    def __init__(self, sink: Sink, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown watcher backend {backend!r}")
        if backend == "auto":
            backend = "inotify" if HAVE_INOTIFY else "observer"
        self.sink = sink
        self.backend = backend
        self._source: _Source | None = None

    def arm(self, snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> Armed:
        """Watch exactly these directories, re-creating any watch whose directory was replaced or died."""
        wanted: dict[str, Roles] = {}
        snack_set, spec_set = set(snack_dirs), set(spec_dirs)
        for directory in snack_set | spec_set:
            wanted[directory] = Roles(directory in snack_set, directory in spec_set)
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
            self._source = _InotifySource(self.sink) if inotify else _ObserverSource(self.sink, self.backend)
        return self._source

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

    def arm(self, wanted: dict[str, Roles]) -> Armed:
        result = Armed()
        everything = self._with_extras(wanted)
        for directory in [d for d in self.armed if d not in everything]:
            self._unwatch(directory)
            del self.armed[directory]
        for directory, roles in everything.items():
            try:
                info = os.stat(directory)
            except OSError as error:
                if directory in wanted:
                    result.failures[directory] = error
                continue
            state = ((info.st_dev, info.st_ino), roles)
            if self.armed.get(directory) == state and directory not in self.dead:
                continue
            if directory in self.armed:
                self._unwatch(directory)
                if directory in wanted:
                    result.readded.add(directory)
            self.dead.discard(directory)
            try:
                self._watch(directory, roles)
            except WatchLimitError:
                raise
            except OSError as error:
                self.armed.pop(directory, None)
                if directory in wanted:
                    result.failures[directory] = error
                continue
            self.armed[directory] = state
        return result

    def _with_extras(self, wanted: dict[str, Roles]) -> dict[str, Roles]:
        return wanted

    def _watch(self, directory: str, roles: Roles) -> None:
        raise NotImplementedError

    def _unwatch(self, directory: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# --- inotify: watchdog's InotifyFD with our own callbacks ---------------------------------------

if HAVE_INOTIFY:
    C = InotifyConstants
    # IN_MOVED_TO: a rename over a snack may put a symlink or directory in its place. No IN_CREATE:
    # our own restores would wake us for nothing.
    _SNACK_MASK = C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_ATTRIB | C.IN_DELETE_SELF | C.IN_MOVE_SELF
    _SPEC_MASK = C.IN_CLOSE_WRITE | C.IN_CREATE | C.IN_MOVED_TO | C.IN_MOVED_FROM | C.IN_DELETE | C.IN_ATTRIB


class _DirectoryCallback:
    """Receives the raw inotify events of one watched directory on InotifyFD's thread."""

    def __init__(self, sink: Sink, directory: str, roles: Roles, dead: set[str]) -> None:
        self.sink = sink
        self.directory = directory
        self.roles = roles
        self.dead = dead
        self.alive = True

    def _lost(self) -> None:
        if self.alive:
            self.alive = False
            self.dead.add(self.directory)
            if self.roles.snacks:
                self.sink(Mark.GONE, self.directory, "")
            if self.roles.specs:
                self.sink(Mark.SPEC, self.directory, "")

    def on_event(self, event: InotifyEvent) -> None:
        if not self.alive:
            return
        if event.is_delete_self or event.is_move_self:
            self._lost()
            return
        if not event.name:
            if event.is_attrib:
                self.sink(Mark.NUDGE, self.directory, "")
            return
        name = os.fsdecode(event.name)
        if name.startswith(RESERVED_PREFIX):
            return
        if self.roles.snacks and (event.is_delete or event.is_moved_from or event.is_moved_to):
            self.sink(Mark.SNACK, self.directory, name)
        if self.roles.specs:
            self.sink(Mark.SPEC, self.directory, name)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        self._lost()  # IN_IGNORED: the directory is gone or unmounted, and the watch with it

    def on_queue_overflow(self) -> None:
        # watchdog 7's InotifyFD calls this for IN_Q_OVERFLOW (its Observer only logs a warning).
        self.sink(Mark.OVERFLOW, "", "")


class _InotifySource(_Source):
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink
        try:
            self.fd = InotifyFD()
        except OSError as error:
            raise WatchLimitError(error.errno, error.strerror) from None
        self.fd.start()
        self.watches: dict[str, tuple[WatchDescriptor, _DirectoryCallback]] = {}

    def _watch(self, directory: str, roles: Roles) -> None:
        mask = C.IN_ONLYDIR | (_SNACK_MASK if roles.snacks else 0) | (_SPEC_MASK if roles.specs else 0)
        callback = _DirectoryCallback(self.sink, directory, roles, self.dead)
        try:
            wd = self.fd.add_callback(os.fsencode(directory), mask, callback, CallbackId(id(callback)))  # type: ignore[arg-type]
        except OSError as error:
            if _is_limit(error):
                raise WatchLimitError(error.errno, error.strerror) from None
            raise
        self.watches[directory] = (wd, callback)

    def _unwatch(self, directory: str) -> None:
        watch = self.watches.pop(directory, None)
        if watch is not None:
            wd, callback = watch
            callback.alive = False
            self.fd.remove_callbacks([(wd, CallbackId(id(callback)))])

    def close(self) -> None:
        for directory in list(self.watches):
            self._unwatch(directory)
        self.fd.stop()
        self.fd.join()


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
    def __init__(self, sink: Sink, roles: dict[str, Roles], dead: set[str]) -> None:
        self.sink = sink
        self.roles = roles  # shared with the source, which updates it on arm()
        self.dead = dead

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        paths = [os.fsdecode(event.src_path)]
        if isinstance(event, FileSystemMovedEvent) and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        for index, path in enumerate(paths):
            parent, name = os.path.split(path)
            if name.startswith(RESERVED_PREFIX):
                continue
            own = self.roles.get(path)
            if own is not None and own.snacks and kind in ("deleted", "moved") and index == 0:
                self.dead.add(path)
                self.sink(Mark.GONE, path, "")
            if own is not None and own.snacks and kind == "attrib":
                self.sink(Mark.NUDGE, path, "")
            roles = self.roles.get(parent)
            if roles is None:
                continue
            if roles.specs and kind in ("created", "moved", "deleted", "closed", "modified"):
                self.sink(Mark.SPEC, parent, name)
            if roles.snacks and kind in ("deleted", "moved"):
                self.sink(Mark.SNACK, parent, name)


class _ObserverSource(_Source):
    def __init__(self, sink: Sink, backend: str) -> None:
        super().__init__()
        self.observer: BaseObserver = PollingObserver(timeout=POLL_INTERVAL) if backend == "polling" else Observer()
        self.overflow = _OverflowLogHandler(sink)
        _INOTIFY_LOG.addHandler(self.overflow)
        if HAVE_INOTIFY:
            # Level-based: a move is "src gone, dest appeared". Pairing moves buys us nothing and
            # costs 0.5 s per moved-away snack, so the grouper releases IN_MOVED_FROM at once.
            inotify_move_event_grouper.InotifyMoveEventGrouper.delay = 0.0
        self.roles: dict[str, Roles] = {}
        self.handler = _Handler(sink, self.roles, self.dead)
        self.watches: dict[str, ObservedWatch] = {}
        self.observer.start()

    def _with_extras(self, wanted: dict[str, Roles]) -> dict[str, Roles]:
        # A parent tells us when a top directory itself is moved away (the Observer reports no IN_MOVE_SELF).
        parents = {os.path.dirname(d) for d in wanted if wanted[d].snacks} - set(wanted)
        everything = {parent: Roles(snacks=False, specs=False) for parent in parents}
        everything.update(wanted)
        self.roles.clear()
        self.roles.update(everything)
        return everything

    def _watch(self, directory: str, roles: Roles) -> None:
        try:
            self.watches[directory] = self.observer.schedule(self.handler, directory)
        except OSError as error:
            if _is_limit(error):
                raise WatchLimitError(error.errno, error.strerror) from None
            raise

    def _unwatch(self, directory: str) -> None:
        watch = self.watches.pop(directory, None)
        if watch is not None:
            with contextlib.suppress(KeyError):
                self.observer.unschedule(watch)

    def close(self) -> None:
        _INOTIFY_LOG.removeHandler(self.overflow)
        self.observer.stop()
        self.observer.join()
