"""Debounced writes of what the daemon remembers on disk: status, metrics and ownership, atomically, after a change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from snackwatch.errors import SnackwatchError, error_text
from snackwatch.outputs import write_output_atomically
from snackwatch.state import metrics_text, write_atomically

STATE_SETTLE = 0.2  # status/metrics files are rewritten at most this often, and only after a change


class StateWriter:
    """Writes the status file (and metrics, and the ownership record) at most every STATE_SETTLE, only after a change.

    A failure is logged once per cause and never stops the loop.
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        status_file: Path,
        *,
        metrics: tuple[Path | None, int] = (None, 0o644),
        save_owned: Callable[[], None] | None = None,
        settle: float = STATE_SETTLE,
    ) -> None:
        self.status = status
        self.status_file = status_file
        self.metrics_file, self.metrics_mode = metrics  # --metrics-file, --metrics-mode
        self.save_owned = save_owned
        self.settle = settle
        self.write_at: float | None = None
        self.problem = ""

    def changed(self, now: float) -> None:
        """Something status shows changed: write within `settle` seconds."""
        if self.write_at is None:
            self.write_at = now + self.settle

    def next_due(self) -> float | None:
        return self.write_at

    def write_if_due(self, now: float) -> None:
        if self.write_at is not None and now >= self.write_at:
            self.write()

    def write(self, *, stopped: bool = False) -> None:
        """Write everything now; `stopped`: the daemon is stopping, the metrics say `snackwatch_up 0`."""
        self.write_at = None
        status = self.status()
        try:
            write_atomically(self.status_file, json.dumps(status, separators=(",", ":")))  # compact: the C encoder
            if self.metrics_file is not None:
                text = metrics_text(status, up=not stopped)
                write_output_atomically(self.metrics_file, text, self.metrics_mode, "--metrics-file")
            if self.save_owned is not None:
                self.save_owned()
        except (OSError, SnackwatchError) as error:  # unwritable, or the state directory is no longer safe
            problem = f"{error.filename}: {error_text(error)}" if isinstance(error, OSError) else str(error)
            if problem != self.problem:
                self.problem = problem
                logger.bind(event="state_unwritable").warning("cannot write state file {}", problem)
        else:
            self.problem = ""
