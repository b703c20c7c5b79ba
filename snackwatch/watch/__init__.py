"""Watching the filesystem: the only package that imports watchdog (inotify.py its libc bindings, observer.py its
Observer); everything it sees becomes a dirty mark for the loop."""

from snackwatch.watch.inotify import HAVE_INOTIFY
from snackwatch.watch.source import Armed, Blocked, Marks, WatchLimitError
from snackwatch.watch.watcher import Watcher

__all__ = ["HAVE_INOTIFY", "Armed", "Blocked", "Marks", "WatchLimitError", "Watcher"]
