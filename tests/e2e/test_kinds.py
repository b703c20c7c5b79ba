"""Directories, symlinks, `source:`, owner/group and deterministic modes (issue 19): spec, creation, conflicts."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Running, needs_root_linux, wait_until

from snackwatch.desired import Desired, merge
from snackwatch.errors import SpecError
from snackwatch.plan import Kind
from snackwatch.reconcile import Status, reconcile_all, reconcile_names
from snackwatch.spec import Defaults, Snack, Spec, load_spec, parse_spec
from snackwatch.specset import SpecSet

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
EXAMPLE = """\
version: 1
pantry: ./work
defaults:
  owner: nobody
  group: "65534"
  mode: "0640"
  directory_mode: "0750"
snacks:
  - Goldfish
  - name: logs
    type: directory
    mode: "0700"
  - logs/today
  - name: current
    type: symlink
    target: releases/v2
  - name: app.conf
    source: templates/app.conf
    owner: "0"
    group: adm
    mode: "0600"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def example(tmp_path: Path) -> Path:
    write(tmp_path / "templates" / "app.conf", "port=80\n")
    return write(tmp_path / "snacks.yaml", EXAMPLE)


def spec_error(tmp_path: Path, snacks: str, defaults: str = "") -> str:
    text = f"pantry: ./work\n{defaults}snacks:\n{snacks}"
    with pytest.raises(SpecError) as caught:
        parse_spec(text.encode(), tmp_path / "snacks.yaml")
    return str(caught.value).removeprefix(f"{tmp_path / 'snacks.yaml'}:")


# --- the spec ---------------------------------------------------------------------------------------------------


def test_the_readme_example_parses_with_defaults_applied_names_and_ids_resolved(example: Path) -> None:
    spec = load_spec(example)
    snacks = {snack.name: snack for snack in spec.snacks}
    adm = grp.getgrnam("adm").gr_gid
    assert snacks["Goldfish"] == Snack("Goldfish", 9, None, 0o640, "file", owner=NOBODY, group=NOBODY)
    assert (snacks["logs"].type, snacks["logs"].mode, snacks["logs"].owner) == ("directory", 0o700, NOBODY)
    assert (snacks["current"].type, snacks["current"].target, snacks["current"].mode) == (
        "symlink",
        "releases/v2",
        None,
    )
    conf = snacks["app.conf"]
    assert (conf.data, conf.source, conf.owner, conf.group, conf.mode) == (
        b"port=80\n",
        str(example.parent / "templates" / "app.conf"),
        0,
        adm,
        0o600,
    )
    assert spec.defaults.directory_mode == 0o750 and spec.sources() == [conf.source]


@pytest.mark.parametrize(
    ("snacks", "defaults", "error"),
    [
        ("  - name: a\n    owner: no-such-user-x\n", "", "4: unknown user 'no-such-user-x'"),
        ("  - name: a\n    group: no-such-group-x\n", "", "4: unknown group 'no-such-group-x'"),
        ("  - a\n", "defaults:\n  owner: no-such-user-x\n", "3: unknown user 'no-such-user-x'"),
        ("  - name: a\n    content: x\n    source: t\n", "", "5: content and source together"),
        ("  - name: a\n    source: missing.conf\n", "", "4: source "),
        ("  - name: a\n    type: symlink\n", "", "3: symlink 'a' needs a target"),
        ("  - name: a\n    type: pipe\n", "", "4: unknown type 'pipe'"),
        ("  - name: a\n    type: directory\n    content: x\n", "", "5: content is for a file, not a directory"),
        ("  - name: a\n    target: b\n", "", "4: target is for a symlink, not a file"),
        ("  - name: a\n    type: symlink\n    target: b\n    mode: '0644'\n", "", "6: a symlink has no mode"),
        ("  - name: a\n    type: symlink\n    target: b\n  - a/c\n", "", "6: snack 'a/c' needs 'a' to be a directory"),
    ],
)
def test_bad_kinds_owners_and_sources_are_errors_at_their_line(
    tmp_path: Path, snacks: str, defaults: str, error: str
) -> None:
    assert spec_error(tmp_path, snacks, defaults).startswith(error)


def test_a_missing_or_fifo_source_names_the_spec_line_and_the_source(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    message = spec_error(tmp_path, "  - name: a\n    source: fifo\n")
    assert message == f"4: source {tmp_path / 'fifo'}: not a regular file (a FIFO)"
    assert "No such file or directory" in spec_error(tmp_path, "  - name: a\n    source: nope\n")


# --- creation: each kind x each thing in its place --------------------------------------------------------------

KINDS = {
    "file": Snack("x", content="data\n"),
    "directory": Snack("x", type="directory"),
    "symlink": Snack("x", type="symlink", target="releases/v2"),
}
OCCUPANTS = ["absent", "file", "directory", "symlink", "dangling symlink", "same symlink"]


def occupy(place: Path, occupant: str) -> None:
    if occupant == "file":
        place.write_text("theirs\n")
    elif occupant == "directory":
        place.mkdir()
    elif occupant == "symlink":
        (place.parent / "elsewhere").mkdir()
        place.symlink_to("elsewhere")
    elif occupant == "dangling symlink":
        place.symlink_to("nowhere")
    elif occupant == "same symlink":
        place.symlink_to("releases/v2")


def desired_in(pantry: Path, *snacks: Snack, defaults: dict[str, int] | None = None) -> Desired:
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks, defaults=Defaults(**(defaults or {})))])


