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
