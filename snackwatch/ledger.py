"""The one place that decides what each reconcile outcome means: health, history, conflicts, fights, log lines."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loguru import logger

from snackwatch.backoff import BackoffPolicy, Change, FightPolicy, Health
from snackwatch.desired import Desired, Entry
from snackwatch.errors import error_text
from snackwatch.plan import name_list
from snackwatch.reconcile import Outcome, Status

_TOLD = {  # event -> its line, in the order they are told
    "created": "created {}",
    "restored": "restored {}",
    "would_create": "dry run: would create {}",
    "would_restore": "dry run: would restore {}",
    "recovered": "recovered: {} restored again",
}
CONFLICT_QUIET = 10.0  # a snack's place flipping between kinds: at most one conflict line per snack this often


@dataclass(slots=True)
class History:
    """What happened to one snack since start: for status, why and metrics."""

    repairs: int = 0
    last_repair: float | None = None
    trigger: str = ""


@dataclass(slots=True)
class ConflictLine:
    """When a snack's conflict was last logged, and how many changes in its place went unlogged since."""

    logged_at: float
    unlogged: int = 0


class Ledger:
    """Folds outcomes into per-snack health, history and conflicts; answers status and when to look again.

    Time comes in as `now` (monotonic) on every call and `wall` (a clock) for the timestamps users read,
    so every rule here is tested in-process with an injected clock.
    """

    def __init__(
        self,
        desired: Desired,
        backoff: BackoffPolicy = BackoffPolicy(),
        fight: FightPolicy = FightPolicy(),
        *,
        wall: Callable[[], float] = time.time,
        on_created: Callable[[Entry, os.stat_result], None] | None = None,
        on_change: Callable[[float], None] | None = None,
    ) -> None:
        self.desired = desired
        self.backoff = backoff
        self.fight = fight
        self.health = Health(backoff, fight)
        self.wall = wall
        self.on_created = on_created
        self.on_change = on_change
        self.repairs = 0  # restores of snacks that were there before
        self.created = 0  # first creations: at start, or of snacks a reload added
        self.missing: set[str] = set()  # dry run: snacks not on disk
        self.fresh: set[str] = set()  # added by the last reload, not yet looked at by a full pass
        self.held: list[tuple[Callable[..., None], tuple[object, ...]]] | None = None
        self.conflicts: dict[str, str] = {}  # path -> what stands there or in the way (status's reason)
        self.conflict_lines: dict[str, ConflictLine] = {}  # path -> its last conflict line, kept past a repair
        self.history: dict[str, History] = {}
        self.squatted: dict[str, str] = {}  # path -> who created it before our create could (`created by nobody`)
        self.last_reconcile = 0.0

    # --- when to look again ---------------------------------------------------------------------

    def next_due(self) -> float | None:
        return self.health.next_due()

    def nudge(self, now: float) -> None:
        """Something relevant happened (a removal, a permission change, a remount): failing repairs retry soon."""
        self.health.nudge(now)

    def due(self, now: float) -> dict[str, list[Entry]]:
        """Snacks whose wait (backoff or fight) is over, by directory."""
        return self._by_directory(self.health.pop_due(now))

    def skip_due(self, now: float) -> None:
        """A full pass just looked at everything: drop what was due."""
        self.health.pop_due(now)

    def deleted(self, names: Iterable[tuple[str, str]], now: float) -> dict[str, list[Entry]]:
        """The fight gate: entries to repair now, by directory; a snack in a fight or backoff waits its turn."""
        todo: dict[str, list[Entry]] = defaultdict(list)
        for directory, name in names:
            entry = self.desired.entry(directory, name)
            if entry is None:
                continue
            delay, change = self.health.deleted(entry.path, now)
            if change is Change.FIGHT_STARTED:
                logger.bind(event="fight", snack=self.desired.display(entry)).warning(
                    "{} is removed again right after each restore ({} times in a row): something else keeps "
                    "deleting it; backing off (retrying at most every {:g} s)",
                    self.desired.display(entry),
                    self.fight.threshold,
                    self.fight.backoff.cap,
                )
            elif change is Change.FIGHT_OVER:
                self._fight_over(entry)
            if delay == 0:
                todo[directory].append(entry)
            else:
                logger.bind(event="held", snack=entry.path).debug(
                    "{} deleted while held back: repair in {:.3f} s", entry.path, delay
                )
        return todo

    def _by_directory(self, paths: Iterable[str]) -> dict[str, list[Entry]]:
        todo: dict[str, list[Entry]] = defaultdict(list)
        for path in dict.fromkeys(paths):
            directory, name = os.path.split(path)
            entry = self.desired.entry(directory, name)
            if entry is not None:
                todo[directory].append(entry)
        return todo

    # --- outcomes in, state and log lines out -----------------------------------------------------

    def fold(self, outcomes: list[Outcome], now: float, trigger: str, *, everything: bool = False) -> None:
        """Take one reconcile's outcomes; `everything`: it was a full pass, so unlisted snacks are present.

        A first creation (at start, or of a snack a reload just added) is "created" and counted apart;
        a creation of a snack that was there before is a repair: "restored".
        """
        told: dict[str, list[str]] = {event: [] for event in _TOLD}
        failing: dict[str, list[str]] = defaultdict(list)
        blocked: dict[tuple[str, str], list[str]] = defaultdict(list)  # (directory, what blocks it) -> snacks
        seen = set()
        wall = self.wall()
        health = self.health
        fresh = self.fresh
        starting = trigger == "start"
        single = len(self.desired.specs) <= 1  # Desired.display(), inlined: this loop is the burst path
        for outcome in outcomes:
            entry = outcome.entry
            path = entry.path
            shown = entry.snack.name if single else path
            first = starting or path in fresh
            if everything:
                seen.add(path)
            change: Change | None = None
            status = outcome.status
            if status is Status.CREATED:
                change = self._made(outcome, told, shown=shown, first=first, now=now, wall=wall, trigger=trigger)
            elif status is Status.PRESENT:
                change = self._present(outcome, now, shown=shown, first=first)
            elif status is Status.WOULD_CREATE:
                self.missing.add(path)
                told["would_create" if first else "would_restore"].append(shown)
            elif status is Status.CONFLICT and outcome.blocked:
                self._blocked(entry, outcome, blocked)
            elif status is Status.CONFLICT:
                self._conflict(entry, outcome, now)
                if not starting:
                    health.tried(path, now)
            else:
                error = error_text(outcome.error)
                _, change = health.failed(path, now, error)
                if change is Change.STARTED_FAILING:
                    failing[error].append(shown)
            if change is Change.RECOVERED:
                told["recovered"].append(shown)
            elif change is Change.FIGHT_OVER:
                self._fight_over(entry)
        if everything:
            self._all_others_present(seen, now, told["recovered"])
            self.last_reconcile = wall
            self.fresh = set()
        if (outcomes or everything) and self.on_change is not None:
            self.on_change(now)
        self._tell(told, failing, trigger)
        for (directory, what), names in blocked.items():
            self._say(
                logger.bind(event="conflict", directory=directory, snacks=names).warning,
                "conflict: {}: {} not enforced there ({})",
                what,
                f"{len(names)} snack" + ("" if len(names) == 1 else "s"),
                name_list(names),
            )

    def _tell(self, told: dict[str, list[str]], failing: dict[str, list[str]], trigger: str) -> None:
        """One line per kind of thing that happened in a fold (names listed, the rest counted)."""
        for event, names in told.items():
            if names:
                self._say(logger.bind(event=event, snacks=names, trigger=trigger).info, _TOLD[event], name_list(names))
        for error, names in failing.items():
            self._say(
                logger.bind(event="failing", snacks=names, error=error).error,
                "cannot restore {}: {}; retrying with backoff (up to every {:g} s)",
                name_list(names),
                error,
                self.backoff.cap,
            )

    def _made(
        self,
        outcome: Outcome,
        told: dict[str, list[str]],
        *,
        shown: str,
        first: bool,
        now: float,
        wall: float,
        trigger: str,
    ) -> Change | None:
        """We created a snack: a first creation, or a repair (which the fight and backoff rules hear of)."""
        path = outcome.entry.path
        self.missing.discard(path)
        self.squatted.pop(path, None)
        if first:
            told["created"].append(shown)
            self._record_creation(outcome)
            return None
        if self.health.loggable_restore(path):
            told["restored"].append(shown)
        self._record_repair(outcome, wall, trigger)
        return self.health.repaired(path, now)

    def hold_lines(self) -> None:
        """Keep log lines back (the first convergence is told after the start line), until release_lines()."""
        self.held = []

    def release_lines(self) -> None:
        held, self.held = self.held or [], None
        for say, args in held:
            say(*args)

    def _say(self, say: Callable[..., None], *args: object) -> None:
        if self.held is not None:
            self.held.append((say, args))
        else:
            say(*args)

    def _record_creation(self, outcome: Outcome) -> None:
        """A first creation: counted, and told to the pruner; no per-snack story (100k snacks, 100k stories)."""
        self.created += 1
        self.conflicts.pop(outcome.entry.path, None)
        if outcome.created is not None and self.on_created is not None:
            self.on_created(outcome.entry, outcome.created)

    def _record_repair(self, outcome: Outcome, wall: float, trigger: str) -> None:
        entry = outcome.entry
        self.repairs += 1
        self.conflicts.pop(entry.path, None)
        if outcome.created is not None and self.on_created is not None:
            self.on_created(entry, outcome.created)
        history = self.history.get(entry.path)
        if history is None:
            history = self.history[entry.path] = History()
        history.repairs += 1
        history.last_repair = wall
        history.trigger = trigger

    def _conflict(self, entry: Entry, outcome: Outcome, now: float) -> None:
        """Log a conflict once; a place that keeps changing kind is summed up at most every CONFLICT_QUIET s."""
        what = outcome.reason or f"a {outcome.kind.value if outcome.kind else 'something'}"  # or: a symlink to v1
        if self.conflicts.get(entry.path) == f"{what} is in its place":
            return
        self.conflicts[entry.path] = f"{what} is in its place"
        line = self.conflict_lines.get(entry.path)
        if line is not None and now - line.logged_at < CONFLICT_QUIET:
            line.unlogged += 1
            return
        self.conflict_lines[entry.path] = ConflictLine(now)
        shown = self.desired.display(entry)
        more = f" ({line.unlogged} more changes in its place not logged)" if line and line.unlogged else ""
        self._say(
            logger.bind(event="conflict", snack=shown, path=entry.path).warning,
            "conflict: {} stands where snack {} should be; leaving it alone{}",
            what,
            shown,
            more,
        )

    def _blocked(self, entry: Entry, outcome: Outcome, blocked: dict[tuple[str, str], list[str]]) -> None:
        """The way to the snack's directory is blocked (an unsafe symlink, a file, a directory another user owns):
        one line per thing in the way, naming its path, kind and owner (the reason), said once."""
        kind = outcome.kind.value if outcome.kind else "something"
        what = outcome.reason or f"a {kind} is in the way of {entry.directory}"
        if self.conflicts.get(entry.path) != what:
            self.conflicts[entry.path] = what
            blocked[(what.partition(" is ")[0], what)].append(self.desired.display(entry))

    def _present(self, outcome: Outcome, now: float, *, shown: str, first: bool) -> Change | None:
        path = outcome.entry.path
        self.conflicts.pop(path, None)
        self.missing.discard(path)
        if outcome.reason:  # another user created the name while we were about to
            self._squatted(outcome.entry, outcome.reason, shown, first)
        return self.health.present(path, now)

    def _squatted(self, entry: Entry, reason: str, shown: str, first: bool) -> None:
        """Another user created the name while we were about to: said once, shown by status until it is ours."""
        if self.squatted.get(entry.path) != reason:
            self.squatted[entry.path] = reason
            self._say(
                logger.bind(event="squatted", snack=shown, path=entry.path).warning,
                "{} was {} before it could be {}: left as it is (not ours to change)",
                shown,
                reason,
                "created" if first else "restored",
            )

    def _fight_over(self, entry: Entry) -> None:
        shown = self.desired.display(entry)
        logger.bind(event="fight_over", snack=shown).info(
            "{} stays in place again: the fight is over ({} restores not logged one by one)",
            shown,
            self.health.take_unlogged_restores(entry.path),
        )

    def _all_others_present(self, seen: set[str], now: float, recovered: list[str]) -> None:
        """After a full pass, every snack without an outcome is present: clear its failure/conflict state."""
        by_path = None
        for path in list(self.health.snacks):
            if path in seen:
                continue
            if self.health.present(path, now) is Change.RECOVERED:
                by_path = by_path or self.desired.by_path()
                entry = by_path.get(path)
                recovered.append(self.desired.display(entry) if entry else path)
        for path in [path for path in self.conflicts if path not in seen]:
            del self.conflicts[path]

    # --- the spec changed -------------------------------------------------------------------------

    def spec_applied(self, desired: Desired, now: float) -> None:
        """A new desired state is in force: forget everything about snacks that left it."""
        old = self.desired.by_path()
        self.desired = desired
        keep = set(desired.by_path())
        self.fresh = keep - old.keys()
        self.health.forget(keep)
        self.missing &= keep
        for table in (self.conflicts, self.conflict_lines, self.history, self.squatted):
            for path in [path for path in table if path not in keep]:
                del table[path]
        if self.on_change is not None:
            self.on_change(now)

    # --- what status shows --------------------------------------------------------------------------

    def snacks_status(self, now: float, cap: int) -> tuple[dict[str, dict[str, object]], bool]:
        """Every snack's status when there are at most `cap`, else only those with a story; True if all."""
        if self.desired.count > cap:
            return self.snacks_with_a_story(now), False
        return {entry.path: self.snack_status(entry, now) for entry in self.desired.entries()}, True

    def snacks_with_a_story(self, now: float) -> dict[str, dict[str, object]]:
        """Per snack that was repaired, is failing, in conflict or missing: what status, why and metrics show."""
        paths = set(self.history) | set(self.conflicts) | set(self.health.failing()) | self.missing
        snacks = {}
        for path in sorted(paths):
            entry = self.desired.entry(*os.path.split(path))  # O(1): no table of every snack
            if entry is not None:
                snacks[path] = self.snack_status(entry, now)
        return snacks

    def snack_status(self, entry: Entry, now: float) -> dict[str, object]:
        path = entry.path
        history = self.history.get(path) or History()
        info: dict[str, object] = {
            "name": entry.snack.name,
            "type": entry.snack.type,
            "spec": str(entry.spec.path),
            "line": entry.snack.line,
            "state": "ok",
            "repairs": history.repairs,
            "last_repair": history.last_repair,
            "trigger": history.trigger,
        }
        view = self.health.describe(path, now)
        if path in self.conflicts:
            info.update(state="conflict", reason=self.conflicts[path])
        elif path in self.missing:
            info.update(state="missing", reason="not on disk (dry run: not created)")
        elif view is not None and view.error:
            info.update(state="failing", reason=view.error, next_retry=self.wall() + (view.retry_in or 0.0))
        if view is not None and view.fighting:
            info["fighting"] = True
        if path in self.squatted:
            info["owner"] = f"{self.squatted[path]} before snackwatch could"
        return info

    def counts(self) -> dict[str, int]:
        failing = len(self.health.failing())
        conflicts = len(self.conflicts)
        missing = len(self.missing - set(self.conflicts))
        return {
            "snacks": self.desired.count,
            "ok": self.desired.count - failing - conflicts - missing,
            "failing": failing,
            "conflicts": conflicts,
            "missing": missing,
            "repairs": self.repairs,
            "created": self.created,
        }

    def status_line(self) -> str:
        counts = self.counts()
        missing = f", {counts['missing']} missing" if counts["missing"] else ""
        repairs = f"{counts['repairs']} repair{'' if counts['repairs'] == 1 else 's'}"
        return (
            f"{counts['ok']}/{counts['snacks']} snacks ok, {repairs}, "
            f"{counts['failing']} failing, {counts['conflicts']} conflicts{missing}"
        )
