"""Creation and reconcile on real directories: O_EXCL, no symlink following, atomic content, untouched files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import snackwatch.apply as apply_module
from snackwatch.apply import create_snack
from snackwatch.cli import main
from snackwatch.desired import Desired, Shape, merge
from snackwatch.plan import Kind
from snackwatch.reconcile import Status, observe, reconcile_all, reconcile_directory, reconcile_names
from snackwatch.spec import RESERVED_PREFIX, Snack, Spec, all_plain
from tests.conftest import needs_root_linux


def open_pantry(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def make_spec(pantry: Path, *snacks: Snack) -> Desired:
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks)])


def test_plain_snack_is_an_empty_file_with_default_mode(tmp_path: Path) -> None:
    fd = open_pantry(tmp_path)
    try:
        assert create_snack(fd, "Goldfish", Snack("Goldfish")) is True
        assert create_snack(fd, "Goldfish", Snack("Goldfish")) is False
    finally:
        os.close(fd)
    info = os.lstat(tmp_path / "Goldfish")
    assert stat.S_ISREG(info.st_mode) and info.st_size == 0
    assert stat.S_IMODE(info.st_mode) == 0o644  # whatever the umask (test_kinds.py plays umask 077)


def test_content_and_mode_are_published_atomically(tmp_path: Path) -> None:
    fd = open_pantry(tmp_path)
    try:
        assert create_snack(fd, "StringCheese", Snack("StringCheese", content="mozzarella\n", mode=0o640))
    finally:
        os.close(fd)
    assert (tmp_path / "StringCheese").read_text() == "mozzarella\n"
    assert stat.S_IMODE(os.lstat(tmp_path / "StringCheese").st_mode) == 0o640
    assert not [name for name in os.listdir(tmp_path) if name.startswith(RESERVED_PREFIX)]


def test_a_taken_name_writes_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own publish is heard back (IN_MOVED_TO) and looked at: that look must not stage the content again."""
    (tmp_path / "StringCheese").write_text("cheddar")

    def no_stage(*_: object) -> None:
        raise AssertionError("staged a temp file for a name already taken")

    monkeypatch.setattr(apply_module, "stage", no_stage)
    fd = open_pantry(tmp_path)
    try:
        assert not create_snack(fd, "StringCheese", Snack("StringCheese", content="mozzarella\n"))
    finally:
        os.close(fd)
    assert (tmp_path / "StringCheese").read_text() == "cheddar"


def test_existing_file_is_never_modified_or_touched_only_seen_drifting(tmp_path: Path) -> None:
    target = tmp_path / "StringCheese"
    target.write_text("cheddar")
    os.utime(target, (1_000_000, 1_000_000))
    before = os.stat(target)
    outcomes = reconcile_all(make_spec(tmp_path, Snack("StringCheese", content="mozzarella\n", mode=0o600)))
    assert [(o.status, [a.name for a in o.drift]) for o in outcomes] == [(Status.PRESENT, ["content", "mode"])]
    after = os.stat(target)  # seen as drift, and left as it is: nothing enforced
    assert target.read_text() == "cheddar"
    assert (after.st_mtime_ns, after.st_mode, after.st_ino) == (before.st_mtime_ns, before.st_mode, before.st_ino)


@pytest.mark.parametrize("snack", [Snack("x"), Snack("x", content="secret")])
def test_dangling_symlink_is_never_followed(tmp_path: Path, snack: Snack) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    outside = tmp_path / "outside"
    (pantry / "x").symlink_to(outside)
    outcomes = reconcile_all(make_spec(pantry, snack))
    assert [(o.status, o.kind) for o in outcomes] == [(Status.CONFLICT, Kind.SYMLINK)]
    assert not outside.exists()
    desired = make_spec(pantry, snack)
    assert reconcile_names(desired, str(pantry), ["x"])[0].status is Status.CONFLICT
    assert not outside.exists()


