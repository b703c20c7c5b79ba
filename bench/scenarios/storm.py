"""6. storms (issue 10 item 8): an unprivileged user churning a 1777 pantry; the daemon's CPU and restore latency."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from files import names, write_spec
from harness import Bench, Config, Row, Section, Skipped, at_most, ms, needs_root
from probe import Samples
from procs import CLOCK_TICKS, ROOT, Daemon, cpu_ticks
from rawinotify import IN_CREATE, IN_ONLYDIR, Inotify

NOBODY = 65534
CHURN = ROOT / "churn.py"
PYTHON = "/usr/bin/python3"  # the attacker's python: the bench's venv may not be readable by nobody
TEMP_PREFIX = ".snackwatch-"  # the daemon's temp files: one is created per attempt at a snack with content
CPU = at_most(0.30, "<= 30% of a core")
RESTORE_P99 = at_most(0.05, "<= 50 ms")
RETRIES = at_most(10, "<= 10 per snack per s")  # a nudge retries failing snacks at most once per 100 ms
WARNINGS = at_most(10, "<= 10 per snack per 10 s")
FAILING_SNACKS = 100


def run(bench: Bench) -> Section:
    needs_root("the storm (an unprivileged attacker via setpriv, a tiny tmpfs)")
    if not (shutil.which("setpriv") and os.access(PYTHON, os.X_OK)):
        raise Skipped(f"skipped: the storm needs setpriv and {PYTHON}")
    bench.root.chmod(0o755)  # the attacker must reach the pantries below it
    config = bench.config
    data = {
        "churn": storm(bench, "churn", config.churn),
        "attrib": storm(bench, "attrib", config.attrib),
        "enospc": enospc(bench),
        "flip": flip(bench),
    }
    return section(config, data)


def start_attacker(bench: Bench, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """churn.py as uid/gid 65534 with no groups; returns once it is set up and about to start."""
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    proc = bench.children.spawn([*setpriv, PYTHON, str(CHURN), *argv], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the attacker did not start: {' '.join(argv)}")
    return proc


def attacker_report(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    assert proc.stdout is not None
    report: dict[str, float] = json.loads(proc.stdout.readline())
    proc.wait()
    return report


class CpuWindow:
    """The share of one core a process used between start() and stop(), from /proc/PID/stat."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks = cpu_ticks(pid)
        self.started = time.perf_counter()

    def share(self) -> tuple[float, float]:
        """(share of a core, seconds) since construction."""
        seconds = time.perf_counter() - self.started
        return (cpu_ticks(self.pid) - self.ticks) / CLOCK_TICKS / seconds, seconds


def storm_pantry(bench: Bench, name: str, snacks: Sequence[str]) -> tuple[Path, Path]:
    """A spec and its pantry directory, 1777 like /tmp (the daemon creates the snacks when it starts)."""
    spec, pantry = bench.spec(name, snacks)
    pantry.mkdir()
    pantry.chmod(0o1777)
    return spec, pantry


def storm(bench: Bench, mode: str, seconds: float) -> dict[str, Any]:
    """Churn of `mode` for `seconds` while a real snack is deleted every storm_interval and timed back."""
    snacks = names(bench.config.storm_snacks)
    spec, pantry = storm_pantry(bench, f"storm-{mode}", snacks)
    daemon = bench.started(spec, "inotify", "daemon")
    attacker = start_attacker(bench, [mode, str(pantry), str(seconds)])
    window = CpuWindow(daemon.pid)
    samples = timed_deletions(pantry, snacks, attacker, bench.config.storm_interval)
    share, elapsed = window.share()
    report = attacker_report(attacker)
    return {
        "snacks": len(snacks),
        "seconds": elapsed,
        "daemon_cpu": share,
        "attacker": report,
        "restore": samples.summary(),
        "log_lines": len(daemon.log.refresh()),
        "fell_back": daemon.fell_back(),
    }


