"""Per-snack exponential backoff for failing repairs and flap (fight) detection: pure, clock passed in."""

from __future__ import annotations

import heapq
from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


@dataclass(frozen=True)
class BackoffPolicy:
    """Delays of a crash-loop style backoff: initial, doubling, capped."""

    initial: float = 0.1
    factor: float = 2.0
    cap: float = 300.0
    # After a relevant event (a file removed, permissions changed) a failing repair is retried after these
    # delays, without escalating: the event can come just before the space is actually freed.
    nudges: tuple[float, ...] = (0.02, 0.2)
    nudge_every: float = 0.1  # a storm of relevant events retries failing repairs at most this often

    def delay(self, attempt: int) -> float:
        """The wait after the `attempt`-th consecutive failure (1-based)."""
        return float(min(self.cap, self.initial * self.factor ** max(0, attempt - 1)))


@dataclass(frozen=True)
class FightPolicy:
    """When repeated deletions are a fight with another process, and how to back off from it.

    A deletion within `window` seconds of our own restore is a flap; `threshold` flaps in a row is
    a fight. Churn (a snack deleted about once a second) never reaches it. A restored snack that
    stays `quiet` seconds ends the fight.
    """

    window: float = 0.05
    threshold: int = 20
    quiet_after: int = 3  # flaps after which single restores are no longer logged (the fight line says it)
    backoff: BackoffPolicy = BackoffPolicy(initial=0.1, cap=5.0)
    quiet: float = 1.0


class HealthView(NamedTuple):
    """What status shows of one snack's health: its error if failing, when it is retried, whether it is fought over."""

    error: str
    retry_in: float | None
    fighting: bool


class Change(Enum):
    """A change in a snack's health worth one log line."""

    STARTED_FAILING = "started failing"
    RECOVERED = "recovered"
    FIGHT_STARTED = "fight started"
    FIGHT_OVER = "fight over"


@dataclass(slots=True)
class SnackHealth:
    """What the daemon remembers about one snack between events."""

    failures: int = 0
    error: str = ""
    flaps: int = 0
    fighting: bool = False
    nudges: tuple[float, ...] = ()
    unlogged_restores: int = 0
    due: float | None = None  # when the schedule looks at this snack next
    held_until: float = 0.0  # no repair before this (backoff or fight)


