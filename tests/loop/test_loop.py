"""The loop's behaviours in-process: real parts on real directories, a scripted watcher, an injected clock."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events, write_spec
from fake_loop import Loop, start_loop

import snackwatch.hands as hands_module
import snackwatch.reconcile as reconcile_module
from snackwatch.dirty import Mark
from snackwatch.parts import Options
from snackwatch.reads import PACE_NOISE, READ_GAP

pytestmark = pytest.mark.usefixtures("own_state_dirs")  # the daemon's runtime and state directories, ours


@pytest.fixture
def loops(spec_path: Path) -> Iterator[list[Loop]]:
    started: list[Loop] = []
    yield started
    for loop in started:
        loop.close()


def started(loops: list[Loop], spec: Path, options: Options = Options(), **kwargs: Any) -> Loop:
    loop = start_loop(spec, options, **kwargs)
    loops.append(loop)
    return loop


def full_passes(lines: list[dict[str, Any]]) -> list[str]:
    return [line["message"].rsplit(": ", 1)[1] for line in events(lines, "full_pass")]


def test_first_creations_are_created_and_a_deleted_snack_is_restored(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    loop = started(loops, spec_path)
    assert [line["snacks"] for line in events(log_lines, "created")] == [["Goldfish", "Popcorn"]]
    assert [line["event"] for line in log_lines if line["level"] != "DEBUG"][:2] == ["start", "created"]
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    assert (loop.pantry / "Goldfish").exists()
    restored = events(log_lines, "restored")
    assert [(line["snacks"], line["trigger"]) for line in restored] == [(["Goldfish"], "deleted or moved away")]
    assert full_passes(log_lines) == ["start"]  # a deletion is a targeted repair


def test_dry_run_says_would_create_and_creates_nothing(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    (spec_path.parent / "pantry").mkdir()
    loop = started(loops, spec_path, Options(dry_run=True))
    assert events(log_lines, "would_create")[0]["snacks"] == ["Goldfish"]
    assert not (loop.pantry / "Goldfish").exists()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    assert events(log_lines, "would_create") and not events(log_lines, "restored")
    assert loop.daemon.status_line().endswith("1 missing (dry run)")


def test_an_overflow_leads_to_one_full_pass_that_restores_what_no_event_named(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "drinks/Juice"])
    loop = started(loops, spec_path)
    (loop.pantry / "drinks" / "Juice").unlink()
    loop.watcher.mark(Mark.OVERFLOW)
    loop.turn()
    assert (loop.pantry / "drinks" / "Juice").exists()
    assert full_passes(log_lines) == ["start", "overflow resync"]
    assert len(events(log_lines, "overflow")) == 1
    assert loop.daemon.status()["snacks"]["/".join((str(loop.pantry), "drinks", "Juice"))]["trigger"] == (
        "overflow resync"
    )


def test_a_nested_directory_gone_is_rearmed_and_restocked_without_a_full_pass(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "drinks/Juice", "drinks/cold/Ice"])
    loop = started(loops, spec_path)
    arms = len(loop.watcher.armed)
    shutil.rmtree(loop.pantry / "drinks")
    loop.watcher.removed(loop.pantry, "drinks")
    loop.turn()
    assert (loop.pantry / "drinks" / "Juice").exists() and (loop.pantry / "drinks" / "cold" / "Ice").exists()
    assert len(loop.watcher.armed) == arms + 1
    assert full_passes(log_lines) == ["start"]  # only the directories that were lost are looked at
    gone = events(log_lines, "pantry_gone")
    assert len(gone) == 1 and gone[0]["directories"] == [str(loop.pantry / "drinks")]
    assert sorted(events(log_lines, "restored")[0]["snacks"]) == ["drinks/Juice", "drinks/cold/Ice"]


def test_a_blocked_nested_directory_costs_no_full_pass_while_idle(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, [f"snack{i}" for i in range(200)] + ["drinks/Juice"])
    (spec_path.parent / "pantry").mkdir()
    (spec_path.parent / "pantry" / "drinks").write_text("a file where a directory should be")
    loop = started(loops, spec_path)
    blocked = [line for line in events(log_lines, "conflict") if line.get("directory")]
    assert len(blocked) == 1
    loop.until_idle(limit=60.0)  # the armer retries with backoff for a minute of injected time
    assert full_passes(log_lines) == ["start"]
    assert len(events(log_lines, "conflict")) == 1  # said once, and only as the conflict (no ERROR beside it)
    assert [line for line in log_lines if line["level"] == "ERROR"] == []
    (loop.pantry / "drinks").unlink()  # the way is clear again: the next retry stocks it
    loop.until_idle(limit=600.0)
    assert (loop.pantry / "drinks" / "Juice").exists() and full_passes(log_lines) == ["start"]


def test_a_storm_scan_leaves_a_snack_held_by_a_fight_to_its_schedule(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    loop = started(loops, spec_path)
    goldfish = loop.pantry / "Goldfish"
    for _ in range(loop.parts.options.fight.threshold):  # deleted again within ms of each restore
        goldfish.unlink()
        loop.watcher.removed(loop.pantry, "Goldfish")
        loop.turn(advance=0.001)
    goldfish.unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn(advance=0.001)
    assert len(events(log_lines, "fight")) == 1 and not goldfish.exists()
    (loop.pantry / "Popcorn").unlink()
    loop.watcher.scans = {str(loop.pantry)}  # a storm: the directory is scanned, not heard
    loop.turn(advance=0.001)
    assert (loop.pantry / "Popcorn").exists() and not goldfish.exists()  # held: its backoff decides
    loop.until_idle(limit=10.0)
    assert goldfish.exists()


@pytest.fixture
def watched_pipe(loops: list[Loop]) -> Iterator[tuple[int, int]]:
    """A pipe standing in for the inotify fd of the first loop started: (read end polled, write end)."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for loop in loops:
        if loop.watcher.fd == read_fd:
            loop.parts.poller.unregister(read_fd)
            loop.watcher.fd = None
    os.close(read_fd)
    os.close(write_fd)


