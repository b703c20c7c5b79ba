"""Every command knows the kinds (issue 19 item 6) and names what is in the way or whose a name is (issues 21, 22)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import needs_root_linux

from snackwatch.cli import main
from snackwatch.ledger import Ledger
from snackwatch.owned import OwnershipRecord
from snackwatch.prune import remove_owned
from snackwatch.reconcile import Status, reconcile_all
from snackwatch.specset import SpecSet
from snackwatch.status import render_status
from snackwatch.status_view import snack_status

NOBODY = 65534
SPEC = """\
pantry: ./work
snacks:
  - Goldfish
  - name: logs
    type: directory
    mode: "0750"
    owner: "65534"
    group: "65534"
  - name: current
    type: symlink
    target: releases/v2
  - name: app.conf
    source: app.conf.in
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "app.conf.in").write_text("port=80\n")
    path = tmp_path / "snacks.yaml"
    path.write_text(SPEC)
    return path


@needs_root_linux("declares another owner")
def test_diff_once_diff_why_on_every_kind(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "diff", "-c", str(spec))
    assert code == 1
    assert out.splitlines() == [
        "+ Goldfish",
        "+ logs/ (directory 0750 nobody:nogroup)",
        "+ current -> releases/v2",
        "+ app.conf",
    ]
    code, out, _ = cli(capsys, "once", "-c", str(spec))
    assert (code, out.splitlines()) == (0, ["created Goldfish", "created logs/", "created current", "created app.conf"])
    assert cli(capsys, "diff", "-c", str(spec))[:2] == (0, "no drift\n")
    code, out, _ = cli(capsys, "why", "-c", str(spec), "logs")
    assert "  type: directory 0750, owner nobody:nogroup\n  on disk: present\n" in out
    code, out, _ = cli(capsys, "why", "-c", str(spec), "current")
    assert "  type: symlink -> releases/v2\n  on disk: present\n" in out
    work = spec.parent / "work"
    (work / "current").unlink()
    (work / "current").symlink_to("releases/v1")
    code, out, _ = cli(capsys, "diff", "-c", str(spec))
    assert out == "! current: a symlink to releases/v1, not releases/v2 is in its place (left alone)\n"
    _, out, _ = cli(capsys, "why", "-c", str(spec), "current")
    assert "  on disk: a symlink to releases/v1, not releases/v2\n" in out
    code, _, err = cli(capsys, "once", "-c", str(spec))
    assert code == 1 and "conflict: a symlink to releases/v1, not releases/v2 stands where current should be" in err


@needs_root_linux("plays another user's squatted name and directory")
def test_a_name_another_user_owns_and_a_directory_in_the_way_are_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text("pantry: ./p\nsnacks:\n  - motd\n  - drinks/Juice\n  - drinks/Soda\n")
    (tmp_path / "p" / "drinks").mkdir(parents=True)
    (tmp_path / "p" / "motd").write_text("theirs\n")
    os.chown(tmp_path / "p" / "motd", NOBODY, NOBODY)
    os.chown(tmp_path / "p" / "drinks", NOBODY, NOBODY)
    code, out, _ = cli(capsys, "diff", "-c", str(spec))
    drinks = tmp_path / "p" / "drinks"
    assert code == 1 and out.splitlines() == [
        "~ motd: owner nobody -> root (not enforced)",
        f"! {drinks} is owned by nobody (uid 65534), not by root: not used: 2 snacks not enforced (drinks/Juice, "
        "drinks/Soda)",
    ]
    _, out, _ = cli(capsys, "why", "-c", str(spec), "motd")
    assert "  owner nobody, expected root (not enforced: another user may have created it first)" in out
    _, out, _ = cli(capsys, "why", "-c", str(spec), "drinks/Juice")
    assert f"  on disk: not reachable: {drinks} is owned by nobody (uid 65534), not by root: not used" in out
    code, _, err = cli(capsys, "once", "-c", str(spec))
    assert code == 1 and err.count("is owned by nobody") == 1 and os.listdir(drinks) == []
    assert cli(capsys, "check", "-c", str(spec))[0] == 0  # below the pantry: the daemon says so as it runs
    os.chown(tmp_path / "p", NOBODY, NOBODY)  # the pantry itself: check fails
    code, _, err = cli(capsys, "check", "-c", str(spec))
    assert code == 2 and err == (
        f"snackwatch: {spec}:1: pantry {tmp_path / 'p'}: {tmp_path / 'p'} is owned by nobody (uid 65534), "
        "not by root: not used\n"
    )


