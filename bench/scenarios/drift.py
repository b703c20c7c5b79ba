"""9. drift -> put back: an enforced file chmod'ed, and one rewritten in place, timed until the daemon put it back,
against delete -> restored on the same daemon in the same run (issue 20: within 1.5x)."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from files import names
from harness import Bench, Row, Section, ms, ratio, times
from probe import FIGHT_GAP, Samples
from rawinotify import APPEARED, IN_ONLYDIR, Inotify

from scenarios.storm import (
    CPU,
    PYTHON,
    RESTORE_P99,
    CpuWindow,
    attacker_report,
    attacker_text,
    start_attacker,
    timed_deletions,
)

IN_ATTRIB = 0x00000004
DECLARED = b"x=1\n"
MODE = 0o600
GOAL = times(1.5, "<= 1.5x delete -> restored")
TIMEOUT = 2.0


def spec_text(snacks: list[str]) -> str:
    content = json.dumps(DECLARED.decode())
    entries = "".join(
        f"  - name: {name}\n    content: {content}\n    mode: '0600'\n    enforce: [content, mode]\n" for name in snacks
    )
    return f"version: 1\npantry: ./pantry\nsnacks:\n{entries}"


class DriftProbe:
    """Changes one enforced file at a time and times it until the daemon's put-back shows in inotify."""

    def __init__(self, pantry: Path) -> None:
        self.inotify = Inotify()
        self.inotify.watch(pantry, APPEARED | IN_ATTRIB | IN_ONLYDIR)
        self.dir_fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def delete(self, name: str) -> None:
        os.unlink(name, dir_fd=self.dir_fd)

    def chmod(self, name: str) -> None:
        os.chmod(name, 0o644, dir_fd=self.dir_fd)

    def rewrite(self, name: str) -> None:
        """In place, as nano saves: truncate and write (never a new file)."""
        fd = os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)
        try:
            os.write(fd, b"y=22\n")
        finally:
            os.close(fd)

    def in_line(self, name: str) -> bool:
        """The file is the declared one again: its mode, and its bytes."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return False
        try:
            return stat.S_IMODE(os.fstat(fd).st_mode) == MODE and os.read(fd, 64) == DECLARED
        finally:
            os.close(fd)

    def timed(self, name: str, change: Callable[[str], None]) -> float:
        """Seconds from the change until an event on `name` finds it in line (nan: not within TIMEOUT)."""
        self.inotify.read(0)  # drop what came before
        started = time.perf_counter_ns()
        change(name)
        deadline = time.perf_counter() + TIMEOUT
        while time.perf_counter() < deadline:
            for event in self.inotify.read(0.05):
                if event.name == name and self.in_line(name):
                    return (event.at_ns - started) / 1e9
        return math.nan

    def close(self) -> None:
        self.inotify.close()
        os.close(self.dir_fd)


def run(bench: Bench) -> Section:
    config = bench.config
    snacks = names(config.snacks, "d")
    work = bench.workdir("drift")
    spec = work / "spec" / "snacks.yaml"
    spec.parent.mkdir()
    spec.write_text(spec_text(snacks))
    pantry = spec.parent / "pantry"
    bench.started(spec, "inotify", "daemon")
    probe = DriftProbe(pantry)
    changes = {"delete": probe.delete, "chmod": probe.chmod, "rewrite": probe.rewrite}
    samples = {label: Samples() for label in changes}
    count = max(30, config.samples // 3)
    for index in range(count):  # interleaved: the three kinds of change alike hit by background noise
        for label, change in changes.items():
            name = snacks[index % len(snacks)]
            latency = probe.timed(name, change)
            if math.isnan(latency):
                samples[label].missed += 1
            else:
                samples[label].latencies.append(latency)
            time.sleep(FIGHT_GAP)  # a change right after a put-back would be a flap: humans are slower
    probe.close()
    bench.children.stop_all()
    figures = {label: found.summary() for label, found in samples.items()}
    return section(figures, len(snacks), attrib_storm(bench))


def attrib_storm(bench: Bench) -> dict[str, Any] | None:
    """The touch/chmod storm of measure 6 on unrelated names, in a pantry that holds an enforced file: its
    directory hears IN_ATTRIB and IN_CLOSE_WRITE now. None where the storm cannot run (not root, no setpriv)."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.access(PYTHON, os.X_OK):
        return None
    bench.root.chmod(0o755)  # the attacker must reach the pantry below it
    snacks = names(bench.config.storm_snacks)
    spec = bench.workdir("drift-storm") / "spec" / "snacks.yaml"
    spec.parent.mkdir()
    spec.write_text(spec_text(["enforced.conf"]) + "".join(f"  - {name}\n" for name in snacks))
    pantry = spec.parent / "pantry"
    pantry.mkdir()
    pantry.chmod(0o1777)
    daemon = bench.started(spec, "inotify", "daemon")
    attacker = start_attacker(bench, ["attrib", str(pantry), str(bench.config.attrib)])
    window = CpuWindow(daemon.pid)
    samples = timed_deletions(pantry, snacks, attacker, bench.config.storm_interval)
    share, elapsed = window.share()
    return {
        "seconds": elapsed,
        "daemon_cpu": share,
        "attacker": attacker_report(attacker),
        "restore": samples.summary(),
        "fell_back": daemon.fell_back(),
    }


def section(figures: dict[str, dict[str, float]], snacks: int, storm: dict[str, Any] | None) -> Section:
    result = Section("9. drift -> put back", data={**figures, "snacks": snacks, "attrib_storm": storm})
    restored = figures["delete"]
    result.rows.append(
        Row(
            f"delete -> restored p50 / p99 (n={restored['count']:.0f}, missed {restored['missed']:.0f})",
            f"{ms(restored['p50'])} / {ms(restored['p99'])}",
        )
    )
    for label, what in (("chmod", "chmod -> mode back"), ("rewrite", "rewrite in place -> bytes back")):
        stats = figures[label]
        for q in ("p50", "p99"):
            result.rows.append(
                GOAL.row(
                    f"{what} {q} (n={stats['count']:.0f}, missed {stats['missed']:.0f})",
                    ms(stats[q]),
                    f"restored {ms(restored[q])}",
                    figure=stats[q],
                    base=restored[q],
                    ratio=ratio(stats[q], restored[q]),
                )
            )
    if storm is None:
        result.rows.append(Row("touch+chmod storm beside an enforced file", "skipped: needs root and setpriv"))
        return result
    restore = storm["restore"]
    result.rows.append(
        CPU.row(
            f"touch+chmod storm for {storm['seconds']:.0f} s in a pantry holding an enforced file: daemon CPU",
            f"{storm['daemon_cpu'] * 100:.0f}%",
            attacker_text(storm["attacker"], "ops"),
            figure=storm["daemon_cpu"],
        )
    )
    result.rows.append(
        RESTORE_P99.row(
            f"same: restore p50 / p99 (n={restore['count']:.0f}, missed {restore['missed']:.0f})",
            f"{ms(restore['p50'])} / {ms(restore['p99'])}",
            figure=restore["p99"] if restore["missed"] == 0 else float("inf"),
        )
    )
    return result
