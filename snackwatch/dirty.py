"""What the watchers marked since the loop last looked, and the pipe that wakes the loop: thread-safe, no work."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from enum import Enum

from loguru import logger

BURST = 64  # more removals than this in one directory at once is a burst (rm -rf dir/*): scan it whole


class Mark(Enum):
    """What a filesystem event says the daemon should look at."""

    SNACK = "snack"  # a name in a snack directory was deleted, moved away or replaced (implies NUDGE)
    NUDGE = "nudge"  # something changed that may unblock failing repairs (permissions, freed space)
    GONE = "gone"  # a watched snack directory was removed, moved or unmounted
    SPEC = "spec"  # something changed in a spec directory (a file written and closed, renamed, removed...)
    SPEC_WRITE = "spec write"  # a file in a spec directory was written to and is still open: not yet whole
    OVERFLOW = "overflow"  # the kernel dropped events: only a full resync is safe
    CHANGED = "changed"  # an enforced name was written or had its attributes changed in place


@dataclass
class Batch:
    """Everything marked since the loop last looked."""

    names: set[tuple[str, str]]  # (directory, name) removed or replaced, outside the directories to scan
    gone: set[str]  # directories removed, moved or replaced
    scan: set[str]  # directories hit by a burst: scan them whole
    marks: set[Mark]
    spec_writes: dict[str, bool] = field(default_factory=dict)  # path -> still being written (the last word)
    changed: set[tuple[str, str]] = field(default_factory=set)  # (directory, name) of enforced entries changed


def split_bursts(names: set[tuple[str, str]]) -> tuple[set[tuple[str, str]], set[str]]:
    """The burst rule, in one place: a directory with more than BURST removed names is scanned whole."""
    counts: dict[str, int] = {}
    for directory, _ in names:
        counts[directory] = counts.get(directory, 0) + 1
    scan = {directory for directory, count in counts.items() if count > BURST}
    return ({(d, n) for d, n in names if d not in scan} if scan else names), scan


class DirtySet:
    """What watchdog's thread marked since the loop last looked, plus a pipe that wakes the loop.

    The observer thread only adds to sets here; all work happens on the loop's thread. A mark made on the loop's
    own thread (the inotify source reads there) writes no pipe: the loop looks at `pending` before it sleeps.
    """

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()  # the thread that builds the parts runs the loop
        self._lock = threading.Lock()
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._names: set[tuple[str, str]] = set()
        self._gone: set[str] = set()
        self._marks: set[Mark] = set()
        self._spec_writes: dict[str, bool] = {}
        self._changed: set[tuple[str, str]] = set()
        self.pending = False  # something was marked since the loop last took a batch

    def mark(self, mark: Mark, directory: str, name: str) -> None:
        try:
            with self._lock:
                if mark is Mark.SNACK:
                    self._names.add((directory, name))
                    self._marks.add(Mark.NUDGE)  # any removal may have freed space: failing repairs retry
                elif mark is Mark.CHANGED:
                    self._changed.add((directory, name))
                elif mark is Mark.GONE:
                    self._gone.add(directory)
                elif mark in (Mark.SPEC, Mark.SPEC_WRITE):
                    self._marks.add(Mark.SPEC)
                    if name:
                        self._spec_writes[os.path.join(directory, name)] = mark is Mark.SPEC_WRITE
                else:
                    self._marks.add(mark)
                if self.pending:
                    return
                self.pending = True
            if threading.get_ident() != self.loop_thread:
                self.wake()
        except Exception:  # never let anything escape into watchdog's thread
            logger.exception("could not record a filesystem event")

    def mark_snacks(self, names: set[tuple[str, str]]) -> None:
        """A batch of removed snack names (read on the loop's own thread); the burst rule is take()'s."""
        with self._lock:
            self._names |= names
            self._marks.add(Mark.NUDGE)
            if self.pending:
                return
            self.pending = True
        if threading.get_ident() != self.loop_thread:
            self.wake()

    def wake(self) -> None:
        """Wake the loop (safe from a signal handler: no lock)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe means the loop is awake anyway
            os.write(self._write_fd, b"!")

    def take(self, *, drain: bool = True) -> Batch:
        """Everything marked so far; `drain`: the pipe was readable (else there is nothing in it to read)."""
        if drain:
            with contextlib.suppress(BlockingIOError):
                os.read(self.read_fd, 4096)  # one read: a wake-up writes 1 byte, a full pipe is ~64 KiB of them
        with self._lock:
            names, gone, marks, writes = self._names, self._gone, self._marks, self._spec_writes
            self._names, self._gone, self._marks, self._spec_writes = set(), set(), set(), {}
            changed, self._changed = self._changed, set()
            self.pending = False
        names, scan = split_bursts(names)
        return Batch(names, gone, scan, marks, writes, changed)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self._write_fd)
