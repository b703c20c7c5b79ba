"""snackwatch against same-run baselines (issues 6, 10, 13, 15); prints a Markdown table, writes JSON."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from files import remove_tree
from harness import Bench, Config, Row, Section, Skipped
from procs import ROOT, Children, queued_events_limit
from scenarios import SCENARIOS, scenario

RESULTS = ROOT / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer samples: under 40 s")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run only these measurements")
    parser.add_argument(
        "--tmpdir",
        type=Path,
        help="where the pantries go (default: /dev/shm, a tmpfs, if writable, else $TMPDIR or /tmp). On a disk "
        "the filesystem's own create cost dominates and varies run to run; a tmpfs isolates snackwatch's overhead",
    )
    parser.add_argument("--seed", type=Path, help="text holding the seed's snack_controller.sh (default: shared/seed)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the JSON (default: {RESULTS})")
    parser.add_argument(
        "--mount-dirs",
        type=int,
        nargs="+",
        metavar="N",
        help="snack directories of the mount scenario (default: 5000; '5000 100000' as issue 13 asks, ~50 s more)",
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="benchmark the snackwatch package of this source tree (e.g. a `git worktree add /tmp/sw-before HEAD`): "
        "put first on PYTHONPATH of the bench and of every daemon and CLI it starts",
    )
    return parser.parse_args(argv)


def find_seed(path: Path | None) -> str | None:
    """The seed text: --seed, else the file under ../shared/seed/ that holds snack_controller.sh."""
    candidates = [path] if path else sorted((ROOT.parent.parent / "shared" / "seed").glob("*.txt"))
    for candidate in candidates:
        text = candidate.read_text(errors="replace") if candidate.is_file() else ""
        if "snack_controller.sh" in text:
            return text
    return None


def default_tmpdir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def use_source(src: Path) -> None:
    """Import snackwatch from `src`, here and in every child (they inherit PYTHONPATH)."""
    if not (src / "snackwatch" / "__init__.py").is_file():
        raise SystemExit(f"bench: --src {src}: no snackwatch/__init__.py there")
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{src}{os.pathsep}{inherited}" if inherited else str(src)
    sys.path.insert(0, str(src))
    # An editable install's finder would still resolve modules `src` lacks from the installed tree: drop it.
    sys.meta_path[:] = [finder for finder in sys.meta_path if not _is_editable_finder(finder)]


def _is_editable_finder(finder: object) -> bool:
    return str(getattr(finder, "__module__", "")).startswith("__editable__")


def source(package: Path) -> str:
    """The commit of the tree snackwatch comes from, '+dirty' if its package differs from that commit."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git tree"
    return commit + ("+dirty" if git("status", "--porcelain", "--", ".") else "")


def machine(tmpdir: Path) -> dict[str, Any]:
    import snackwatch  # noqa: PLC0415 - after --src is on sys.path

    package = Path(str(snackwatch.__file__)).parent
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmpdir)], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "snackwatch": f"{snackwatch.__version__} from {package} ({source(package)})",
        "tmpdir": str(tmpdir),
        "tmpdir_fs": fs,
        "loadavg_at_start": os.getloadavg(),
        "max_queued_events": queued_events_limit(),
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(config: Config, only: Sequence[str], tmpdir: Path, seed: str | None) -> list[Section]:
    """Run the chosen measurements in a fresh temp directory; always end children and remove it."""
    root = Path(tempfile.mkdtemp(prefix="snackwatch-bench-", dir=tmpdir))
    children = Children()
    bench = Bench(root, children, config, seed)
    sections = []
    try:
        for name in only:
            started = time.perf_counter()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            sections.append(attempt(name, bench))
            children.stop_all()
            print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        children.stop_all()
        remove_tree(root)
    return sections


def attempt(name: str, bench: Bench) -> Section:
    """Run one measurement; a failure becomes a row (and a traceback on stderr), not the end of the run."""
    try:
        return scenario(name)(bench)
    except Skipped as reason:
        return Section(name, [Row("skipped", str(reason))])
    except Exception as error:  # the project changes under the bench: keep the other figures
        traceback.print_exc()
        return Section(name, [Row("failed", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")])


def table(sections: Sequence[Section]) -> str:
    """One Markdown table; goals beside the figures."""
    lines = ["| measure | snackwatch | baseline (same run) | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for section in sections:
        lines.append(f"| **{section.title}** | | | | | |")
        for row in section.rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            met = "" if row.met is None else ("yes" if row.met else "**NO**")
            lines.append(f"| {row.measure} | {row.value} | {row.baseline} | {ratio} | {row.goal} | {met} |")
    return "\n".join(lines)


def report(path: Path, config: Config, info: dict[str, Any], sections: Sequence[Section], elapsed: float) -> None:
    goals = [row for section in sections for row in section.rows if row.met is not None]
    document = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if config.quick else "full",
        "elapsed_s": round(elapsed, 1),
        "machine": info,
        "config": asdict(config),
        "goals": {"met": sum(bool(row.met) for row in goals), "total": len(goals)},
        "sections": [
            {"title": section.title, "rows": [asdict(row) for row in section.rows], "data": section.data}
            for section in sections
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def header(info: dict[str, Any], config: Config, elapsed: float) -> str:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"snackwatch bench ({'quick' if config.quick else 'full'}, {elapsed:.0f} s), {date}: "
        f"{info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Python {info['python']}, "
        f"pantries on {info['tmpdir_fs']} at {info['tmpdir']}; snackwatch {info['snackwatch']}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.src is not None:
        use_source(args.src.resolve())
    config = Config.quick_config() if args.quick else Config()
    if args.mount_dirs:
        config = dataclasses.replace(config, mount_dirs=tuple(args.mount_dirs))
    tmpdir = (args.tmpdir or default_tmpdir()).resolve()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    info = machine(tmpdir)
    started = time.perf_counter()
    sections = run(config, args.only or list(SCENARIOS), tmpdir, find_seed(args.seed))
    elapsed = time.perf_counter() - started
    print(header(info, config, elapsed))
    print(table(sections))
    report(args.json, config, info, sections, elapsed)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; children stopped, temp files removed", file=sys.stderr)
        sys.exit(130)
