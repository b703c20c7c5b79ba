"""7. mount (issue 13 item 5): a snack deleted right after an unrelated mount and unmount, at 5,000 and 100,000
snack directories, against the same delete with no mount."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from files import names
from harness import Bench, Config, Section, at_most, ms, needs_root, ratio
from probe import Probe, Samples
from procs import cpu_ticks

AFTER_MOUNT = at_most(0.005, "<= 5 ms (as in 1)")
SNACK = "snack"
BIG = 20_000  # above this many directories, 2 samples each way: a restore after a mount may take seconds


def run(bench: Bench) -> Section:
    needs_root("mounting a tmpfs")
    config = bench.config
    sizes = {count: config.mount_samples if count <= BIG else 2 for count in config.mount_dirs}
    return section(config, {str(count): directories(bench, count, samples) for count, samples in sizes.items()})


def directories(bench: Bench, count: int, samples: int) -> dict[str, Any]:
    """One snack in each of `count` directories; `samples` restores timed without, and right after a mount + umount."""
    folders = names(count, "d")
    spec, pantry = bench.spec(f"mount-{count}", [f"{folder}/{SNACK}" for folder in folders])
    daemon = bench.daemon(spec, "inotify", "daemon")
    start_s = daemon.wait_event("start", 600) - daemon.started_at
    elsewhere = bench.workdir(f"mount-{count}-elsewhere")
    picks = folders[:: max(1, count // (2 * samples))][: 2 * samples]
    quiet(daemon.pid)
    plain, mounted, mounting = Samples(), Samples(), []
    for folder in picks[:samples]:
        record(plain, restore(pantry / folder))
        quiet(daemon.pid)
    for folder in picks[samples:]:
        started = time.perf_counter()
        mount_and_unmount(elsewhere)
        mounting.append(time.perf_counter() - started)
        record(mounted, restore(pantry / folder))
        quiet(daemon.pid)
    bench.children.stop(daemon.proc)
    return {
        "directories": count,
        "start_s": start_s,
        "no_mount": plain.summary(),
        "after_mount": mounted.summary(),
        "mount_umount_s": mounting,
    }


def mount_and_unmount(target: Path) -> None:
    """A tmpfs mounted on `target` and unmounted again: two changes of the mount table, unrelated to any snack."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "snackwatch-bench", str(target)], check=True)
    subprocess.run(["umount", str(target)], check=True)


def restore(folder: Path, timeout: float = 30.0) -> float | None:
    """Delete the snack in `folder`; seconds until it is back, None if not within `timeout`."""
    probe = Probe(folder)
    try:
        probe.delete(SNACK)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for _, latency, _ in probe.poll(0.05):
                return latency
        return None
    finally:
        probe.close()


def record(samples: Samples, latency: float | None) -> None:
    if latency is None:
        samples.missed += 1
    else:
        samples.latencies.append(latency)


def quiet(pid: int, timeout: float = 60.0) -> None:
    """Until the daemon used no CPU for 0.1 s (the work a mount or a restore caused is done)."""
    deadline = time.perf_counter() + timeout
    ticks = cpu_ticks(pid)
    while time.perf_counter() < deadline:
        time.sleep(0.1)
        now = cpu_ticks(pid)
        if now == ticks:
            return
        ticks = now


def section(config: Config, data: dict[str, dict[str, Any]]) -> Section:
    result = Section("7. restore right after an unrelated mount + umount", data=data)
    for figures in data.values():
        plain, mounted = figures["no_mount"], figures["after_mount"]
        result.rows.append(
            AFTER_MOUNT.row(
                f"{figures['directories']:,} snack directories: p50 / max (n={mounted['count']:.0f}, "
                f"missed {mounted['missed']:.0f}; start {ms(figures['start_s'])})",
                f"{ms(mounted['p50'])} / {ms(mounted['max'])}",
                f"no mount {ms(plain['p50'])} / {ms(plain['max'])}",
                figure=mounted["p50"] if mounted["missed"] == 0 else float("inf"),
                ratio=ratio(mounted["p50"], plain["p50"]),
            )
        )
    return result
