"""Backoff and fight detection with an injected clock: no sleeps, no filesystem."""

from __future__ import annotations

import pytest

from snackwatch.backoff import BackoffPolicy, Change, FightPolicy, Health


def test_policy_doubles_from_initial_to_cap() -> None:
    policy = BackoffPolicy(initial=0.1, factor=2, cap=300)
    delays = [policy.delay(attempt) for attempt in range(1, 15)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 300
    assert delays == sorted(delays)


def test_failures_back_off_and_log_once_then_recover() -> None:
    health = Health()
    delay, change = health.failed("a", 0.0, "No space left on device")
    assert (delay, change) == (0.1, Change.STARTED_FAILING)
    assert health.pop_due(0.05) == []
    assert health.pop_due(0.1) == ["a"]
    delay, change = health.failed("a", 0.1, "No space left on device")
    assert (delay, change) == (0.2, None)
    assert health.failing() == ["a"]
    delay, change = health.deleted("a", 0.25)  # held: an event does not bypass the backoff
    assert delay == pytest.approx(0.05) and change is None
    assert health.repaired("a", 0.3) is Change.RECOVERED
    assert health.failing() == []
    assert health.next_due() is None


def test_a_nudge_retries_soon_twice_without_escalating() -> None:
    health = Health(BackoffPolicy(nudges=(0.02, 0.2)))
    for attempt in range(10):
        health.failed("a", float(attempt), "Permission denied")
    assert health.next_due() == 9.0 + 51.2
    health.nudge(10.0)
    assert health.pop_due(10.0) == [] and health.pop_due(10.02) == ["a"]
    assert health.failed("a", 10.02, "Permission denied") == (0.2, None)  # the second chance
    assert health.pop_due(10.22) == ["a"]
    delay, change = health.failed("a", 10.22, "Permission denied")
    assert (delay, change) == (102.4, None)  # then the normal backoff resumes where it was


def test_log_lines_while_failing_are_bounded() -> None:
    """At most 1 STARTED_FAILING per failure streak whatever the retry count."""
    health = Health()
    now, changes = 0.0, []
    while now < 600:
        delay, change = health.failed("a", now, "Read-only file system")
        changes.append(change)
        now += delay
    assert [c for c in changes if c is not None] == [Change.STARTED_FAILING]
    assert len(changes) < 20  # 10 minutes of retries is a handful of attempts, not thousands


def test_churn_is_not_a_fight() -> None:
    health = Health()
    now = 0.0
    for _ in range(100):
        health.repaired("a", now)
        now += 1.0  # deleted about once a second
        assert health.deleted("a", now) == (0.0, None)


def test_tight_delete_loop_becomes_a_fight_once_and_backs_off() -> None:
    fight = FightPolicy(window=0.05, threshold=20, backoff=BackoffPolicy(0.1, 2, 5.0), quiet=1.0)
    health = Health(fight=fight)
    now, started = 0.0, []
    delays = []
    for _ in range(40):
        health.repaired("a", now)
        now += 0.001  # removed within a millisecond of each restore
        delay, change = health.deleted("a", now)
        started.append(change)
        delays.append(delay)
        now += delay
    assert started.count(Change.FIGHT_STARTED) == 1
    assert started.index(Change.FIGHT_STARTED) == 19
    assert delays[:19] == [0.0] * 19
    assert delays[19:23] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == 5.0
    assert health.deleted("a", now - 0.05)[0] > 0  # a deletion while held waits for the schedule


def test_fight_ends_when_the_restored_snack_stays() -> None:
    health = Health(fight=FightPolicy(threshold=3, quiet=1.0))
    now = 0.0
    for _ in range(3):
        health.repaired("a", now)
        now += 0.001
        health.deleted("a", now)
    health.repaired("a", now)
    assert health.next_due() == now + 1.0  # a quiet check is scheduled
    assert health.present("a", now + 0.5) is None
    assert health.present("a", now + 1.0) is Change.FIGHT_OVER
    assert health.deleted("a", now + 1.001)[0] == 0.0  # the next deletion after a quiet period is repaired at once


def test_a_fighter_that_pauses_now_and_then_does_not_end_and_restart_the_fight() -> None:
    """On a loaded machine the fighter is sometimes descheduled for longer than the flap window: the fight goes
    on (one warning, backoff kept) until the snack stays in place for the quiet period."""
    health = Health(fight=FightPolicy(window=0.05, threshold=3, quiet=1.0))
    now, changes = 0.0, []
    for round_ in range(12):
        health.repaired("a", now)
        now += 0.3 if round_ % 4 == 3 else 0.001  # every fourth deletion comes 300 ms late
        delay, change = health.deleted("a", now)
        changes.append(change)
        now += delay
    assert changes.count(Change.FIGHT_STARTED) == 1 and Change.FIGHT_OVER not in changes


def test_forget_drops_state_of_removed_snacks() -> None:
    health = Health()
    health.failed("a", 0.0, "x")
    health.failed("b", 0.0, "x")
    health.forget({"b"})
    assert health.failing() == ["b"]
    assert health.pop_due(1.0) == ["b"]


def test_a_storm_of_nudges_retries_failing_snacks_at_most_every_100_ms() -> None:
    health = Health(BackoffPolicy(nudges=(0.02, 0.2), nudge_every=0.1))
    health.failed("a", 0.0, "No space left on device")
    retries = 0
    for step in range(1000):  # another user deletes an unrelated file every millisecond for a second
        now = 0.5 + step * 0.001
        health.nudge(now)
        if health.pop_due(now):
            retries += 1
            health.failed("a", now, "No space left on device")
    assert 5 <= retries <= 11  # ~one per 100 ms, not one per deletion
    assert health.failing() == ["a"]


def test_nudges_cost_nothing_while_nothing_fails() -> None:
    health = Health()
    for step in range(100):
        health.nudge(step * 0.001)
    assert health.next_due() is None
