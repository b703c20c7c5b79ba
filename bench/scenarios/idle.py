"""5. idle: CPU ticks, wakeups, log lines and RSS of an idle daemon, beside the floor and the seed loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from files import create_all
from harness import Bench, Config, Row, Section, at_most, megabytes, ratio
from procs import LogFile, ThreadStat, rss_kib, start_floor, threads
from seedloop import start_seed

NO_TICKS = at_most(0, "0")
NO_LINES = at_most(0, "0")
RSS = at_most(40_000_000, "<= 40 MB")


@dataclass
class Idler:
    """A process watched while idle: its pid and a way to count its log lines."""

    label: str
    pid: int
    log_lines: Callable[[], int]
    before: dict[int, ThreadStat] = field(default_factory=dict)
    lines_before: int = 0


def run(bench: Bench) -> Section:
    config = bench.config
    base = ["Goldfish", "FruitGummies", "StringCheese"]
    idlers = []
    for backend in ("inotify", "observer"):
        spec, _ = bench.spec(f"idle-{backend}", base)
        daemon = bench.started(spec, backend, "daemon")
        idlers.append(Idler(backend, daemon.pid, line_counter(daemon.log)))
    floor_dir = bench.workdir("idle-floor")
    create_all(floor_dir / "pantry", base)
    floor = start_floor(bench.children, floor_dir / "pantry")
    idlers.append(Idler("floor", floor.pid, lambda: 0))
    if bench.seed_text is not None:
        seed, _, log = start_seed(bench, bench.seed_text, "idle-seed")
        idlers.append(Idler("seed", seed.pid, lambda: len(log.read_bytes().splitlines()) if log.exists() else 0))
    time.sleep(1.0)  # let start-up work finish
    for idler in idlers:
        idler.before, idler.lines_before = threads(idler.pid), idler.log_lines()
    time.sleep(config.idle)
    return section(config, {idler.label: figures(idler) for idler in idlers})


def line_counter(log: LogFile) -> Callable[[], int]:
    return lambda: len(log.refresh())


def figures(idler: Idler) -> dict[str, Any]:
    after = threads(idler.pid)
    per_thread = []
    for tid, stat in sorted(after.items()):
        old = idler.before.get(tid)
        per_thread.append(
            {
                "tid": tid,
                "comm": stat.comm,
                "role": "main" if tid == idler.pid else "thread",
                "blocked_in": stat.wchan,
                "ticks": stat.ticks + stat.child_ticks - (old.ticks + old.child_ticks if old else 0),
                "voluntary": stat.voluntary - (old.voluntary if old else 0),
                "involuntary": stat.involuntary - (old.involuntary if old else 0),
            }
        )
    return {
        "threads": len(after),
        "ticks": sum(entry["ticks"] for entry in per_thread),
        "voluntary": sum(entry["voluntary"] for entry in per_thread),
        "log_lines": idler.log_lines() - idler.lines_before,
        "rss_kib": rss_kib(idler.pid),
        "per_thread": per_thread,
    }


def section(config: Config, figures: dict[str, dict[str, Any]]) -> Section:
    result = Section(f"5. idle ({config.idle:g} s, 3 snacks)", data={"seconds": config.idle, **figures})
    floor, seed = figures["floor"], figures.get("seed")
    for label in ("inotify", "observer"):
        own = figures[label]
        woken = ", ".join(
            f"{entry['role']} {entry['tid']} '{entry['comm']}' in {entry['blocked_in']}: {entry['voluntary']}"
            for entry in own["per_thread"]
        )
        result.rows.append(
            NO_TICKS.row(
                f"--watcher {label}: CPU ticks (utime+stime, all threads)",
                str(own["ticks"]),
                f"floor {floor['ticks']}" + (f", seed {seed['ticks']}" if seed else ""),
                figure=own["ticks"],
            )
        )
        result.rows.append(
            Row(
                f"--watcher {label}: wakeups (voluntary ctxt switches, {own['threads']} threads)",
                str(own["voluntary"]),
                f"floor {floor['voluntary']}",
                None,
                "near 0",
            )
        )
        result.rows.append(Row(f"--watcher {label}: wakeups per thread", woken))
        result.rows.append(
            NO_LINES.row(
                f"--watcher {label}: log lines",
                str(own["log_lines"]),
                f"seed {seed['log_lines']}" if seed else "",
                figure=own["log_lines"],
            )
        )
        result.rows.append(
            RSS.row(
                f"--watcher {label}: RSS",
                megabytes(own["rss_kib"]),
                f"floor {megabytes(floor['rss_kib'])}",
                figure=own["rss_kib"] * 1024,
                ratio=ratio(own["rss_kib"], floor["rss_kib"]),
            )
        )
    return result