def expected_status(kind: str, occupant: str) -> tuple[Status, Kind | None]:
    found = {"file": Kind.FILE, "directory": Kind.DIRECTORY, "symlink": Kind.SYMLINK}
    occupant_kind = {"dangling symlink": Kind.SYMLINK, "same symlink": Kind.SYMLINK}.get(occupant) or found.get(
        occupant
    )
    if occupant == "absent":
        return Status.CREATED, None
    if occupant_kind is found[kind] and (kind != "symlink" or occupant == "same symlink"):
        return Status.PRESENT, None
    return Status.CONFLICT, occupant_kind


@pytest.mark.parametrize("occupant", OCCUPANTS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_over_each_occupant(tmp_path: Path, kind: str, occupant: str) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    place = pantry / "x"
    occupy(place, occupant)
    before = os.lstat(place) if occupant != "absent" else None
    desired = desired_in(pantry, KINDS[kind])
    outcomes = reconcile_all(desired) or reconcile_names(desired, str(pantry), ["x"])
    status, conflict = expected_status(kind, occupant)
    got = outcomes[0] if outcomes else None
    assert (got.status if got else Status.PRESENT) == status
    if status is Status.CONFLICT:
        assert got is not None and got.kind is conflict
        if occupant == "symlink" and kind == "symlink":
            assert got.reason == "a symlink to elsewhere, not releases/v2"
    if before is not None:  # whatever was there is left exactly as it was
        after = os.lstat(place)
        assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (before.st_ino, before.st_mode, before.st_mtime_ns)
        return
    info = os.lstat(place)
    if kind == "file":
        assert stat.S_ISREG(info.st_mode) and place.read_text() == "data\n" and stat.S_IMODE(info.st_mode) == 0o644
    elif kind == "directory":
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o755 and os.listdir(place) == []
    else:
        assert stat.S_ISLNK(info.st_mode) and os.readlink(place) == "releases/v2"  # dangling, stored as given


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_077")
def test_modes_are_deterministic_under_umask_077(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    desired = desired_in(pantry, Snack("plain"), Snack("deep/er/file", content="x"), Snack("d", type="directory"))
    assert {o.status for o in reconcile_all(desired)} == {Status.CREATED}
    modes = {p: stat.S_IMODE(os.lstat(pantry / p).st_mode) for p in ("plain", "deep", "deep/er", "deep/er/file", "d")}
    assert modes == {"plain": 0o644, "deep": 0o755, "deep/er": 0o755, "deep/er/file": 0o644, "d": 0o755}
    assert stat.S_IMODE(os.lstat(pantry).st_mode) == 0o755


@needs_root_linux("creates entries for another user and group")
@pytest.mark.usefixtures("umask_077")
def test_owner_and_group_by_name_and_id_on_each_kind_and_on_the_way(tmp_path: Path, example: Path) -> None:
    spec = load_spec(example)
    desired = merge([spec])
    assert {o.status for o in reconcile_all(desired)} == {Status.CREATED}
    work = spec.pantry
    adm = grp.getgrnam("adm").gr_gid

    def owned(name: str) -> tuple[int, int, int]:
        info = os.lstat(work / name)
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    assert owned(".") == (NOBODY, NOBODY, 0o750)  # the pantry, created on the way: defaults' owner, directory_mode
    assert owned("Goldfish") == (NOBODY, NOBODY, 0o640)
    assert owned("logs") == (NOBODY, NOBODY, 0o700)
    assert owned("logs/today") == (NOBODY, NOBODY, 0o640)
    assert owned("current")[:2] == (NOBODY, NOBODY) and os.readlink(work / "current") == "releases/v2"
    assert owned("app.conf") == (0, adm, 0o600) and (work / "app.conf").read_bytes() == b"port=80\n"
    assert [name for name in os.listdir(work) if name.startswith(".snackwatch-")] == []


def test_a_setgid_directory_never_gives_its_group(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    os.chown(pantry, -1, NOBODY) if os.geteuid() == 0 else pytest.skip("chgrp to a group we are not in needs root")
    pantry.chmod(0o2777)
    snacks = Snack("plain"), Snack("text", content="x"), Snack("d", type="directory"), Snack("sub/nested")
    assert {o.status for o in reconcile_all(desired_in(pantry, *snacks))} == {Status.CREATED}
    for name in ("plain", "text", "d", "sub", "sub/nested"):
        info = os.lstat(pantry / name)
        assert info.st_gid == os.getegid(), name
        assert not info.st_mode & stat.S_ISGID, name  # a directory made here does not carry the setgid bit on


@needs_root_linux("plays an unprivileged daemon that is asked for another owner")
def test_a_daemon_that_cannot_chown_fails_per_entry_and_leaves_nothing(public_dir: Path) -> None:
    pantry = public_dir / "pantry"
    pantry.mkdir()
    os.chown(pantry, NOBODY, NOBODY)
    spec = write(public_dir / "snacks.yaml", "pantry: ./pantry\nsnacks:\n  - mine\n  - name: roots\n    owner: root\n")
    spec.chmod(0o644)
    env = {"PATH": os.environ["PATH"], "HOME": str(public_dir), "XDG_RUNTIME_DIR": str(public_dir)}
    once = subprocess.run(
        [*AS_NOBODY, sys.executable, "-m", "snackwatch", "once", "-c", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd="/",
    )
    assert once.returncode == 1, once.stderr
    assert "cannot create roots: Operation not permitted (EPERM)" in once.stderr
    assert sorted(os.listdir(pantry)) == ["mine"] and os.lstat(pantry / "mine").st_uid == NOBODY


# --- source: read with the spec, re-read on reload -------------------------------------------------------------


def test_a_changed_source_is_a_spec_change_and_a_broken_one_keeps_the_last_good(example: Path) -> None:
    specs = SpecSet.load(example)
    pantry = str(example.parent / "work")
    source = example.parent / "templates" / "app.conf"
    assert str(source) in specs.source_files()
    assert source.name in specs.spec_names()[str(source.parent)]  # the watcher hears it like the spec
    assert specs.reload(forced=False, broken=set()).desired is None  # nothing changed
    source.write_text("port=8080\n")
    reload = specs.reload(forced=False, broken=set())
    assert reload.desired is not None
    assert reload.desired.entry(pantry, "app.conf").snack.data == b"port=8080\n"  # type: ignore[union-attr]
    source.unlink()
    reload = specs.reload(forced=False, broken=set())
    assert reload.desired is None and f"{example}:18: source {source}" in str(reload.problems[example])
    assert specs.desired.entry(pantry, "app.conf").snack.data == b"port=8080\n"  # type: ignore[union-attr]


# --- the daemon: every kind restored, conflicts told, the same rules as files ----------------------------------


def test_the_daemon_restores_each_kind_and_tells_a_wrong_kind_once(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    spec_path.write_text(
        "pantry: ./pantry\nsnacks:\n  - name: logs\n    type: directory\n    mode: '0700'\n  - logs/today\n"
        "  - name: empty\n    type: directory\n  - name: current\n    type: symlink\n    target: releases/v2\n"
    )
    running = start_daemon(spec_path)
    pantry = running.pantry
    wait_until(lambda: (pantry / "logs" / "today").exists() and os.path.islink(pantry / "current"), what="created")
    shutil.rmtree(pantry / "logs")
    (pantry / "empty").rmdir()
    (pantry / "current").unlink()
    wait_until(
        lambda: (
            (pantry / "logs" / "today").is_file() and (pantry / "empty").is_dir() and os.path.islink(pantry / "current")
        ),
        what="every kind restored",
    )
    assert stat.S_IMODE(os.lstat(pantry / "logs").st_mode) == 0o700 and os.readlink(pantry / "current") == "releases/v2"
    os.symlink("releases/v1", pantry / "current.new")
    os.rename(pantry / "current.new", pantry / "current")  # re-pointed by someone: left alone, told once
    conflict = running.wait_event("conflict")[0]
    assert conflict["message"].startswith(
        "conflict: a symlink to releases/v1, not releases/v2 stands where snack current"
    )
    assert os.readlink(pantry / "current") == "releases/v1"
    assert running.stop() == 0


def test_the_daemon_picks_up_a_changed_source_live(spec_path: Path, start_daemon: Callable[..., Running]) -> None:
    source = spec_path.parent / "templates" / "app.conf"
    write(source, "port=80\n")
    spec_path.write_text("pantry: ./pantry\nsnacks:\n  - name: app.conf\n    source: templates/app.conf\n")
    running = start_daemon(spec_path)
    conf = running.pantry / "app.conf"
    wait_until(conf.exists, what="app.conf created")
    temp = source.with_name("app.conf.new")
    temp.write_text("port=8080\n")
    temp.rename(source)  # an editor's save: no SIGHUP, no edit of the spec
    assert "~app.conf" in running.wait_event("reload")[0]["message"]
    assert conf.read_text() == "port=80\n"  # create-only: the existing file is left as it is
    conf.unlink()
    wait_until(lambda: conf.exists() and conf.read_text() == "port=8080\n", what="restored with the new bytes")
    source.unlink()  # a missing source is a spec error: the last good spec stays in force
    error = running.wait_event("spec_invalid")[0]["message"]
    assert error.startswith(f"{spec_path}:4: source {source}: cannot read source: No such file or directory")
    assert "keeping the last good spec" in error
    assert running.stop() == 0
