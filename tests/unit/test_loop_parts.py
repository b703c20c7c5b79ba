"""The loop's small parts in-process: the resync schedule and the paced watcher reads."""

from __future__ import annotations

import os
import select

import pytest

from snackwatch.backoff import BackoffPolicy
from snackwatch.choices import POLL_INTERVAL
from snackwatch.dirty import DirtySet
from snackwatch.reads import READ_GAP, PacePolicy, WatchReads
from snackwatch.resync import Resync
from snackwatch.trigger import Trigger
from snackwatch.watch import Watcher


def test_no_resync_unless_asked_for_so_idle_stays_idle() -> None:
    resync = Resync(None, BackoffPolicy(), lambda: None)
    assert resync.due(0.0, None) is None and resync.next_due() is None


def test_a_periodic_resync_runs_only_when_nothing_else_does_and_an_error_resync_wins() -> None:
    backend: list[float | None] = [None]
    resync = Resync(30.0, BackoffPolicy(initial=0.1), lambda: backend[0])
    assert resync.due(0.0, None) is None and resync.next_due() == 30.0
    assert resync.due(30.0, Trigger.SPEC_RELOAD) is Trigger.SPEC_RELOAD
    assert resync.due(60.0, None) is Trigger.PERIODIC
    backend[0] = 1.0  # fell back to polling: a full pass every second
    assert resync.due(90.0, None) is Trigger.PERIODIC and resync.next_due() == 91.0
    assert resync.failed(90.5) == 0.1 and resync.failed(90.5) == 0.2  # errors in a row back off
    assert resync.due(90.7, Trigger.OVERFLOW) is Trigger.AFTER_ERROR
    resync.succeeded()
    assert resync.failed(100.0) == 0.1


def test_the_polling_watcher_asks_for_a_full_pass_every_poll_interval() -> None:
    dirty = DirtySet()
    try:
        assert Watcher(dirty, "polling").resync_interval == POLL_INTERVAL == 1.0
        assert Watcher(dirty, "polling", poll_interval=0.25).resync_interval == 0.25  # --poll-interval
        assert Watcher(dirty, "observer", poll_interval=0.25).resync_interval is None  # events, not snapshots
    finally:
        dirty.close()


def test_reads_are_paced_only_past_the_storm_rate_and_while_it_lasts() -> None:
    poller = select.poll()
    read_fd, write_fd = os.pipe()
    try:
        reads = WatchReads(poller, lambda: read_fd, PacePolicy(noise=100, gap=READ_GAP))
        reads.sync()
        os.write(write_fd, b"x")
        assert reads.ready({fd for fd, _ in poller.poll(0)})
        for tick in range(100):  # 100 noise events within a second, one a read: never paced
            reads.after_read(10.0 + tick * 0.001, tick + 1)
            assert reads.next_due() is None
        reads.after_read(10.2, 101)  # the 101st: a storm
        assert reads.next_due() == 10.2 + READ_GAP
        assert poller.poll(0) == []  # left out of the poll meanwhile: the kernel queues
        reads.resume_if_due(10.2 + READ_GAP)
        assert reads.ready({fd for fd, _ in poller.poll(0)}) and reads.next_due() is None
        reads.after_read(11.1, 102)  # the next second, right after a stormy one: still paced
        assert reads.next_due() == pytest.approx(11.1 + READ_GAP)
        reads.resume_if_due(11.2)
        reads.after_read(13.5, 103)  # seconds later: the storm is over
        assert reads.next_due() is None
    finally:
        os.close(read_fd)
        os.close(write_fd)
