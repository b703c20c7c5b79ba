"""A pass's walk (passwalk.PassWalk) reaches each directory as the walk from "/" does, refusing the same things."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snackwatch import passwalk
from snackwatch.chase import BlockedPath, WalkRules, open_directory
from snackwatch.passwalk import PassWalk
from snackwatch.perms import Perms
from snackwatch.plan import Kind
from tests.conftest import needs_root_linux


def _identity(fd: int) -> tuple[int, int]:
    try:
        info = os.fstat(fd)
        return info.st_dev, info.st_ino
    finally:
        os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_pass_reaches_each_directory_walking_to_the_pantry_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pantry = tmp_path / "pantry"
    directories = [str(pantry / f"d{i}" / f"e{j}") for i in range(3) for j in range(3)]
    directories[:0] = [str(pantry / f"d{i}") for i in range(3)]
    for directory in directories:
        os.makedirs(directory, exist_ok=True)
    walks: list[str] = []
    real_open_pantry = passwalk.open_pantry
    monkeypatch.setattr(passwalk, "open_pantry", lambda p, **kw: walks.append(p) or real_open_pantry(p, **kw))
    rules = WalkRules((0, os.geteuid()), {})
    fds_before = _open_fds()
    with PassWalk() as walk:
        for directory in [*directories, *reversed(directories)]:  # parents first (arming), deepest first (watches)
            found = _identity(walk.open(directory, str(pantry), create=False, rules=rules))
            assert found == _identity(open_directory(directory, str(pantry), create=False, rules=rules))
            assert len(walk.held) <= 3  # the pantry and the chain above the last directory, whatever the size
    assert walks == [str(pantry)]
    assert _open_fds() == fds_before


def test_a_symlink_or_a_file_below_a_held_directory_is_refused_as_the_walk_refuses_it(tmp_path: Path) -> None:
    pantry, elsewhere = tmp_path / "pantry", tmp_path / "elsewhere"
    (pantry / "real").mkdir(parents=True)
    elsewhere.mkdir()
    (pantry / "link").symlink_to(elsewhere)
    (pantry / "file").write_text("")
    with PassWalk() as walk:
        os.close(walk.open(str(pantry / "real"), str(pantry), create=False))
        for name, kind in (("link", Kind.SYMLINK), ("file", Kind.FILE)):
            with pytest.raises(BlockedPath) as refused:
                walk.open(str(pantry / name / "below"), str(pantry), create=True)
            assert (refused.value.kind, refused.value.path) == (kind, str(pantry / name))
        with pytest.raises(FileNotFoundError):
            walk.open(str(pantry / "missing"), str(pantry), create=False)
    assert not (elsewhere / "below").exists()


@needs_root_linux("a directory owned by another user")
def test_below_a_held_directory_the_owner_rules_still_hold_and_created_directories_get_their_perms(
    tmp_path: Path,
) -> None:
    pantry = tmp_path / "pantry"
    (pantry / "theirs").mkdir(parents=True)
    os.chown(pantry / "theirs", 65534, 65534)
    made = str(pantry / "made")
    rules = WalkRules((0,), {made: Perms(0o710, owner=0, group=65534)})
    with PassWalk() as walk:
        os.close(walk.open(str(pantry), str(pantry), create=False, rules=rules))
        with pytest.raises(BlockedPath) as refused:
            walk.open(str(pantry / "theirs"), str(pantry), create=False, rules=rules)
        assert (refused.value.owner, refused.value.trusted) == (65534, (0,))
        os.close(walk.open(made, str(pantry), create=True, rules=rules))
    info = os.stat(made)
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o710, 0, 65534)
