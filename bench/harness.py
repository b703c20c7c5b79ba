"""What every scenario shares: the run's sizes, goals as data, table rows, and the run's temp directory."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from files import write_spec
from procs import Children, Daemon, start_daemon


@dataclass(frozen=True)
class Config:
    """Sizes and durations of one run; `quick_config()` fits in about 40 s."""

    quick: bool = False
    samples: int = 300  # deletions per restorer in measure 1
    rounds: int = 3  # measure 1 and 3 interleave restorers in this many blocks, so drift hits all alike
    snacks: int = 50
    interval: float = 0.02  # one deletion every 20 ms, round-robin: each snack about once a second
    seed_cycles: int = 3  # the seed: 3 snacks deleted at random phases per 5 s cycle
    mass: int = 10_000
    queue: int = 64  # max_queued_events for the overflow run
    scale: int = 100_000
    scale_samples: int = 150
    scale_interval: float = 0.03
    edits: int = 50
    idle: float = 10.0
    storm_snacks: int = 1_000  # issue 10 item 8
    churn: float = 10.0  # seconds of unrelated create/delete churn
    attrib: float = 3.0  # seconds of touch/chmod churn
    enospc: float = 3.0  # seconds of churn beside snacks failing on ENOSPC
    flip: float = 3.0  # seconds of a snack's place flipped between symlink, directory and missing
    storm_interval: float = 0.05  # one real snack deletion every 50 ms during the churn
    junk: int = 1_000_000  # issue 21 item 4: junk names another user put in a 1777 pantry
    junk_storm: float = 10.0  # seconds of that user's rename storm beside the junk
    parent_churn: float = 10.0  # seconds of churn in a 1777 parent of a pantry (issue 21 item 5), per mode
    mount_dirs: tuple[int, ...] = (5_000,)  # issue 13 item 5; 100,000 on request (--mount-dirs): ~50 s more
    mount_samples: int = 5  # per size up to 20,000 directories; 2 above (a restore there can take seconds)
    cli_runs: int = 20  # issue 15 item 1: median of 20 runs each
    ready_runs: int = 10

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            samples=100,
            rounds=2,
            seed_cycles=0,
            scale=20_000,
            scale_samples=60,
            edits=20,
            idle=3.0,
            churn=3.0,
            attrib=2.0,
            enospc=2.0,
            mount_samples=3,
            flip=2.0,
            junk=100_000,
            junk_storm=3.0,
            parent_churn=3.0,
            cli_runs=5,
            ready_runs=3,
        )


@dataclass
class Row:
    """One line of the table: a figure, its same-run baseline, the ratio, the goal and whether it is met."""

    measure: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class Goal:
    """A goal written once: the text the table shows and the check that decides it, side by side."""

    text: str
    check: Callable[[float, float], bool]  # (figure, same-run baseline) -> met

    def row(
        self,
        measure: str,
        value: str,
        baseline: str = "",
        *,
        figure: float,
        base: float = math.nan,
        ratio: float | None = None,
    ) -> Row:
        """A table row judged against this goal."""
        return Row(measure, value, baseline, ratio, self.text, self.check(figure, base))


def sized(row: Row, size: int, goal_size: int) -> Row:
    """A row whose goal is set for `goal_size` (100,000 snacks): at another size (--quick) its figure is shown
    unjudged."""
    if size != goal_size:
        row.met = None
        row.goal = f"{row.goal} at {goal_size:,}"
    return row


def at_most(limit: float, text: str) -> Goal:
    """The figure itself is at most `limit`."""
    return Goal(text, lambda figure, _: figure <= limit)


def times(factor: float, text: str) -> Goal:
    """The figure is at most `factor` times its same-run baseline."""
    return Goal(text, lambda figure, base: figure <= factor * base)


@dataclass
class Section:
    """What one measurement produced: table rows and raw figures for the JSON."""

    title: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class Skipped(Exception):
    """A scenario that cannot run here (not root, no tmpfs mount): its reason becomes the section's one row."""


@dataclass
class Bench:
    """The run's temp directory and children; every scenario creates what it needs below it."""

    root: Path
    children: Children
    config: Config
    seed_text: str | None
    rng: random.Random = field(default_factory=lambda: random.Random(6))

    def workdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True)
        return path

    def spec(self, name: str, snacks: Sequence[str]) -> tuple[Path, Path]:
        """A spec in its own directory with `./pantry` beside it; returns (spec, pantry)."""
        spec = self.workdir(name) / "spec" / "snacks.yaml"
        spec.parent.mkdir()
        write_spec(spec, snacks)
        return spec, spec.parent / "pantry"

    def daemon(self, spec: Path, backend: str, name: str) -> Daemon:
        return start_daemon(self.children, spec, backend, spec.parent.parent / name)

    def started(self, spec: Path, backend: str, name: str, timeout: float = 60.0) -> Daemon:
        """A daemon past its 'start' line, on the backend asked for: figures from a fallback would be mislabelled."""
        daemon = self.daemon(spec, backend, name)
        daemon.wait_event("start", timeout)
        running = daemon.log.events("start")[0].get("backend", backend)
        if running != backend:
            raise RuntimeError(f"snackwatch started on {running}, not {backend} (inotify limits lowered meanwhile?)")
        return daemon


def needs_root(what: str) -> None:
    """Skip the scenario unless the bench runs as root."""
    if os.geteuid() != 0:
        raise Skipped(f"skipped: {what} needs root")


# --- figures as text --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else math.nan


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.2f} ms"


def megabytes(kib: int) -> str:
    return f"{kib * 1024 / 1e6:.1f} MB"


def ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline > 0 and not math.isnan(value) else None
