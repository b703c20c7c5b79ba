"""A root snackwatch against a local user (uid 65534) in the places ownership decides (issue 21 items 1, 3, 7, 8)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import events, needs_root_linux, write_spec

from snackwatch.desired import Desired, merge
from snackwatch.ledger import Ledger
from snackwatch.leftovers import remove_stale
from snackwatch.narrator import Narrator
from snackwatch.reconcile import Outcome, Status, reconcile_all, reconcile_names
from snackwatch.spec import Defaults, Snack, Spec
from snackwatch.status_view import snack_status
from snackwatch.trigger import Trigger

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
SECRET = Snack("drinks/Secret640", content="db_password=hunter2\n", mode=0o640)
pytestmark = needs_root_linux("plays uid 65534 against a root snackwatch")


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*AS_NOBODY, *command], capture_output=True, text=True, timeout=20)
    assert os.getuid() == 0  # the helper really ran as another user: setpriv needs root to switch
    return done


def desired_in(pantry: Path, *snacks: Snack, owner: int | None = None) -> Desired:
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks, defaults=Defaults(owner=owner))])


def public_pantry(public_dir: Path) -> Path:
    pantry = public_dir / "pantry"
    pantry.mkdir()
    pantry.chmod(0o1777)
    return pantry


def test_a_directory_another_user_made_in_a_1777_pantry_is_not_used(public_dir: Path) -> None:
    pantry = public_pantry(public_dir)
    drinks = pantry / "drinks"
    assert as_nobody("mkdir", "-m", "2777", str(drinks)).returncode == 0
    assert os.lstat(drinks).st_uid == NOBODY
    outcomes = reconcile_all(desired_in(pantry, Snack("motd"), SECRET))
    blocked = [o for o in outcomes if o.blocked]
    assert [o.entry.snack.name for o in blocked] == ["drinks/Secret640"]
    assert blocked[0].reason == f"{drinks} is owned by nobody (uid 65534), not by root: not used"
    assert os.listdir(drinks) == []  # nothing created inside
    shutil.rmtree(drinks)  # the admin removes it; the daemon makes its own (root's)
    assert {o.status for o in reconcile_all(desired_in(pantry, Snack("motd"), SECRET))} == {Status.CREATED}
    assert os.lstat(drinks).st_uid == 0 and as_nobody("cat", str(drinks / "Secret640")).returncode != 0


def test_a_pantry_another_user_created_first_under_a_1777_parent_is_not_used(public_dir: Path) -> None:
    parent = public_dir / "shared"
    parent.mkdir()
    parent.chmod(0o1777)
    pantry = parent / "pantry"
    assert as_nobody("mkdir", str(pantry)).returncode == 0
    outcomes = reconcile_all(desired_in(pantry, Snack("api.key", content="k", mode=0o640), Snack("motd")))
    assert {(o.status, o.reason) for o in outcomes} == {
        (Status.CONFLICT, f"{pantry} is owned by nobody (uid 65534), not by root: not used")
    }
    assert os.listdir(pantry) == []
    # declared as the owner, the user's pantry is used, and what is made there is theirs
    outcomes = reconcile_all(desired_in(pantry, Snack("motd", owner=NOBODY), owner=NOBODY))
    assert [o.status for o in outcomes] == [Status.CREATED] and os.lstat(pantry / "motd").st_uid == NOBODY


def has_acls(directory: Path) -> bool:
    if shutil.which("setfacl") is None:
        return False
    done = subprocess.run(["setfacl", "-d", "-m", f"u:{NOBODY}:rwx", str(directory)], capture_output=True)
    return done.returncode == 0


def test_a_default_acl_never_widens_a_declared_mode(public_dir: Path) -> None:
    pantry = public_dir / "pantry"
    (pantry / "drinks").mkdir(parents=True)
    if not has_acls(pantry):
        pytest.skip("no setfacl, or the filesystem under /tmp has no POSIX ACLs")
    subprocess.run(["setfacl", "-d", "-m", f"u:{NOBODY}:rwx", str(pantry / "drinks")], check=True)
    snacks = SECRET, Snack("plain"), Snack("logs", type="directory", mode=0o750), Snack("deep/er/x", content="s")
    assert {o.status for o in reconcile_all(desired_in(pantry, *snacks))} == {Status.CREATED}
    for name in ("drinks/Secret640", "plain", "logs", "deep", "deep/er", "deep/er/x"):
        with pytest.raises(OSError):  # no ACL of its own: only its mode says who may read it
            os.getxattr(pantry / name, "system.posix_acl_access")
    assert stat.S_IMODE(os.lstat(pantry / "drinks/Secret640").st_mode) == 0o640
    assert as_nobody("cat", str(pantry / "drinks/Secret640")).returncode != 0
    assert "hunter2" not in as_nobody("cat", str(pantry / "drinks/Secret640")).stdout


def test_a_restore_that_loses_the_race_to_another_user_says_so(
    public_dir: Path, log_lines: list[dict[str, Any]]
) -> None:
    pantry = public_pantry(public_dir)
    desired = desired_in(pantry, Snack("motd"))
    ledger, narrator = Ledger(desired), Narrator()

    def fold(outcomes: list[Outcome], now: float, trigger: Trigger, *, everything: bool = False) -> None:
        narrator.tell(ledger.fold(outcomes, now, trigger, everything=everything), desired, now)

    fold(reconcile_all(desired), 0.0, Trigger.START, everything=True)
    (pantry / "motd").unlink()  # the admin removes it to have it re-created ...
    assert as_nobody("sh", "-c", f"echo theirs > {pantry / 'motd'}").returncode == 0  # ... the user is first
    outcomes = reconcile_names(desired, str(pantry), ["motd"])
    assert [(o.status, o.reason) for o in outcomes] == [(Status.PRESENT, "created by nobody")]
    fold(outcomes, 1.0, Trigger.DELETED)
    fold(reconcile_names(desired, str(pantry), ["motd"]), 2.0, Trigger.DELETED)  # said once
    assert [line["message"] for line in events(log_lines, "squatted")] == [
        "motd was created by nobody before it could be restored: left as it is (not ours to change)"
    ]
    entry = next(desired.entries())
    assert snack_status(ledger, entry, 2.0)["owner"] == "created by nobody before snackwatch could"


def test_leftover_cleanup_never_removes_a_hard_link_another_user_planted(public_dir: Path) -> None:
    pantry = public_pantry(public_dir)
    target = pantry / "target"
    target.write_text("root's\n")
    target.chmod(0o666)  # protected_hardlinks lets a user link a file they may read and write
    planted = pantry / ".snackwatch-4242-0123456789ab.tmp"
    assert as_nobody("ln", str(target), str(planted)).returncode == 0
    old = time.time() - 3600
    os.utime(planted, (old, old))  # stale by age and by pid: only its link count tells
    fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert remove_stale(fd, [planted.name]) == 0
    finally:
        os.close(fd)
    assert planted.exists() and os.lstat(target).st_nlink == 2


def test_the_runtime_directory_refusal_names_its_owner(public_dir: Path) -> None:
    uid = 4242  # another user, without XDG_RUNTIME_DIR: /tmp/snackwatch-4242
    squatted = Path(f"/tmp/snackwatch-{uid}")
    if squatted.exists():
        pytest.skip(f"{squatted} exists on this machine")
    assert as_nobody("mkdir", str(squatted)).returncode == 0
    try:
        spec = write_spec(public_dir / "snacks.yaml", ["Goldfish"], pantry=str(public_dir / "pantry"))
        spec.chmod(0o644)
        env = {"PATH": os.environ["PATH"], "HOME": str(public_dir)}
        command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        done = subprocess.run(
            [*command, sys.executable, "-m", "snackwatch", "status", "-c", str(spec)],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
            cwd="/",
        )
    finally:
        squatted.rmdir()
    assert done.returncode == 1
    assert done.stderr == (
        f"snackwatch: {squatted}: not safe as snackwatch's runtime directory (lock files): "
        f"it is owned by nobody (uid 65534), not by uid {uid} that snackwatch runs as: not used\n"
    )