@dataclass
class Health:
    """Health of every snack that needs remembering, and a schedule of when to look again."""

    backoff: BackoffPolicy = BackoffPolicy()
    fight: FightPolicy = FightPolicy()
    snacks: dict[str, SnackHealth] = field(default_factory=dict)  # only snacks with something to remember
    restored_at: dict[str, float] = field(default_factory=dict)  # when we last restored each snack
    corrected_at: dict[str, float] = field(default_factory=dict)  # when we last put an enforced aspect back
    changed_at: dict[str, float] = field(default_factory=dict)  # the first change heard since we last looked
    _schedule: list[tuple[float, str]] = field(default_factory=list)
    _failing: set[str] = field(default_factory=set)
    _last_nudge: float | None = None

    def _state(self, name: str) -> SnackHealth:
        state = self.snacks.get(name)
        if state is None:
            state = self.snacks[name] = SnackHealth()
        return state

    def _hold(self, name: str, until: float) -> None:
        self._state(name).held_until = until
        self._schedule_at(name, until)

    def _schedule_at(self, name: str, when: float) -> None:
        self._state(name).due = when
        heapq.heappush(self._schedule, (when, name))

    def deleted(self, name: str, now: float) -> tuple[float, Change | None]:
        """A snack was removed: how long to wait before restoring it (0: now) and any change."""
        state = self.snacks.get(name)
        if state is not None and state.held_until > now:
            return state.held_until - now, None  # already waiting: the schedule repairs it
        restored_at = self.restored_at.get(name)
        # A fight ends only once the snack stayed in place for `quiet`: a fighter that is slower now and then
        # (a loaded machine) does not end it and start it again.
        window = self.fight.quiet if state is not None and state.fighting else self.fight.window
        if restored_at is None or now - restored_at > window:
            if state is None:
                return 0.0, None
            state.flaps = 0
            was_fighting, state.fighting = state.fighting, False
            return 0.0, Change.FIGHT_OVER if was_fighting else None
        state = self._state(name)
        state.flaps += 1
        if state.flaps < self.fight.threshold:
            return 0.0, None
        change = None if state.fighting else Change.FIGHT_STARTED
        state.fighting = True
        delay = self.fight.backoff.delay(state.flaps - self.fight.threshold + 1)
        self._hold(name, now + delay)
        return delay, change

    def changed(self, name: str, now: float) -> float:
        """An event says an enforced snack changed (in place, or a file renamed over it): how long to wait before
        looking (0: now). The first change since our last look is remembered: corrected() asks when it came."""
        self.changed_at.setdefault(name, now)
        state = self.snacks.get(name)
        return state.held_until - now if state is not None and state.held_until > now else 0.0

    def looked(self, name: str) -> None:
        """We looked and nothing needed putting back (our own change heard back, or a change undone)."""
        self.changed_at.pop(name, None)

    def corrected(self, name: str, now: float) -> Change | None:
        """We put an enforced aspect back. A change that came within `window` of our previous correction is a flap
        (our own change heard back never is: nothing needed correcting then); `threshold` flaps in a row are a
        fight, held back like a deletion fight. Returns FIGHT_STARTED, FIGHT_OVER, RECOVERED or None."""
        changed_at = self.changed_at.pop(name, now)
        last = self.corrected_at.get(name)
        self.corrected_at[name] = now
        state = self.snacks.get(name)
        if state is None and last is None:
            return None
        recovered = self._recover(name, state) if state is not None else None
        window = self.fight.quiet if state is not None and state.fighting else self.fight.window
        if last is None or not last <= changed_at <= last + window:  # a change before our last one: handled by it
            if state is None:
                return None
            state.flaps = 0
            was_fighting, state.fighting = state.fighting, False
            return Change.FIGHT_OVER if was_fighting else recovered
        state = self._state(name)
        state.flaps += 1
        if state.flaps > self.fight.quiet_after:
            state.unlogged_restores += 1
        if state.flaps < self.fight.threshold:
            return recovered
        change = None if state.fighting else Change.FIGHT_STARTED
        state.fighting = True
        self._hold(name, now + self.fight.backoff.delay(state.flaps - self.fight.threshold + 1))
        return change

    def repaired(self, name: str, now: float) -> Change | None:
        """We restored the snack."""
        self.restored_at[name] = now
        state = self.snacks.get(name)
        if state is None:
            return None
        if state.flaps >= self.fight.quiet_after:
            state.unlogged_restores += 1
        change = self._recover(name, state)
        if state.fighting:
            self._schedule_at(name, now + self.fight.quiet)
        return change

    def tried(self, name: str, now: float) -> None:
        """We went to restore the snack and something else stood in its place: a removal right after is a flap
        too, so a process flipping the place between kinds ends up in the fight's backoff."""
        self.restored_at[name] = now

    def present(self, name: str, now: float) -> Change | None:
        """The snack was found in place (restored by someone, or still there after a fight)."""
        state = self.snacks.get(name)
        if state is None:
            return None
        change = self._recover(name, state)
        restored_at = max(self.restored_at.get(name, -1.0), self.corrected_at.get(name, -1.0))
        if state.fighting and restored_at >= 0 and now >= restored_at + self.fight.quiet:
            state.fighting = False
            state.flaps = 0
            change = Change.FIGHT_OVER
        elif state.fighting and self.corrected_at.get(name, -1.0) >= self.restored_at.get(name, -1.0):
            self._schedule_at(name, restored_at + self.fight.quiet)  # a correction fight ends after its quiet
        return change

    def _recover(self, name: str, state: SnackHealth) -> Change | None:
        if state.failures == 0:
            return None
        self._failing.discard(name)
        state.failures = 0
        state.error = ""
        state.nudges = ()
        state.held_until = 0.0
        state.due = None
        return Change.RECOVERED

    def loggable_restore(self, name: str) -> bool:
        """False while a snack flaps: its restores are counted, and reported when the fight ends."""
        state = self.snacks.get(name)
        return state is None or state.flaps < self.fight.quiet_after

    def take_unlogged_restores(self, name: str) -> int:
        state = self.snacks.get(name)
        if state is None:
            return 0
        count, state.unlogged_restores = state.unlogged_restores, 0
        return count

    def failed(self, name: str, now: float, error: str) -> tuple[float, Change | None]:
        """A repair failed: the delay before the next try, and STARTED_FAILING the first time."""
        state = self._state(name)
        state.error = error
        if state.failures and state.nudges:
            delay, state.nudges = state.nudges[0], state.nudges[1:]
            self._hold(name, now + delay)
            return delay, None
        state.failures += 1
        self._failing.add(name)
        delay = self.backoff.delay(state.failures)
        self._hold(name, now + delay)
        return delay, Change.STARTED_FAILING if state.failures == 1 else None

    def held(self, now: float) -> set[str]:
        """Names waiting out a backoff or a fight: a scan leaves them to their schedule."""
        return {name for name, state in self.snacks.items() if state.held_until > now}

    @property
    def has_failing(self) -> bool:
        return bool(self._failing)

    @property
    def failing_count(self) -> int:
        """How many names fail (status counts, every turn: no sort)."""
        return len(self._failing)

    def failing(self) -> list[str]:
        """Names whose last repair failed."""
        return sorted(self._failing)

    def nudge(self, now: float) -> None:
        """Something relevant happened (space freed, permissions changed): retry failing snacks soon.

        At most once per `nudge_every`: the previous nudge's retries still cover the events in between.
        """
        if not self.backoff.nudges or not self._failing:
            return
        if self._last_nudge is not None and now - self._last_nudge < self.backoff.nudge_every:
            return
        self._last_nudge = now
        for name in self.failing():
            state = self.snacks[name]
            state.nudges = self.backoff.nudges[1:]
            self._hold(name, now + self.backoff.nudges[0])

    def pop_due(self, now: float) -> list[str]:
        """Names whose wait is over; each is returned once per scheduled time."""
        names = []
        while self._schedule and self._schedule[0][0] <= now:
            when, name = heapq.heappop(self._schedule)
            state = self.snacks.get(name)
            if state is not None and state.due == when:
                state.due = None
                names.append(name)
        return names

    def next_due(self) -> float | None:
        """When the earliest live scheduled look is due, or None when nothing is (idle)."""
        while self._schedule:
            when, name = self._schedule[0]
            state = self.snacks.get(name)
            if state is not None and state.due == when:
                return when
            heapq.heappop(self._schedule)
        return None

    def describe(self, name: str, now: float) -> HealthView | None:
        """The snack's health for status, or None when there is nothing to say."""
        state = self.snacks.get(name)
        if state is None or not (state.failures or state.fighting):
            return None
        retry_in = max(0.0, state.held_until - now) if state.failures else None
        return HealthView(state.error if state.failures else "", retry_in, state.fighting)

    def clear(self, name: str) -> None:
        """Forget one name entirely (it no longer needs watching)."""
        self.snacks.pop(name, None)
        self.restored_at.pop(name, None)
        self.corrected_at.pop(name, None)
        self.changed_at.pop(name, None)
        self._failing.discard(name)

    def forget(self, keep: Container[str]) -> None:
        """Drop the state of snacks no longer in the spec."""
        for name in [name for name in self.snacks if name not in keep]:
            del self.snacks[name]
            self._failing.discard(name)
        for table in (self.restored_at, self.corrected_at, self.changed_at):
            for name in [name for name in table if name not in keep]:
                del table[name]


def restores_now(health: Health, name: str, now: float) -> bool:
    """Whether health.deleted(name, now) answers "now" (0) with no change to tell: the snack neither fails, nor
    fights, nor waits, and one flap more stays below the threshold. Asks only, changes nothing: the lone-deletion
    path restores on this answer, and deleted() then runs after the create as it would have before. Beside
    Health, whose deleted() it mirrors (tests/unit/test_lone.py holds the two together)."""
    state = health.snacks.get(name)
    if state is None:
        return health.fight.threshold > 1
    if state.failures or state.fighting or state.held_until > now:
        return False
    return state.flaps + 1 < health.fight.threshold


def restores_all_now(health: Health) -> bool:
    """restores_now() for every name at once: nothing remembered of any snack (the common case: no snack failed,
    flapped or fought since start), so no deletion can be held back or start a fight."""
    return not health.snacks and health.fight.threshold > 1
