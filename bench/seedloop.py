"""The seed's snack_controller.sh, its pantry and log substituted, run as a child of the bench."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness import Bench


def seed_script(text: str, pantry: Path, log: Path) -> str:
    """The snack_controller.sh part of the seed text, with /pantry and /var/log/snack_ops.log replaced."""
    start = text.index("#!/bin/bash")
    end = text.index("done", text.index("sleep 5")) + len("done")
    script = text[start:end] + "\n"
    for old, new in (('"/pantry/', f'"{pantry}/'), ("/var/log/snack_ops.log", str(log))):
        if old not in script:
            raise ValueError(f"seed script has no {old!r} to substitute")
        script = script.replace(old, new)
    return script


def start_seed(bench: Bench, seed_text: str, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start the seed loop in a fresh workdir; returns (process, pantry, its log file)."""
    workdir = bench.workdir(name)
    pantry, log = workdir / "pantry", workdir / "snack_ops.log"
    pantry.mkdir()
    script = workdir / "snack_controller.sh"
    script.write_text(seed_script(seed_text, pantry, log))
    return bench.children.spawn(["bash", str(script)]), pantry, log
