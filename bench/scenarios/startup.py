"""8. start-up (issue 15 item 1): light CLI commands against bare interpreters importing what they need, and the
daemon from spawn to READY, each the median of several runs interleaved so drift hits all alike."""

from __future__ import annotations

import datetime
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Bench, Config, Row, Section, ms, ratio, times
from procs import ROOT, daemon_env, start_daemon

import snackwatch

WITHIN_2X = times(2.0, "<= 2x")
BASE = ["Goldfish", "FruitGummies", "StringCheese"]


def cli() -> list[str]:
    """The installed console script beside this interpreter (what users run), else `python -m snackwatch`."""
    script = Path(sys.executable).parent / "snackwatch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "snackwatch"]


def example_spec() -> Path:
    """config/snacks.yaml of the tree snackwatch is imported from (--src), else of this bench's tree."""
    own = Path(str(snackwatch.__file__)).parent.parent / "config" / "snacks.yaml"
    return own if own.is_file() else ROOT.parent / "config" / "snacks.yaml"


def run(bench: Bench) -> Section:
    config = bench.config
    spec, _ = bench.spec("startup", BASE)
    daemon = bench.started(spec, "inotify", "daemon")
    env = daemon_env(spec.parent.parent / "daemon" / "run")  # status must find that daemon's lock and state
    python = [sys.executable, "-c"]
    pairs = {
        "--version": (["--version"], "import argparse"),
        "check": (["check", "-c", str(example_spec())], "import argparse, yaml"),
        "status": (["status", "-c", str(spec)], "import argparse, json"),
    }
    commands = {label: [*cli(), *args] for label, (args, _) in pairs.items()}
    commands |= {f"python: {code}": [*python, code] for _, code in pairs.values()}
    runs, codes = timed_runs(commands, config.cli_runs, env, cwd=bench.workdir("startup-cwd"))
    bench.children.stop(daemon.proc)
    medians = {label: statistics.median(seconds) for label, seconds in runs.items()}
    data: dict[str, Any] = {
        "cli": " ".join(cli()),
        "runs": config.cli_runs,
        "median_s": medians,
        "exit_codes": codes,
        "baselines": {label: f"python: {code}" for label, (_, code) in pairs.items()},
        "ready": ready_times(bench, spec, config.ready_runs),
    }
    return section(config, data)


def timed_runs(
    commands: dict[str, list[str]], count: int, env: dict[str, str], cwd: Path
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Each command `count` times, round-robin; wall seconds from spawn to exit, and the exit codes seen."""
    runs: dict[str, list[float]] = {label: [] for label in commands}
    codes: dict[str, set[int]] = {label: set() for label in commands}
    for _ in range(count):
        for label, argv in commands.items():
            started = time.perf_counter()
            code = subprocess.run(
                argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ).returncode
            runs[label].append(time.perf_counter() - started)
            codes[label].add(code)
    return runs, {label: sorted(seen) for label, seen in codes.items()}


def ready_times(bench: Bench, spec: Path, count: int) -> dict[str, Any]:
    """Daemon spawn to sd_notify READY=1 and to the 'start' log line, `count` times on a 3-snack spec."""
    to_ready: list[float] = []
    to_start: list[float] = []
    for index in range(count):
        workdir = spec.parent.parent / f"ready-{index}"
        workdir.mkdir()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
            notify.bind(str(workdir / "notify"))
            notify.settimeout(30)
            wall = time.time()
            daemon = start_daemon(bench.children, spec, "inotify", workdir, {"NOTIFY_SOCKET": str(workdir / "notify")})
            while b"READY=1" not in notify.recv(4096).split(b"\n"):
                pass
            to_ready.append(time.perf_counter() - daemon.started_at)
            daemon.wait_event("start", 30)
            logged = datetime.datetime.fromisoformat(daemon.log.events("start")[0]["time"]).timestamp()
            to_start.append(logged - wall)  # the line's own timestamp: READY was awaited first
            bench.children.stop(daemon.proc)
    return {"ready_s": to_ready, "start_line_s": to_start, "ready_median_s": statistics.median(to_ready)}


def section(config: Config, data: dict[str, Any]) -> Section:
    result = Section(f"8. start-up (median of {config.cli_runs} runs each)", data=data)
    medians = data["median_s"]
    for label, baseline in data["baselines"].items():
        own, base = medians[label], medians[baseline]
        result.rows.append(
            WITHIN_2X.row(
                f"snackwatch {label} (exit {', '.join(map(str, data['exit_codes'][label]))})",
                ms(own),
                f"{baseline[len('python: ') :]!r} {ms(base)}",
                figure=own,
                base=base,
                ratio=ratio(own, base),
            )
        )
    ready = data["ready"]
    result.rows.append(
        Row(
            f"daemon spawn to READY=1, 3 snacks (median of {len(ready['ready_s'])})",
            ms(ready["ready_median_s"]),
            f"'start' log line {ms(statistics.median(ready['start_line_s']))}",
            None,
            "keep or improve",
        )
    )
    return result
