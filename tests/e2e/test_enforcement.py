"""Enforcement never silently stops: aliased and re-pointed pantries, specs written slowly, moved or busy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import IS_LINUX, Running, needs_root_linux, wait_until, write_spec

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
    wait_until(lambda: running.events("restored")[1:], 3.0, "the v2 restore logged")
    assert not (releases / "v1" / "Goldfish").exists()


def test_a_spec_written_slowly_in_place_is_read_only_once_its_writer_closes_it(
    spec_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path, "--watcher", backend)
    pantry = running.pantry
    with open(spec_path, "w") as writer:  # `cat > snacks.yaml`, pausing mid-line
        writer.write("version: 1\npantry: ./pantry\nsnacks:\n  - Goldfish\n  - Fru")
        writer.flush()
        (spec_path.parent / "other-file").touch()  # other events in the spec directory...
        running.proc.send_signal(signal.SIGHUP)  # ...and an explicit reload, during the write
        running.wait_event("reload_wait")
        (spec_path.parent / "other-file").unlink()
        wait_until(lambda: running.events("reload_wait") and running.proc.poll() is None, 1.0, "still waiting")
        writer.write("itGummies\n")
    wait_until((pantry / "FruitGummies").exists, 3.0, "FruitGummies once the writer closed the spec")
    assert not (pantry / "Fru").exists()
    assert [line["added"] for line in running.events("reload")] == [["FruitGummies"]]


def test_a_spec_directory_moved_away_and_recreated_is_read_again(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    spec = write_spec(etc / "snacks.yaml", ["Goldfish"], pantry="../pantry")
    running = start_daemon(spec, "--watcher", backend)
    etc.rename(tmp_path / "etc.old")
    etc.mkdir()
    write_spec(etc / "snacks.yaml", ["Goldfish", "Popcorn"], pantry="../pantry")
    wait_until((tmp_path / "pantry" / "Popcorn").exists, 3.0, "Popcorn from the re-created spec directory")
    write_spec(etc / "snacks.yaml", ["Goldfish", "Popcorn", "Pretzel"], pantry="../pantry")
    wait_until((tmp_path / "pantry" / "Pretzel").exists, 3.0, "later saves in the new directory too")
    assert running.proc.poll() is None


def test_a_spec_that_is_a_symlink_into_another_directory_sees_edits_to_its_target(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = write_spec(dotfiles / "snacks.yaml", ["Goldfish"], pantry=str(tmp_path / "pantry"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "snacks.yaml").symlink_to(target)  # GNU stow
    start_daemon(config / "snacks.yaml", "--watcher", backend)
    with open(target, "a") as stream:  # in place
        stream.write("  - Popcorn\n")
    wait_until((tmp_path / "pantry" / "Popcorn").exists, 3.0, "Popcorn from an in-place edit of the target")
    write_spec(target, ["Goldfish", "Popcorn", "Pretzel"], pantry=str(tmp_path / "pantry"))  # by rename
    wait_until((tmp_path / "pantry" / "Pretzel").exists, 3.0, "Pretzel from a save by rename of the target")


TOUCHER = """
import pathlib, sys, time
path, end = pathlib.Path(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    path.touch()
    time.sleep(0.005)
"""


def test_a_busy_spec_directory_delays_a_save_by_a_bounded_time(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path)
    toucher = subprocess.Popen([sys.executable, "-c", TOUCHER, str(spec_path.parent / "busy.log"), "4"])
    try:
        wait_until((spec_path.parent / "busy.log").exists, 2.0, "the toucher to start")
        write_spec(spec_path, ["Goldfish", "Popcorn"])
        wait_until((running.pantry / "Popcorn").exists, 1.0, "the save applied while the directory stays busy")
        assert toucher.poll() is None
    finally:
        toucher.kill()
        toucher.wait()


def test_one_broken_file_in_a_conf_d_does_not_stop_the_start(
    tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    write_spec(conf / "good.yaml", ["Goldfish"], pantry="../good")
    (conf / "broken.yaml").write_text("pantry: ../broken\nsnacks:\n  - [unclosed\n")
    running = start_daemon(conf)
    assert (tmp_path / "good" / "Goldfish").exists()
    invalid = running.wait_event("spec_invalid")
    assert len(invalid) == 1 and f"{conf / 'broken.yaml'}:" in invalid[0]["message"]
    (tmp_path / "good" / "Goldfish").unlink()
    wait_until((tmp_path / "good" / "Goldfish").exists, 3.0, "the good spec enforced")
    check = subprocess.run([sys.executable, "-m", "snackwatch", "check", "-c", str(conf)], capture_output=True)
    assert check.returncode == 2 and b"broken.yaml:" in check.stderr


@needs_root_linux("mounts a tmpfs")
def test_only_mounts_over_a_watched_directory_re_arm_it(
    spec_path: Path, start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    write_spec(spec_path, ["Goldfish", "drinks/Juice"])
    running = start_daemon(spec_path, "--log-level", "debug")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(elsewhere)], check=True)
    try:
        unrelated = running.wait_event("mounts")[0]
        assert "re-checking 0 directories" in unrelated["message"]
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(running.pantry)], check=True)
        try:  # mounted over the pantry: the new (empty) filesystem is stocked and watched
            wait_until((running.pantry / "drinks" / "Juice").exists, 3.0, "snacks on the new mount")
            assert "re-checking 2 directories" in running.events("mounts")[-1]["message"]
            (running.pantry / "Goldfish").unlink()
            wait_until((running.pantry / "Goldfish").exists, 3.0, "a deletion on the new mount restored")
        finally:
            subprocess.run(["umount", "-l", str(running.pantry)], check=True)
        wait_until((running.pantry / "Goldfish").exists, 3.0, "the old pantry back after the umount")
    finally:
        subprocess.run(["umount", "-l", str(elsewhere)], check=False)
    assert running.proc.poll() is None


def test_a_re_pointed_symlink_above_the_pantry_is_followed_too(
    tmp_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    releases = tmp_path / "releases"
    for version in ("v1", "v2"):
        (releases / version / "pantry").mkdir(parents=True)
    app = tmp_path / "app"
    app.symlink_to("releases/v1")  # /srv/app -> releases/v1, the pantry is /srv/app/pantry
    spec = write_spec(tmp_path / "snacks.yaml", ["Goldfish"], pantry="./app/pantry")
    running = start_daemon(spec, "--watcher", backend)
    assert (releases / "v1" / "pantry" / "Goldfish").exists()
    repoint(app, "releases/v2")
    wait_until((releases / "v2" / "pantry" / "Goldfish").exists, 3.0, "v2 stocked after the re-point above")
    (releases / "v2" / "pantry" / "Goldfish").unlink()
    wait_until((releases / "v2" / "pantry" / "Goldfish").exists, 3.0, "a deletion in v2 restored")
    assert running.proc.poll() is None
