"""3. scale: cold and warm start of 100,000 snacks, RSS, and single-delete latency against 3 snacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from files import create_all, delete_all, missing, names
from harness import Bench, Config, Row, Section, at_most, megabytes, ms, ratio, times
from probe import Probe, interleave
from procs import rss_kib

COLD_START = times(1.5, "<= 1.5x")
WARM_START = at_most(2.0, "<= 2 s")
DELETE_P50 = times(1.5, "<= 1.5x")
DELETE_P99 = at_most(0.005, "<= 5 ms (as in 1)")


def cold_start(bench: Bench, spec: Path, pantry: Path, snacks: Sequence[str]) -> dict[str, Any]:
    """Process start to converged with no file present, between two bare create loops, all in the same directory.

    ext4's inode allocator is much slower right after mass deletions (recently_deleted() scans), so
    every timed creation runs in the same state: the pantry emptied just before.
    """
    fresh = create_all(pantry, snacks)
    delete_all(pantry, snacks)
    before = create_all(pantry, snacks)
    delete_all(pantry, snacks)
    cold = bench.daemon(spec, "inotify", "daemon-cold")
    seconds = cold.wait_event("start", 600) - cold.started_at
    rss = rss_kib(cold.pid)
    bench.children.stop(cold.proc)
    lost = len(missing(pantry, snacks))
    delete_all(pantry, snacks)
    after = create_all(pantry, snacks)
    return {
        "bare_create_s": (before + after) / 2,
        "bare_create_runs_s": [before, after],
        "bare_create_fresh_s": fresh,
        "cold_start_s": seconds,
        "cold_missing": lost,
        "cold_rss_kib": rss,
    }


def run(bench: Bench) -> Section:
    config = bench.config
    snacks = names(config.scale)
    spec, pantry = bench.spec("scale", snacks)
    data = {"snacks": config.scale, **cold_start(bench, spec, pantry, snacks)}
    warm = bench.daemon(spec, "inotify", "daemon-warm")
    data["warm_start_s"] = warm.wait_event("start", 600) - warm.started_at
    small_spec, small_pantry = bench.spec("scale-small", snacks[:3])
    small = bench.daemon(small_spec, "inotify", "daemon")
    data["small_start_s"] = small.wait_event("start", 60) - small.started_at
    data["rss_kib"] = {"big": rss_kib(warm.pid), "small": rss_kib(small.pid)}
    spread = snacks[:: max(1, len(snacks) // config.snacks)][: config.snacks]
    probes = {"big": (Probe(pantry), spread), "small": (Probe(small_pantry), snacks[:3])}
    samples = interleave(probes, config.scale_samples, config.rounds, config.scale_interval)
    data["latency"] = {label: value.summary() for label, value in samples.items()}
    return section(config, data)


def section(config: Config, data: dict[str, Any]) -> Section:
    result = Section(f"3. scale ({config.scale:,} snacks)", data=data)
    bare, cold, warm = data["bare_create_s"], data["cold_start_s"], data["warm_start_s"]
    result.rows.append(
        COLD_START.row(
            f"cold start to converged (files absent; {data['cold_missing']} missing after)",
            ms(cold),
            f"create loop, same dir {ms(bare)}",
            figure=cold,
            base=bare,
            ratio=ratio(cold, bare),
        )
    )
    result.rows.append(
        WARM_START.row(
            "warm start to 'running' line (files present)",
            ms(warm),
            f"3-snack start {ms(data['small_start_s'])}",
            figure=warm,
            ratio=ratio(warm, data["small_start_s"]),
        )
    )
    rss = data["rss_kib"]
    result.rows.append(
        Row(
            f"RSS (VmRSS) after warm start (after cold start: {megabytes(data['cold_rss_kib'])})",
            megabytes(rss["big"]),
            f"3 snacks {megabytes(rss['small'])}",
            ratio(rss["big"], rss["small"]),
        )
    )
    big, small = data["latency"]["big"], data["latency"]["small"]
    result.rows.append(
        DELETE_P50.row(
            f"single delete p50 (n={big['count']:.0f}, missed {big['missed']:.0f})",
            ms(big["p50"]),
            f"3 snacks {ms(small['p50'])}",
            figure=big["p50"],
            base=small["p50"],
            ratio=ratio(big["p50"], small["p50"]),
        )
    )
    result.rows.append(
        DELETE_P99.row(
            "single delete p99",
            ms(big["p99"]),
            f"3 snacks {ms(small['p99'])}",
            figure=big["p99"],
            ratio=ratio(big["p99"], small["p99"]),
        )
    )
    return result
