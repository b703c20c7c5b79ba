"""The deletion probe: delete snacks and time each until inotify shows its name again."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import percentile
from rawinotify import APPEARED, IN_ONLYDIR, IN_Q_OVERFLOW, Inotify

FIGHT_GAP = 0.06  # never delete a snack within the daemon's 50 ms fight window after its restore
NextDue = Callable[[float, float], float]  # (deleted at, restored at) -> when to delete that snack again


@dataclass
class Samples:
    """Delete -> reappeared latencies in seconds, and deletions never repaired within the timeout."""

    latencies: list[float] = field(default_factory=list)
    missed: int = 0

    def extend(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.missed += other.missed

    def summary(self) -> dict[str, float]:
        return {f"p{q}": percentile(self.latencies, q) for q in (50, 90, 95, 99)} | {
            "max": max(self.latencies, default=math.nan),
            "count": len(self.latencies),
            "missed": self.missed,
        }


class Probe:
    """Deletes snacks of one pantry and times each until inotify shows its name again (IN_CREATE/IN_MOVED_TO)."""

    def __init__(self, pantry: Path) -> None:
        self.pantry = pantry
        self.inotify = Inotify()
        self.inotify.watch(pantry, APPEARED | IN_ONLYDIR)
        self.dir_fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.pending: dict[str, int] = {}  # name -> perf_counter_ns() just before its unlink/rename
        self.lost: set[str] = set()
        self.overflowed = False

    def delete(self, name: str) -> None:
        self.pending[name] = time.perf_counter_ns()
        os.unlink(name, dir_fd=self.dir_fd)

    def expect(self, name: str, since_ns: int) -> None:
        self.pending[name] = since_ns

    def poll(self, timeout: float) -> list[tuple[str, float, float]]:
        """(name, latency s, reappeared at perf_counter s) for each awaited name that came back."""
        back = []
        for event in self.inotify.read(timeout):
            self.overflowed |= bool(event.mask & IN_Q_OVERFLOW)
            if event.mask & APPEARED and event.name in self.pending:
                started = self.pending.pop(event.name)
                back.append((event.name, (event.at_ns - started) / 1e9, event.at_ns / 1e9))
        return back

    def expire(self, timeout: float) -> int:
        """Give up on names awaited longer than `timeout`; returns how many."""
        limit = time.perf_counter_ns() - int(timeout * 1e9)
        late = [name for name, started in self.pending.items() if started < limit]
        for name in late:
            del self.pending[name]
        self.lost.update(late)
        return len(late)

    def close(self) -> None:
        self.inotify.close()
        os.close(self.dir_fd)


def measure(
    probe: Probe, snacks: Sequence[str], count: int, *, first: Sequence[float], next_due: NextDue, timeout: float
) -> Samples:
    """Delete `count` times, each snack when due, timing each until it is back."""
    due = {name: when for name, when in zip(snacks, first, strict=True) if name not in probe.lost}
    deleted_at: dict[str, float] = {}
    samples = Samples()
    issued = 0
    while probe.pending or (issued < count and due):
        now = time.perf_counter()
        name = min(due, key=due.__getitem__) if due and issued < count else None
        if name is not None and due[name] <= now:
            del due[name]
            deleted_at[name] = now
            probe.delete(name)
            issued += 1
            continue
        wait = min(0.05, due[name] - now) if name is not None else 0.05
        for back, latency, at in probe.poll(max(0.0, wait)):
            samples.latencies.append(latency)
            due[back] = next_due(deleted_at[back], at)
        samples.missed += probe.expire(timeout)
    return samples


def round_robin(snacks: Sequence[str], interval: float) -> tuple[list[float], NextDue]:
    """One deletion every `interval`, cycling over `snacks`; never inside the fight window."""
    start = time.perf_counter() + 0.05
    period = len(snacks) * interval
    return [start + index * interval for index in range(len(snacks))], lambda deleted, restored: max(
        deleted + period, restored + FIGHT_GAP
    )


def interleave(
    probes: Mapping[str, tuple[Probe, Sequence[str]]], total: int, rounds: int, interval: float
) -> dict[str, Samples]:
    """`total` deletions per restorer, in `rounds` alternating blocks so that background noise hits all alike."""
    samples = {label: Samples() for label in probes}
    for _ in range(rounds):
        for label, (probe, targets) in probes.items():
            first, next_due = round_robin(targets, interval)
            block = measure(probe, targets, total // rounds, first=first, next_due=next_due, timeout=2.0)
            samples[label].extend(block)
    for probe, _ in probes.values():
        probe.close()
    return samples
