"""Enforcement never silently stops: aliased and re-pointed pantries, specs written slowly, moved or busy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import IS_LINUX, Running, wait_until, write_spec

BACKENDS = ["inotify", "observer"] if IS_LINUX else ["observer"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def repoint(link: Path, target: str) -> None:
    """`ln -sfn target link`: a new symlink renamed over the old one (atomic, as release tools do)."""
    temp = link.with_name(link.name + ".new")
    os.symlink(target, temp)
    temp.rename(link)


def test_two_specs_whose_pantries_are_one_directory_by_two_paths_are_both_enforced(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "link").symlink_to("shared")
    conf = tmp_path / "conf.d"
    conf.mkdir()
    write_spec(conf / "a.yaml", ["Apple"], pantry="../shared")
    write_spec(conf / "b.yaml", ["Banana"], pantry="../link")
    running = start_daemon(conf, "--watcher", backend)
    for name in ("Apple", "Banana", "Apple", "Banana"):
        (tmp_path / "shared" / name).unlink()
        wait_until((tmp_path / "shared" / name).exists, 3.0, f"{name} restored")
    assert running.proc.poll() is None


def test_a_pantry_that_is_the_spec_directory_by_a_symlink_still_hears_in_place_edits(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "etclink").symlink_to("etc")
    spec = write_spec(etc / "snacks.yaml", ["Goldfish"], pantry="../etclink")
    running = start_daemon(spec, "--watcher", backend)
    for round_ in range(3):
        name = f"Pretzel{round_}"
        with open(spec, "a") as stream:  # an in-place edit: no rename, seen at close
            stream.write(f"  - {name}\n")
        wait_until((etc / name).exists, 3.0, f"{name} from an in-place edit")
    (etc / "Goldfish").unlink()
    wait_until((etc / "Goldfish").exists, 3.0, "Goldfish restored")
    assert running.proc.poll() is None


def test_a_re_pointed_pantry_symlink_is_followed_stocked_and_enforced(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    releases = tmp_path / "releases"
    (releases / "v1").mkdir(parents=True)
    (releases / "v2").mkdir()
    current = tmp_path / "current"
    current.symlink_to("releases/v1")
    spec = write_spec(tmp_path / "snacks.yaml", ["Goldfish", "drinks/Juice"], pantry="./current")
    running = start_daemon(spec, "--watcher", backend)
    assert (releases / "v1" / "drinks" / "Juice").exists()
    repoint(current, "releases/v2")
    wait_until((releases / "v2" / "drinks" / "Juice").exists, 3.0, "v2 stocked after the re-point")
    assert (releases / "v2" / "Goldfish").exists()
    (releases / "v2" / "Goldfish").unlink()
    wait_until((releases / "v2" / "Goldfish").exists, 3.0, "a deletion in v2 restored")
    (releases / "v1" / "Goldfish").unlink()  # v1 is no longer the pantry: left alone
    wait_until(lambda: running.events("restored")[2:], 3.0, "the v2 restore logged")
    assert not (releases / "v1" / "Goldfish").exists()
