"""The ledger in-process: outcomes in, health, history, conflicts and log lines out, on an injected clock."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import events

import snackwatch.ledger as ledger_module
from snackwatch.backoff import BackoffPolicy, FightPolicy
from snackwatch.desired import Desired, Entry, merge
from snackwatch.ledger import Changes, Ledger
from snackwatch.narrator import CONFLICT_QUIET, Narrator
from snackwatch.plan import Kind
from snackwatch.reconcile import Outcome, Status
from snackwatch.spec import Snack, Spec
from snackwatch.status_view import counts, snacks_status, snacks_with_a_story, status_line
from snackwatch.trigger import Trigger

FIGHT = FightPolicy(window=0.05, threshold=20, quiet_after=3, backoff=BackoffPolicy(initial=0.1, cap=5.0), quiet=1.0)


def desired_of(*names: str, prune: bool = False) -> Desired:
    snacks = tuple(Snack(name, line) for line, name in enumerate(names, start=3))
    return merge([Spec(Path("/etc/snacks.yaml"), Path("/pantry"), snacks, prune)])


def entry(desired: Desired, name: str) -> Entry:
    return desired.by_path()[f"/pantry/{name}"]


class Books:
    """The ledger and its narrator as the loop uses them: fold, then tell; status read through the status view."""

    def __init__(self, desired: Desired) -> None:
        self.book = Ledger(desired, BackoffPolicy(), FIGHT, wall=lambda: 1_000_000.0)
        self.narrator = Narrator(BackoffPolicy(), FIGHT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.book, name)

    def fold(self, outcomes: list[Outcome], now: float, trigger: Trigger, *, everything: bool = False) -> None:
        self.narrator.tell(self.book.fold(outcomes, now, trigger, everything=everything), self.book.desired, now)

    def deleted(self, names: list[tuple[str, str]], now: float) -> dict[str, list[Entry]]:
        todo, changes = self.book.deleted(names, now)
        self.narrator.tell(changes, self.book.desired, now)
        return todo

    def spec_applied(self, desired: Desired) -> None:
        self.narrator.forget(self.book.spec_applied(desired))

    def counts(self) -> dict[str, int]:
        return counts(self.book)

    def status_line(self) -> str:
        return status_line(self.book)

    def snacks_with_a_story(self, now: float) -> dict[str, dict[str, object]]:
        return snacks_with_a_story(self.book, now)

    def snacks_status(self, now: float, cap: int) -> tuple[dict[str, dict[str, object]], bool]:
        return snacks_status(self.book, now, cap)

    def hold_lines(self) -> None:
        self.narrator.hold_lines()

    def release_lines(self) -> None:
        self.narrator.release_lines()


def ledger_of(desired: Desired) -> Books:
    return Books(desired)


def fight(ledger: Books, goldfish: Entry, rounds: int) -> tuple[float, int]:
    """Something deletes Goldfish 10 ms after every restore, `rounds` times; returns (now, restores right away).

    A deletion the fight gate holds back is restored when the schedule says so, as the loop would.
    """
    now = 0.0
    ledger.fold([Outcome(goldfish, Status.CREATED)], now, Trigger.DELETED)
    at_once = 0
    for _ in range(rounds):
        now += 0.01
        if ledger.deleted([("/pantry", "Goldfish")], now):
            at_once += 1
            now += 0.001
            ledger.fold([Outcome(goldfish, Status.CREATED)], now, Trigger.DELETED)
        else:
            due = ledger.next_due()
            assert due is not None and due > now
            now = due
            assert [e.name for e in ledger.due(now)["/pantry"]] == ["Goldfish"]
            ledger.fold([Outcome(goldfish, Status.CREATED)], now, Trigger.RETRY)
    return now, at_once


def test_a_fight_is_warned_once_at_the_threshold_and_restores_go_quiet(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of("Goldfish")
    ledger = ledger_of(desired)
    now, at_once = fight(ledger, entry(desired, "Goldfish"), 60)
    fights = events(log_lines, "fight")
    assert len(fights) == 1 and fights[0]["snack"] == "Goldfish"
    assert "20 times in a row" in fights[0]["message"]
    assert at_once == 19  # from the 20th flap on, each restore waits for the backoff
    assert len(events(log_lines, "restored")) == 3  # the first and two flaps; from the 3rd flap on, quiet
    assert now > 60 * 0.1  # backed off: far slower than the fighter's pace
    assert events(log_lines, "fight_over") == []


def test_fight_over_carries_the_count_of_unlogged_restores(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of("Goldfish")
    ledger = ledger_of(desired)
    goldfish = entry(desired, "Goldfish")
    now, _ = fight(ledger, goldfish, 25)
    # The fighter stopped: the restored snack stays put for `quiet` seconds.
    quiet_check = ledger.next_due()
    assert quiet_check == now + FIGHT.quiet
    ledger.due(quiet_check)
    ledger.fold([Outcome(goldfish, Status.PRESENT)], quiet_check, Trigger.RETRY)
    over = events(log_lines, "fight_over")
    assert len(over) == 1
    assert "23 restores not logged one by one" in over[0]["message"]  # flaps 3 to 25
    assert ledger.next_due() is None


def test_failures_are_grouped_by_error_and_recovery_is_told_once(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of("Goldfish", "FruitGummies", "StringCheese")
    ledger = ledger_of(desired)
    full = OSError(errno.ENOSPC, "No space left on device")
    denied = OSError(errno.EACCES, "Permission denied")
    outcomes = [
        Outcome(entry(desired, "Goldfish"), Status.FAILED, error=full),
        Outcome(entry(desired, "FruitGummies"), Status.FAILED, error=full),
        Outcome(entry(desired, "StringCheese"), Status.FAILED, error=denied),
    ]
    ledger.fold(outcomes, 0.0, Trigger.START, everything=True)
    failing = events(log_lines, "failing")
    assert [(line["error"], line["snacks"]) for line in failing] == [
        ("No space left on device (ENOSPC)", ["Goldfish", "FruitGummies"]),
        ("Permission denied (EACCES)", ["StringCheese"]),
    ]
    assert ledger.counts()["failing"] == 3 and ledger.status_line().startswith("0/3 snacks ok")
    status = ledger.snacks_with_a_story(0.05)
    assert status["/pantry/Goldfish"]["state"] == "failing"
    assert status["/pantry/Goldfish"]["next_retry"] == 1_000_000.0 + 0.05
    # A retry that fails again says nothing; then the space is freed.
    todo = ledger.due(0.1)
    assert sorted(e.name for e in todo["/pantry"]) == ["FruitGummies", "Goldfish", "StringCheese"]
    ledger.fold(outcomes, 0.1, Trigger.RETRY)
    assert len(events(log_lines, "failing")) == 2
    ledger.fold([Outcome(entry(desired, "Goldfish"), Status.CREATED)], 0.5, Trigger.RETRY)
    ledger.fold([], 0.6, Trigger.PERIODIC, everything=True)  # the others are found present
    recovered = events(log_lines, "recovered")
    assert [line["snacks"] for line in recovered] == [["Goldfish"], ["FruitGummies", "StringCheese"]]
    assert ledger.counts() == {
        "snacks": 3,
        "ok": 3,
        "failing": 0,
        "conflicts": 0,
        "missing": 0,
        "repairs": 0,  # Goldfish was never on disk: its creation is a first one, not a repair
        "created": 1,
        "drift": 0,
    }
    assert ledger.next_due() is None  # nothing scheduled: idle again


def test_a_conflict_is_logged_once_cleared_when_the_file_is_back_and_flips_are_summed_up(
    log_lines: list[dict[str, Any]],
) -> None:
    desired = desired_of("Goldfish")
    ledger = ledger_of(desired)
    goldfish = entry(desired, "Goldfish")
    symlink = Outcome(goldfish, Status.CONFLICT, kind=Kind.SYMLINK)
    ledger.fold([symlink], 0.0, Trigger.START, everything=True)
    ledger.fold([symlink], 0.1, Trigger.DELETED)
    assert len(events(log_lines, "conflict")) == 1
    assert ledger.snacks_with_a_story(0.1)["/pantry/Goldfish"]["reason"] == "a symlink is in its place"
    ledger.fold([Outcome(goldfish, Status.PRESENT)], 0.2, Trigger.DELETED)
    assert ledger.counts()["conflicts"] == 0
    # Someone flips the place between kinds, hundreds of times: one line now, a summary later.
    kinds = [Kind.DIRECTORY, Kind.SYMLINK]
    for flip in range(400):
        ledger.fold([Outcome(goldfish, Status.CONFLICT, kind=kinds[flip % 2])], 0.3 + flip * 0.01, Trigger.DELETED)
    assert len(events(log_lines, "conflict")) == 1
    ledger.fold([Outcome(goldfish, Status.CONFLICT, kind=Kind.DIRECTORY)], 0.3 + CONFLICT_QUIET, Trigger.DELETED)
    lines = events(log_lines, "conflict")
    assert len(lines) == 2 and "(400 more changes in its place not logged)" in lines[1]["message"]
    assert ledger.counts()["conflicts"] == 1


def test_first_convergence_is_counted_apart_from_repairs_without_per_snack_history(
    log_lines: list[dict[str, Any]],
) -> None:
    desired = desired_of(*(f"snack{i}" for i in range(100)))
    ledger = ledger_of(desired)
    ledger.hold_lines()  # the daemon tells the first pass after its start line
    ledger.fold([Outcome(e, Status.CREATED) for e in desired.entries()], 0.0, Trigger.START, everything=True)
    assert log_lines == []
    ledger.release_lines()
    assert (ledger.created, ledger.repairs) == (100, 0)
    assert ledger.status_line() == "100/100 snacks ok, 0 repairs, 0 failing, 0 conflicts"
    assert ledger.history == {} and ledger.health.snacks == {} and ledger.health.restored_at == {}
    assert ledger.snacks_with_a_story(0.0) == {}
    assert events(log_lines, "created")[0]["message"] == (
        "created snack0, snack1, snack2, snack3, snack4, snack5, snack6, snack7, snack8, snack9 (+90 more)"
    )
    assert events(log_lines, "restored") == []


def test_a_snack_a_reload_adds_is_created_and_one_that_was_there_is_restored(log_lines: list[dict[str, Any]]) -> None:
    ledger = ledger_of(desired_of("Goldfish"))
    desired = desired_of("Goldfish", "Popcorn")
    ledger.spec_applied(desired)
    outcomes = [Outcome(entry(desired, name), Status.CREATED) for name in ("Goldfish", "Popcorn")]
    ledger.fold(outcomes, 1.0, Trigger.SPEC_RELOAD, everything=True)
    assert [line["snacks"] for line in events(log_lines, "created")] == [["Popcorn"]]
    assert [line["snacks"] for line in events(log_lines, "restored")] == [["Goldfish"]]
    assert (ledger.created, ledger.repairs) == (1, 1)
    ledger.fold([Outcome(entry(desired, "Popcorn"), Status.CREATED)], 2.0, Trigger.DELETED)
    assert [line["snacks"] for line in events(log_lines, "restored")][-1] == ["Popcorn"]  # now it is a repair


def test_snacks_that_leave_the_spec_leave_no_state_behind() -> None:
    desired = desired_of("Goldfish", "FruitGummies")
    ledger = ledger_of(desired)
    ledger.fold([Outcome(entry(desired, "Goldfish"), Status.CREATED)], 1.0, Trigger.DELETED)
    ledger.fold([Outcome(entry(desired, "FruitGummies"), Status.CONFLICT, kind=Kind.DIRECTORY)], 1.0, Trigger.DELETED)
    assert set(ledger.history) == {"/pantry/Goldfish"} and set(ledger.conflicts) == {"/pantry/FruitGummies"}
    ledger.spec_applied(desired_of("StringCheese"))
    assert ledger.history == {} and ledger.conflicts == {} and ledger.health.restored_at == {}
    assert ledger.counts() == {
        "snacks": 1,
        "ok": 1,
        "failing": 0,
        "conflicts": 0,
        "missing": 0,
        "repairs": 1,
        "created": 0,
        "drift": 0,
    }


def test_dry_run_outcomes_are_told_not_counted_and_missing_snacks_are_not_ok(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of("Goldfish", "Popcorn")
    ledger = ledger_of(desired)
    ledger.fold([Outcome(entry(desired, "Goldfish"), Status.WOULD_CREATE)], 0.0, Trigger.START, everything=True)
    assert events(log_lines, "would_create")[0]["snacks"] == ["Goldfish"]
    assert (ledger.repairs, ledger.created) == (0, 0)
    assert ledger.status_line() == "1/2 snacks ok, 0 repairs, 0 failing, 0 conflicts, 1 missing"
    assert ledger.snacks_status(0.0, 10)[0]["/pantry/Goldfish"]["state"] == "missing"
    ledger.fold([Outcome(entry(desired, "Goldfish"), Status.PRESENT)], 1.0, Trigger.RETRY)  # someone made it
    assert ledger.counts()["missing"] == 0


def test_a_place_flipped_between_kinds_becomes_a_fight_too(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of("Goldfish")
    ledger = ledger_of(desired)
    goldfish = entry(desired, "Goldfish")
    now, held = 0.0, False
    for _ in range(40):  # removed, and something else stands there by the time we look: never restored
        now += 0.01
        if not ledger.deleted([("/pantry", "Goldfish")], now):
            held = True
            break
        ledger.fold([Outcome(goldfish, Status.CONFLICT, kind=Kind.SYMLINK)], now + 0.001, Trigger.DELETED)
    assert held and len(events(log_lines, "fight")) == 1


def test_a_blocked_directory_is_one_conflict_line_not_one_per_snack(log_lines: list[dict[str, Any]]) -> None:
    desired = desired_of(*(f"snack{i}" for i in range(500)))
    ledger = ledger_of(desired)
    blocked = [Outcome(e, Status.CONFLICT, kind=Kind.SYMLINK, blocked=True) for e in desired.entries()]
    ledger.fold(blocked, 0.0, Trigger.START, everything=True)
    ledger.fold(blocked, 1.0, Trigger.DIRECTORY, everything=True)  # still blocked: nothing new to say
    lines = events(log_lines, "conflict")
    assert len(lines) == 1 and lines[0]["message"].startswith(
        "conflict: a symlink is in the way of /pantry: 500 snacks"
    )
    assert ledger.counts()["conflicts"] == 500 and ledger.status_line().startswith("0/500 snacks ok")


def test_changes_are_nothing_only_when_every_field_is_empty() -> None:
    """The narrator's fast gate must not hide a kind of line a later change adds to Changes."""
    assert Changes().nothing()
    for name in Changes.__dataclass_fields__:
        if name in ("trigger", "told"):
            continue
        changes = Changes()
        setattr(changes, name, {"x": ["y"]})  # any non-empty value
        assert not changes.nothing(), name


