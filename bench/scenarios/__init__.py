"""The scenarios, one module each, by the name `--only` takes; each module's `run(bench)` returns its Section."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness import Bench, Section

# name -> module; imported only when run, so one that cannot import (a constant moved) fails alone, loudly
SCENARIOS = {
    "latency": "scenarios.latency",
    "mass": "scenarios.mass",
    "scale": "scenarios.scale",
    "edit": "scenarios.edit",
    "idle": "scenarios.idle",
    "storm": "scenarios.storm",
    "mount": "scenarios.mount",
    "startup": "scenarios.startup",
    "nearby": "scenarios.nearby",
    "stall": "scenarios.stall",
    "junk": "scenarios.junk",
    "drift": "scenarios.drift",
    "bigedit": "scenarios.bigedit",
    "bigstart": "scenarios.bigstart",
}


def scenario(name: str) -> Callable[[Bench], Section]:
    run: Callable[[Bench], Section] = importlib.import_module(SCENARIOS[name]).run
    return run
