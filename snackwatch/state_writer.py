"""Debounced writes of what the daemon remembers on disk: status, metrics and ownership, atomically, after a change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from snackwatch.errors import SnackwatchError, error_text
from snackwatch.metrics import metrics_text
from snackwatch.outputs import write_output_atomically
from snackwatch.state import write_atomically

STATE_SETTLE = 0.2  # status/metrics files are rewritten at most this often, and only after a change
HOLD_MAX = 1.0  # a write held back for repairs waits at most this long (endless churn never starves it)


class StateWriter:
    """Writes the status file (and metrics, and the ownership record) at most every STATE_SETTLE, only after a change.

    A failure is logged once per cause and never stops the loop.
    """

    def __init__(
        self,
        status_file: Path,
        *,
        metrics: tuple[Path | None, int] = (None, 0o644),
        save_owned: Callable[[], None] | None = None,
        settle: float = STATE_SETTLE,
    ) -> None:
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

    def write_if_due(self, now: float, status: Callable[[], tuple[dict[str, Any], str]], *, hold: bool = False) -> None:
        """Write if a change settled; `status` gives the status and its JSON text (see status_view.StatusRows).
        `hold`: a deletion waits for its repair, which goes first (unless the write is already HOLD_MAX late)."""
        if self.write_at is not None and now >= self.write_at and (not hold or now >= self.write_at + HOLD_MAX):
            self.write(*status())

    def write(self, status: dict[str, Any], text: str | None = None, *, stopped: bool = False) -> None:
        """Write everything now; `text`: the status as JSON already (else encoded here); `stopped`: the daemon is
        stopping, the metrics say `snackwatch_up 0`."""
        self.write_at = None
        writing: Path | None = self.status_file  # the file being written: the one a warning names
        try:
            write_atomically(self.status_file, text or json.dumps(status, separators=(",", ":")))  # the C encoder
            writing = self.metrics_file
            if self.metrics_file is not None:
                text = metrics_text(status, up=not stopped)
                write_output_atomically(self.metrics_file, text, self.metrics_mode, "--metrics-file")
            writing = None  # the ownership record names itself
            if self.save_owned is not None:
                self.save_owned()
        except (OSError, SnackwatchError) as error:  # unwritable, or the state directory is no longer safe
            problem = _problem(writing, error)
            if problem != self.problem:
                self.problem = problem
                logger.bind(event="state_unwritable").warning("cannot write state file {}", problem)
        else:
            self.problem = ""


def _problem(writing: Path | None, error: OSError | SnackwatchError) -> str:
    """`file: why`, naming the file that could not be written, and where the failure was when that is elsewhere
    (a state directory under a HOME that does not exist fails at `/nonexistent`, not at the status file)."""
    if not isinstance(error, OSError):
        return str(error)
    if writing is None:
        return f"{error.filename}: {error_text(error)}"
    where = f" (at {error.filename})" if error.filename not in (None, str(writing)) else ""
    return f"{writing}: {error_text(error)}{where}"
