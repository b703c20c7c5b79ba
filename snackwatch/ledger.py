"""The book of what each reconcile outcome means: health, history, conflicts, fights; state without I/O.

Every call takes `now` (monotonic) and returns what changed as a value (`Changes`); the narrator turns that
into log lines and the status view into what `status` shows, so every rule here is tested in-process.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Container, Iterable
from dataclasses import dataclass, field

from snackwatch.backoff import BackoffPolicy, Change, FightPolicy, Health
from snackwatch.desired import Delta, Desired, Entry
from snackwatch.drift import Aspect
from snackwatch.errors import error_text
from snackwatch.plan import Kind
from snackwatch.reconcile import Outcome, Status
from snackwatch.trigger import Trigger

HISTORY_KEPT = 1000  # snacks whose repair story is kept (the most recently repaired); the rest are counted only
RESTORES_AT_ONCE = 64  # a fold of at least this many restores (a burst's scan) takes them table by table
TOLD = ("created", "restored", "would_create", "would_restore", "recovered")  # events a fold lists, in this order


@dataclass(slots=True)
class History:
    """What happened to one snack since start: for status, why and metrics."""

    repairs: int = 0
    last_repair: float | None = None
    trigger: str = ""


@dataclass
class Changes:
    """What one call changed, worth telling: names by event, failures by error, conflicts, fights."""

    trigger: Trigger = Trigger.DELETED
    told: dict[str, list[str]] = field(default_factory=lambda: {event: [] for event in TOLD})
    failing: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # error -> names
    blocked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # what is in the way -> names
    conflicts: list[tuple[Entry, str]] = field(default_factory=list)  # something new stands in a snack's place
    fights: list[Entry] = field(default_factory=list)  # fights that started
    drift_fights: list[Entry] = field(default_factory=list)  # fights over an enforced aspect that started
    corrected: list[tuple[Entry, tuple[Aspect, ...], str]] = field(default_factory=list)  # put back; moved aside to
    left: list[tuple[Entry, tuple[Aspect, ...]]] = field(default_factory=list)  # drift a reload left as it is
    fights_over: list[tuple[Entry, int]] = field(default_factory=list)  # with the restores not told one by one
    squatted: list[tuple[Entry, str, bool]] = field(default_factory=list)  # (entry, who made it, first creation)
    held: list[tuple[str, float]] = field(default_factory=list)  # deletions held back: (path, repair in)

    def nothing(self) -> bool:
        """Nothing worth a line (the single deletion's gate: tell() returns at once): every list and table empty,
        whatever fields this class grows."""
        told = self.told
        lists = (getattr(self, name) for name in self.__dataclass_fields__ if name not in ("trigger", "told"))
        return not any(lists) and not any(told[event] for event in TOLD)


class Book:
    """The ledger's state, and what the loop asks of it: when to look again, and the fight gate for deletions."""

    def __init__(
        self,
        desired: Desired,
        backoff: BackoffPolicy = BackoffPolicy(),
        fight: FightPolicy = FightPolicy(),
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.desired = desired
        self.backoff = backoff
        self.fight = fight
        self.health = Health(backoff, fight)
        self.wall = wall  # timestamps users read
        self.repairs = 0  # restores of snacks that were there before
        self.created = 0  # first creations: at start, or of snacks a reload added
        self.missing: set[str] = set()  # dry run: snacks not on disk
        self.fresh: set[str] = set()  # never seen on disk since they entered the spec: their creation is a first
        self.conflicts: dict[str, str] = {}  # path -> what stands there or in the way (status's reason)
        self.history: OrderedDict[str, History] = OrderedDict()  # the last HISTORY_KEPT repaired, oldest first
        self.squatted: dict[str, str] = {}  # path -> who created it before our create could (`created by nobody`)
        self.touched: set[str] = set()  # snacks whose story may have changed since take_touched()
        self.all_touched = True  # ...or every snack's (a new desired state)
        self.drift: dict[str, tuple[Aspect, ...]] = {}  # path -> its aspects not in line with the spec, left as is
        self.last_reconcile = 0.0

    def next_due(self) -> float | None:
        return self.health.next_due()

    def nudge(self, now: float) -> None:
        """Something relevant happened (a removal, a permission change, a remount): failing repairs retry soon."""
        self.health.nudge(now)

    def held(self, now: float) -> set[str]:
        """Paths waiting out a backoff or a fight: a scan leaves them to their schedule."""
        return self.health.held(now)

    @property
    def has_failing(self) -> bool:
        return self.health.has_failing

    def due(self, now: float) -> dict[str, list[Entry]]:
        """Snacks whose wait (backoff or fight) is over, by directory."""
        return self._by_directory(self.health.pop_due(now))

    def skip_due(self, now: float) -> None:
        """A full pass just looked at everything: drop what was due."""
        self.health.pop_due(now)

    def take_touched(self) -> set[str] | None:
        """The snacks whose story may have changed since the last call (None: any of them); for the status rows."""
        touched, everything = self.touched, self.all_touched
        self.touched, self.all_touched = set(), False
        return None if everything else touched

    def deleted(
        self, names: Iterable[tuple[str, str]], now: float, *, changed: bool = False
    ) -> tuple[dict[str, list[Entry]], Changes]:
        """The fight gate: entries to repair now, by directory; a snack in a fight or backoff waits its turn.
        `changed`: the events said the entries changed in place (enforced ones): a change right after our
        correction is a flap, as a removal right after a restore is."""
        todo: dict[str, list[Entry]] = defaultdict(list)
        changes = Changes(Trigger.CHANGED if changed else Trigger.DELETED)
        for directory, name in names:
            entry = self.desired.entry(directory, name)
            if entry is None:
                continue
            self.touched.add(entry.path)
            if changed:
                delay, change = self.health.changed(entry.path, now), None
            else:
                delay, change = self.health.deleted(entry.path, now)
                if entry.snack.enforce:
                    self.health.changed(entry.path, now)  # a file renamed over an enforced one is a change too
            if change is Change.FIGHT_STARTED:
                changes.fights.append(entry)
            elif change is Change.FIGHT_OVER:
                changes.fights_over.append((entry, self.health.take_unlogged_restores(entry.path)))
            if delay == 0:
                todo[directory].append(entry)
            else:
                changes.held.append((entry.path, delay))
        return todo, changes

    def _by_directory(self, paths: Iterable[str]) -> dict[str, list[Entry]]:
        todo: dict[str, list[Entry]] = defaultdict(list)
        for path in dict.fromkeys(paths):
            directory, name = os.path.split(path)
            entry = self.desired.entry(directory, name)
            if entry is not None:
                todo[directory].append(entry)
        return todo

    def spec_applied(self, desired: Desired, delta: Delta | None = None) -> Container[str]:
        """A new desired state is in force: forget everything about snacks that left it; returns the paths kept.
        With a `delta` (built from the old state) only the entries it names are looked at: O(changed)."""
        if delta is not None:
            return self._patched(desired, delta)
        old = self.desired.by_path()
        self.desired = desired
        self.all_touched = True
        keep = set(desired.by_path())
        self.fresh = (keep - old.keys()) | (self.fresh & keep)
        self.health.forget(keep)
        self.missing &= keep
        for table in (self.conflicts, self.history, self.squatted, self.drift):
            for path in [path for path in table if path not in keep]:
                del table[path]
        return keep

    def _patched(self, desired: Desired, delta: Delta) -> Container[str]:
        self.desired = desired
        gone = {entry.path for entry in delta.removed}
        came = {entry.path for entry in delta.added}
        self.touched |= gone | came | {entry.path for entry in delta.changed}
        self.all_touched = self.all_touched or delta.lines_moved  # the status rows show lines: O(listed), capped
        self.fresh = (self.fresh - gone) | came
        keep = desired.paths()
        self.health.forget(keep)
        self.missing -= gone
        for table in (self.conflicts, self.history, self.squatted, self.drift):
            for path in gone:
                table.pop(path, None)
        return keep


class Ledger(Book):
    """Folds outcomes into the book: per-snack health, history, conflicts and drift; every fold returns what
    changed (`Changes`), for the narrator to tell."""

    def fold(
        self,
        outcomes: list[Outcome],
        now: float,
        trigger: Trigger,
        *,
        everything: bool = False,
        swept: Collection[str] = (),
    ) -> Changes:
        """Take one reconcile's outcomes. `everything`: a full pass; `swept`: directories looked at whole. In
        either, a snack without an outcome is present.

        A first creation (at start, or of a snack a reload just added) is "created" and counted apart;
        a creation of a snack that was there before is a repair: "restored".
        """
        changes = Changes(trigger)
        starting, fresh, wall = trigger is Trigger.START, self.fresh, self.wall()
        single = len(self.desired.specs) <= 1  # Desired.display(), inlined: this loop is the burst path
        touched = None if self.all_touched else self.touched
        paths = [outcome.entry.path for outcome in outcomes]  # made once each (Entry.path is built when asked)
        pairs: Iterable[tuple[Outcome, str]] = zip(outcomes, paths, strict=True)
        if starting and self._blank():
            pairs = self._first_made_all(outcomes, paths, changes.told["created"], single)
        elif not starting and self._all_restores(outcomes, paths):
            pairs = _restored_all(self, outcomes, paths, changes, single, now=now, wall=wall)
        for outcome, path in pairs:
            entry = outcome.entry
            first = starting or path in fresh
            if touched is not None:
                touched.add(path)
            shown = entry.snack.name if single else path
            if first and outcome.status is Status.CREATED:  # a cold start's 100k: the short way
                change = self._first_made(path, shown, changes.told, now)
            else:
                change = self._fold_one(outcome, path, shown, changes, first=first, now=now, wall=wall)
            if change is Change.RECOVERED:
                changes.told["recovered"].append(shown)
            elif change is Change.FIGHT_OVER:
                changes.fights_over.append((entry, self.health.take_unlogged_restores(path)))
        if everything or swept:
            self._others_present(set(paths), None if everything else set(swept), now, changes.told["recovered"])
        if everything:
            self.last_reconcile = wall
            made = (Status.CREATED, Status.PRESENT)
            self.fresh = {
                path
                for o, path in zip(outcomes, paths, strict=True)
                if o.status not in made and (starting or path in fresh)
            }
        return changes

    def _fold_one(
        self, outcome: Outcome, path: str, shown: str, changes: Changes, *, first: bool, now: float, wall: float
    ) -> Change | None:
        """One outcome (for `path`) into the book; the health change it made, if any."""
        status, told = outcome.status, changes.told
        if status is Status.CREATED:
            self.fresh.discard(path)
            self.drift.pop(path, None)
            return self._made(path, told, shown, first=first, now=now, wall=wall, trigger=changes.trigger)
        if status in (Status.PRESENT, Status.CORRECTED, Status.FAILED):
            self._drifting(outcome, changes)
        if status is Status.CORRECTED:
            return self._corrected(outcome, changes, now=now, wall=wall)
        if status is Status.PRESENT:
            self.fresh.discard(path)
            self.conflicts.pop(path, None)
            self.missing.discard(path)
            self.health.looked(path)
            if outcome.reason and self.squatted.get(path) != outcome.reason:  # another user created it first
                self.squatted[path] = outcome.reason
                changes.squatted.append((outcome.entry, outcome.reason, first))
            return self.health.present(path, now)
        if status is Status.WOULD_CREATE:
            self.missing.add(path)
            told["would_create" if first else "would_restore"].append(shown)
        elif status is Status.CONFLICT:
            self._conflict(outcome.entry, outcome, changes, now, starting=changes.trigger is Trigger.START)
        else:
            error = error_text(outcome.error)
            _, change = self.health.failed(path, now, error)
            if change is Change.STARTED_FAILING:
                changes.failing[error].append(shown)
        return None

    def _blank(self) -> bool:
        """Nothing known of any snack yet (the start's first fold): a first creation changes no table but its count."""
        tables = (self.fresh, self.drift, self.missing, self.conflicts, self.squatted)
        return not any(tables) and not self.health.snacks and not self.health.changed_at

    def _first_made_all(
        self, outcomes: list[Outcome], paths: list[str], created: list[str], single: bool
    ) -> list[tuple[Outcome, str]]:
        """The start's creations folded at once into a blank book (each path in the outcomes once, as a pass gives
        them; _first_made on each would only pop what is not there): counted, told, touched. The others are
        returned, for the fold to take one by one."""
        made, others = Status.CREATED, []
        start = len(created)
        for outcome, path in zip(outcomes, paths, strict=True):
            if outcome.status is made:
                created.append(outcome.entry.snack.name if single else path)
            else:
                others.append((outcome, path))
        self.created += len(created) - start
        if not self.all_touched:
            self.touched.update(path for outcome, path in zip(outcomes, paths, strict=True) if outcome.status is made)
        return others

    def _all_restores(self, outcomes: list[Outcome], paths: list[str]) -> bool:
        """Every outcome a creation of a snack that was there before, each path once (a burst's scan, a mass
        restore): _restored_all folds them at once."""
        if len(outcomes) < RESTORES_AT_ONCE or not self.fresh.isdisjoint(paths):
            return False
        made = Status.CREATED
        return all(outcome.status is made for outcome in outcomes) and len(set(paths)) == len(paths)

    def _first_made(self, path: str, shown: str, told: dict[str, list[str]], now: float) -> Change | None:
        """We created a snack for the first time (at start, or added by a reload): what _fold_one and _made do
        for it, in one call."""
        self.fresh.discard(path)
        self.drift.pop(path, None)
        self.health.looked(path)
        self.missing.discard(path)
        self.conflicts.pop(path, None)
        self.squatted.pop(path, None)
        told["created"].append(shown)
        self.created += 1  # no per-snack story for first creations (100k snacks, 100k stories)
        return self.health.present(path, now)  # it may have failed until now (a full disk at start)

    def _made(
        self,
        path: str,
        told: dict[str, list[str]],
        shown: str,
        *,
        first: bool,
        now: float,
        wall: float,
        trigger: Trigger,
    ) -> Change | None:
        """We created a snack: a first creation, or a repair (which the fight and backoff rules hear of)."""
        self.health.looked(path)
        self.missing.discard(path)
        self.conflicts.pop(path, None)
        self.squatted.pop(path, None)
        if first:
            told["created"].append(shown)
            self.created += 1  # no per-snack story for first creations (100k snacks, 100k stories)
            return self.health.present(path, now)  # it may have failed until now (a full disk at start)
        if self.health.loggable_restore(path):
            told["restored"].append(shown)
        self.repairs += 1
        history = self.history.get(path)
        if history is None:
            history = self.history[path] = History()
            if len(self.history) > HISTORY_KEPT:  # a mass restore keeps a bounded story; counters keep the rest
                self.touched.add(self.history.popitem(last=False)[0])
        else:
            self.history.move_to_end(path)
        history.repairs += 1
        history.last_repair = wall
        history.trigger = trigger.value
        return self.health.repaired(path, now)

    def _drifting(self, outcome: Outcome, changes: Changes) -> None:
        """Keep the aspects an entry has out of line (status shows them); a reload that set a new declared aspect
        the entry does not have, and that enforce does not cover, is told once."""
        path = outcome.entry.path
        before = self.drift.get(path, ())
        if outcome.drift:
            self.drift[path] = outcome.drift
        else:
            self.drift.pop(path, None)
        if changes.trigger is Trigger.SPEC_RELOAD and outcome.status is Status.PRESENT:
            new = tuple(aspect for aspect in outcome.drift if aspect not in before)
            if new:
                changes.left.append((outcome.entry, new))

    def _corrected(self, outcome: Outcome, changes: Changes, *, now: float, wall: float) -> Change | None:
        """We put enforced aspects back: a repair, heard by the fight and backoff rules like a restore."""
        path = outcome.entry.path
        self.fresh.discard(path)
        self.conflicts.pop(path, None)
        self.missing.discard(path)
        if self.health.loggable_restore(path):
            changes.corrected.append((outcome.entry, outcome.corrected, outcome.reason))
        self.repairs += 1
        history = self.history.get(path)
        if history is None:
            history = self.history[path] = History()
        history.repairs += 1
        history.last_repair = wall
        trigger = Trigger.CHANGED if changes.trigger is Trigger.DELETED else changes.trigger  # a rename over it
        history.trigger = trigger.value
        change = self.health.corrected(path, now)
        if change is Change.FIGHT_STARTED:
            changes.drift_fights.append(outcome.entry)
            return None
        return change

    def _conflict(self, entry: Entry, outcome: Outcome, changes: Changes, now: float, *, starting: bool) -> None:
        """Something else stands in the snack's place, or on the way to its directory (`blocked`): the reason names
        it (its path, kind and owner when it is in the way)."""
        kind = outcome.kind.value if outcome.kind else Kind.OTHER.value
        if outcome.blocked:
            what = outcome.reason or f"a {kind} is in the way of {entry.directory}"
            if self.conflicts.get(entry.path) != what:
                self.conflicts[entry.path] = what
                changes.blocked[what].append(self.desired.display(entry))
            return
        what = outcome.reason or f"a {kind}"  # or: a symlink to releases/v1
        if self.conflicts.get(entry.path) != f"{what} is in its place":
            self.conflicts[entry.path] = f"{what} is in its place"
            changes.conflicts.append((entry, what))
        if not starting:
            self.health.tried(entry.path, now)

    def _others_present(self, seen: set[str], directories: set[str] | None, now: float, recovered: list[str]) -> None:
        """After a pass over `directories` (None: all), every snack there without an outcome is present."""

        def swept(path: str) -> bool:
            return path not in seen and (directories is None or os.path.dirname(path) in directories)

        by_path = None
        for path in [path for path in self.health.snacks if swept(path)]:
            self.touched.add(path)
            if self.health.present(path, now) is Change.RECOVERED:
                by_path = by_path or self.desired.by_path()
                entry = by_path.get(path)
                recovered.append(self.desired.display(entry) if entry else path)
        for table in (self.conflicts, self.drift):
            for path in [path for path in table if swept(path)]:
                self.touched.add(path)
                del table[path]
        for path in [path for path in self.fresh if swept(path)]:
            self.fresh.discard(path)


def _restored_all(
    book: Ledger, outcomes: list[Outcome], paths: list[str], changes: Changes, single: bool, *, now: float, wall: float
) -> list[tuple[Outcome, str]]:
    """A mass restore folded at once: what _fold_one and _made do for each, table by table. A snack the
    health rules know (a flap, a fight, a failure) is heard of one by one, in order; the others are restores
    to tell and to time (the fight window). Returns nothing left for the fold to take."""
    health = book.health
    for table in (book.drift, book.conflicts, book.squatted, health.changed_at):
        if table:
            for path in paths:
                table.pop(path, None)
    if book.missing:
        book.missing.difference_update(paths)
    restored = changes.told["restored"]
    if health.snacks.keys().isdisjoint(paths):  # nothing to hear of but the time of each restore
        restored.extend([outcome.entry.snack.name for outcome in outcomes] if single else paths)
        health.restored_at.update(dict.fromkeys(paths, now))
    else:
        for outcome, path in zip(outcomes, paths, strict=True):
            shown = outcome.entry.snack.name if single else path
            if health.loggable_restore(path):
                restored.append(shown)
            if health.repaired(path, now) is Change.RECOVERED:  # (a restore never ends a fight)
                changes.told["recovered"].append(shown)
    book.repairs += len(paths)
    _stories(book, paths, wall, changes.trigger.value)
    if not book.all_touched:
        book.touched.update(paths)
    return []


def _stories(book: Book, paths: list[str], wall: float, trigger: str) -> None:
    """Each of `paths` (distinct) repaired now, in order, as _made tells the history: the most recently repaired
    HISTORY_KEPT keep their story; one pushed out is touched (its status row goes)."""
    history = book.history
    if history.keys().isdisjoint(paths):  # no story goes on: the kept ones are the last of paths, new
        kept = paths[-HISTORY_KEPT:]
        for _ in range(max(0, len(history) + len(kept) - HISTORY_KEPT)):
            book.touched.add(history.popitem(last=False)[0])
        book.touched.update(paths[: len(paths) - len(kept)])  # made and pushed out again, one by one
        for path in kept:
            history[path] = History(1, wall, trigger)
        return
    for path in paths:
        story = history.get(path)
        if story is None:
            story = history[path] = History()
            if len(history) > HISTORY_KEPT:
                book.touched.add(history.popitem(last=False)[0])
        else:
            history.move_to_end(path)
        story.repairs += 1
        story.last_repair = wall
        story.trigger = trigger
