"""The directory armer in-process with a stub watcher: create, watch, back off, recover, re-arm."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conftest import events

from snackwatch.arming import DirectoryArmer
from snackwatch.backoff import BackoffPolicy
from snackwatch.chase import WalkRules
from snackwatch.desired import Desired, merge
from snackwatch.spec import Snack, Spec
from snackwatch.watch import Armed


class StubWatcher:
    """Records what it was asked to watch; fails or reports replaced directories on demand."""

    def __init__(self) -> None:
        self.watched: list[set[str]] = []
        self.fail: dict[str, OSError] = {}
        self.replaced: set[str] = set()

    def arm(
        self, snack_dirs: Iterable[str], spec_dirs: Iterable[str], rules: Mapping[str, WalkRules] | None = None
    ) -> Armed:
        self.watched.append(set(snack_dirs) | set(spec_dirs))
        readded, self.replaced = self.replaced, set()
        return Armed(failures=dict(self.fail), readded=readded)


def desired_in(pantry: Path, *names: str) -> Desired:
    snacks = tuple(Snack(name, line) for line, name in enumerate(names, start=3))
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks)])


def test_arming_creates_every_directory_and_watches_it(tmp_path: Path) -> None:
    watcher = StubWatcher()
    armed_calls: list[int] = []
    armer = DirectoryArmer(watcher, lambda: [str(tmp_path)], after_arm=lambda: armed_calls.append(1))
    desired = desired_in(tmp_path / "pantry", "Goldfish", "drinks/Juice")
    assert armer.arm(desired, 0.0) == set()
    assert (tmp_path / "pantry" / "drinks").is_dir()
    assert watcher.watched == [{str(tmp_path / "pantry"), str(tmp_path / "pantry" / "drinks"), str(tmp_path)}]
    assert armed_calls == [1] and armer.next_due() is None


def test_dry_run_creates_nothing(tmp_path: Path) -> None:
    armer = DirectoryArmer(StubWatcher(), list, dry_run=True)
    armer.arm(desired_in(tmp_path / "pantry", "drinks/Juice"), 0.0)
    assert not (tmp_path / "pantry").exists()


def test_an_unwatchable_directory_backs_off_logs_once_and_recovers(
    tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    watcher = StubWatcher()
    armer = DirectoryArmer(watcher, list, BackoffPolicy(initial=0.1, cap=5.0))
    desired = desired_in(tmp_path / "pantry", "Goldfish")
    pantry = str(tmp_path / "pantry")
    watcher.fail = {pantry: OSError(28, "No space left on device")}
    armer.arm(desired, 0.0)
    assert armer.next_due() == 0.1
    assert armer.check(desired, set(), 0.05) == set()  # not due yet: nothing done
    assert armer.check(desired, set(), 0.1) == set()  # retried, failed again, quietly: nothing new to look at
    assert armer.next_due() == 0.1 + 0.2
    unwatchable = events(log_lines, "pantry_unwatchable")
    assert len(unwatchable) == 1 and "No space left on device (ENOSPC)" in unwatchable[0]["message"]
    watcher.fail = {}
    assert armer.check(desired, set(), 0.1 + 0.2) == {pantry}  # watched again: its snacks are looked at
    assert len(events(log_lines, "pantry_recovered")) == 1
    assert armer.next_due() is None and armer.retry.snacks == {}


def test_a_symlink_in_a_nested_directorys_place_is_reported_not_followed(
    tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", pantry / "drinks")
    armer = DirectoryArmer(StubWatcher(), list)
    armer.arm(desired_in(pantry, "drinks/Juice"), 0.0)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    # Not logged here (the conflict line names what is in the way, once), but retried: it may be cleared.
    assert events(log_lines, "pantry_unwatchable") == [] and armer.next_due() is not None
    assert "drinks is a symlink owned by root: not followed" in armer.retry.describe(str(pantry / "drinks"), 0.0).error


def test_a_directory_newly_refused_by_the_walk_is_handed_back_for_a_look_once(tmp_path: Path) -> None:
    """A parent swapped for a symlink (the pantry itself is not gone: an ancestor is): the loop must look at the
    pantry so its conflict is told and status stops saying ok; a retry that is refused again looks at nothing."""
    parent = tmp_path / "parent"
    (parent / "pantry").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    armer = DirectoryArmer(StubWatcher(), list)
    desired = desired_in(parent / "pantry", "Goldfish")
    armer.arm(desired, 0.0)
    parent.rename(tmp_path / "parent.old")
    os.symlink(tmp_path / "elsewhere", parent)  # root's link in root's directory is followed: make it refused
    os.lchown(parent, 65534, 65534)
    assert armer.check(desired, {str(parent)}, 1.0) == {str(parent / "pantry")}
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert armer.check(desired, set(), 1000.0) == set()  # the backed-off retry, refused again


def test_a_removed_pantry_is_recreated_and_told(tmp_path: Path, log_lines: list[dict[str, Any]]) -> None:
    watcher = StubWatcher()
    armer = DirectoryArmer(watcher, list)
    pantry = tmp_path / "pantry"
    desired = desired_in(pantry, "Goldfish")
    armer.arm(desired, 0.0)
    pantry.rmdir()
    watcher.replaced = {str(pantry)}
    assert armer.check(desired, {str(pantry)}, 1.0) == {str(pantry)}
    assert pantry.is_dir()
    assert [line["directories"] for line in events(log_lines, "pantry_gone")] == [[str(pantry)]]
    assert armer.check(desired, {str(pantry)}, 2.0) == set()  # a late duplicate: nothing to do


def test_dry_run_on_a_missing_pantry_says_so_once_without_error_or_backoff(
    tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    watcher = StubWatcher()
    pantry = tmp_path / "pantry"
    watcher.fail = {str(pantry): FileNotFoundError(2, "No such file or directory")}
    armer = DirectoryArmer(watcher, list, dry_run=True)
    desired = desired_in(pantry, "Goldfish")
    armer.arm(desired, 0.0)
    armer.arm(desired, 1.0)
    assert [line["directory"] for line in events(log_lines, "would_create_directory")] == [str(pantry)]
    assert events(log_lines, "pantry_unwatchable") == [] and armer.next_due() is None