def polled(loop: Loop, fd: int) -> bool:
    return fd in {ready for ready, _ in loop.parts.poller.poll(0)}


def test_a_relevant_event_is_never_held_by_pacing_below_a_storm(
    spec_path: Path, loops: list[Loop], watched_pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)
    read_fd, write_fd = watched_pipe
    loop.watcher.fd = read_fd
    loop.parts.reads.sync()
    steps: list[float] = []
    step = loop.daemon.step
    monkeypatch.setattr(loop.daemon, "step", lambda now, **kw: steps.append(now) or step(now, **kw))
    loop.watcher.noise_per_read = 3  # an app saving beside a watched directory: a few events per save
    for i in range(300):  # 300 reads in 0.3 s (3,000 events a second would be a storm; 900 in 0.3 s is not)
        os.write(write_fd, b"x")
        loop.watcher.meaningful = i % 50 == 49
        if loop.watcher.meaningful:  # a snack deleted among the noise: read at once, repaired in that turn
            (loop.pantry / "Goldfish").unlink()
            loop.watcher.removed(loop.pantry, "Goldfish")
        loop.turn(advance=0.001, ready={read_fd})
        assert (loop.pantry / "Goldfish").exists()
        assert loop.parts.reads.next_due() is None  # never paced, not even after two idle reads in a row
    assert len(steps) == 6  # a read of noise alone costs that read: no step (a due part gets its own turn)
    assert loop.watcher.noise == 900


def test_reads_are_paced_only_in_a_storm_of_noise_and_resume(
    spec_path: Path, loops: list[Loop], watched_pipe: tuple[int, int]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)
    read_fd, write_fd = watched_pipe
    loop.watcher.fd, loop.watcher.meaningful = read_fd, False
    loop.parts.reads.sync()
    loop.watcher.noise_per_read = PACE_NOISE // 2 + 1  # another user's churn: a storm of unrelated removals
    os.write(write_fd, b"x")
    loop.turn(advance=0.001, ready={read_fd})
    assert loop.parts.reads.next_due() is None
    os.write(write_fd, b"x")
    loop.turn(advance=0.001, ready={read_fd})
    assert loop.parts.reads.next_due() == pytest.approx(loop.clock.now + READ_GAP)
    os.write(write_fd, b"x")
    assert not polled(loop, read_fd)  # the kernel queues meanwhile
    loop.turn(advance=READ_GAP)
    assert polled(loop, read_fd)
    loop.watcher.noise_per_read = 0
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.watcher.meaningful = True
    loop.turn(advance=0.001, ready={read_fd})
    assert (loop.pantry / "Goldfish").exists()