def timed_deletions(
    pantry: Path, snacks: Sequence[str], attacker: subprocess.Popen[bytes], every: float, timeout: float = 2.0
) -> Samples:
    """While the attacker runs: delete the next snack every `every` s, poll (0.2 ms) until it is back."""
    return deletions(pantry, snacks, every, lambda _: attacker.poll() is None, timeout)


def deletions(
    pantry: Path, snacks: Sequence[str], every: float, going: Callable[[int], bool], timeout: float = 2.0
) -> Samples:
    """While `going(index)`: delete the next snack every `every` s, poll (0.2 ms) until it is back; a snack not
    back within `timeout` s is missed."""
    samples = Samples()
    dir_fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index in range(10**9):
            if not going(index):
                break
            name = snacks[index % len(snacks)]
            started = time.perf_counter()
            os.unlink(name, dir_fd=dir_fd)
            latency = wait_present(dir_fd, name, started, timeout)
            if latency is None:
                samples.missed += 1
            else:
                samples.latencies.append(latency)
            time.sleep(max(0.0, started + every - time.perf_counter()))
    finally:
        os.close(dir_fd)
    return samples


def wait_present(dir_fd: int, name: str, since: float, timeout: float) -> float | None:
    """Seconds from `since` until `name` exists again, or None after `timeout`."""
    while True:
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if time.perf_counter() - since > timeout:
                return None
            time.sleep(0.0002)
        else:
            return time.perf_counter() - since


# --- ENOSPC: failing snacks beside unrelated deletions ------------------------------------------------------


def enospc(bench: Bench) -> dict[str, Any]:
    """Snacks with content on a full 64k tmpfs fail; the attacker creates and deletes unrelated (empty) files there.

    Every attempt at a snack with content creates a `.snackwatch-` temp file, so the retries are counted
    from our own inotify watch on the pantry."""
    snacks = names(FAILING_SNACKS, "full")
    spec, pantry = storm_pantry(bench, "storm-enospc", [])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "snackwatch-bench", str(pantry)], check=True)
    try:
        fill(pantry)
        write_spec(spec, snacks, content="snack\n")
        daemon = bench.started(spec, "inotify", "daemon")
        try:
            return failing_storm(bench, daemon, pantry, snacks)
        finally:
            bench.children.stop(daemon.proc)  # its watch and fd keep the mount busy
    finally:
        subprocess.run(["umount", "-l", str(pantry)], check=False)


def fill(directory: Path) -> None:
    """Write a root-owned file until the filesystem has no block left (inodes remain: empty files still fit)."""
    with open(directory / "filler", "wb", buffering=0) as stream, contextlib.suppress(OSError):
        while True:
            stream.write(b"\0" * 4096)


def failing_storm(bench: Bench, daemon: Daemon, pantry: Path, snacks: Sequence[str]) -> dict[str, Any]:
    watch = Inotify()
    watch.watch(pantry, IN_CREATE | IN_ONLYDIR)
    failing_lines = len(daemon.log.events("failing"))
    attacker = start_attacker(bench, ["churn", str(pantry), str(bench.config.enospc)])
    window = CpuWindow(daemon.pid)
    retries = 0
    while attacker.poll() is None:
        retries += sum(event.name.startswith(TEMP_PREFIX) for event in watch.read(0.05))
    share, elapsed = window.share()
    retries += sum(event.name.startswith(TEMP_PREFIX) for event in watch.read(0))
    watch.close()
    report = attacker_report(attacker)
    return {
        "snacks": len(snacks),
        "seconds": elapsed,
        "daemon_cpu": share,
        "attacker": report,
        "retries": retries,
        "retries_per_snack_s": retries / len(snacks) / elapsed,
        "failing_lines_at_start": failing_lines,
        "missing": sum(not (pantry / name).exists() for name in snacks),
        "fell_back": daemon.fell_back(),
    }


# --- a snack's place flipped --------------------------------------------------------------------------------


