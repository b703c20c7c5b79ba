"""What one turn of the loop must do, decided from what the watchers marked: pure, no I/O, no clock."""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from dataclasses import dataclass

from snackwatch.dirty import Batch, Mark
from snackwatch.trigger import Trigger


@dataclass(frozen=True)
class Turn:
    """The decisions of one turn, before anything is done."""

    reload_asked: bool  # SIGHUP: read the specs now, and answer systemd
    spec_changed: bool  # something changed in a spec directory: read once it settles
    spec_writes: Mapping[str, bool]  # spec path -> still open for writing
    overflow: bool  # the kernel dropped events: only a full pass is safe
    nudge: bool  # something may have unblocked failing repairs: retry them soon
    rearm: frozenset[str]  # directories gone or replaced (a nested one whose name was removed, too)
    scan: frozenset[str]  # directories to scan whole (a burst, a storm)
    removed: frozenset[tuple[str, str]]  # (directory, name) removed outside the directories scanned whole
    changed: frozenset[tuple[str, str]] = frozenset()  # (directory, name) of enforced entries changed in place

    def full_pass(self, reloaded: bool) -> Trigger | None:
        """Why everything must be looked at, if it must: lost events, or a new desired state."""
        if self.overflow:
            return Trigger.OVERFLOW
        return Trigger.SPEC_RELOAD if reloaded else None

    def repairs_first(self, *, reload_due: bool) -> bool:
        """Nothing in this turn can change what a deletion means: repair it before anything else is looked at."""
        return not (self.overflow or self.rearm or self.scan or self.reload_asked or reload_due)


def plan_turn(
    batch: Batch, *, reload_asked: bool, storm_scans: set[str], children: Mapping[str, Container[str]]
) -> Turn:
    """Decide a turn from a batch of marks. `storm_scans`: directories in a storm, scanned instead of heard;
    `children`: per snack directory, the names of the nested snack directories in it (their removal is a
    directory gone, not a snack deleted)."""
    nested = {os.path.join(d, n) for d, n in batch.names if n in children.get(d, ())}
    return Turn(
        reload_asked=reload_asked,
        spec_changed=Mark.SPEC in batch.marks,
        spec_writes=batch.spec_writes,
        overflow=Mark.OVERFLOW in batch.marks,
        nudge=Mark.NUDGE in batch.marks,
        rearm=frozenset(batch.gone | nested),
        scan=frozenset(batch.scan | storm_scans),
        removed=frozenset(batch.names),
        changed=frozenset(pair for pair in batch.changed if pair not in batch.names and pair[0] not in batch.scan),
    )
