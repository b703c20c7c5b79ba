"""The storm guard: unrelated removals counted per watch, a storm muted and scanned on a schedule (pure, clock in)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

STORM_NOISE = 20_000  # unrelated removals in one directory within a second that make it a storm
STORM_SCAN = 0.02  # during a storm, the directory is scanned this often instead of heard event by event
STORM_MUTE = 1.0  # ...for this long, then heard again (and muted again if the storm goes on)
STORM_TELL = 60.0  # a storm in one directory is logged at most this often


@dataclass(frozen=True)
class StormPolicy:
    """When noise becomes a storm, and what a storm costs: a scan every `scan`, for `mute` seconds."""

    noise: int = STORM_NOISE
    scan: float = STORM_SCAN
    mute: float = STORM_MUTE
    tell: float = STORM_TELL


@dataclass
class StormGuard:
    """Per watch (any key): noise in the current second, and the storms in force: (hear again at, scan at)."""

    policy: StormPolicy = StormPolicy()
    noise: dict[int, int] = field(default_factory=dict)
    noise_since: float | None = None
    muted: dict[int, tuple[float, float]] = field(default_factory=dict)
    told: dict[str, float] = field(default_factory=dict)  # directory -> when its last storm was logged

    def heard(self, key: int, weight: int = 1) -> None:
        """One unrelated event (the read loop's hot path: a dict increment); `weight`: how many it counts for (a
        parent's, which nothing relevant is lost by muting, weighs more: its storm is muted sooner)."""
        self.noise[key] = self.noise.get(key, 0) + weight

    def storms(self, now: float) -> list[int]:
        """After a read with noise: the keys that just became storms (the caller mutes them in the kernel).
        Noise is counted per second: a count older than that starts again."""
        if self.noise_since is None:
            self.noise_since = now
        if now - self.noise_since >= 1.0:
            self.noise.clear()
            self.noise_since = now
            return []
        limit = self.policy.noise
        stormy = [key for key, count in self.noise.items() if count > limit and key not in self.muted]
        for key in stormy:
            self.muted[key] = (now + self.policy.mute, now)
        return stormy

    def count(self, key: int) -> int:
        return self.noise.get(key, 0)

    def tell(self, directory: str, now: float) -> bool:
        """Whether a storm in `directory` is worth a log line now (at most one per `tell` seconds)."""
        if now - self.told.get(directory, -self.policy.tell) < self.policy.tell:
            return False
        self.told[directory] = now
        return True

    def scans(self, now: float, live: Container[int]) -> tuple[list[int], list[int]]:
        """Keys due for a scan now, and those whose storm is over (heard again: one last scan covers the switch)."""
        due, over = [], []
        for key, (until, scan_at) in list(self.muted.items()):
            if key not in live:  # the watch went away meanwhile
                del self.muted[key]
            elif now >= until:
                del self.muted[key]
                over.append(key)
                due.append(key)
            elif now >= scan_at:
                self.muted[key] = (until, now + self.policy.scan)
                due.append(key)
        return due, over

    def next_due(self) -> float | None:
        return min((min(until, scan_at) for until, scan_at in self.muted.values()), default=None)
