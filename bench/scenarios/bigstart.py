"""15. start-up of 100,000 snacks, flat and nested (1,000 directories x 100), warm and cold, with RSS (issue 23
item 5), against a 3-snack start, a CSafeLoader parse of the same YAML and a bare create loop, in the same run."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from files import create_all, delete_all, remove_tree
from harness import Bench, Section, at_most, megabytes, ms, sized
from procs import rss_kib

WARM = at_most(0.5, "<= 0.5 s beyond a 3-snack start")
COLD = at_most(1.2, "<= 1.2 s")
RSS = at_most(60_000 * 1000 / 1024, "<= 60 MB")  # in KiB
PER_DIRECTORY = 100
GOAL_SNACKS = 100_000  # the goals are set for this size; a --quick run shows its figures unjudged


def layout(count: int, nested: bool) -> list[str]:
    if not nested:
        return [f"s{index:06d}" for index in range(count)]
    return [f"d{index // PER_DIRECTORY:04d}/s{index:06d}" for index in range(count)]


def spec_text(snacks: Sequence[str]) -> str:
    return "version: 1\npantry: ./pantry\nsnacks:\n" + "".join(f"  - {name}\n" for name in snacks)


def create_nested(pantry: Path, snacks: Sequence[str]) -> float:
    """The bare create loop over every directory (made first); seconds of the creates."""
    by_directory: dict[str, list[str]] = {}
    for name in snacks:
        directory, _, base = name.rpartition("/")
        by_directory.setdefault(directory, []).append(base)
    return sum(create_all(pantry / directory, files) for directory, files in by_directory.items())


def clear(pantry: Path, snacks: Sequence[str], nested: bool) -> None:
    if nested:
        remove_tree(pantry)
        pantry.mkdir()
    else:
        delete_all(pantry, snacks)


def started(bench: Bench, spec: Path, name: str) -> tuple[float, int]:
    """Spawn to the 'start' line, and VmRSS then."""
    daemon = bench.daemon(spec, "inotify", name)
    seconds = daemon.wait_event("start", 600) - daemon.started_at
    rss = rss_kib(daemon.pid)
    bench.children.stop(daemon.proc)
    return seconds, rss


def one_layout(bench: Bench, count: int, nested: bool, small: float) -> dict[str, Any]:
    label = "nested" if nested else "flat"
    snacks = layout(count, nested)
    spec = bench.workdir(f"bigstart-{label}") / "spec" / "snacks.yaml"
    spec.parent.mkdir()
    pantry = spec.parent / "pantry"
    pantry.mkdir()
    text = spec_text(snacks)
    spec.write_text(text)
    began = time.perf_counter()
    yaml.load(text, Loader=yaml.CSafeLoader)
    parse = time.perf_counter() - began
    create = create_nested(pantry, snacks) if nested else create_all(pantry, snacks)
    warm, warm_rss = started(bench, spec, f"daemon-warm-{label}")
    clear(pantry, snacks, nested)
    cold, cold_rss = started(bench, spec, f"daemon-cold-{label}")
    os.sync()
    return {
        "parse_s": parse,
        "create_s": create,
        "warm_s": warm,
        "warm_rss_kib": warm_rss,
        "cold_s": cold,
        "cold_rss_kib": cold_rss,
        "small_s": small,
    }


def run(bench: Bench) -> Section:
    count = bench.config.scale
    small_spec = bench.workdir("bigstart-small") / "spec" / "snacks.yaml"
    small_spec.parent.mkdir()
    small_spec.write_text(spec_text(["Goldfish", "FruitGummies", "StringCheese"]))
    small, small_rss = started(bench, small_spec, "daemon-small")
    data: dict[str, Any] = {"snacks": count, "small_s": small, "small_rss_kib": small_rss}
    for nested in (False, True):
        data["nested" if nested else "flat"] = one_layout(bench, count, nested, small)
    return section(count, data)


def section(count: int, data: dict[str, Any]) -> Section:
    result = Section(f"15. start-up, {count:,} snacks (spawn to the 'start' line)", data=data)
    small = data["small_s"]
    for label in ("flat", "nested"):
        figures = data[label]
        shape = "flat" if label == "flat" else f"nested, {count // PER_DIRECTORY:,} directories x {PER_DIRECTORY}"
        warm, cold, create, rss = figures["warm_s"], figures["cold_s"], figures["create_s"], figures["warm_rss_kib"]
        rows = [
            WARM.row(
                f"{shape}: warm start {ms(warm)}, beyond a 3-snack start",
                ms(warm - small),
                f"3-snack start {ms(small)}; CSafeLoader parse {ms(figures['parse_s'])}",
                figure=warm - small,
            ),
            COLD.row(
                f"{shape}: cold start (files absent)",
                ms(cold),
                f"create loop {ms(create)}",
                figure=cold,
                ratio=cold / create if create else None,
            ),
            RSS.row(
                f"{shape}: RSS after warm start (after cold: {megabytes(figures['cold_rss_kib'])})",
                megabytes(rss),
                f"3 snacks {megabytes(data['small_rss_kib'])}",
                figure=rss,
            ),
        ]
        result.rows += [sized(row, count, GOAL_SNACKS) for row in rows]
    return result