def test_status_carries_each_entrys_type_and_shows_directories_with_a_slash(spec: Path) -> None:
    desired = SpecSet.load(spec).desired
    ledger = Ledger(desired)
    rows = {entry.snack.name: snack_status(ledger, entry, 0.0) for entry in desired.entries()}
    assert {name: row["type"] for name, row in rows.items()} == {
        "Goldfish": "file",
        "logs": "directory",
        "current": "symlink",
        "app.conf": "file",
    }
    data = {
        "pid": 1,
        "started": 0,
        "watcher": "inotify",
        "config": str(spec),
        "spec": {"ok": True},
        "counts": {"snacks": 4, "ok": 4, "failing": 0, "conflicts": 0, "repairs": 0},
        "last_reconcile": None,
        "snacks": {str(i): row for i, row in enumerate(rows.values())},
    }
    assert any(line.startswith("logs/ ") for line in render_status(data).splitlines())


def test_prune_removes_only_what_snackwatch_made_directories_when_empty(tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "pantry: ./p\nprune: true\nsnacks:\n  - name: d\n    type: directory\n  - d/file\n"
        "  - name: link\n    type: symlink\n    target: nowhere\n  - name: full\n    type: directory\n"
    )
    desired = SpecSet.load(spec).desired
    outcomes = reconcile_all(desired)
    assert {o.entry.snack.name: o.status for o in outcomes} == dict.fromkeys(
        ["d", "d/file", "link", "full"], Status.CREATED
    )
    record = OwnershipRecord(tmp_path / "owned.json")
    for outcome in outcomes:
        record.record(outcome.entry.path, os.lstat(outcome.entry.path), spec)
    pantry = tmp_path / "p"
    (pantry / "full" / "theirs").touch()  # someone's file in a directory snackwatch made: the directory stays
    (pantry / "mine").mkdir()  # not created by snackwatch: never touched
    paths = [str(pantry / name) for name in ("d", "d/file", "link", "full", "mine")]
    done = remove_owned(paths, str(pantry), record)
    assert sorted(done["pruned"]) == sorted(str(pantry / name) for name in ("d", "d/file", "link"))
    assert sorted(done["kept"]) == [str(pantry / "full"), str(pantry / "mine")]
    assert sorted(os.listdir(pantry)) == ["full", "mine"]


@needs_root_linux("plays another user's symlink above the pantry")
def test_a_symlink_above_the_pantry_the_walk_refuses_fails_check_and_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    (tmp_path / "elsewhere").mkdir()
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "link"
    link.symlink_to(tmp_path / "elsewhere")
    os.lchown(link, NOBODY, NOBODY)
    spec = tmp_path / "snacks.yaml"
    spec.write_text(f"pantry: {link}/pantry\nsnacks:\n  - A\n  - drinks/B\n")
    said = f"{link} is a symlink owned by nobody: not followed"
    code, _, err = cli(capsys, "check", "-c", str(spec))
    assert (code, err) == (2, f"snackwatch: {spec}:1: pantry {link}/pantry: {said}\n")
    code, out, _ = cli(capsys, "diff", "-c", str(spec))
    assert (code, out) == (1, f"! {said}: 2 snacks not enforced (A, drinks/B)\n")
    code, _, err = cli(capsys, "once", "-c", str(spec))
    assert (code, err) == (1, f"conflict: {said}: 2 snacks not created (A, drinks/B)\n")
    _, out, _ = cli(capsys, "why", "-c", str(spec), "A")
    assert f"  on disk: not reachable: {said}\n" in out
    assert os.listdir(tmp_path / "elsewhere") == []
