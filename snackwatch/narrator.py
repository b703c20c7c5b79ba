"""Tells what the ledger's changes mean as log lines: one line per kind of thing, throttled, held back at start."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

from loguru import logger

from snackwatch.backoff import BackoffPolicy, FightPolicy
from snackwatch.desired import Desired
from snackwatch.drift import enforce_hint, put_back
from snackwatch.ledger import TOLD, Changes
from snackwatch.text import name_list
from snackwatch.trigger import Trigger

_LINES = {  # event -> its line
    "created": "created {}",
    "restored": "restored {}",
    "would_create": "dry run: would create {}",
    "would_restore": "dry run: would restore {}",
    "recovered": "recovered: {} restored again",
}
CONFLICT_QUIET = 10.0  # a snack's place flipping between kinds: at most one conflict line per snack this often


@dataclass(slots=True)
class ConflictLine:
    """When a snack's conflict was last logged, and how many changes in its place went unlogged since."""

    logged_at: float
    unlogged: int = 0


class Narrator:
    """Turns `Changes` into log lines; keeps lines back while the start line is not out yet."""

    def __init__(self, backoff: BackoffPolicy = BackoffPolicy(), fight: FightPolicy = FightPolicy()) -> None:
        self.backoff = backoff
        self.fight = fight
        self.held: list[tuple[Callable[..., None], tuple[object, ...]]] | None = None
        self.conflict_lines: dict[str, ConflictLine] = {}  # path -> its last conflict line, kept past a repair

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

    def tell(self, changes: Changes, desired: Desired, now: float) -> None:
        """One line per kind of thing that happened (names listed, the rest counted)."""
        if changes.nothing():
            return
        self._tell_fights(changes, desired)
        for path, delay in changes.held:
            logger.bind(event="held", snack=path).debug("{} deleted while held back: repair in {:.3f} s", path, delay)
        for entry, what in changes.conflicts:
            self._conflict(desired.display(entry), entry.path, what, now)
        self._tell_drift(changes, desired)
        for event in TOLD:
            names = changes.told[event]
            if names:
                self._say(
                    logger.bind(event=event, snacks=names, trigger=changes.trigger.value).info,
                    _LINES[event],
                    name_list(names),
                )
        for error, names in changes.failing.items():
            self._say(
                logger.bind(event="failing", snacks=names, error=error).error,
                "cannot restore {}: {}; retrying with backoff (up to every {:g} s)",
                name_list(names),
                error,
                self.backoff.cap,
            )
        for what, names in changes.blocked.items():
            self._say(
                logger.bind(event="conflict", directory=what.partition(" is ")[0], snacks=names).warning,
                "conflict: {}: {} not enforced there ({})",
                what,
                f"{len(names)} snack" + ("" if len(names) == 1 else "s"),
                name_list(names),
            )
        for entry, who, first in changes.squatted:
            shown = desired.display(entry)
            self._say(
                logger.bind(event="squatted", snack=shown, path=entry.path).warning,
                "{} was {} before it could be {}: left as it is (not ours to change)",
                shown,
                who,
                "created" if first else "restored",
            )

    def _tell_fights(self, changes: Changes, desired: Desired) -> None:
        """Fights that started (over a deletion or an enforced aspect) and fights that are over."""
        for entry in changes.fights:
            shown = desired.display(entry)
            logger.bind(event="fight", snack=shown).warning(
                "{} is removed again right after each restore ({} times in a row): something else keeps "
                "deleting it; backing off (retrying at most every {:g} s)",
                shown,
                self.fight.threshold,
                self.fight.backoff.cap,
            )
        for entry in changes.drift_fights:
            shown = desired.display(entry)
            logger.bind(event="fight", snack=shown).warning(
                "{} is changed again right after each correction ({} times in a row): something else keeps "
                "rewriting it; backing off (correcting at most every {:g} s)",
                shown,
                self.fight.threshold,
                self.fight.backoff.cap,
            )
        for entry, unlogged in changes.fights_over:
            shown = desired.display(entry)
            logger.bind(event="fight_over", snack=shown).info(
                "{} stays in place again: the fight is over ({} restores not logged one by one)", shown, unlogged
            )

    def _tell_drift(self, changes: Changes, desired: Desired) -> None:
        """Aspects put back, and drift a reload left as it is."""
        trigger = changes.trigger.value
        fixed_on = Trigger.CHANGED.value if changes.trigger is Trigger.DELETED else trigger  # a file renamed over
        for entry, aspects, displaced in changes.corrected:
            shown = desired.display(entry)
            moved = f" (what stood there was moved aside to {displaced})" if displaced else ""
            self._say(
                logger.bind(event="corrected", snack=shown, aspects=[a.name for a in aspects], trigger=fixed_on).info,
                "corrected {}: {}{}",
                shown,
                put_back(aspects),
                moved,
            )
        for entry, aspects in changes.left:
            shown = desired.display(entry)
            self._say(
                logger.bind(event="drift", snack=shown, aspects=[a.name for a in aspects]).info,
                "{} left as is: {} ({} keeps it in line)",
                shown,
                ", ".join(aspect.against() for aspect in aspects),
                enforce_hint(aspects),
            )

    def _conflict(self, shown: str, path: str, what: str, now: float) -> None:
        """Log a conflict once; a place that keeps changing kind is summed up at most every CONFLICT_QUIET s."""
        line = self.conflict_lines.get(path)
        if line is not None and now - line.logged_at < CONFLICT_QUIET:
            line.unlogged += 1
            return
        self.conflict_lines[path] = ConflictLine(now)
        more = f" ({line.unlogged} more changes in its place not logged)" if line and line.unlogged else ""
        self._say(
            logger.bind(event="conflict", snack=shown, path=path).warning,
            "conflict: {} stands where snack {} should be; leaving it alone{}",
            what,
            shown,
            more,
        )

    def forget(self, keep: Container[str]) -> None:
        """Snacks that left the spec leave no line state behind."""
        for path in [path for path in self.conflict_lines if path not in keep]:
            del self.conflict_lines[path]
