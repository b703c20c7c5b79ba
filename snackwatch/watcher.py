"""The only module that imports watchdog: turns filesystem events into dirty marks and (re)arms watches.

Two sources, one contract (call `sink(Mark, name)` and nothing else, from watchdog's thread):
- "inotify" (Linux default): a callback on watchdog's InotifyFD, the low-level reader under its
  Observer. Raw events arrive at once (no 0.5 s move pairing), IN_Q_OVERFLOW arrives as a callback,
  and the reader blocks in poll() with no timeout, so idle costs no wakeups.
- "observer": watchdog's platform Observer (FSEvents on macOS, inotify on Linux) or, with
  "polling", its PollingObserver: what every other platform gets, and the fallback when inotify
  limits are hit.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler, FileSystemMovedEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
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

    SNACK = "snack"  # a name in the pantry was deleted, moved away or replaced (implies PANTRY)
    PANTRY = "pantry"  # the pantry changed in a way that may unblock failing repairs
    PANTRY_GONE = "pantry gone"  # the pantry itself was removed, moved or unmounted
    SPEC = "spec"  # something changed in the spec's directory
    OVERFLOW = "overflow"  # the kernel dropped events: only a full resync is safe


Sink = Callable[[Mark, str], None]
BACKENDS = ("auto", "inotify", "observer", "polling")
POLL_INTERVAL = 1.0


class WatchLimitError(OSError):
    """inotify cannot be had (instances or watches exhausted)."""


def _is_limit(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


# watchdog logs IN_Q_OVERFLOW as a warning; we report it ourselves as "full resync", once.
_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify_c")
_INOTIFY_LOG.propagate = False


class Watcher:
    """Watches the pantry and the spec's directory with the chosen backend, falling back to polling."""

    def __init__(self, sink: Sink, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown watcher backend {backend!r}")
        if backend == "auto":
            backend = "inotify" if HAVE_INOTIFY else "observer"
        self.sink = sink
        self.backend = backend
        self._source: _InotifySource | _ObserverSource | None = None

    def arm(self, pantry: Path, spec_dir: Path) -> None:
        """(Re)arm watches on `pantry` and `spec_dir`; raises OSError if the pantry cannot be watched."""
        try:
            self._arm(pantry, spec_dir)
        except OSError as error:
            if self.backend == "polling" or not _is_limit(error):
                raise
            logger.warning(
                "inotify limit reached ({}); falling back to polling every {:g} s "
                "(raise fs.inotify.max_user_watches / max_user_instances to fix)",
                error.strerror,
                POLL_INTERVAL,
            )
            self.close()
            self.backend = "polling"
            self._arm(pantry, spec_dir)

    def _arm(self, pantry: Path, spec_dir: Path) -> None:
        if self._source is None:
            inotify = self.backend == "inotify"
            self._source = _InotifySource(self.sink) if inotify else _ObserverSource(self.sink, self.backend)
        self._source.arm(pantry, spec_dir)

    def close(self) -> None:
        """Stop watching and join watchdog's threads."""
        if self._source is not None:
            self._source.close()
            self._source = None


# --- inotify: watchdog's InotifyFD with our own callbacks ---------------------------------------

if HAVE_INOTIFY:
    C = InotifyConstants
    # IN_MOVED_TO: a rename over a snack may put a symlink or directory in its place. No IN_CREATE:
    # our own restores would wake us for nothing.
    _PANTRY_MASK = (
        C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_ATTRIB | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_ONLYDIR
    )
    _SPEC_DIR_MASK = (
        C.IN_CLOSE_WRITE | C.IN_CREATE | C.IN_MOVED_TO | C.IN_MOVED_FROM | C.IN_DELETE | C.IN_ATTRIB | C.IN_ONLYDIR
    )


class _PantryCallback:
    """Receives raw inotify events of the pantry watch on InotifyFD's thread."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.active = True

    def on_event(self, event: InotifyEvent) -> None:
        if not self.active:
            return
        if event.is_delete_self or event.is_move_self:
            self.sink(Mark.PANTRY_GONE, "")
        elif not event.name:
            if event.is_attrib:
                self.sink(Mark.PANTRY, "")
        elif event.is_delete or event.is_moved_from or event.is_moved_to:
            name = os.fsdecode(event.name)
            if not name.startswith(RESERVED_PREFIX):
                self.sink(Mark.SNACK, name)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        # IN_IGNORED: the directory is gone or unmounted; the watch with it.
        if self.active:
            self.sink(Mark.PANTRY_GONE, "")

    def on_queue_overflow(self) -> None:
        # watchdog 7's InotifyFD calls this for IN_Q_OVERFLOW (its Observer only logs a warning).
        self.sink(Mark.OVERFLOW, "")


class _SpecDirCallback(_PantryCallback):
    """Receives raw inotify events of the spec directory's watch."""

    def on_event(self, event: InotifyEvent) -> None:
        if self.active and not (event.name or b"").startswith(RESERVED_PREFIX.encode()):
            self.sink(Mark.SPEC, "")

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        if self.active:
            self.sink(Mark.SPEC, "")


class _InotifySource:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        try:
            self.fd = InotifyFD()
        except OSError as error:
            raise WatchLimitError(error.errno, error.strerror) from None
        self.fd.start()
        self.watches: list[tuple[WatchDescriptor, _PantryCallback]] = []

    def arm(self, pantry: Path, spec_dir: Path) -> None:
        self._disarm()
        same = _same_dir(pantry, spec_dir)
        pantry_mask = _PANTRY_MASK | (_SPEC_DIR_MASK if same else 0)
        spec_mask = _SPEC_DIR_MASK | (_PANTRY_MASK if same else 0)
        # Spec directory first: the pantry may legitimately fail (missing, no permission) and be retried.
        self._add(spec_dir, spec_mask, _SpecDirCallback(self.sink))
        self._add(pantry, pantry_mask, _PantryCallback(self.sink))

    def _add(self, path: Path, mask: int, callback: _PantryCallback) -> None:
        try:
            wd = self.fd.add_callback(os.fsencode(path), mask, callback, CallbackId(id(callback)))  # type: ignore[arg-type]
        except OSError as error:
            if _is_limit(error):
                raise WatchLimitError(error.errno, error.strerror) from None
            raise
        self.watches.append((wd, callback))

    def _disarm(self) -> None:
        for _, callback in self.watches:
            callback.active = False
        self.fd.remove_callbacks([(wd, CallbackId(id(callback))) for wd, callback in self.watches])
        self.watches.clear()

    def close(self) -> None:
        self._disarm()
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
            self.sink(Mark.OVERFLOW, "")


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Sink, pantry: str, spec_dir: str) -> None:
        self.sink = sink
        self.pantry = pantry
        self.spec_dir = spec_dir

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        paths = [os.fsdecode(event.src_path)]
        if isinstance(event, FileSystemMovedEvent) and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        for index, path in enumerate(paths):
            parent, name = os.path.split(path)
            if name.startswith(RESERVED_PREFIX):
                continue
            if path == self.pantry and kind in ("deleted", "moved") and index == 0:
                self.sink(Mark.PANTRY_GONE, "")
            if parent == self.spec_dir and kind in ("created", "moved", "deleted", "closed", "modified"):
                self.sink(Mark.SPEC, "")
            if parent == self.pantry and kind in ("deleted", "moved"):
                self.sink(Mark.SNACK, name)
            if path == self.pantry and kind == "attrib":
                self.sink(Mark.PANTRY, "")


