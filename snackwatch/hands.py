"""The loop's hands: reconcile what a turn decided (a full pass, swept directories, targeted repairs) and fold each
outcome into the ledger, its narrator and the state writer."""

from __future__ import annotations

from collections.abc import Collection

from loguru import logger

from snackwatch.desired import Desired, Entry
from snackwatch.dirty import Mark
from snackwatch.lone import LoneGate
from snackwatch.mounts import under
from snackwatch.parts import Parts
from snackwatch.reconcile import (
    Outcome,
    Status,
    owners_drift,
    reconcile_all,
    reconcile_directory,
    reconcile_names,
    restore_plain,
)
from snackwatch.text import name_list
from snackwatch.trigger import Trigger

# The hot path's debug line, bound once: a filtered-out line then costs a level check, not a new logger.
_REPAIR_LOG = logger.bind(event="repair")


class Hands:
    """Acts on the desired state through the parts; owns nothing but the sorted directories of a desired state."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.options = parts.options
        self._sorted: tuple[Desired | None, list[str]] = (None, [])
        self.lone = LoneGate()  # which removals may be restored before the turn (restore_lone)

    @property
    def desired(self) -> Desired:
        return self.parts.specs.desired

    def deleted(self, removed: Collection[tuple[str, str]], now: float) -> None:
        """Removed snacks through the fight gate, then repaired (a snack in a fight or backoff waits its turn)."""
        if not removed:
            return
        p = self.parts
        todo, changes = p.ledger.deleted(removed, now)
        p.narrator.tell(changes, self.desired, now)
        self.repair(now, todo, Trigger.DELETED)

    def changed(self, changed: Collection[tuple[str, str]], now: float) -> None:
        """Enforced entries changed in place: through the fight gate (a change right after our correction is a
        flap), then checked and put back."""
        if not changed:
            return
        p = self.parts
        todo, changes = p.ledger.deleted(changed, now, changed=True)
        p.narrator.tell(changes, self.desired, now)
        self.repair(now, todo, Trigger.CHANGED, changed=True)

    def looked(self, now: float, entries: Collection[Entry]) -> None:
        """Entries a reload added or declared otherwise: each looked at (created if missing, its drift told), the
        rest of the desired state left as it was known (a reload in O(changed))."""
        todo: dict[str, list[Entry]] = {}
        for entry in entries:
            todo.setdefault(entry.directory, []).append(entry)
        self.repair(now, todo, Trigger.SPEC_RELOAD)

    def sweep(self, now: float, affected: set[str], scan: Collection[str]) -> set[str]:
        """Directories the armer re-armed (and every snack directory below them) are looked at whole; so are
        directories in a burst or a storm, leaving snacks held back by a backoff or a fight to their schedule.
        Returns the directories looked at."""
        swept = under(affected, self.sorted_directories()) if affected else set()
        if swept:  # one fold, so one line per kind of outcome for everything the loss took
            outcomes = [o for directory in sorted(swept) for o in self._directory(directory)]
            self.fold(outcomes, now, Trigger.DIRECTORY, swept=swept)
        held = self.parts.ledger.held(now) if scan else set()
        for directory in sorted(set(scan) - swept):
            logger.bind(event="burst", directory=directory).debug("a burst in {}: scanning it whole", directory)
            self.fold(self._directory(directory, held), now, Trigger.DELETED)
        return swept | set(scan)

    def _directory(self, directory: str, held: Collection[str] | None = None) -> list[Outcome]:
        """A directory looked at whole: a sweep lists it; a burst or storm scan (`held` given) looks its snacks up
        by name when others crowd it, so its cost is the spec's, not theirs."""
        p = self.parts
        return reconcile_directory(
            self.desired,
            directory,
            dry_run=self.options.dry_run,
            recorder=p.pruner,
            held=held or (),
            lookup=held is not None,
            owners=held is None,  # a scan every 20 ms skips the owner lstat of name-only snacks
        )

    def sorted_directories(self) -> list[str]:
        """The snack directories, sorted (for mount points), computed once per desired state."""
        if self._sorted[0] is not self.desired:
            self._sorted = (self.desired, sorted(self.desired.directories))
        return self._sorted[1]

    def repair(self, now: float, todo: dict[str, list[Entry]], trigger: Trigger, *, changed: bool = False) -> None:
        for directory, entries in todo.items():
            names = [entry.name for entry in entries]
            _REPAIR_LOG.debug(
                "targeted repair in {} ({}): {}", directory, trigger.value, name_list(names), directory=directory
            )
            self.fold(self._reconcile(directory, names, changed=changed), now, trigger)
        if todo:
            self.parts.held_dirs.used(now)

    def restore_lone(self, removed: list[tuple[str, str]], now: float) -> bool:
        """A read of only these removals, nothing else in the turn: restored first if their gate is provably open
        (lone.py), by the same targeted repair; then heard by the fight gate, told and folded, as deleted() does in
        the other order (same clock, same book after). False, nothing done: they take the normal turn."""
        p = self.parts
        desired, held_dirs = p.specs.desired, p.held_dirs
        todo = self.lone.restores(removed, desired, p.ledger.health, now)
        if todo is None:
            return False
        done, heard = [], []
        for directory, entries in todo.items():  # loops, not comprehensions: each of those is a call before the create
            outcomes = restore_plain(desired, directory, entries, held_dirs)
            done.append((directory, outcomes))
            for entry in entries:
                heard.append((directory, entry.name))
        _, changes = p.ledger.deleted(heard, now)  # the fight gate counts them now (it said "now" before the create)
        p.narrator.tell(changes, desired, now)
        for directory, outcomes in done:
            _REPAIR_LOG.debug("restored first in {}: {}", directory, _Names(outcomes), directory=directory)
            if any(outcome.status is Status.FAILED for outcome in outcomes):
                held_dirs.drop(directory)  # the next try walks again
            self.fold(outcomes, now, Trigger.DELETED)
        held_dirs.used(now)
        p.dirty.mark(Mark.NUDGE, "", "")  # as any removal: failing repairs retry soon (in this turn's step)
        return True

    def _reconcile(self, directory: str, names: list[str], *, changed: bool = False) -> list[Outcome]:
        """Named snacks of one directory looked at (or created) through the held directory fds."""
        outcomes = reconcile_names(
            self.desired,
            directory,
            names,
            dry_run=self.options.dry_run,
            recorder=self.parts.pruner,
            changed=changed,
            held_dirs=self.parts.held_dirs,
        )
        if any(outcome.status is Status.FAILED for outcome in outcomes):
            self.parts.held_dirs.drop(directory)  # the next try walks again
        return outcomes

    def full_pass(self, now: float, trigger: Trigger, *, owners: bool = True) -> None:
        """Everything looked at; `owners=False` (the start) leaves the owner look of name-only snacks, a report
        only, to owners_look() once the daemon is ready (at 100k snacks, 100k lstats: ~0.2 s)."""
        logger.bind(event="full_pass").debug(
            "full pass over {} directories: {}", len(self.desired.directories), trigger.value
        )
        outcomes = reconcile_all(self.desired, dry_run=self.options.dry_run, recorder=self.parts.pruner, owners=owners)
        self.fold(outcomes, now, trigger, everything=True)

    def owners_look(self, now: float, trigger: Trigger) -> None:
        """The owner look a pass left out: squatted names drift in owner (status, why, metrics)."""
        outcomes = owners_drift(self.desired, dry_run=self.options.dry_run)
        if outcomes:
            self.fold(outcomes, now, trigger)

    def fold(
        self,
        outcomes: list[Outcome],
        now: float,
        trigger: Trigger,
        *,
        everything: bool = False,
        swept: Collection[str] = (),
    ) -> None:
        p = self.parts
        changes = p.ledger.fold(outcomes, now, trigger, everything=everything, swept=swept)
        p.narrator.tell(changes, self.desired, now)
        if outcomes or everything:
            p.state.changed(now)


class _Names:
    """The names of some outcomes, as a debug line lists them, formatted only if that line is written."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes

    def __str__(self) -> str:
        return name_list([outcome.entry.name for outcome in self.outcomes])
