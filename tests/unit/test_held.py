"""Held snack directories (held.py): a repair never goes into a directory the safe walk would no longer reach.

Each test holds a directory with one repair, changes the way to it (renamed, replaced, swapped for a symlink by
another user, re-owned, mounted over, a release symlink re-pointed), then repairs again: the snack must appear
where the walk leads now, or be refused as the walk refuses, and never in the old directory.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AS_NOBODY, NOBODY, needs_root_linux

from snackwatch.desired import Desired, merge
from snackwatch.held import FLOOD_PAUSE, HeldDirectories
from snackwatch.reconcile import Outcome, Status, reconcile_names
from snackwatch.spec import Defaults, Snack, Spec

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="held directories need Linux's /proc")

SNACK = "hotpath-Goldfish"  # a name no directory of the system holds (one test points the way at /etc)


def desired_for(pantry: Path, *names: str, owner: int | None = None) -> Desired:
    snacks = tuple(Snack(name) for name in names or (SNACK,))
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks, defaults=Defaults(owner=owner))])


def repair(desired: Desired, held: HeldDirectories, directory: Path, name: str = SNACK) -> Outcome:
    [outcome] = reconcile_names(desired, str(directory), [name], held_dirs=held)
    return outcome


def hold(desired: Desired, held: HeldDirectories, directory: Path, name: str = SNACK) -> None:
    """Repair until the directory is held and serves a repair without a walk (a fill that created directories
    heard itself do it, and walks once more); then the snack is deleted again, for the repair after the change."""
    entries = []
    for _ in range(6):  # a mount change anywhere on the machine (other tests) drops everything: hold again
        (directory / name).unlink(missing_ok=True)
        assert repair(desired, held, directory, name).status is Status.CREATED
        entries.append(held.entries[str(directory)])
        if len(entries) >= 3 and entries[-1] is entries[-2]:
            break
    assert entries[-1] is entries[-2]  # held: the same entry (fd and guard) served two repairs
    (directory / name).unlink()


@pytest.fixture
def held() -> Iterator[HeldDirectories]:
    held = HeldDirectories()
    yield held
    held.close()


def test_a_held_directory_serves_the_next_repair_and_a_pantry_renamed_away_and_replaced_is_walked_to(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    pantry.rename(tmp_path / "old")
    pantry.mkdir()
    assert repair(desired, held, pantry).status is Status.CREATED
    assert (pantry / SNACK).exists()
    assert not (tmp_path / "old" / SNACK).exists()


@needs_root_linux("another user swaps a directory on the way")
def test_a_parent_swapped_for_a_symlink_to_etc_by_another_user_is_refused_not_written_through(
    sticky_dir: Path, held: HeldDirectories
) -> None:
    parent = sticky_dir / "parent"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)  # the spec trusts nobody's directories (defaults: owner)
    pantry = parent / "pantry"
    desired = desired_for(pantry, owner=NOBODY)
    hold(desired, held, pantry)

    swap = subprocess.run([*AS_NOBODY, "sh", "-c", "mv parent parent.old && ln -s /etc parent"], cwd=sticky_dir)
    assert swap.returncode == 0 and parent.is_symlink()  # the attacker really did it

    outcome = repair(desired, held, pantry)
    assert outcome.status is Status.CONFLICT and outcome.blocked
    assert "symlink" in outcome.reason
    assert not Path("/etc/pantry").exists() and not (sticky_dir / "parent.old" / "pantry" / SNACK).exists()
    assert str(pantry) not in held.entries


@needs_root_linux("chown to another user")
def test_a_pantry_chowned_to_an_untrusted_user_is_refused_at_the_next_repair(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    os.chown(pantry, NOBODY, NOBODY)
    outcome = repair(desired, held, pantry)
    assert outcome.status is Status.CONFLICT and outcome.blocked and "owned by" in outcome.reason
    assert not (pantry / SNACK).exists()


@needs_root_linux("a bind mount")
def test_a_bind_mount_over_the_pantry_sends_the_next_repair_onto_the_mount(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry, elsewhere = tmp_path / "pantry", tmp_path / "elsewhere"
    elsewhere.mkdir()
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    subprocess.run(["mount", "--bind", str(elsewhere), str(pantry)], check=True)
    try:
        assert repair(desired, held, pantry).status is Status.CREATED
        assert (elsewhere / SNACK).exists()
    finally:
        held.drop_all()  # our fd on the mount would keep it busy
        subprocess.run(["umount", str(pantry)], check=True)
    assert not (pantry / SNACK).exists()  # the directory under the mount was not written to


def test_a_release_symlink_re_pointed_sends_the_next_repair_to_the_new_release(
    tmp_path: Path, held: HeldDirectories
) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "current").symlink_to("v1")
    pantry = tmp_path / "current"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    (tmp_path / "next").symlink_to("v2")
    (tmp_path / "next").rename(tmp_path / "current")  # ln -sfn: one rename over the old link
    assert repair(desired, held, pantry).status is Status.CREATED
    assert (tmp_path / "v2" / SNACK).exists() and not (tmp_path / "v1" / SNACK).exists()


def test_a_nested_directory_replaced_below_the_pantry_is_walked_to_again(tmp_path: Path, held: HeldDirectories) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry, "drinks/cold/Juice")
    cold = pantry / "drinks" / "cold"
    hold(desired, held, cold, "Juice")
    (pantry / "drinks").rename(tmp_path / "drinks.old")
    (pantry / "drinks").mkdir()
    assert repair(desired, held, cold, "Juice").status is Status.CREATED
    assert (cold / "Juice").exists() and not (tmp_path / "drinks.old" / "cold" / "Juice").exists()


def test_held_fds_stay_bounded_and_are_all_closed_again(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    held = HeldDirectories(limit=2)
    pantries = [tmp_path / f"pantry{i}" for i in range(5)]
    desired = merge([Spec(p.parent / f"{p.name}.yaml", p, (Snack(SNACK),)) for p in pantries])
    for _ in range(2):
        for pantry in pantries:
            (pantry / SNACK).unlink(missing_ok=True)
            assert repair(desired, held, pantry).status is Status.CREATED
            assert len(os.listdir("/proc/self/fd")) <= before + 2 + 2  # 2 held, the guard, its mount table
    assert len(held.entries) <= 2 and str(pantries[-1]) in held.entries
    held.drop(str(pantries[-1]))
    held.drop_all()
    assert len(os.listdir("/proc/self/fd")) == before + 2 and not held.watching  # the guard stays (see drop_all)
    repair(desired, held, pantries[0])
    held.close()
    assert len(os.listdir("/proc/self/fd")) == before and not held.watching


def test_a_flooded_guard_drops_everything_and_without_inotify_nothing_is_held(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    entry = held.entries[str(pantry)]
    for i in range(300):  # churn beside the pantry: more than one bounded read of the guard's queue
        (tmp_path / f"junk{i}").touch()
    assert repair(desired, held, pantry).status is Status.CREATED
    assert str(pantry) not in held.entries and not held.watching  # walked, and nothing held for FLOOD_PAUSE
    held.flooded_at = time.monotonic() - FLOOD_PAUSE
    (pantry / SNACK).unlink()
    assert repair(desired, held, pantry).status is Status.CREATED
    assert held.entries[str(pantry)] is not entry  # held anew once the pause is over

    held.close()
    held.libc, held.loaded = None, True  # inotify cannot be had: every repair walks, nothing stays open
    (pantry / SNACK).unlink()
    assert repair(desired, held, pantry).status is Status.CREATED and not held.entries and held.guard is None


@needs_root_linux("chgrp to another group")
def test_a_default_acl_or_setgid_group_given_to_a_held_pantry_is_heard_before_the_next_create(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    os.chown(pantry, -1, NOBODY)
    pantry.chmod(0o2755)  # setgid: a file made there would get group nobody, not ours
    if subprocess.run(["setfacl", "-d", "-m", f"u:{NOBODY}:rwx", str(pantry)], capture_output=True).returncode:
        pytest.skip("this filesystem has no ACLs")
    assert repair(desired, held, pantry).status is Status.CREATED
    made = (pantry / SNACK).stat()
    assert made.st_gid == os.getegid() and made.st_mode & 0o777 == 0o644
    assert "system.posix_acl_access" not in os.listxattr(pantry / SNACK)


class CountedPolls:
    """The guard's poller, counting its polls."""

    def __init__(self, real: object) -> None:
        self.real, self.polls = real, 0

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        self.polls += 1
        return self.real.poll(timeout)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def save(directory: Path, times: int = 2) -> None:
    """An app's atomic saves: a temp file written, then renamed over its settings (create, moved from, moved to)."""
    for index in range(times):
        temp = directory / f".settings.json.{index}"
        temp.write_text("{}")
        temp.rename(directory / "settings.json")


