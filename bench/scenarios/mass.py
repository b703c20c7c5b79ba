"""2. mass delete: every snack deleted at once, against a bare create loop; then with a tiny inotify queue."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from files import create_all, delete_all, missing, names
from harness import Bench, Config, Row, Section, at_most, ms, ratio, times
from probe import Probe
from procs import max_queued_events, queued_events_limit, thread_states, wait_settled
from rawinotify import APPEARED, IN_Q_OVERFLOW

ALL_BACK = times(1.5, "<= 1.5x")
NONE_LOST = at_most(0, "0 lost")


def run(bench: Bench) -> Section:
    config = bench.config
    snacks = names(config.mass)
    spec, pantry = bench.spec("mass", snacks)
    fresh = create_all(pantry, snacks)
    delete_all(pantry, snacks)
    before = create_all(pantry, snacks)  # the situation of a restore: the same names, just deleted
    probe = Probe(pantry)  # before lowering the queue: our own instance keeps the default size
    timeout = max(10.0, 20 * before)
    limit = queued_events_limit()  # below config.mass, the plain run overflows too (a test may have lowered it)
    daemon = bench.started(spec, "inotify", "daemon")
    normal = mass_delete(probe, snacks, daemon.pid, timeout)
    bench.children.stop(daemon.proc)
    overflow = overflow_run(bench, spec, probe, snacks, timeout)
    probe.close()
    delete_all(pantry, snacks)
    after = create_all(pantry, snacks)
    data = {
        "snacks": config.mass,
        "bare_create_s": (before + after) / 2,
        "bare_create_runs_s": [before, after],
        "bare_create_fresh_s": fresh,
        "normal": normal,
        "overflow": overflow,
        "max_queued_events": config.queue,
        "system_max_queued_events": limit,
    }
    return section(config, data)


def mass_delete(probe: Probe, snacks: Sequence[str], pid: int, timeout: float) -> dict[str, float]:
    """Delete every snack "at once" as the daemon sees it: it is SIGSTOPped during the unlinks and the clock
    starts at SIGCONT (the kernel queues the events meanwhile). Seconds until all are back; how many never came.
    The daemon is at rest first: its start's tail (the status write, the owner look after READY: 10,000 lstats)
    is not counted as restoring."""
    settle_s = wait_settled(pid)
    os.kill(pid, signal.SIGSTOP)
    wait_stopped(pid)
    unlinking = time.perf_counter_ns()
    delete_all(probe.pantry, snacks)
    started = last = time.perf_counter_ns()
    os.kill(pid, signal.SIGCONT)
    waiting = set(snacks)
    deadline = time.perf_counter() + timeout
    while waiting and time.perf_counter() < deadline:
        for event in probe.inotify.read(0.05):
            probe.overflowed |= bool(event.mask & IN_Q_OVERFLOW)
            if event.mask & APPEARED and event.name in waiting:
                waiting.discard(event.name)
                last = event.at_ns
        if probe.overflowed:  # our own queue overflowed: look at the disk instead
            waiting = set(missing(probe.pantry, list(waiting)))
            last = time.perf_counter_ns()
    return {
        "delete_s": (started - unlinking) / 1e9,
        "restore_s": (last - started) / 1e9,
        "lost": len(missing(probe.pantry, snacks)),
        "settle_wait_s": settle_s,
    }


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until every thread of `pid` is in state T (stopped by SIGSTOP)."""
    deadline = time.perf_counter() + timeout
    while any(state != "T" for state in thread_states(pid)) and time.perf_counter() < deadline:
        time.sleep(0.001)


def overflow_run(
    bench: Bench, spec: Path, probe: Probe, snacks: Sequence[str], timeout: float
) -> dict[str, Any] | None:
    """The mass delete again, the daemon's inotify queue lowered to `config.queue` events (needs root)."""
    try:
        with max_queued_events(bench.config.queue):
            daemon = bench.started(spec, "inotify", "daemon-overflow")
    except PermissionError:
        return None
    result: dict[str, Any] = {**mass_delete(probe, snacks, daemon.pid, timeout)}
    result["overflow_lines"] = len(daemon.log.events("overflow"))
    bench.children.stop(daemon.proc)
    return result


def section(config: Config, data: dict[str, Any]) -> Section:
    result = Section(f"2. mass delete ({config.mass:,} snacks)", data=data)
    baseline, normal = data["bare_create_s"], data["normal"]
    lowered = data["system_max_queued_events"] < config.mass
    result.rows.append(
        ALL_BACK.row(
            f"all back after deleting {config.mass:,} at once (lost {normal['lost']}"
            + (f"; max_queued_events was {data['system_max_queued_events']}!)" if lowered else ")"),
            ms(normal["restore_s"]),
            f"create loop {ms(baseline)}",
            figure=normal["restore_s"],
            base=baseline,
            ratio=ratio(normal["restore_s"], baseline),
        )
    )
    overflow = data["overflow"]
    if overflow is None:
        result.rows.append(Row(f"lost with max_queued_events={config.queue}", "skipped (needs root)"))
        return result
    result.rows.append(
        NONE_LOST.row(
            f"lost with max_queued_events={config.queue} ({overflow['overflow_lines']} overflow lines)",
            f"{overflow['lost']} lost",
            f"{config.mass:,} deleted",
            figure=overflow["lost"],
        )
    )
    result.rows.append(
        Row(
            f"all back with max_queued_events={config.queue}",
            ms(overflow["restore_s"]),
            f"create loop {ms(baseline)}",
            ratio(overflow["restore_s"], baseline),
        )
    )
    return result