def test_symlink_to_a_file_elsewhere_is_not_written_through(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (pantry / "x").symlink_to(victim)
    outcomes = reconcile_names(make_spec(pantry, Snack("x", content="overwrite")), str(pantry), ["x"])
    assert outcomes[0].status is Status.CONFLICT
    assert victim.read_text() == "keep me"


def test_directory_in_a_snacks_place_is_a_conflict(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    outcomes = reconcile_all(make_spec(tmp_path, Snack("x"), Snack("y")))
    assert {(o.entry.snack.name, o.status, o.kind) for o in outcomes} == {
        ("x", Status.CONFLICT, Kind.DIRECTORY),
        ("y", Status.CREATED, None),
    }
    assert (tmp_path / "x").is_dir()


def test_reconcile_all_creates_a_missing_pantry(tmp_path: Path) -> None:
    pantry = tmp_path / "a" / "b" / "pantry"
    outcomes = reconcile_all(make_spec(pantry, Snack("x")))
    assert [o.status for o in outcomes] == [Status.CREATED]
    assert (pantry / "x").is_file()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    assert [o.status for o in reconcile_all(make_spec(pantry, Snack("x")), dry_run=True)] == [Status.WOULD_CREATE]
    assert not pantry.exists()
    pantry.mkdir()
    outcomes = reconcile_names(make_spec(pantry, Snack("x")), str(pantry), ["x"], dry_run=True)
    assert [o.status for o in outcomes] == [Status.WOULD_CREATE]
    assert os.listdir(pantry) == []


def test_observe_classifies_entries(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to("f")
    os.mkfifo(tmp_path / "p")
    fd = open_pantry(tmp_path)
    try:
        assert observe(fd) == {"f": Kind.FILE, "d": Kind.DIRECTORY, "l": Kind.SYMLINK, "p": Kind.OTHER}
    finally:
        os.close(fd)


def test_names_not_in_spec_are_ignored(tmp_path: Path) -> None:
    assert reconcile_names(make_spec(tmp_path, Snack("x")), str(tmp_path), ["unrelated"]) == []
    assert os.listdir(tmp_path) == []


def test_nested_snacks_get_their_directories(tmp_path: Path) -> None:
    desired = make_spec(tmp_path / "pantry", Snack("drinks/cold/Soda"), Snack("drinks/Juice"), Snack("Goldfish"))
    assert desired.directories == (
        str(tmp_path / "pantry"),
        str(tmp_path / "pantry" / "drinks"),
        str(tmp_path / "pantry" / "drinks" / "cold"),
    )
    outcomes = reconcile_all(desired)
    assert sorted(o.entry.snack.name for o in outcomes if o.status is Status.CREATED) == [
        "Goldfish",
        "drinks/Juice",
        "drinks/cold/Soda",
    ]
    assert (tmp_path / "pantry" / "drinks" / "cold" / "Soda").is_file()


def test_a_symlinked_parent_directory_is_never_followed(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (pantry / "drinks").symlink_to(elsewhere)
    outcomes = reconcile_all(make_spec(pantry, Snack("drinks/Juice")))
    assert [(o.status, o.kind) for o in outcomes] == [(Status.CONFLICT, Kind.SYMLINK)]
    assert list(elsewhere.iterdir()) == []


def test_dry_run_agrees_on_a_missing_directory_in_every_pass(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    desired = make_spec(pantry, Snack("Goldfish"), Snack("drinks/Juice"))
    for directory in desired.directories:  # the burst pass and the targeted repair decide alike
        names = list(desired.files[directory])
        full = reconcile_directory(desired, directory, dry_run=True)
        targeted = reconcile_names(desired, directory, names, dry_run=True)
        assert [(o.status, o.error) for o in full] == [(o.status, o.error) for o in targeted]
        assert {o.status for o in full} == {Status.WOULD_CREATE}
    pantry.mkdir()
    assert [o.status for o in reconcile_names(desired, str(pantry / "drinks"), ["Juice"], dry_run=True)] == [
        Status.WOULD_CREATE
    ]
    assert os.listdir(pantry) == []


def test_once_dry_run_prints_what_it_would_create_without_errno(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text("pantry: ./missing/pantry\nsnacks: [Goldfish, drinks/cold/Soda]\n")
    assert main(["once", "--dry-run", "-c", str(spec)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["would create Goldfish", "would create drinks/cold/Soda"]
    assert captured.err == ""
    assert not (tmp_path / "missing").exists()


def test_a_cold_directory_of_plain_snacks_is_created_in_one_batch_in_the_spec_order(tmp_path: Path) -> None:
    names = [f"s{index:03d}" for index in (5, 1, 9, 3, 7)]
    cold = reconcile_all(make_spec(tmp_path / "cold", *(Snack(name) for name in names)))
    assert [(o.entry.name, o.status) for o in cold] == [(name, Status.CREATED) for name in names]
    assert all(stat.S_IMODE(os.lstat(tmp_path / "cold" / name).st_mode) == 0o644 for name in names)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "s001").write_text("")  # one present: the directory is planned name by name
    mixed = reconcile_all(make_spec(tmp_path / "mixed", *(Snack(name) for name in names)))
    assert [(o.entry.name, o.status) for o in mixed] == [(name, Status.CREATED) for name in names if name != "s001"]


@needs_root_linux("a file of another user")
def test_a_name_taken_after_the_cold_listing_is_present_as_in_a_planned_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snackwatch import reconcile  # noqa: PLC0415 - the listing is faked: the race cannot be timed

    (tmp_path / "y").write_text("theirs")
    os.chown(tmp_path / "y", 65534, 65534)
    monkeypatch.setattr(reconcile, "observe", lambda fd, wanted: {})  # listed before `y` appeared
    outcomes = reconcile_all(make_spec(tmp_path, Snack("x"), Snack("y")))
    assert [(o.entry.name, o.status, o.reason) for o in outcomes] == [
        ("x", Status.CREATED, ""),
        ("y", Status.PRESENT, "created by nobody"),
    ]
    assert (tmp_path / "y").read_text() == "theirs"


def test_the_plain_batch_makes_empty_0644_files_by_mknodat_and_takes_the_open_where_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "taken").symlink_to(tmp_path / "nowhere")  # a dangling symlink: taken, never followed
    names = ["a", "taken", "b", "c"]
    made: list[str] = []
    real_mknod = os.mknod

    def mknod(name: str, mode: int, device: int = 0, *, dir_fd: int | None = None) -> None:
        made.append(name)
        real_mknod(name, mode, device, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mknod", mknod)
    old_umask = os.umask(0o022)
    fd = open_pantry(tmp_path)
    try:
        assert apply_module.create_plain_snacks(fd, names) == [True, False, True, True]
        assert made == names  # one mknodat each, no open
        for name in ("a", "b", "c"):
            info = (tmp_path / name).lstat()
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o644 and info.st_size == 0
            assert info.st_uid == os.geteuid()
        assert not (tmp_path / "nowhere").exists()

        def refused(name: str, mode: int, device: int = 0, *, dir_fd: int | None = None) -> None:
            made.append(name)
            raise PermissionError(1, "Operation not permitted")  # as a syscall filter answers

        monkeypatch.setattr(os, "mknod", refused)
        made.clear()
        assert apply_module.create_plain_snacks(fd, ["d", "a", "e"]) == [True, False, True]
        assert made == ["d"]  # refused once: the open made "d" and took the rest
        assert stat.S_IMODE((tmp_path / "e").lstat().st_mode) == 0o644
    finally:
        os.close(fd)
        os.umask(old_umask)


def test_all_plain_agrees_with_is_plain_field_by_field(tmp_path: Path) -> None:
    """The burst path asks a directory once whether every snack is plain (in C, field by field): each field a
    plain snack leaves unset makes it not plain, as Snack.is_plain says; target, source, enforce do not count."""
    variants = [
        Snack("a"),
        Snack("a", content=""),
        Snack("a", mode=0o600),
        Snack("a", type="directory"),
        Snack("a", type="symlink", target="b"),
        Snack("a", data=b""),
        Snack("a", owner=0),
        Snack("a", group=0),
        Snack("a", enforce=frozenset({"mode"})),
    ]
    for snack in variants:
        assert all_plain([Snack("z"), snack]) is snack.is_plain, snack
    desired = make_spec(tmp_path / "p", Snack("x"), Snack("y", mode=0o600))
    assert desired.shape(str(tmp_path / "p")) == (False, False, False)
    enforced = make_spec(tmp_path / "q", Snack("x"), Snack("y", enforce=frozenset({"type"})))
    assert enforced.shape(str(tmp_path / "q")) == (True, False, True)


def test_a_directory_of_plain_snacks_plans_only_those_not_found_as_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst's scan of plain snacks plans only the names not found as a file (the rest needs nothing): the
    outcomes, in the spec's order, and the disk are those of planning every snack."""
    names = [f"s{index:02d}" for index in range(12)]

    def layout(pantry: Path) -> None:
        pantry.mkdir()
        for name in names[::3]:
            (pantry / name).write_text("")  # present
        (pantry / names[4]).mkdir()  # a directory in a snack's place
        (pantry / names[5]).symlink_to(tmp_path / "elsewhere")  # a dangling symlink in one

    seen = []
    for pantry, shaped in ((tmp_path / "fast", True), (tmp_path / "planned", False)):
        layout(pantry)
        desired = make_spec(pantry, *(Snack(name) for name in names))
        if not shaped:
            monkeypatch.setattr(
                type(desired), "shape", lambda self, d: Shape(plain=False, pruning=False, enforcing=False)
            )
        outcomes = reconcile_directory(desired, str(pantry), held=set(), lookup=True, owners=False)
        seen.append(([(o.entry.name, o.status, o.kind, o.reason) for o in outcomes], sorted(os.listdir(pantry))))
    assert seen[0] == seen[1]
    assert [name for name, status, _, _ in seen[0][0] if status is Status.CONFLICT] == [names[4], names[5]]
    assert not (tmp_path / "elsewhere").exists()
