"""When and how the spec is re-read: settle after an editor's save, SIGHUP on request, each problem told once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from snackwatch.desired import Desired
from snackwatch.errors import SpecError
from snackwatch.plan import name_list
from snackwatch.specset import SpecSet

SPEC_SETTLE = 0.02  # editors save in several steps (rename, create, write, close): read after a quiet moment


@dataclass(frozen=True)
class Reloaded:
    """One reload: whether it was asked for (SIGHUP), and the new desired state if one was taken."""

    forced: bool
    desired: Desired | None


class SpecReloader:
    """Owns the spec set's reload timing and the spec problems shown in status (one log line per problem)."""

    def __init__(self, specs: SpecSet, *, on_change: Callable[[float], None] | None = None) -> None:
        self.specs = specs
        self.on_change = on_change
        self.requested = False  # set from the SIGHUP handler
        self.settle_at: float | None = None
        self.problems: dict[Path, str] = {}  # per file: the error or warning logged, so it is logged once

    def request(self) -> None:
        """An explicit reload (SIGHUP): safe to call from a signal handler."""
        self.requested = True

    def changed(self, now: float) -> None:
        """Something changed in a spec directory: read after SPEC_SETTLE of quiet."""
        self.settle_at = now + SPEC_SETTLE

    def next_due(self) -> float | None:
        return self.settle_at

    def due(self, now: float) -> Reloaded | None:
        """Reload if asked to or settled; None when it is not time yet."""
        if self.requested:
            self.requested = False
            self.settle_at = None
            return self._reload(now, forced=True)
        if self.settle_at is not None and now >= self.settle_at:
            self.settle_at = None
            return self._reload(now, forced=False)
        return None

    def _reload(self, now: float, *, forced: bool) -> Reloaded:
        old = self.specs.desired
        result = self.specs.reload(forced=forced, broken=set(self.problems))
        for path in result.revived:
            logger.bind(event="spec_ok").info("{} is valid again, unchanged", path)
        for path in [path for path in self.problems if path not in result.problems]:
            del self.problems[path]
        for path, error in result.problems.items():
            self._trouble(path, error, now)
        if result.desired is not None:
            _log_changes(old, result.desired, result.dropped)
        return Reloaded(forced, result.desired)

    def _trouble(self, path: Path, error: SpecError, now: float) -> None:
        message = str(error)
        if self.problems.get(path) == message:
            return
        self.problems[path] = message
        if self.on_change is not None:
            self.on_change(now)
        kept = f"keeping the last good spec ({self.specs.desired.count} snacks)"
        if error.line is None:  # the file itself is missing or unreadable
            logger.bind(event="spec_missing", spec=str(path)).warning("{}; {} until it is back", message, kept)
        else:
            logger.bind(event="spec_invalid", spec=str(path), line=error.line).error("{}; {}", message, kept)


def _log_changes(old: Desired, new: Desired, dropped: list[Path]) -> None:
    old_paths, new_paths = old.by_path(), new.by_path()
    added = [new.display(entry) for path, entry in new_paths.items() if path not in old_paths]
    removed = [old.display(entry) for path, entry in old_paths.items() if path not in new_paths]
    changes = [f"+{name}" for name in added] + [f"-{name}" for name in removed]
    changes += [f"pantry {spec.pantry}" for spec in new.specs if spec.pantry not in {s.pantry for s in old.specs}]
    changes += [f"dropped {path.name}" for path in dropped]
    logger.bind(event="reload", added=added, removed=removed).info(
        "spec reloaded: {} ({} snacks)", name_list(changes) if changes else "no change", new.count
    )
