"""4. spec edit -> applied: an atomic save adding one snack, against settle time + parse + create in-process."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from files import CREATE_FLAGS, names, spec_text
from harness import Bench, Row, Section, at_most, ms, percentile, ratio
from probe import Probe, Samples

from snackwatch.spec import parse_spec

# The daemon's quiet time before it reads a saved spec, from its home; if it moves again this import fails and
# so does this scenario, loudly (no fallback constant). The second home is for `--src` trees from before issue 11.
try:
    from snackwatch.reload import SPEC_SETTLE
except ModuleNotFoundError:
    from snackwatch.daemon import SPEC_SETTLE

APPLIED_P99 = at_most(0.05, "<= 50 ms")


def run(bench: Bench) -> Section:
    config = bench.config
    base = ["Goldfish", "FruitGummies", "StringCheese"]
    spec, pantry = bench.spec("edit", base)
    bench.started(spec, "inotify", "daemon")
    probe = Probe(pantry)
    samples, work = Samples(), []
    added = names(config.edits, "added-")
    for index, name in enumerate(added):
        snacks = base + added[: index + 1]
        work.append(in_process_apply(bench.root / "edit" / "scratch", spec, snacks, name))
        temp = spec.with_name(f".{spec.name}.bench-tmp")
        temp.write_text(spec_text(snacks))
        probe.expect(name, time.perf_counter_ns())
        os.rename(temp, spec)
        deadline = time.perf_counter() + 2.0
        while probe.pending and time.perf_counter() < deadline:
            samples.latencies += [latency for _, latency, _ in probe.poll(0.05)]
        samples.missed += probe.expire(0.0)
        time.sleep(0.03)
    probe.close()
    floor = SPEC_SETTLE + percentile(work, 50)
    stats = samples.summary()
    section = Section(
        "4. spec edit -> applied",
        data={**stats, "in_process_apply_p50_s": percentile(work, 50), "spec_settle_s": SPEC_SETTLE},
    )
    for q in ("p50", "p99"):
        measure = f"{q} (n={stats['count']:.0f}, missed {stats['missed']:.0f})"
        shown, baseline, times_floor = ms(stats[q]), f"settle + parse + create {ms(floor)}", ratio(stats[q], floor)
        section.rows.append(
            APPLIED_P99.row(measure, shown, baseline, figure=stats[q], ratio=times_floor)
            if q == "p99"
            else Row(measure, shown, baseline, times_floor)
        )
    return section


def in_process_apply(scratch: Path, spec: Path, snacks: Sequence[str], name: str) -> float:
    """What the daemon must do at least for an edit: parse the new spec and create the new file."""
    scratch.mkdir(exist_ok=True)
    data = spec_text(snacks).encode()
    started = time.perf_counter()
    parse_spec(data, spec)
    os.close(os.open(scratch / name, CREATE_FLAGS, 0o666))
    return time.perf_counter() - started