def test_the_starts_creations_folded_at_once_leave_the_book_as_one_by_one() -> None:
    desired = desired_of(*(f"snack{i}" for i in range(8)))
    entries = list(desired.entries())
    outcomes = [
        Outcome(e, Status.CONFLICT, kind=Kind.DIRECTORY)
        if i == 2
        else Outcome(e, Status.FAILED, error=OSError(errno.ENOSPC, "No space left on device"))
        if i == 5
        else Outcome(e, Status.CREATED)
        for i, e in enumerate(entries)
    ]
    at_once, one_by_one = ledger_of(desired), ledger_of(desired)
    one_by_one.book.fresh.add("/elsewhere/x")  # a book that is not blank folds one outcome at a time
    changes = [books.book.fold(outcomes, 0.0, Trigger.START, everything=True) for books in (at_once, one_by_one)]
    assert changes[0] == changes[1]
    assert changes[0].told["created"] == [f"snack{i}" for i in (0, 1, 3, 4, 6, 7)]
    for table in ("conflicts", "missing", "squatted", "drift", "fresh", "created", "repairs", "touched"):
        assert getattr(at_once.book, table) == getattr(one_by_one.book, table), table
    assert at_once.book.health.snacks.keys() == one_by_one.book.health.snacks.keys() == {"/pantry/snack5"}


