"""What the watchers marked since the loop last looked, and the pipe that wakes the loop: thread-safe, no work."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

from loguru import logger

from snackwatch.watcher import Mark


@dataclass
class Batch:
    """Everything marked since the loop last looked."""

    names: set[tuple[str, str]]  # (directory, name) removed or replaced
    gone: set[str]  # directories removed, moved or replaced
    scan: set[str]  # directories hit by a burst: scan them whole
    marks: set[Mark]


class DirtySet:
    """What watchdog's thread marked since the loop last looked, plus a pipe that wakes the loop.

    The observer thread only adds to sets here; all work happens on the loop's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._names: set[tuple[str, str]] = set()
        self._gone: set[str] = set()
        self._scan: set[str] = set()
        self._marks: set[Mark] = set()
        self._woken = False

    def mark(self, mark: Mark, directory: str, name: str) -> None:
        try:
            with self._lock:
                if mark is Mark.SNACK:
                    self._names.add((directory, name))
                    self._marks.add(Mark.NUDGE)  # any removal may have freed space: failing repairs retry
                elif mark is Mark.GONE:
                    self._gone.add(directory)
                elif mark is Mark.SCAN:
                    self._scan.add(directory)
                else:
                    self._marks.add(mark)
                if self._woken:
                    return
                self._woken = True
            self.wake()
        except Exception:  # never let anything escape into watchdog's thread
            logger.exception("could not record a filesystem event")

    def mark_snacks(self, names: set[tuple[str, str]], scan: set[str]) -> None:
        """A batch of removed snack names, and directories to scan whole (read on the loop's own thread)."""
        with self._lock:
            self._names |= names
            self._scan |= scan
            self._marks.add(Mark.NUDGE)
            if self._woken:
                return
            self._woken = True
        self.wake()

    def wake(self) -> None:
        """Wake the loop (safe from a signal handler: no lock)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe means the loop is awake anyway
            os.write(self._write_fd, b"!")

    def take(self) -> Batch:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 4096):
                pass
        with self._lock:
            taken = Batch(self._names, self._gone, self._scan, self._marks)
            self._names, self._gone, self._scan, self._marks = set(), set(), set(), set()
            self._woken = False
        return taken

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self._write_fd)
