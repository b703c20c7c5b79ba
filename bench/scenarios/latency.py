"""1. delete -> restored: both watcher backends against a raw-inotify floor and the seed's 5 s loop."""

from __future__ import annotations

import time
from collections.abc import Sequence

from files import create_all, missing, names
from harness import Bench, Config, Row, Section, at_most, ms, ratio, times
from probe import Probe, interleave, measure
from procs import start_floor
from seedloop import start_seed

GOALS = {"p50": times(2.5, "<= 2.5x floor"), "p99": at_most(0.005, "<= 5 ms")}


def run(bench: Bench) -> Section:
    config = bench.config
    snacks = names(config.snacks)
    probes: dict[str, tuple[Probe, Sequence[str]]] = {}
    for label in ("floor", "inotify", "observer"):
        spec, pantry = bench.spec(f"latency-{label}", snacks)
        if label == "floor":
            create_all(pantry, snacks)
            start_floor(bench.children, pantry)
        else:
            bench.started(spec, label, "daemon")
        probes[label] = (Probe(pantry), snacks)
    results = interleave(probes, config.samples, config.rounds, config.interval)
    seed = seed_latency(bench)
    return section(config, {label: samples.summary() for label, samples in results.items()}, seed)


def seed_latency(bench: Bench) -> dict[str, float] | None:
    """The seed's bash loop: 3 snacks deleted at random phases per cycle."""
    if bench.seed_text is None or bench.config.seed_cycles == 0:
        return None
    _, pantry, _ = start_seed(bench, bench.seed_text, "latency-seed")
    snacks = ["Goldfish", "FruitGummies", "StringCheese"]
    deadline = time.perf_counter() + 10
    while missing(pantry, snacks) and time.perf_counter() < deadline:
        time.sleep(0.01)
    probe = Probe(pantry)
    first = [time.perf_counter() + bench.rng.uniform(0, 5) for _ in snacks]
    count = bench.config.seed_cycles * len(snacks)
    samples = measure(
        probe, snacks, count, first=first, next_due=lambda _, back: back + bench.rng.uniform(0, 5), timeout=12.0
    )
    probe.close()
    return samples.summary()


def section(config: Config, figures: dict[str, dict[str, float]], seed: dict[str, float] | None) -> Section:
    result = Section(
        "1. delete -> restored", data={**figures, "seed": seed, "snacks": config.snacks, "interval_s": config.interval}
    )
    floor = figures["floor"]
    for label in ("inotify", "observer"):
        stats = figures[label]
        for q in ("p50", "p95", "p99"):
            measure_text = f"{q} --watcher {label} (n={stats['count']:.0f}, missed {stats['missed']:.0f})"
            shown, base, times_floor = ms(stats[q]), f"floor {ms(floor[q])}", ratio(stats[q], floor[q])
            goal = GOALS.get(q)
            result.rows.append(
                goal.row(measure_text, shown, base, figure=stats[q], base=floor[q], ratio=times_floor)
                if goal
                else Row(measure_text, shown, base, times_floor)
            )
    result.rows.append(
        Row(
            f"floor: raw-inotify restorer p50 / p95 / p99 (n={floor['count']:.0f})",
            " / ".join(ms(floor[q]) for q in ("p50", "p95", "p99")),
        )
    )
    if seed is not None:
        result.rows.append(
            Row(
                f"seed: 5 s bash loop p50 (n={seed['count']:.0f}, max {ms(seed['max'])})",
                ms(seed["p50"]),
                f"snackwatch {ms(figures['inotify']['p50'])}",
                ratio(seed["p50"], figures["inotify"]["p50"]),
                "(seed / snackwatch)",
            )
        )
    else:
        why = "skipped in --quick" if config.quick else "skipped: no seed text (see --seed)"
        result.rows.append(Row("seed: 5 s bash loop", why))
    return result
