"""A lone deletion in the loop: a read that brings only removals of plain snacks, nothing else in the turn, is
created before the fight gate counts it and before the fold (Hands.restore_lone); a snack the gate holds back
(a fight, a failing repair's backoff) is not, and anything else takes the normal turn. Injected clock."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events, write_spec
from fake_loop import Loop, start_loop

import snackwatch.reconcile as reconcile_module
from snackwatch.dirty import Mark
from snackwatch.held import HOLD_IDLE

pytestmark = pytest.mark.usefixtures("own_state_dirs")


class Lone:
    """A started loop whose watcher has an fd (a pipe): a turn woken by it alone may take the lone path."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.read_fd, self.write_fd = os.pipe()
        loop.watcher.fd = self.read_fd
        loop.parts.reads.sync()

    def deleted(self, *names: str, advance: float = 0.001) -> None:
        """Another process removes `names`; the next read brings exactly that, and the loop turns on it."""
        for name in names:
            (self.loop.pantry / name).unlink()
        self.loop.watcher.read_brings(self.loop.pantry, *names)
        os.write(self.write_fd, b"x")
        self.loop.turn(advance=advance, ready={self.read_fd})

    def close(self) -> None:
        self.loop.parts.poller.unregister(self.read_fd)
        self.loop.watcher.fd = None
        self.loop.close()
        os.close(self.read_fd)
        os.close(self.write_fd)


@pytest.fixture
def lone(spec_path: Path) -> Iterator[Lone]:
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    started = Lone(start_loop(spec_path))
    yield started
    started.close()


def spy(monkeypatch: pytest.MonkeyPatch, owner: object, method: str, seen: Callable[[], object]) -> list[object]:
    """What `seen()` said each time `owner.method` was called (before it ran)."""
    said: list[object] = []
    real = getattr(owner, method)

    def called(*args: Any, **kwargs: Any) -> Any:
        said.append(seen())
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, method, called)
    return said


def test_a_lone_deletion_is_created_before_the_fight_gate_counts_it_and_before_the_fold(
    lone: Lone, log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, goldfish = lone.loop, lone.loop.pantry / "Goldfish"
    ledger = loop.parts.ledger
    gate = spy(monkeypatch, ledger, "deleted", goldfish.exists)
    fold = spy(monkeypatch, ledger, "fold", goldfish.exists)
    take = spy(monkeypatch, loop.parts.dirty, "take", goldfish.exists)
    lone.deleted("Goldfish")
    assert goldfish.exists()
    assert gate == [True] and fold == [True]  # created first: the gate's count and the fold came after
    assert take == [True]  # the turn's batch, too: nothing was marked for it
    restored = events(log_lines, "restored")
    assert [(line["snacks"], line["trigger"]) for line in restored] == [(["Goldfish"], "deleted or moved away")]
    row = loop.daemon.status()["snacks"][str(goldfish)]
    assert (row["state"], row["repairs"], ledger.repairs) == ("ok", 1, 1)  # the book, folded after the create

    loop.watcher.mark(Mark.NUDGE, loop.pantry)  # something else in the same turn: not provably lone
    lone.deleted("Goldfish")
    assert goldfish.exists() and gate[-1] is False  # the normal turn: the fight gate first, then the repair
    assert ledger.repairs == 2 and len(events(log_lines, "restored")) == 2


def test_a_snack_in_a_fight_is_not_restored_by_the_lone_path_and_the_fight_is_told_once(
    lone: Lone, log_lines: list[dict[str, Any]]
) -> None:
    loop, goldfish = lone.loop, lone.loop.pantry / "Goldfish"
    fight = loop.parts.options.fight
    for _ in range(fight.threshold):  # deleted within a millisecond of each restore: flaps, not yet a fight
        lone.deleted("Goldfish")
        assert goldfish.exists()
    lone.deleted("Goldfish")  # the flap that makes it a fight: held back, not restored first
    assert not goldfish.exists() and len(events(log_lines, "fight")) == 1
    loop.until_idle(limit=fight.backoff.initial * 1.5)  # the fight's backoff restores it on its schedule
    assert goldfish.exists()
    lone.deleted("Goldfish")  # deleted again at once: the fight goes on, backed off again
    assert not goldfish.exists() and len(events(log_lines, "fight")) == 1
    lone.deleted("Popcorn")  # the other snack is no part of it
    assert (loop.pantry / "Popcorn").exists()


def test_a_snack_backing_off_a_failing_repair_is_not_restored_by_the_lone_path(
    lone: Lone, log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, goldfish = lone.loop, lone.loop.pantry / "Goldfish"
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(reconcile_module, "create_plain_snacks", lambda fd, names, fixes=None: [full for _ in names])
    lone.deleted("Goldfish")
    assert not goldfish.exists() and len(events(log_lines, "failing")) == 1
    assert loop.daemon.status()["snacks"][str(goldfish)]["state"] == "failing"
    assert str(loop.pantry) not in loop.parts.held_dirs.entries  # a failed repair walks again next time
    monkeypatch.undo()
    goldfish.touch()  # someone puts it back and takes it away again while the repair backs off
    lone.deleted("Goldfish")
    assert not goldfish.exists()  # held back: its backoff decides, not the lone path
    loop.until_idle(limit=1.0)
    assert goldfish.exists() and len(events(log_lines, "failing")) == 1 and events(log_lines, "recovered")


def test_an_apps_saves_beside_a_held_pantry_wake_a_turn_of_their_own_and_are_not_parsed_on_the_deletions_path(
    lone: Lone, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, parts, held = lone.loop, lone.loop.parts, lone.loop.parts.held_dirs
    for name in ("Goldfish", "Popcorn", "Goldfish", "Popcorn"):
        lone.deleted(name)
    entry = held.entries[str(loop.pantry)]
    reads = spy(monkeypatch, held, "_read", lambda: None)
    noise = spy(monkeypatch, parts.reads, "after_read", lambda: None)

    for index in range(2):  # in the pantry's parent, which the guard watches (the loop's watcher hears none of it)
        temp = loop.pantry.parent / f".settings.json.{index}"
        temp.write_text("{}")
        temp.rename(loop.pantry.parent / "settings.json")
    ready = parts.wait(loop.clock.now + 5.0)
    assert ready.keys() == {held.guard}  # while something is held, the guard wakes the loop
    assert loop.daemon.turn(ready) is False  # a turn of its own: no deadline moved
    assert len(reads) == 1 and not noise and held.entries[str(loop.pantry)] is entry  # read, not counted as noise

    lone.deleted("Goldfish")
    assert (loop.pantry / "Goldfish").exists() and held.entries[str(loop.pantry)] is entry
    assert len(reads) == 1  # nothing left to parse before the create

    loop.turn(advance=HOLD_IDLE)  # released: the guard's queue holds the removed watches' IN_IGNORED...
    assert not held.entries and held.poller.poll(0)
    assert parts.wait(loop.clock.now) == {} and parts.guard_polled is None  # ...and nothing wakes the loop for it
