"""12. junk and parent churn (issues 21 items 4-5, 23 item 4): restores, CPU and RSS with a million junk names and a
rename storm in a 1777 pantry against the same spec without junk; CPU and restores with churn in a 1777 parent."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from files import names, write_spec
from harness import Bench, Config, Row, Section, Skipped, at_most, megabytes, ms, needs_root
from procs import Daemon, rss_kib

from scenarios.storm import (
    CPU,
    NOBODY,
    PYTHON,
    RESTORE_P99,
    CpuWindow,
    attacker_report,
    attacker_text,
    deletions,
    percent,
    start_attacker,
    timed_deletions,
)

RSS_DELTA = at_most(10.0, "<= +10 MB")  # MB above the same spec without junk, same run
SLOW_RESTORE = 10.0  # s: a restore slower than this is missed (before the scan fix, 1M junk took seconds)
QUIET_DELETIONS = 20  # the parent's baseline: deletions with nobody churning
SETTLE = 0.5  # s after the first pass before the baseline: its status write and collection are not the baseline's
PARENT_MODES = {"rename": "renames of unrelated names", "mixed": "create + rename + unlink of unrelated names"}


def run(bench: Bench) -> Section:
    needs_root("the junk storm (an unprivileged attacker via setpriv, private tmpfs mounts)")
    if not (shutil.which("setpriv") and os.access(PYTHON, os.X_OK)):
        raise Skipped(f"skipped: the junk storm needs setpriv and {PYTHON}")
    bench.root.chmod(0o755)  # the attacker must reach the pantries below it
    data: dict[str, Any] = {
        "clean": junk_storm(bench, "clean", 0),
        "junk": junk_storm(bench, "junk", bench.config.junk),
    }
    data["parent"] = {mode: parent_churn(bench, mode) for mode in PARENT_MODES}
    return section(bench.config, data)


# --- junk in the pantry ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_tmpfs(directory: Path, inodes: int) -> Iterator[None]:
    """A tmpfs of its own at `directory` (1777, root's): a million junk files go with one umount, not an rm."""
    options = f"size=64m,nr_inodes={inodes},mode=1777"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "snackwatch-bench", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def junk_storm(bench: Bench, label: str, junk: int) -> dict[str, Any]:
    """`junk` names made by uid 65534 in a 1777 pantry, then the daemon's start, a spec edit and a rename storm."""
    config = bench.config
    snacks = names(config.storm_snacks)
    spec, pantry = bench.spec(f"junk-{label}", snacks)
    pantry.mkdir()
    with private_tmpfs(pantry, inodes=junk + len(snacks) + 1024):
        made = attacker_report(start_attacker(bench, ["junk", str(pantry), str(junk)])) if junk else None
        listing = listing_seconds(pantry)
        daemon = bench.started(spec, "inotify", "daemon", timeout=300.0)
        try:
            return measure_junk(bench, daemon, spec, pantry, snacks) | {
                "junk": junk,
                "made": made,
                "listing_s": listing,
            }
        finally:
            bench.children.stop(daemon.proc)  # its watches keep the mount busy


def measure_junk(bench: Bench, daemon: Daemon, spec: Path, pantry: Path, snacks: Sequence[str]) -> dict[str, Any]:
    config = bench.config
    started = wait_stocked(pantry, snacks, daemon.started_at, timeout=300.0)
    rss = {"start": rss_kib(daemon.pid)}
    edited = time.perf_counter()
    write_spec(spec, [*snacks, "added"])  # a reload: its full pass looks at the crowded pantry whole
    edit = wait_stocked(pantry, ["added"], edited, timeout=300.0)
    rss["edit"] = rss_kib(daemon.pid)
    attacker = start_attacker(bench, ["rename", str(pantry), str(config.junk_storm)])
    window = CpuWindow(daemon.pid)
    samples = timed_deletions(pantry, snacks, attacker, config.storm_interval, timeout=SLOW_RESTORE)
    share, elapsed = window.share()
    report = attacker_report(attacker)
    rss["storm"] = rss_kib(daemon.pid)
    rss["peak"] = rss_kib(daemon.pid, "VmHWM")
    return {
        "snacks": len(snacks),
        "start_s": started,
        "edit_s": edit,
        "rss_kib": rss,
        "seconds": elapsed,
        "daemon_cpu": share,
        "attacker": report,
        "restore": samples.summary(),
        "lines": told(daemon),
        "fell_back": daemon.fell_back(),
    }


def told(daemon: Daemon) -> dict[str, int]:
    """How often the daemon said a storm started or its queue overflowed (each overflow means a full pass)."""
    return {event: len(daemon.log.events(event)) for event in ("storm", "overflow")}


def listing_seconds(directory: Path) -> float:
    """What one listing of the crowded pantry costs in Python (scandir, names only): a full pass's floor there."""
    started = time.perf_counter()
    with os.scandir(directory) as entries:
        for _ in entries:
            pass
    return time.perf_counter() - started


def wait_stocked(pantry: Path, snacks: Sequence[str], since: float, timeout: float) -> float:
    """Seconds from `since` until every snack is present (looked up by name: the pantry may hold a million)."""
    dir_fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pending = list(snacks)
        while pending:
            pending = [name for name in pending if not _present(dir_fd, name)]
            if pending and time.perf_counter() - since > timeout:
                raise TimeoutError(f"{len(pending)} snacks not stocked within {timeout:g} s")
            if pending:
                time.sleep(0.001)
        return time.perf_counter() - since
    finally:
        os.close(dir_fd)


def _present(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


# --- churn in the pantry's parent -----------------------------------------------------------------------------


def parent_churn(bench: Bench, mode: str) -> dict[str, Any]:
    """A pantry in a 1777 directory (its parent, watched for the pantry's name) where uid 65534 churns other names;
    first a few deletions with nobody churning (the baseline), then a real snack deleted every 50 ms in the churn."""
    config = bench.config
    snacks = names(config.storm_snacks)
    work = bench.workdir(f"parent-{mode}")
    shared = work / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    pantry = shared / "pantry"
    spec = work / "spec" / "snacks.yaml"  # the spec elsewhere: the parent is watched for the pantry alone
    spec.parent.mkdir()
    write_spec(spec, snacks, pantry=str(pantry))
    daemon = bench.started(spec, "inotify", "daemon")
    wait_stocked(pantry, snacks, daemon.started_at, timeout=60.0)
    time.sleep(SETTLE)
    window = CpuWindow(daemon.pid)
    quiet = deletions(pantry, snacks, config.storm_interval, lambda index: index < QUIET_DELETIONS)
    quiet_share, _ = window.share()
    attacker = start_attacker(bench, [mode, str(shared), str(config.parent_churn)])
    window = CpuWindow(daemon.pid)
    samples = timed_deletions(pantry, snacks, attacker, config.storm_interval)
    share, elapsed = window.share()
    return {
        "snacks": len(snacks),
        "seconds": elapsed,
        "daemon_cpu": share,
        "quiet_cpu": quiet_share,
        "attacker": attacker_report(attacker),
        "quiet_restore": quiet.summary(),
        "restore": samples.summary(),
        "lines": told(daemon),
        "log_lines": len(daemon.log.refresh()),
        "fell_back": daemon.fell_back(),
    }


# --- the table ------------------------------------------------------------------------------------------------


def restore_text(restore: dict[str, float], *quantiles: str) -> str:
    """Quantiles short enough for compare.py's columns: '0.7 ms / 35.1 ms / 148 ms / 1.32 s'."""
    return " / ".join(short_time(restore[q]) for q in quantiles)


def short_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def lines_text(lines: dict[str, int]) -> str:
    return f"storm lines {lines['storm']}, overflow lines {lines['overflow']}"


def p99_figure(restore: dict[str, float]) -> float:
    return restore["p99"] if restore["missed"] == 0 else float("inf")


def rss_text(rss: dict[str, int]) -> str:
    mb = [f"{rss[k] * 1024 / 1e6:.1f}" for k in ("start", "edit", "storm")]
    return f"{' / '.join(mb)} MB (peak {megabytes(rss['peak'])})"


def junk_rows(config: Config, clean: dict[str, Any], junk: dict[str, Any]) -> list[Row]:
    count, restore, report = junk["junk"], junk["restore"], junk["attacker"]
    made = junk["made"]
    growth = max(junk["rss_kib"][k] - clean["rss_kib"][k] for k in ("start", "edit", "storm")) * 1024 / 1e6
    return [
        Row(
            f"{count:,} junk files made by uid {NOBODY} in a 1777 pantry of {junk['snacks']:,} snacks",
            f"{made['seconds']:.1f} s ({made['ops'] / made['seconds']:,.0f} files/s)",
            f"one Python listing of it: {ms(junk['listing_s'])}",
        ),
        RESTORE_P99.row(
            f"junk + rename storm for {config.junk_storm:g} s: restore p50 / p90 / p99 / max "
            f"(n={restore['count']:.0f}, missed {restore['missed']:.0f}, {lines_text(junk['lines'])})",
            restore_text(restore, "p50", "p90", "p99", "max"),
            f"no junk: {restore_text(clean['restore'], 'p50', 'p90', 'p99', 'max')}",
            figure=p99_figure(restore),
        ),
        CPU.row(
            "junk + rename storm: daemon CPU",
            percent(junk["daemon_cpu"]),
            f"no junk: {percent(clean['daemon_cpu'])}; {attacker_text(report, 'renames')}",
            figure=junk["daemon_cpu"],
        ),
        RSS_DELTA.row(
            "junk: RSS after start / spec edit / storm",
            rss_text(junk["rss_kib"]),
            f"no junk: {rss_text(clean['rss_kib'])}",
            figure=growth,
        ),
        Row(
            "junk: cold start to stocked / one snack added to the spec -> on disk",
            f"{ms(junk['start_s'])} / {ms(junk['edit_s'])}",
            f"no junk: {ms(clean['start_s'])} / {ms(clean['edit_s'])}",
        ),
    ]


def parent_rows(config: Config, parent: dict[str, dict[str, Any]]) -> list[Row]:
    rows = []
    for mode, what in PARENT_MODES.items():
        figures = parent[mode]
        restore, quiet = figures["restore"], figures["quiet_restore"]
        rows.append(
            CPU.row(
                f"{what} in a 1777 parent of the pantry for {config.parent_churn:g} s: daemon CPU",
                percent(figures["daemon_cpu"]),
                attacker_text(figures["attacker"], "ops"),
                figure=figures["daemon_cpu"],
            )
        )
        rows.append(
            RESTORE_P99.row(
                f"{mode} in the parent: restore p50 / p99 / max (n={restore['count']:.0f}, missed "
                f"{restore['missed']:.0f}, {lines_text(figures['lines'])})",
                restore_text(restore, "p50", "p99", "max"),
                f"quiet parent: {restore_text(quiet, 'p50', 'p99', 'max')}",
                figure=p99_figure(restore),
            )
        )
    return rows


def section(config: Config, data: dict[str, Any]) -> Section:
    result = Section(f"12. junk and parent churn ({config.storm_snacks:,} snacks, attacker uid {NOBODY})", data=data)
    result.rows += junk_rows(config, data["clean"], data["junk"])
    result.rows += parent_rows(config, data["parent"])
    runs = {"no junk": data["clean"], "junk": data["junk"]} | {f"parent {m}": f for m, f in data["parent"].items()}
    void = [label for label, figures in runs.items() if figures["fell_back"]]
    if void:
        result.rows.append(Row("VOID: the daemon fell back to polling (inotify limits hit) during", ", ".join(void)))
    return result
