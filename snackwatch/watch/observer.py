"""watchdog's Observer as a watch source: the platform's (FSEvents on macOS, inotify elsewhere) or polling.

What every platform other than Linux gets, and Linux's fallback when inotify limits are hit. Runs watchdog's
threads; its handler only records marks. Watches are scheduled on the path the safe walk resolved.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler, FileSystemMovedEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from snackwatch.choices import POLL_INTERVAL
from snackwatch.dirty import Mark
from snackwatch.watch.roles import Roles
from snackwatch.watch.source import Sink, Source, WatchLimitError, is_limit, resolved_path

try:  # Linux only
    from watchdog.observers import inotify_move_event_grouper

    HAVE_GROUPER = True
except (ImportError, OSError):  # pragma: no cover - exercised on macOS
    HAVE_GROUPER = False

# Overflow: watchdog's Observer only logs IN_Q_OVERFLOW as a warning and never tells handlers, so on this path its
# log record is the signal (_OverflowLogHandler). The daemon logs one "full resync" line of its own.
_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify_c")
_INOTIFY_LOG.propagate = False


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
        is_enforced: Callable[[str, str], bool] = lambda directory, name: False,
    ) -> None:
        self.sink = sink
        self.is_spec_name = is_spec_name
        self.is_enforced = is_enforced
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
            if kind == "modified" and HAVE_GROUPER:  # Linux tells the close: wait for it
                self.sink(Mark.SPEC_WRITE, parent, name)
            elif kind in ("created", "moved", "deleted", "closed", "modified"):
                self.sink(Mark.SPEC, parent, name)
        if roles.snacks and kind in ("deleted", "moved"):
            self.sink(Mark.SNACK, parent, name)
        elif roles.snacks and kind in ("closed", "modified", "attrib") and self.is_enforced(parent, name):
            self.sink(Mark.CHANGED, parent, name)  # an enforced entry written or chmod'ed in place


class ObserverSource(Source):
    def __init__(self, sink: Sink, backend: str, ignore_prefix: str, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self.observer: BaseObserver = PollingObserver(timeout=poll_interval) if backend == "polling" else Observer()
        self.overflow = _OverflowLogHandler(sink)
        _INOTIFY_LOG.addHandler(self.overflow)
        if HAVE_GROUPER:
            # Level-based: a move is "src gone, dest appeared". Pairing moves buys us nothing and
            # costs 0.5 s per moved-away snack, so the grouper releases IN_MOVED_FROM at once.
            inotify_move_event_grouper.InotifyMoveEventGrouper.delay = 0.0
        self.roles: dict[str, Roles] = {}
        self.aliases: dict[str, set[str]] = {}
        self.handler = _Handler(
            sink,
            self.roles,
            self.aliases,
            self.dead,
            ignore_prefix=ignore_prefix,
            is_spec_name=self.is_spec_name,
            is_enforced=lambda directory, name: name in self.enforced.get(directory, ()),
        )
        self.watches: dict[str, tuple[str, ObservedWatch]] = {}  # path -> (real path, its watch)
        self.observer.start()

    def _roles_changed(self, wanted: dict[str, Roles]) -> None:
        # Parents (Roles.links) tell us when a top directory is moved away or re-pointed: the Observer
        # reports no IN_MOVE_SELF.
        self.roles.clear()
        self.roles.update(wanted)

    def _watch(self, directory: str, roles: Roles, fd: int) -> None:
        # The watch is scheduled on the path the safe walk resolved (`fd`), and watchdog reports real paths:
        # `aliases` maps them back to every watched path that reaches the same directory (`link -> shared`).
        real = resolved_path(fd, directory)
        try:
            watch = self.observer.schedule(self.handler, real, follow_symlink=False)
        except OSError as error:
            if is_limit(error):
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
