"""10. busy neighbours (issue 23 item 1): restores while files change beside the spec or in a watched parent,
content snacks deleted back to back, and the idle cost of an app saving in a watched parent."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from files import create_all, names, write_spec
from harness import Bench, Row, Section, at_most, ms, ratio, times
from probe import Probe, Samples, interleave
from procs import ROOT, cpu_ns, start_floor, threads

NEAR_FLOOR = times(1.3, "<= 1.3x floor")
P99 = at_most(0.002, "<= 2 ms")
NO_TICKS = at_most(0, "0")
BACK_TO_BACK = times(1.5, "<= 1.5x isolated")


def noise(bench: Bench, mode: str, target: Path, interval: float) -> subprocess.Popen[bytes]:
    proc = bench.children.spawn(
        [sys.executable, str(ROOT / "noise.py"), mode, str(target), str(interval)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("the noise maker did not start")
    return proc


def run(bench: Bench) -> Section:
    config = bench.config
    snacks = names(config.snacks)
    figures: dict[str, Any] = {}
    # a file appended every 5 ms beside the spec
    spec, pantry = bench.spec("nearby-spec", snacks)
    bench.started(spec, "inotify", "daemon")
    floor_dir = bench.workdir("nearby-floor")
    create_all(floor_dir / "pantry", snacks)
    start_floor(bench.children, floor_dir / "pantry")
    appender = noise(bench, "append", spec.parent / "busy.log", 0.005)
    probes = {"busy spec directory": (Probe(pantry), snacks), "floor": (Probe(floor_dir / "pantry"), snacks)}
    figures |= {label: s.summary() for label, s in interleave(probes, config.samples, config.rounds, 0.02).items()}
    bench.children.stop(appender)
    # an app saving 10 times a second in a watched parent (the pantry's parent, not the spec's)
    home = bench.workdir("nearby-home")
    parent_spec = bench.workdir("nearby-parent-spec") / "snacks.yaml"
    write_spec(parent_spec, snacks, pantry=str(home / "pantry"))
    daemon = bench.started(parent_spec, "inotify", "daemon")
    saver = noise(bench, "save", home, 0.1)
    figures["parent idle"] = idle_cost(daemon.pid, config.idle)
    bench.children.stop(saver)
    # the same beside a spec: an app saving in ~/.config, a log appended in ~/.config/snackwatch
    spec_home = bench.workdir("nearby-spec-home")
    home_spec = spec_home / ".config" / "snackwatch" / "snacks.yaml"
    home_spec.parent.mkdir(parents=True)
    write_spec(home_spec, snacks, pantry=str(spec_home / "pantry"))
    (home_spec.parent / "busy.log").touch()
    spec_daemon = bench.started(home_spec, "inotify", "daemon")
    makers = [
        noise(bench, "save", home_spec.parent.parent, 0.1),
        noise(bench, "append", home_spec.parent / "busy.log", 0.1),
    ]
    figures["spec parent idle"] = idle_cost(spec_daemon.pid, config.idle)
    for maker in makers:
        bench.children.stop(maker)
    figures["busy parent directory"] = after_saves(Probe(home / "pantry"), home, snacks, config.samples).summary()
    figures["content"] = content_back_to_back(bench, 30 if config.quick else 100)
    return section(figures)


def idle_cost(pid: int, seconds: float) -> dict[str, float]:
    """What the daemon spent over `seconds` while the noise makers run (after 1 s to settle)."""
    time.sleep(1.0)
    before, cpu = threads(pid), cpu_ns(pid)
    time.sleep(seconds)
    after, cpu = threads(pid), cpu_ns(pid) - cpu
    return {
        "ticks": sum(s.ticks for s in after.values()) - sum(s.ticks for s in before.values()),
        "wakeups": sum(s.voluntary for s in after.values()) - sum(s.voluntary for s in before.values()),
        "cpu_ms": cpu / 1e6,
        "seconds": seconds,
    }


def after_saves(probe: Probe, home: Path, snacks: list[str], count: int) -> Samples:
    """Two atomic saves in the pantry's parent 1 ms apart, then a snack deleted 2 ms later (issue 23's case)."""
    samples = Samples()
    for index in range(count):
        for save in range(2):
            temp = home / f".settings.json.{index}-{save}"
            temp.write_text(str(index))
            temp.rename(home / "settings.json")
            time.sleep(0.001)
        time.sleep(0.002)
        probe.delete(snacks[index % len(snacks)])
        samples.extend(wait_back(probe, snacks))
        time.sleep(0.03)
    probe.close()
    return samples


def content_back_to_back(bench: Bench, rounds: int) -> dict[str, dict[str, float]]:
    """Three content snacks deleted 8 ms apart, then the same deleted one at a time (the same-run baseline)."""
    snacks = names(3, "c")
    spec = bench.workdir("nearby-content") / "spec" / "snacks.yaml"
    spec.parent.mkdir()
    write_spec(spec, snacks, content="hello\n")
    bench.started(spec, "inotify", "daemon")
    probe = Probe(spec.parent / "pantry")
    third, isolated = Samples(), Samples()
    for _ in range(rounds):
        for index, name in enumerate(snacks):
            if index:
                time.sleep(0.008)
            probe.delete(name)
        third.extend(wait_back(probe, snacks[-1:]))
        time.sleep(0.1)
        probe.delete(snacks[0])
        isolated.extend(wait_back(probe, snacks[:1]))
        time.sleep(0.1)
    probe.close()
    return {"third": third.summary(), "isolated": isolated.summary()}


def wait_back(probe: Probe, keep: list[str]) -> Samples:
    """Wait until every pending name is back; the latencies of those in `keep`."""
    samples = Samples()
    deadline = time.perf_counter() + 2.0
    while probe.pending and time.perf_counter() < deadline:
        for name, latency, _ in probe.poll(0.05):
            if name in keep:
                samples.latencies.append(latency)
    samples.missed += probe.expire(0.0)
    return samples


def section(figures: dict[str, Any]) -> Section:
    result = Section("10. busy neighbours (issue 23)", data=figures)
    floor = figures["floor"]
    for label in ("busy spec directory", "busy parent directory"):
        stats = figures[label]
        where = "a line appended beside the spec every 5 ms" if "spec" in label else "deleted 2 ms after two saves"
        result.rows.append(
            NEAR_FLOOR.row(
                f"{label} ({where}): p50 (n={stats['count']:.0f}, missed {stats['missed']:.0f})",
                ms(stats["p50"]),
                f"floor {ms(floor['p50'])}",
                figure=stats["p50"],
                base=floor["p50"],
                ratio=ratio(stats["p50"], floor["p50"]),
            )
        )
        for q in ("p95", "p99"):
            goal = P99 if q == "p99" else None
            text = f"{label}: {q}"
            shown, base = ms(stats[q]), f"floor {ms(floor[q])}"
            result.rows.append(
                goal.row(text, shown, base, figure=stats[q])
                if goal
                else Row(text, shown, base, ratio(stats[q], floor[q]))
            )
    for key, what in (
        ("parent idle", "an app saving in a watched parent (the pantry's) 10x/s"),
        ("spec parent idle", "an app saving in the spec's parent 10x/s, a log appended beside the spec 10x/s"),
    ):
        idle = figures.get(key)
        if idle is None:
            continue
        result.rows.append(
            NO_TICKS.row(
                f"{what}, {idle['seconds']:g} s otherwise idle: CPU ticks (wake-ups, CPU time)",
                f"{idle['ticks']} ({idle['wakeups']}, {idle.get('cpu_ms', float('nan')):.1f} ms)",
                figure=idle["ticks"],
            )
        )
    third, isolated = figures["content"]["third"], figures["content"]["isolated"]
    result.rows.append(
        BACK_TO_BACK.row(
            f"3 content snacks deleted 8 ms apart: the third, p50 / max (n={third['count']:.0f})",
            f"{ms(third['p50'])} / {ms(third['max'])}",
            f"one at a time {ms(isolated['p50'])} / {ms(isolated['max'])}",
            figure=third["p50"],
            base=isolated["p50"],
            ratio=ratio(third["p50"], isolated["p50"]),
        )
    )
    return result
