"""Faults in the loop in-process: a fight and a failing repair told, backed off and over, on an injected clock.

The end-to-end tests in tests/e2e/test_faults.py keep what only the kernel shows (a real fighter's CPU cost, a
real full tmpfs); the schedule and the wording, which took seconds of wall time there, are checked here."""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events, write_spec
from fake_loop import Loop, start_loop

import snackwatch.reconcile as reconcile_module
from snackwatch.dirty import Mark

pytestmark = pytest.mark.usefixtures("own_state_dirs")  # the daemon's runtime and state directories, ours


@pytest.fixture
def loop(spec_path: Path) -> Iterator[Loop]:
    write_spec(spec_path, ["Goldfish", "FruitGummies"])
    started = start_loop(spec_path)
    yield started
    started.close()


def about(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if name == line.get("snack") or name in line.get("snacks", [])]


def fight_for(loop: Loop, seconds: float) -> int:
    """Another process deletes Goldfish within a millisecond of each restore for `seconds` of injected time;
    the loop turns whenever it is woken or due. Returns how many times the snack was restored meanwhile."""
    goldfish, end, restores = loop.pantry / "Goldfish", loop.clock.now + seconds, 0
    while loop.clock.now < end:
        if goldfish.exists():
            restores += 1
            goldfish.unlink()
            loop.watcher.removed(loop.pantry, "Goldfish")
            loop.turn(advance=0.001)
        else:
            due = loop.parts.next_due()
            loop.turn(advance=max(0.001, (due or end) - loop.clock.now))
    return restores


def test_a_fight_is_told_once_backed_off_and_over_once_the_snack_stays(
    loop: Loop, log_lines: list[dict[str, Any]]
) -> None:
    fight = loop.parts.options.fight
    since = len(log_lines)
    restores = fight_for(loop, 5.0)
    assert fight.threshold <= restores <= fight.threshold + 8  # backed off: 0.1, 0.2, 0.4 ... s, not every ms
    warnings = events(log_lines, "fight")
    assert len(warnings) == 1 and warnings[0]["snack"] == "Goldfish" and warnings[0]["level"] == "WARNING"
    assert "something else keeps deleting it; backing off (retrying at most every 5 s)" in warnings[0]["message"]
    assert len(about(log_lines[since:], "Goldfish")) <= fight.quiet_after + 1  # a few restores, then the fight line
    loop.until_idle(limit=fight.backoff.cap + fight.quiet + 1)  # the fighter stopped: back within the cap, stays
    assert (loop.pantry / "Goldfish").exists()
    over = events(log_lines, "fight_over")
    assert len(over) == 1 and over[0]["snack"] == "Goldfish"
    assert "stays in place again: the fight is over" in over[0]["message"]
    (loop.pantry / "FruitGummies").unlink()  # the other snack was never held back
    loop.watcher.removed(loop.pantry, "FruitGummies")
    loop.turn()
    assert (loop.pantry / "FruitGummies").exists()
    assert loop.daemon.status()["snacks"][str(loop.pantry / "Goldfish")]["state"] == "ok"


def test_a_failing_repair_is_retried_on_the_backoff_schedule_with_one_line_and_recovers_at_a_nudge(
    loop: Loop, log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[float] = []

    def full(fd: int, name: str, snack: object, fixes: object = None) -> bool:
        tries.append(loop.clock.now)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(reconcile_module, "create_snack", full)
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    loop.until_idle(limit=1.6)
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(tries)]
    assert gaps == [0.02, 0.2, 0.2, 0.4]  # BackoffPolicy: the deletion's two nudges, then doubling (up to 300 s)
    failing = events(log_lines, "failing")
    assert len(failing) == 1 and failing[0]["snacks"] == ["Goldfish"]
    assert "No space left on device" in failing[0]["message"]
    assert len(about(log_lines, "Goldfish")) == 1  # one line when it starts failing, none per retry
    assert loop.daemon.status()["snacks"][str(loop.pantry / "Goldfish")]["state"] == "failing"
    monkeypatch.undo()
    loop.watcher.mark(Mark.NUDGE, loop.pantry)  # space freed in the pantry: retried at once, not in 1.6 s
    loop.turn()
    loop.until_idle(limit=0.5)
    assert (loop.pantry / "Goldfish").exists()
    assert events(log_lines, "recovered")[0]["snacks"] == ["Goldfish"]
