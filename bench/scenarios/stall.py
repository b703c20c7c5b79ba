"""11. status writes (issue 23 item 2): deletions landing when a 1,000-snack status write is due, and single
deletions after a mass restore of the scale spec (100,000 snacks; 20,000 in --quick)."""

from __future__ import annotations

import time
from typing import Any

from files import create_all, delete_all, missing, names
from harness import Bench, Section, at_most, ms, ratio
from probe import Probe, Samples, interleave
from procs import start_floor

P99 = at_most(0.005, "<= 5 ms")
AFTER_RESTORE = at_most(0.005, "p99 <= 5 ms")
STATE_SETTLE = 0.2  # the daemon writes status this long after a change


def run(bench: Bench) -> Section:
    config = bench.config
    figures: dict[str, Any] = {}
    snacks = names(1000)
    spec, pantry = bench.spec("stall-1000", snacks)
    bench.started(spec, "inotify", "daemon")
    floor_dir = bench.workdir("stall-floor")
    create_all(floor_dir / "pantry", snacks[:50])
    start_floor(bench.children, floor_dir / "pantry")
    figures["status due"] = due_hits(Probe(pantry), snacks, 60 if config.quick else 200).summary()
    figures["floor"] = interleave({"floor": (Probe(floor_dir / "pantry"), snacks[:50])}, 100, 1, 0.02)[
        "floor"
    ].summary()
    big = names(config.scale)
    spec, pantry = bench.spec("stall-restore", big)
    bench.started(spec, "inotify", "daemon", timeout=600)
    started = time.perf_counter()
    delete_all(pantry, big)
    while missing(pantry, big) and time.perf_counter() - started < 120:
        time.sleep(0.05)
    figures["mass restore s"] = time.perf_counter() - started
    time.sleep(0.5)  # the status write after the restore
    spread = big[:: max(1, len(big) // config.snacks)][: config.snacks]
    samples = interleave({"after": (Probe(pantry), spread)}, config.scale_samples, 1, config.scale_interval)
    figures["after restore"] = samples["after"].summary()
    figures["snacks"] = config.scale
    return section(figures)


def due_hits(probe: Probe, snacks: list[str], count: int) -> Samples:
    """Delete a snack, then another just as the status write that the first restore scheduled is due."""
    samples = Samples()
    for index in range(count):
        name = snacks[(index * 37) % len(snacks)]
        probe.delete(name)
        samples.extend(wait(probe))
        time.sleep(STATE_SETTLE - 0.002 + (index % 5) * 0.001)  # 198..202 ms after: the write's moment
    probe.close()
    return samples


def wait(probe: Probe) -> Samples:
    samples = Samples()
    deadline = time.perf_counter() + 3.0
    while probe.pending and time.perf_counter() < deadline:
        samples.latencies += [latency for _, latency, _ in probe.poll(0.05)]
    samples.missed += probe.expire(0.0)
    return samples


def section(figures: dict[str, Any]) -> Section:
    result = Section("11. status writes (issue 23)", data=figures)
    floor, due, after = figures["floor"], figures["status due"], figures["after restore"]
    result.rows.append(
        P99.row(
            f"1,000 snacks, each deletion as a status write is due: p50 / p99 / max (n={due['count']:.0f})",
            f"{ms(due['p50'])} / {ms(due['p99'])} / {ms(due['max'])}",
            f"floor {ms(floor['p50'])} / {ms(floor['p99'])}",
            figure=due["p99"],
            ratio=ratio(due["p50"], floor["p50"]),
        )
    )
    result.rows.append(
        AFTER_RESTORE.row(
            f"{figures['snacks']:,} snacks, single deletions after all were deleted and restored "
            f"({figures['mass restore s']:.2f} s): p50 / p99 (n={after['count']:.0f}, missed {after['missed']:.0f})",
            f"{ms(after['p50'])} / {ms(after['p99'])}",
            f"floor {ms(floor['p50'])} / {ms(floor['p99'])}",
            figure=after["p99"],
            ratio=ratio(after["p50"], floor["p50"]),
        )
    )
    return result
