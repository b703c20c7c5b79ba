"""The lone-deletion gate (lone.LoneGate) and the book's answer behind it (backoff.restores_now): pure, injected clock.

The loop restores a lone deletion before the fight gate hears of it, so the gate's answer must be the one the
fight gate gives afterwards: these tests hold restores_now() to deleted() over random histories."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import IS_LINUX

from snackwatch.backoff import BackoffPolicy, FightPolicy, Health, restores_all_now, restores_now
from snackwatch.desired import Desired, merge
from snackwatch.dirty import DirtySet
from snackwatch.lone import LoneGate
from snackwatch.spec import Snack, Spec
from snackwatch.watch import HAVE_INOTIFY, Watcher

FIGHT = FightPolicy(window=0.05, threshold=5, quiet_after=3, backoff=BackoffPolicy(initial=0.1, cap=5.0), quiet=1.0)
PANTRY = "/pantry"


def desired_of(*snacks: Snack, prune: bool = False) -> Desired:
    return merge([Spec(Path("/etc/snacks.yaml"), Path(PANTRY), snacks, prune)])


def test_plain_snacks_with_nothing_remembered_are_restored_first_each_once() -> None:
    desired = desired_of(Snack("Goldfish", 3), Snack("Popcorn", 4), Snack("drinks/Juice", 5))
    removed = [(PANTRY, "Goldfish"), (PANTRY, "Popcorn"), (PANTRY, "Goldfish"), (f"{PANTRY}/drinks", "Juice")]
    todo = LoneGate().restores(removed, desired, Health(fight=FIGHT), 10.0)
    assert todo is not None
    assert {d: [e.name for e in entries] for d, entries in todo.items()} == {
        PANTRY: ["Goldfish", "Popcorn"],  # removed, made and removed again within one read: one repair
        f"{PANTRY}/drinks": ["Juice"],
    }


def test_anything_but_a_plain_declared_snack_takes_the_normal_turn() -> None:
    health = Health(fight=FIGHT)
    kinds = desired_of(
        Snack("Goldfish", 3),
        Snack("Cheese", 4, content="mozzarella\n"),
        Snack("Shelf", 5, type="directory"),
        Snack("Link", 6, type="symlink", target="Goldfish"),
        Snack("Locked", 7, mode=0o600),
        Snack("drinks/Juice", 8),
    )
    for name in ("Cheese", "Shelf", "Link", "Locked", "drinks", "Unknown"):  # "drinks": a nested directory gone
        assert LoneGate().restores([(PANTRY, "Goldfish"), (PANTRY, name)], kinds, health, 10.0) is None, name
    assert LoneGate().restores([("/elsewhere", "Goldfish")], kinds, health, 10.0) is None
    pruning = desired_of(Snack("Goldfish", 3), prune=True)  # recorded before its name appears: the normal repair
    assert LoneGate().restores([(PANTRY, "Goldfish")], pruning, health, 10.0) is None


def test_the_gate_remembers_which_names_are_plain_only_while_one_desired_state_is_in_force() -> None:
    gate, health = LoneGate(), Health(fight=FIGHT)
    plain = desired_of(Snack("Goldfish", 3))
    assert gate.restores([(PANTRY, "Goldfish")], plain, health, 10.0) is not None
    assert gate.restores([(PANTRY, "Goldfish")], plain, health, 10.1) is not None  # remembered
    content = desired_of(Snack("Goldfish", 3, content="crackers\n"))  # a reload declared it otherwise
    assert gate.restores([(PANTRY, "Goldfish")], content, health, 10.2) is None
    assert gate.restores([(PANTRY, "Goldfish")], plain, health, 10.3) is not None


def test_a_snack_that_fails_fights_waits_or_would_start_a_fight_takes_the_normal_turn() -> None:
    desired = desired_of(Snack("Goldfish", 3), Snack("Popcorn", 4))
    goldfish, now = f"{PANTRY}/Goldfish", 10.0
    health = Health(fight=FIGHT)
    health.failed(goldfish, now, "No space left on device")  # backing off
    assert LoneGate().restores([(PANTRY, "Popcorn")], desired, health, now) is not None
    assert LoneGate().restores([(PANTRY, "Goldfish")], desired, health, now) is None
    assert LoneGate().restores([(PANTRY, "Popcorn"), (PANTRY, "Goldfish")], desired, health, now) is None  # all or none
    assert LoneGate().restores([(PANTRY, "Goldfish")], desired, health, now + 1.0) is None  # still failing
    health.repaired(goldfish, now + 1.0)  # recovered
    assert LoneGate().restores([(PANTRY, "Goldfish")], desired, health, now + 2.0) is not None

    health = Health(fight=FIGHT)
    for deletion in range(FIGHT.threshold + 1):  # deleted right after each restore: the first is no flap
        answer = LoneGate().restores([(PANTRY, "Goldfish")], desired, health, now)
        delay, _ = health.deleted(goldfish, now)
        assert (answer is not None) == (deletion < FIGHT.threshold)  # the flap that starts the fight is not lone
        assert (delay == 0) == (deletion < FIGHT.threshold)
        if delay == 0:
            health.repaired(goldfish, now)
        now += 0.01
    assert health.snacks[goldfish].fighting
    assert (
        LoneGate().restores([(PANTRY, "Goldfish")], desired, health, now + 3.0) is None
    )  # in a fight, even once quiet


def test_the_gates_answer_is_the_fight_gates_over_random_histories() -> None:
    """restores_now() (and restores_all_now()) say "now" only where deleted() then answers 0 with nothing to tell,
    whatever came before: deletions, restores, failures, nudges, corrections, presence, on a random clock."""
    rng = random.Random(23)
    names = ["a", "b", "c"]
    for _ in range(300):
        health = Health(BackoffPolicy(), FightPolicy(window=0.05, threshold=rng.choice([1, 2, 3, 5]), quiet=0.3))
        now = 0.0
        for _ in range(60):
            now += rng.choice([0.0, 0.001, 0.01, 0.04, 0.06, 0.2, 0.5, 2.0])
            name, act = rng.choice(names), rng.randrange(7)
            if act == 0:
                said = restores_now(health, name, now)
                every = restores_all_now(health)
                delay, change = health.deleted(name, now)
                assert not said or (delay == 0 and change is None), (name, now, health.snacks.get(name))
                assert not every or said
                if delay == 0:
                    health.repaired(name, now)
            elif act == 1:
                health.repaired(name, now)
            elif act == 2:
                health.failed(name, now, "No space left on device")
            elif act == 3:
                health.nudge(now)
            elif act == 4:
                health.present(name, now)
            elif act == 5:
                health.changed(name, now)
                health.corrected(name, now)
            else:
                health.pop_due(now)


@pytest.mark.skipif(not (IS_LINUX and HAVE_INOTIFY), reason="inotify is Linux only")
def test_a_read_of_only_removals_of_declared_names_is_lone_and_any_other_read_is_marked(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    for name in ("Goldfish", "Popcorn", "junk"):
        (pantry / name).touch()
    where, dirty = str(pantry), DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    try:
        watcher.track({where: frozenset({"Goldfish", "Popcorn"})})
        watcher.arm([where], [])
        lone: list[tuple[str, str]] = []
        (pantry / "Goldfish").unlink()
        (pantry / "Popcorn").rename(tmp_path / "Popcorn")  # moved away: a removal too
        assert watcher.read_events(lone) is True
        assert lone == [(where, "Goldfish"), (where, "Popcorn")] and not dirty.pending  # unmarked: the loop's
        (tmp_path / "Popcorn").rename(pantry / "Popcorn")  # something renamed over a snack's name: no removal
        assert watcher.read_events(lone) is True and lone == [] and dirty.take().names == {(where, "Popcorn")}
        (pantry / "Popcorn").unlink()
        (pantry / "junk").unlink()  # another user's name beside it: noise, counted as always
        assert watcher.read_events(lone) is True and lone == []
        assert dirty.take().names == {(where, "Popcorn")} and watcher.noise_heard() == 1
        (pantry / ".snackwatch-1-abc.tmp").touch()
        (pantry / ".snackwatch-1-abc.tmp").unlink()  # our own temp file: never lone, never marked
        assert watcher.read_events(lone) is False and lone == [] and not dirty.pending
    finally:
        watcher.close()
        dirty.close()