def flip(bench: Bench) -> dict[str, Any]:
    """The attacker owns the pantry and flips one snack's place between symlink, directory and missing.

    The ownership rule refuses a pantry another user owns (said once, at start): it is neither repaired nor
    watched, so the flips should cost next to nothing (before the watch shared the rule: 90 % of a core)."""
    snacks = names(bench.config.storm_snacks)
    spec, pantry = bench.spec("storm-flip", snacks)
    pantry.mkdir()
    os.chown(pantry, NOBODY, NOBODY)
    daemon = bench.started(spec, "inotify", "daemon")
    before = len(daemon.log.refresh())
    attacker = start_attacker(bench, ["flip", str(pantry), snacks[0], str(bench.config.flip)])
    window = CpuWindow(daemon.pid)
    report = attacker_report(attacker)
    share, elapsed = window.share()
    time.sleep(0.2)  # the lines the last flips caused
    lines = daemon.log.refresh()[before:]
    levels = [str(entry.get("level", "")) for entry in lines]
    return {
        "seconds": elapsed,
        "daemon_cpu": share,
        "attacker": report,
        "lines": len(lines),
        "warning_lines": levels.count("WARNING"),
        "error_lines": levels.count("ERROR") + levels.count("CRITICAL"),
        "events": sorted({str(entry.get("event", "")) for entry in lines}),
        "warnings_per_10s": levels.count("WARNING") * 10 / max(elapsed, 10.0),
        "fell_back": daemon.fell_back(),
    }


# --- the table ----------------------------------------------------------------------------------------------


def percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def attacker_text(report: dict[str, float], what: str) -> str:
    return (
        f"attacker {report['ops'] / report['seconds']:,.0f} {what}/s at {percent(report['cpu_s'] / report['seconds'])}"
    )


def section(config: Config, data: dict[str, Any]) -> Section:
    result = Section(f"6. storms ({config.storm_snacks:,} snacks, 1777 pantry, attacker uid {NOBODY})", data=data)
    for mode, what in (("churn", "create+delete of unrelated files"), ("attrib", "touch+chmod (IN_ATTRIB)")):
        figures = data[mode]
        restore, report = figures["restore"], figures["attacker"]
        result.rows.append(
            CPU.row(
                f"{what} for {figures['seconds']:.0f} s: daemon CPU",
                percent(figures["daemon_cpu"]),
                attacker_text(report, "ops"),
                figure=figures["daemon_cpu"],
            )
        )
        result.rows.append(
            RESTORE_P99.row(
                f"{what}: restore p50 / p99 (n={restore['count']:.0f}, missed {restore['missed']:.0f})",
                f"{ms(restore['p50'])} / {ms(restore['p99'])}",
                f"one deletion every {config.storm_interval * 1000:.0f} ms",
                figure=restore["p99"] if restore["missed"] == 0 else float("inf"),
            )
        )
    failing = data["enospc"]
    result.rows.append(
        RETRIES.row(
            f"{failing['snacks']} snacks failing on ENOSPC, unrelated churn for {failing['seconds']:.0f} s: retries",
            f"{failing['retries']:,} ({failing['retries_per_snack_s']:.1f} per snack per s)",
            attacker_text(failing["attacker"], "deletions"),
            figure=failing["retries_per_snack_s"],
        )
    )
    result.rows.append(CPU.row("ENOSPC: daemon CPU", percent(failing["daemon_cpu"]), "", figure=failing["daemon_cpu"]))
    flipped = data["flip"]
    result.rows.append(
        WARNINGS.row(
            f"a snack's place flipped symlink/dir/missing for {flipped['seconds']:.0f} s: WARNING lines "
            f"({flipped['error_lines']} ERROR)",
            str(flipped["warning_lines"]),
            attacker_text(flipped["attacker"], "flips"),
            figure=flipped["warnings_per_10s"],
        )
    )
    result.rows.append(Row("flip: daemon CPU", percent(flipped["daemon_cpu"])))
    void = [mode for mode, figures in data.items() if figures["fell_back"]]
    if void:
        result.rows.append(Row("VOID: the daemon fell back to polling (inotify limits hit) during", ", ".join(void)))
    return result