def test_a_catch_up_between_repairs_reads_the_guard_as_a_use_would_and_polls_nothing_while_nothing_is_held(
    tmp_path: Path, held: HeldDirectories, monkeypatch: pytest.MonkeyPatch
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    entry = held.entries[str(pantry)]
    save(tmp_path)  # beside the held pantry, in its parent: nothing on the way changed
    assert held.catch_up() is False and held.entries[str(pantry)] is entry
    assert held.poller.poll(0) == []  # read: the next repair's use has nothing to parse
    assert repair(desired, held, pantry).status is Status.CREATED and held.entries[str(pantry)] is entry

    pantry.rename(tmp_path / "old")  # a change of the way, heard by a catch-up as by a use
    pantry.mkdir()
    assert held.catch_up() is True and not held.entries

    counted = CountedPolls(held.poller)
    monkeypatch.setattr(held, "poller", counted)
    save(tmp_path)
    assert held.catch_up() is False and counted.polls == 0  # nothing held: nothing polled, nothing read


def test_more_than_one_bounded_read_heard_between_two_repairs_floods_the_guard_even_in_small_catch_ups(
    tmp_path: Path, held: HeldDirectories
) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_for(pantry)
    hold(desired, held, pantry)
    for i in range(200):  # 32 bytes of events a file (its creation), read 10 files at a time: each read is small
        (tmp_path / f"junk{i:03}").touch()
        if i % 10 == 9:
            held.catch_up()
            held.used(0.0)  # a repair between: the bound counts from there
    assert str(pantry) in held.entries and held.flooded_at is None
    for i in range(200):  # the same churn with no repair between: flooded, as one read of it all would be
        (tmp_path / f"junk{i:03}").unlink()
        if i % 10 == 9:
            held.catch_up()
    assert not held.entries and not held.watching and held.flooded_at is not None
