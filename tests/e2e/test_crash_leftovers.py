"""Issue 13 item 7: a killed run leaves no stale temp files behind, and no file it created outside the record."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import IS_ROOT, Running, events, wait_until, write_spec

from snackwatch.desired import Desired
from snackwatch.owned import OwnershipRecord
from snackwatch.prune import Pruner
from snackwatch.reconcile import Status, reconcile_all, reconcile_names
from snackwatch.specset import SpecSet
from snackwatch.state import owned_path

SECRET = "root only\n"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The daemon's own state directory, as systemd hands it over (created 0700 on first use)."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    return tmp_path / "state"


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    assert not os.path.exists(f"/proc/{child.pid}")
    return child.pid


@pytest.fixture
def other_snackwatch() -> Iterator[int]:
    """A live process whose command line names snackwatch: another daemon, mid-write."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "snackwatch"], stdin=subprocess.PIPE
    )
    yield child.pid
    child.kill()
    child.communicate()


def temp(directory: Path, pid: int) -> Path:
    return directory / f".snackwatch-{pid}-{secrets.token_hex(6)}.tmp"


def pruning(spec: Path, snacks: Sequence[str | dict[str, str]]) -> Desired:
    write_spec(spec, snacks, extra="prune: true\n")
    return SpecSet.load(spec).desired


def on_disk(spec: Path) -> OwnershipRecord:
    """The ownership record as a new daemon would read it."""
    record = OwnershipRecord(owned_path(spec))
    assert not record.problem
    return record


# --- the record is on disk before the name appears -------------------------------------------------


