"""The loop's small parts in-process: the resync schedule and the paced watcher reads."""

from __future__ import annotations

import os
import select

from snackwatch.backoff import BackoffPolicy
from snackwatch.reads import READ_GAP, WatchReads
from snackwatch.resync import Resync
from snackwatch.trigger import Trigger


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


def test_reads_that_bring_nothing_are_paced_and_resume() -> None:
    poller = select.poll()
    read_fd, write_fd = os.pipe()
    try:
        reads = WatchReads(poller, lambda: read_fd)
        reads.sync()
        os.write(write_fd, b"x")
        assert reads.ready({fd for fd, _ in poller.poll(0)})
        reads.idle_read(10.0)
        assert reads.next_due() is None  # one idle read is no storm
        reads.idle_read(10.0 + READ_GAP / 2)
        assert reads.next_due() == 10.0 + READ_GAP * 1.5
        assert poller.poll(0) == []  # left out of the poll meanwhile: the kernel queues
        reads.resume_if_due(10.0 + READ_GAP * 1.5)
        assert reads.ready({fd for fd, _ in poller.poll(0)}) and reads.next_due() is None
    finally:
        os.close(read_fd)
        os.close(write_fd)