class _ObserverSource:
    def __init__(self, sink: Sink, backend: str) -> None:
        self.sink = sink
        self.backend = backend
        self.observer: BaseObserver = PollingObserver(timeout=POLL_INTERVAL) if backend == "polling" else Observer()
        self.overflow = _OverflowLogHandler(sink)
        _INOTIFY_LOG.addHandler(self.overflow)
        if HAVE_INOTIFY:
            # Level-based: a move is "src gone, dest appeared". Pairing moves buys us nothing and
            # costs 0.5 s per moved-away snack, so the grouper releases IN_MOVED_FROM at once.
            inotify_move_event_grouper.InotifyMoveEventGrouper.delay = 0.0
        self.observer.start()

    def arm(self, pantry: Path, spec_dir: Path) -> None:
        self.observer.unschedule_all()
        handler = _Handler(self.sink, str(pantry), str(spec_dir))
        self.observer.schedule(handler, str(spec_dir))
        # The parent tells us when the pantry itself is moved away (the Observer reports no IN_MOVE_SELF).
        if pantry.parent != spec_dir and pantry.parent.is_dir():
            self.observer.schedule(handler, str(pantry.parent))
        if pantry != spec_dir:
            self.observer.schedule(handler, str(pantry))

    def close(self) -> None:
        _INOTIFY_LOG.removeHandler(self.overflow)
        self.observer.stop()
        self.observer.join()


def _same_dir(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False
