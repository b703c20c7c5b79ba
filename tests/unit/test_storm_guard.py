"""The storm guard in-process: noise counted per second, a storm muted and scanned on schedule, told once a minute."""

from __future__ import annotations

from snackwatch.watch.storm import StormGuard, StormPolicy

POLICY = StormPolicy(noise=100, scan=0.02, mute=1.0, tell=60.0)


def noise(guard: StormGuard, key: int, count: int) -> None:
    for _ in range(count):
        guard.heard(key)


def test_noise_below_the_limit_or_spread_over_seconds_is_no_storm() -> None:
    guard = StormGuard(POLICY)
    noise(guard, 1, 100)
    assert guard.storms(10.0) == [] and guard.next_due() is None
    for second in range(1, 5):  # 60 a second for four seconds: never 100 within one
        noise(guard, 1, 60)
        assert guard.storms(10.0 + second * 1.01) == []


def test_a_storm_is_muted_scanned_on_schedule_then_heard_again() -> None:
    guard = StormGuard(POLICY)
    guard.storms(0.0)
    noise(guard, 7, 101)
    noise(guard, 8, 5)
    assert guard.storms(0.5) == [7]  # only the stormy watch
    assert guard.storms(0.6) == []  # already muted: not again
    live = {7, 8}
    assert guard.scans(0.5, live) == ([7], [])  # scanned at once
    assert guard.scans(0.51, live) == ([], [])
    assert guard.next_due() == 0.5 + POLICY.scan
    assert guard.scans(0.52, live) == ([7], [])
    assert guard.scans(1.5, live) == ([7], [7])  # heard again: one last scan covers the switch
    assert guard.next_due() is None


def test_a_watch_that_went_away_leaves_no_storm_behind() -> None:
    guard = StormGuard(POLICY)
    guard.storms(0.0)
    noise(guard, 3, 500)
    assert guard.storms(0.1) == [3]
    assert guard.scans(0.2, live=set()) == ([], []) and guard.next_due() is None


def test_a_storm_is_told_at_most_once_per_tell_interval_per_directory() -> None:
    guard = StormGuard(POLICY)
    assert guard.tell("/pantry", 0.0) and not guard.tell("/pantry", 59.0) and guard.tell("/other", 59.0)
    assert guard.tell("/pantry", 60.0)


def test_a_weighted_event_brings_its_storm_sooner() -> None:
    """A parent's unrelated name weighs more: muting a parent loses nothing, so it is muted at a lower rate."""
    guard = StormGuard(POLICY)
    guard.storms(0.0)
    noise(guard, 1, 10)  # a pantry: 10 events are no storm
    for _ in range(10):
        guard.heard(2, weight=20)  # a parent: 10 events count for 200
    assert guard.storms(0.1) == [2]