def _a_book_with_a_past(desired: Desired, seed: int) -> Ledger:
    """A book some snacks of which already have a story: repairs (the history), a failure, a flap, a fight,
    a conflict, drift, a squatted name, a change heard: the same for the same seed."""
    rng = random.Random(seed)
    book = Ledger(desired, BackoffPolicy(), FIGHT, wall=lambda: 1_000_000.0)
    book.fresh.clear()
    book.take_touched()
    entries = list(desired.entries())
    now = 10.0
    for _ in range(rng.randrange(40)):
        e = rng.choice(entries)
        now += rng.choice((0.01, 0.2, 2.0))
        kind = rng.randrange(7)
        if kind == 0:
            book.fold(
                [Outcome(e, Status.FAILED, error=OSError(errno.ENOSPC, "No space left on device"))],
                now,
                Trigger.DELETED,
            )
        elif kind == 1:
            book.deleted([(e.directory, e.name)], now)
            book.fold([Outcome(e, Status.CREATED)], now, Trigger.DELETED)
        elif kind == 2:
            book.fold([Outcome(e, Status.CONFLICT, kind=Kind.DIRECTORY)], now, Trigger.DELETED)
        elif kind == 3:
            book.fold([Outcome(e, Status.PRESENT, reason="created by nobody")], now, Trigger.DELETED)
        elif kind == 4:
            book.health.changed(e.path, now)
        else:
            book.fold([Outcome(e, Status.CREATED)], now, Trigger.DELETED)
    book.all_touched = rng.random() < 0.3  # a new desired state since the status rows were last made
    return book