def test_attribute_changes_are_heard_only_while_a_repair_fails(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)
    assert loop.watcher.attributes is False
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(reconcile_module, "create_snack", lambda *args: (_ for _ in ()).throw(full))
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    assert loop.watcher.attributes is True and len(events(log_lines, "failing")) == 1
    monkeypatch.undo()
    loop.watcher.mark(Mark.NUDGE, loop.pantry)  # space freed: a removal or a chmod nudges the retry
    loop.turn()
    loop.until_idle(limit=1.0)
    assert (loop.pantry / "Goldfish").exists() and loop.watcher.attributes is False
    assert events(log_lines, "recovered")


def test_a_sighup_sends_reloading_then_ready_and_applies_the_spec(
    spec_path: Path, tmp_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path, notify=tmp_path / "notify.sock")
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    loop.daemon.signals.reload()
    loop.turn()
    sent = loop.notifications()
    assert sent[0].startswith("READY=1")
    assert sent[1].startswith("RELOADING=1\nMONOTONIC_USEC=") and sent[2].startswith("READY=1\nSTATUS=2/2 snacks ok")
    assert (loop.pantry / "Popcorn").exists()
    assert full_passes(log_lines) == ["start", "spec reload"]


def test_a_periodic_resync_repairs_what_no_event_told(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path, Options(resync=5.0))
    (loop.pantry / "Goldfish").unlink()  # the watcher is deaf: nothing is marked
    loop.turn(advance=4.9)
    assert not (loop.pantry / "Goldfish").exists()
    loop.turn(advance=0.2)
    assert (loop.pantry / "Goldfish").exists()
    assert full_passes(log_lines) == ["start", "periodic resync"]
    assert loop.daemon.status()["snacks"][str(loop.pantry / "Goldfish")]["trigger"] == "periodic resync"


def test_an_internal_error_is_logged_and_a_backed_off_resync_follows(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(hands_module, "reconcile_names", broken)
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    error = events(log_lines, "internal_error")
    assert len(error) == 1 and error[0]["level"] == "ERROR" and "full resync in 0.1 s" in error[0]["message"]
    monkeypatch.undo()
    loop.until_idle(limit=1.0)
    assert (loop.pantry / "Goldfish").exists()
    assert full_passes(log_lines) == ["start", "resync after an error"]


def test_snacks_first_made_in_a_pantry_that_was_blocked_at_start_are_created_not_restored(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "drinks/Juice"])
    (spec_path.parent / "pantry").mkdir()
    (spec_path.parent / "pantry" / "drinks").write_text("in the way")
    loop = started(loops, spec_path)
    assert [line["snacks"] for line in events(log_lines, "created")] == [["Goldfish"]]
    (loop.pantry / "drinks").unlink()
    loop.watcher.removed(loop.pantry, "drinks")
    loop.turn()
    assert (loop.pantry / "drinks" / "Juice").exists()
    assert [line["snacks"] for line in events(log_lines, "created")][-1] == ["drinks/Juice"]
    assert events(log_lines, "restored") == [] and loop.parts.ledger.repairs == 0


def test_a_real_run_never_says_dry_run_when_a_name_vanishes_between_create_and_look(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)
    real_create, taken = reconcile_module.create_snack, [True]

    def flipped(fd: int, name: str, snack: object, fixes: object = None) -> bool:  # there at create, gone at look
        if taken.pop() if taken else False:
            return False
        return bool(real_create(fd, name, snack, fixes))  # type: ignore[arg-type]

    monkeypatch.setattr(reconcile_module, "create_snack", flipped)
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    assert (loop.pantry / "Goldfish").exists()
    assert not [line for line in log_lines if "dry run" in line["message"]]
    assert events(log_lines, "restored")[-1]["snacks"] == ["Goldfish"]


def test_a_snack_deleted_just_past_the_flap_window_each_time_is_churn_not_a_fight(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    loop = started(loops, spec_path)
    goldfish = loop.pantry / "Goldfish"
    window = loop.parts.options.fight.window
    for _ in range(loop.parts.options.fight.threshold + 2):
        goldfish.unlink()
        loop.watcher.removed(loop.pantry, "Goldfish")
        loop.turn(advance=window + 0.01)  # each deletion comes just after the window of the last restore
        assert goldfish.exists()
    assert events(log_lines, "fight") == [] and loop.parts.ledger.repairs == loop.parts.options.fight.threshold + 2
