"""The watcher's fd in the loop's poll set, and its reads paced while they bring nothing to do (a storm)."""

from __future__ import annotations

import select
from collections.abc import Callable

READ_GAP = 0.02  # in a storm of events that mean nothing, read inotify at most this often: the kernel queues


class WatchReads:
    """Registers the watcher's fd (the inotify backend has one; a fallback to polling changes it) and, after two
    reads in a row that meant nothing to do, leaves it out of the poll for READ_GAP: wake-ups stay bounded at
    1/READ_GAP per second while real deletions are still repaired within milliseconds."""

    def __init__(self, poller: select.poll, fileno: Callable[[], int | None]) -> None:
        self.poller = poller
        self.fileno = fileno
        self.fd: int | None = None
        self.last_idle_read = 0.0
        self.resume_at: float | None = None

    def sync(self) -> None:
        """Poll the watcher's current fd."""
        fd = self.fileno()
        if fd != self.fd:
            if self.fd is not None:
                self.poller.unregister(self.fd)
            if fd is not None:
                self.poller.register(fd, select.POLLIN)
            self.fd = fd
            self.resume_at = None

    def ready(self, fds: set[int]) -> bool:
        return self.fd is not None and self.fd in fds

    def idle_read(self, now: float) -> None:
        """A read that brought nothing to do (noise, or removals of snacks held back by a fight)."""
        if now - self.last_idle_read < READ_GAP and self.fd is not None:
            self.poller.modify(self.fd, 0)
            self.resume_at = now + READ_GAP
        self.last_idle_read = now

    def resume_if_due(self, now: float) -> None:
        if self.resume_at is not None and now >= self.resume_at and self.fd is not None:
            self.poller.modify(self.fd, select.POLLIN)
            self.resume_at = None

    def next_due(self) -> float | None:
        return self.resume_at
