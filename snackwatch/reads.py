"""The watcher's fd in the loop's poll set, and its reads paced only in a real storm of events that mean nothing."""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass

READ_GAP = 0.02  # in a storm of events that mean nothing, read inotify at most this often: the kernel queues
PACE_NOISE = 2_000  # events that meant nothing within a second that make a storm worth pacing (thousands/s)


@dataclass(frozen=True)
class PacePolicy:
    """Above `noise` events a second that meant nothing, the fd is polled at most every `gap` seconds."""

    noise: int = PACE_NOISE
    gap: float = READ_GAP


class WatchReads:
    """Registers the watcher's fd (the inotify backend has one; a fallback to polling changes it) and paces its
    reads only in a storm: past `noise` events that meant nothing within a second (and for the next second while
    it lasts), the fd is left out of the poll for `gap` after each read. Below that rate nothing is ever held
    back: a relevant event is read the moment it is queued, however often unrelated ones arrive."""

    def __init__(
        self, poller: select.poll, fileno: Callable[[], int | None], policy: PacePolicy = PacePolicy()
    ) -> None:
        self.poller = poller
        self.fileno = fileno
        self.policy = policy
        self.fd: int | None = None
        self.resume_at: float | None = None
        self.window_start: float | None = None  # the current second of noise counting
        self.window_noise = 0
        self.storming = False  # the last whole second was over the limit: keep pacing while noise goes on
        self.noise_seen = 0  # the source's running count of events that meant nothing, as last read

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
            self.noise_seen = 0

    def ready(self, fds: set[int]) -> bool:
        return self.fd is not None and self.fd in fds

    def after_read(self, now: float, noise_total: int) -> None:
        """After a read: `noise_total` is the source's running count of events that meant nothing."""
        noise, self.noise_seen = noise_total - self.noise_seen, noise_total
        if noise <= 0:
            return
        if self.window_start is None or now - self.window_start >= 1.0:
            recent = self.window_start is not None and now - self.window_start < 2.0
            self.storming = recent and self.window_noise > self.policy.noise
            self.window_start, self.window_noise = now, 0
        self.window_noise += noise
        if (self.storming or self.window_noise > self.policy.noise) and self.fd is not None:
            self.poller.modify(self.fd, 0)
            self.resume_at = now + self.policy.gap

    def pacing(self) -> bool:
        """Whether reads are paced now (a storm of noise)."""
        return self.resume_at is not None

    def resume_if_due(self, now: float) -> None:
        if self.resume_at is not None and now >= self.resume_at and self.fd is not None:
            self.poller.modify(self.fd, select.POLLIN)
            self.resume_at = None

    def next_due(self) -> float | None:
        return self.resume_at
