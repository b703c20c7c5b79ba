"""Syscalls per restore: `strace -f -c` of a daemon that only starts, and of one that also restores N single
deletions of empty snacks (tmpfs, 10 ms apart, spec and log outside the pantry's path); prints the difference / N.

    python bench/syscalls.py [--src CHECKOUT] [--restores 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNACKS = [f"snack{i:02d}" for i in range(50)]


def counted(src: Path, restores: int) -> dict[str, int]:
    """Calls per syscall of one daemon run (start, `restores` single deletions, stop)."""
    base = Path(
        tempfile.mkdtemp(prefix="snackwatch-syscalls-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    )
    try:
        (base / "specs").mkdir()
        pantry, spec = base / "pantry", base / "specs" / "snacks.yaml"
        spec.write_text(f"pantry: {pantry}\nsnacks:\n" + "".join(f"  - {name}\n" for name in SNACKS))
        (base / "run").mkdir(mode=0o700)
        env = dict(os.environ, RUNTIME_DIRECTORY=str(base / "run"), STATE_DIRECTORY=str(base / "state"))
        env["PYTHONPATH"] = str(src)
        out, log = base / "strace.txt", base / "daemon.log"
        daemon = [sys.executable, "-m", "snackwatch", "run", "-c", str(spec), "--log-format", "json"]
        with open(log, "wb") as stderr:
            proc = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), *daemon], env=env, stderr=stderr, cwd=base)
        deadline = time.monotonic() + 30
        while b'"start"' not in log.read_bytes():
            time.sleep(0.05)
            if time.monotonic() > deadline:
                raise TimeoutError("no start line")
        time.sleep(0.5)
        for index in range(restores):
            path = pantry / SNACKS[index % len(SNACKS)]
            path.unlink()
            while not path.exists():
                time.sleep(0.0005)
            time.sleep(0.01)
        time.sleep(0.5)
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)  # the daemon, not strace
        proc.wait(20)
        return _parse(out.read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _parse(text: str) -> dict[str, int]:
    calls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--restores", type=int, default=200)
    args = parser.parse_args()
    start, run = counted(args.src, 0), counted(args.src, args.restores)
    per = {name: (run.get(name, 0) - start.get(name, 0)) / args.restores for name in start.keys() | run.keys()}
    shown = ", ".join(
        f"{name} {count:.2f}" for name, count in sorted(per.items(), key=lambda x: -x[1]) if count >= 0.02
    )
    print(f"{sum(per.values()):.1f} syscalls per restore ({args.src}): {shown}")


if __name__ == "__main__":
    main()