def test_a_snack_restored_just_before_a_kill_9_is_recorded_and_pruned_at_the_next_start(
    spec_path: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", daemon_env["STATE_DIRECTORY"])
    write_spec(spec_path, ["Goldfish", "Pretzels"], extra="prune: true\n")
    running = start_daemon(spec_path)
    goldfish = running.pantry / "Goldfish"
    goldfish.unlink()
    wait_until(lambda: os.path.lexists(goldfish), 2.0, "Goldfish restored")
    running.proc.send_signal(signal.SIGKILL)  # at once: the status write is still 0.2 s away
    assert running.proc.wait(5) == -signal.SIGKILL
    assert on_disk(spec_path).matches(str(goldfish), os.lstat(goldfish))
    write_spec(spec_path, ["Pretzels"], extra="prune: true\n")  # Goldfish leaves the spec while no daemon runs
    again = start_daemon(spec_path)
    assert again.wait_event("pruned")[0]["files"] == [str(goldfish)]
    assert not goldfish.exists() and (running.pantry / "Pretzels").is_file()


class CheckingPruner(Pruner):
    """The daemon's Pruner, checking at each record write that the names are not there yet and the record is."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self.writes: list[list[str]] = []

    def record_before_publish(self, created: Sequence[tuple[str, os.stat_result, Path]]) -> None:
        super().record_before_publish(created)
        record = on_disk(self.config)
        for path, info, _ in created:
            assert not os.path.lexists(path), f"{path} published before it was recorded"
            assert record.matches(path, info)
        self.writes.append([path for path, _, _ in created])


def test_each_directory_pass_journals_its_new_files_in_one_fsynced_write_before_any_link(
    spec_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"snack-{index}" for index in range(50)]
    desired = pruning(spec_path, [*names, {"name": "drinks/Juice", "content": "apple\n", "mode": "0600"}])
    pruner = CheckingPruner(spec_path)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    outcomes = reconcile_all(desired, recorder=pruner)
    pantry = spec_path.parent / "pantry"
    assert [len(write) for write in pruner.writes] == [50, 1]  # one write per directory, not one per file
    assert len(fsyncs) == 2 + 1 + 1  # the new journal and its directory; the journal again; Juice's content
    assert {outcome.status for outcome in outcomes} == {Status.CREATED}
    assert (pantry / "drinks" / "Juice").read_text() == "apple\n"
    assert not [name for name in os.listdir(pantry) if name.startswith(".snackwatch-")]
    (pantry / "snack-7").unlink()
    (pantry / "snack-9").unlink()
    outcomes = reconcile_names(desired, str(pantry), ["snack-7", "snack-8", "snack-9"], recorder=pruner)
    assert [(o.entry.name, o.status) for o in outcomes] == [
        ("snack-7", Status.CREATED),
        ("snack-8", Status.PRESENT),  # present: no record write for it
        ("snack-9", Status.CREATED),
    ]
    assert pruner.writes[-1] == [str(pantry / "snack-7"), str(pantry / "snack-9")]
    record = on_disk(spec_path)
    assert all(record.matches(str(pantry / name), os.lstat(pantry / name)) for name in names)


def test_the_journal_is_read_back_past_a_torn_line_and_folded_into_the_record(spec_path: Path, state: Path) -> None:
    desired = pruning(spec_path, ["Goldfish", "Pretzels"])
    pruner = Pruner(spec_path)
    reconcile_all(desired, recorder=pruner)  # journaled, not yet saved: a kill -9 now
    journal = owned_path(spec_path).with_suffix(".journal")
    with journal.open("a") as stream:
        stream.write('{"path": "/torn", "dev": 1')  # a write cut short
    pantry = spec_path.parent / "pantry"
    record = on_disk(spec_path)
    assert sorted(record.files) == [str(pantry / "Goldfish"), str(pantry / "Pretzels")]
    record.save()
    assert not journal.exists() and sorted(on_disk(spec_path).files) == sorted(record.files)


class RacingPruner(Pruner):
    """Another writer takes the name between the record write and the link."""

    def record_before_publish(self, created: Sequence[tuple[str, os.stat_result, Path]]) -> None:
        super().record_before_publish(created)
        for path, _, _ in created:
            Path(path).write_text("someone else's")


def test_a_name_taken_before_the_link_is_forgotten_and_the_other_file_kept(spec_path: Path, state: Path) -> None:
    desired = pruning(spec_path, ["Goldfish"])
    pruner = RacingPruner(spec_path)
    outcomes = reconcile_all(desired, recorder=pruner)
    goldfish = spec_path.parent / "pantry" / "Goldfish"
    assert [o.status for o in outcomes] == [Status.PRESENT]
    assert goldfish.read_text() == "someone else's"
    pruner.save()
    assert str(goldfish) not in on_disk(spec_path).files
    assert os.listdir(goldfish.parent) == ["Goldfish"]  # no temp file left


def test_an_unwritable_record_does_not_stop_creation(
    spec_path: Path, state: Path, log_lines: list[dict[str, Any]]
) -> None:
    desired = pruning(spec_path, ["Goldfish", "Pretzels"])
    pruner = Pruner(spec_path)
    state.chmod(0o777)  # no longer safely ours: the record is not written there
    outcomes = reconcile_all(desired, recorder=pruner)
    assert [o.status for o in outcomes] == [Status.CREATED, Status.CREATED]
    assert len(events(log_lines, "owned_unwritable")) == 1
    state.chmod(0o700)
    pruner.save()
    assert len(on_disk(spec_path).files) == 2  # written as soon as it can be


def test_specs_without_prune_never_reach_the_recorder(spec_path: Path, state: Path) -> None:
    write_spec(spec_path, ["Goldfish", {"name": "Cheese", "content": "brie\n"}])
    pruner = CheckingPruner(spec_path)
    assert {o.status for o in reconcile_all(SpecSet.load(spec_path).desired, recorder=pruner)} == {Status.CREATED}
    assert pruner.writes == [] and not owned_path(spec_path).exists()


# --- stale temp files ----------------------------------------------------------------------------


def test_only_our_stale_temp_files_are_removed_and_no_link_is_followed(
    tmp_path: Path, dead_pid: int, other_snackwatch: int, log_lines: list[dict[str, Any]]
) -> None:
    spec = tmp_path / "snacks.yaml"
    pantry = tmp_path / "pantry"
    (pantry / "drinks").mkdir(parents=True)
    target = tmp_path / "root-only"
    target.write_text(SECRET)
    target.chmod(0o600)
    stale = [temp(pantry, dead_pid), temp(pantry / "drinks", dead_pid), temp(pantry, os.getpid())]
    for path in stale:
        path.write_text("half a snack")
    old = time.time() - 120
    os.utime(stale[2], (old, old))  # our own pid, but too old to be a write in flight
    link = temp(pantry, dead_pid)
    link.symlink_to(target)
    directory = temp(pantry, dead_pid)
    (directory / "inside").mkdir(parents=True)
    kept = [temp(pantry, os.getpid()), temp(pantry, other_snackwatch), pantry / ".snackwatch-notes.txt"]
    kept.append(pantry / f"{temp(pantry, dead_pid).name}.bak")
    if IS_ROOT:
        kept.append(temp(pantry, dead_pid))
    for path in kept:
        path.write_text("in flight, or not ours")
    if IS_ROOT:
        os.chown(kept[-1], 65534, 65534)  # another user's: never ours to remove
    desired = pruning(spec, ["Goldfish", "drinks/Juice"])
    before = sorted(os.listdir(pantry))
    reconcile_all(desired, dry_run=True)
    assert sorted(os.listdir(pantry)) == before  # a dry run removes nothing
    assert {o.status for o in reconcile_all(desired)} == {Status.CREATED}
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert link.is_symlink() and (directory / "inside").is_dir()
    assert target.read_text() == SECRET and target.stat().st_mode & 0o777 == 0o600
    [line] = events(log_lines, "leftovers_removed")
    assert line["count"] == 3 and line["directories"] == [str(pantry), str(pantry / "drinks")]
    reconcile_all(desired)
    assert len(events(log_lines, "leftovers_removed")) == 1  # nothing removed, nothing said