def _the_book(book: Ledger) -> dict[str, object]:
    health = book.health
    return {
        "history": [(path, (h.repairs, h.last_repair, h.trigger)) for path, h in book.history.items()],
        "health": (health.snacks, health.restored_at, health.changed_at, health._schedule, health._failing),
        **{
            name: getattr(book, name)
            for name in ("fresh", "drift", "missing", "conflicts", "squatted", "touched", "repairs", "created")
        },
    }


def test_a_mass_restore_folded_at_once_leaves_the_book_as_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst's restores are folded table by table (_restored_all); whatever the book knew before (a short
    history pushed out or carried on, flaps, fights, failures, conflicts), the book and what is told are the
    same as one outcome at a time."""
    monkeypatch.setattr(ledger_module, "HISTORY_KEPT", 6)
    monkeypatch.setattr(ledger_module, "RESTORES_AT_ONCE", 1)
    desired = desired_of(*(f"snack{i}" for i in range(24)))
    entries = list(desired.entries())
    batched = 0
    for seed in range(300):
        at_once, one_by_one = _a_book_with_a_past(desired, seed), _a_book_with_a_past(desired, seed)
        one_by_one._all_restores = lambda *_: False  # type: ignore[method-assign]
        rng = random.Random(seed)
        pool = [e for e in entries if e.path not in at_once.history] if seed % 2 else entries  # no story goes on
        chosen = rng.sample(pool, rng.randrange(1, len(pool)))
        outcomes = [Outcome(e, Status.CREATED) for e in chosen]
        now = 10.0 + rng.choice((0.01, 1.0, 50.0))
        batched += at_once._all_restores(outcomes, [o.entry.path for o in outcomes])
        changes = [book.fold(outcomes, now, Trigger.DELETED) for book in (at_once, one_by_one)]
        assert changes[0] == changes[1], seed
        assert _the_book(at_once) == _the_book(one_by_one), seed
    assert batched == 300  # every fold above took the way at once
