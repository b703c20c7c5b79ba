"""Rows of several bench JSON results side by side (e.g. before-quick-*.json against runs after a change)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_COUNTS = re.compile(r" \((n=|lost |exit |after cold|files absent|\d+ overflow).*?\)")


def key(section: dict[str, Any], row: dict[str, Any]) -> tuple[str, str]:
    """A row's identity across runs: its section number and its measure without per-run counts."""
    return section["title"].split(" ", 1)[0], _COUNTS.sub("", row["measure"])


def load(path: Path) -> dict[tuple[str, str], str]:
    document = json.loads(path.read_text())
    cells = {}
    for section in document["sections"]:
        for row in section["rows"]:
            if row["value"] and len(row["value"]) < 40:
                met = {True: "", False: " (NO)", None: ""}[row["met"]]
                cells[key(section, row)] = row["value"] + met
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", type=Path, help="bench JSON files, in the order of the columns")
    args = parser.parse_args(argv)
    runs = [load(path) for path in args.results]
    keys = list(dict.fromkeys(cell for run in runs for cell in run))
    print("| measure | " + " | ".join(path.stem for path in args.results) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for section, measure in keys:
        print(f"| {section} {measure} | " + " | ".join(run.get((section, measure), "") for run in runs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
