"""Quiet parents (issue 23): saves beside a watched path wake nothing, and every way to change a spec still reloads.

Real inotify, in-process: the Watcher with the daemon's own spec set, re-armed and reloaded the way the loop does
it (a directory gone re-arms, a spec mark re-reads the specs and re-tracks their names). Everything lives below a
world-writable `jail`, where the watched ancestors stop (no other test's churn can reach these watches).
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import IS_LINUX, POLL_FOREVER, Running, blocked_without_timeout, inotify_mask, wait_until, write_spec

from snackwatch.dirty import DirtySet, Mark
from snackwatch.specset import SpecSet
from snackwatch.watch import HAVE_INOTIFY, Watcher
from snackwatch.watch.inotify import InotifySource

pytestmark = pytest.mark.skipif(not (IS_LINUX and HAVE_INOTIFY), reason="inotify is Linux only")

IN_MODIFY, IN_CREATE = 0x2, 0x100


class Watched:
    """A spec set watched as the daemon watches it; `heard()` does what one loop turn does with the events."""

    def __init__(self, config: Path, pantry: Path) -> None:
        self.pantry = str(pantry)
        self.specs = SpecSet.load(config, strict=False)
        self.dirty = DirtySet()
        self.watcher = Watcher(self.dirty, "inotify", ignore_prefix=".snackwatch-")
        self.watcher.track_specs(self.specs.spec_names())
        self.arm()
        fd = self.watcher.fileno()
        assert fd is not None
        self.fd = fd

    def arm(self) -> None:
        self.watcher.arm({self.pantry: self.pantry}, self.specs.watched_dirs())

    def woken(self) -> bool:
        return bool(select.select([self.fd], [], [], 0)[0])

    def heard(self) -> bool:
        """Read what was queued, re-arm what went, re-read the specs if one changed: True if one did."""
        spec = False
        while self.woken():
            self.watcher.read_events()
            batch = self.dirty.take(drain=False)
            spec = spec or Mark.SPEC in batch.marks
            if batch.gone:
                self.arm()
        if spec:
            reread = self.specs.reload(forced=False, broken=set())
            self.watcher.track_specs(self.specs.spec_names())
            if reread.desired is not None:
                self.arm()
        return spec

    def snacks(self) -> set[str]:
        return {snack.name for spec in self.specs.specs.values() for snack in spec.snacks}

    def close(self) -> None:
        self.watcher.close()
        self.dirty.close()


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    path = tmp_path / "jail"
    path.mkdir()
    path.chmod(0o1777)  # no symlink there is followed: the watched ancestors stop below it
    return path


@pytest.fixture
def home(jail: Path) -> Iterator[tuple[Path, Watched]]:
    """~/.config/snackwatch/snacks.yaml, its pantry in ~/pantry."""
    home = jail / "home"
    spec = home / ".config" / "snackwatch" / "snacks.yaml"
    spec.parent.mkdir(parents=True)
    write_spec(spec, ["Goldfish"], pantry=str(home / "pantry"))
    (home / "pantry").mkdir()
    watched = Watched(spec, home / "pantry")
    yield spec, watched
    watched.close()


def save(path: Path, text: str) -> None:
    """An app's atomic save: a temp file written, chmod'ed and renamed over the name."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    temp.chmod(0o600)
    temp.rename(path)


def test_saves_in_watched_parents_and_appends_beside_the_spec_wake_nothing(home: tuple[Path, Watched]) -> None:
    spec, watched = home
    config, root = spec.parent.parent, spec.parent.parent.parent
    (spec.parent / "busy.log").touch()  # made beside the spec: a name there, one read (not a spec change)
    assert not watched.heard()
    for i in range(10):  # apps saving in ~ and ~/.config, a log appended beside the spec
        save(config / "app.json", str(i))
        save(root / ".app.json", str(i))
        with open(spec.parent / "busy.log", "a") as log:
            log.write(f"line {i}\n")
    assert not watched.woken() and watched.watcher.noise_heard() == 1  # busy.log made; nothing since
    assert not inotify_mask(watched.fd, spec.parent) & IN_MODIFY  # writes beside the spec: not even queued
    assert not inotify_mask(watched.fd, config) & IN_CREATE  # ~/.config hears only itself and removals
    spec.write_text(spec.read_text().replace("Goldfish", "Popcorn"))  # the spec's own inode is watched
    assert watched.heard() and watched.snacks() == {"Popcorn"}


def test_a_spec_being_written_in_place_waits_for_its_close(home: tuple[Path, Watched]) -> None:
    spec, watched = home
    text = spec.read_text().replace("Goldfish", "Popcorn")
    with open(spec, "w") as writer:
        writer.write(text[:10])
        writer.flush()
        watched.watcher.read_events()
        assert watched.dirty.take(drain=False).spec_writes == {str(spec): True}  # still open: not read yet
        writer.write(text[10:])
    watched.watcher.read_events()
    assert watched.dirty.take(drain=False).spec_writes == {str(spec): False}


def test_a_spec_file_that_cannot_be_watched_has_its_directory_heard_whole(home: tuple[Path, Watched]) -> None:
    spec, watched = home
    source = watched.watcher._source
    assert isinstance(source, InotifySource)
    works = source.spec_files.add

    def exhausted(fd: int) -> int:
        raise OSError(errno.ENOSPC, "no watches left")

    source.spec_files.add = exhausted
    watched.watcher.track_specs(watched.specs.spec_names())
    assert inotify_mask(watched.fd, spec.parent) & IN_MODIFY  # as before spec files had watches of their own
    spec.write_text(spec.read_text().replace("Goldfish", "Popcorn"))
    assert watched.heard() and watched.snacks() == {"Popcorn"}
    source.spec_files.add = works
    watched.watcher.track_specs(watched.specs.spec_names())
    assert not inotify_mask(watched.fd, spec.parent) & IN_MODIFY  # narrow again once the file is watched


def _atomic(spec: Path, text: str) -> None:
    save(spec, text)


def _vim_backup_rename(spec: Path, text: str) -> None:  # vim's backupcopy=no
    backup = spec.with_name(spec.name + "~")
    spec.rename(backup)
    spec.write_text(text)
    backup.unlink()


def _spec_dir_replaced(spec: Path, text: str) -> None:
    spec.parent.rename(spec.parent.with_name("snackwatch.old"))
    spec.parent.mkdir()
    spec.write_text(text)


def _parent_replaced(spec: Path, text: str) -> None:
    config = spec.parent.parent
    config.rename(config.with_name(".config.old"))
    spec.parent.mkdir(parents=True)
    spec.write_text(text)


def _removed_then_made_again(spec: Path, text: str) -> None:
    shutil.rmtree(spec.parent.parent)  # ~/.config gone: ~ is the deepest directory left, heard by name
    spec.parent.mkdir(parents=True)
    spec.write_text(text)


CHANGES: dict[str, Callable[[Path, str], None]] = {
    "write in place": lambda spec, text: spec.write_text(text),
    "atomic rename over": _atomic,
    "vim backup rename": _vim_backup_rename,
    "spec directory renamed away and replaced": _spec_dir_replaced,
    "parent renamed away and replaced": _parent_replaced,
    "directories removed and made again": _removed_then_made_again,
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_way_to_change_the_spec_reloads_at_once(home: tuple[Path, Watched], change: str) -> None:
    spec, watched = home
    for round, snack in enumerate(("Popcorn", "Pretzel")):  # twice: the watches made the first time work too
        CHANGES[change](spec, spec.read_text().replace(("Goldfish", "Popcorn")[round], snack))
        assert watched.heard() and watched.snacks() == {snack}, f"{change}, round {round}"
        shutil.rmtree(spec.parent.parent.with_name(".config.old"), ignore_errors=True)
        shutil.rmtree(spec.parent.with_name("snackwatch.old"), ignore_errors=True)
        watched.heard()
    CHANGES[change](spec, spec.read_text())  # the same bytes: no new spec, yet the new places are watched
    watched.heard()
    text = spec.read_text().replace("Pretzel", "Waffle")
    spec.unlink()
    assert watched.heard()  # gone: the last good spec stays
    spec.write_text(text)  # made again: heard only if the new directory itself is watched
    assert watched.heard() and watched.snacks() == {"Waffle"}, f"{change}, made again after"
    spec.write_text(spec.read_text().replace("Waffle", "Toffee"))
    assert watched.heard() and watched.snacks() == {"Toffee"}, f"{change}, written in place after"


def test_a_spec_made_in_directories_that_did_not_exist_is_heard_step_by_step(home: tuple[Path, Watched]) -> None:
    spec, watched = home
    text = spec.read_text().replace("Goldfish", "Popcorn")
    shutil.rmtree(spec.parent.parent)
    assert watched.heard()  # gone: the last good spec stays (the daemon says so)
    (spec.parent.parent).mkdir()
    watched.heard()
    spec.parent.mkdir()
    watched.heard()
    spec.write_text(text)  # made after the directories were watched: heard by its own directory
    assert watched.heard() and watched.snacks() == {"Popcorn"}


def test_a_re_pointed_spec_symlink_and_a_configmap_swap_reload(jail: Path) -> None:
    config = jail / "configmap"
    config.mkdir()
    pantry = jail / "pantry"
    pantry.mkdir()

    def publish(version: int, snack: str) -> None:
        data = config / f"..2026_12_04_{version}"
        data.mkdir()
        write_spec(data / "snacks.yaml", [snack], pantry=str(pantry))
        (config / "..data_tmp").symlink_to(data.name)
        os.rename(config / "..data_tmp", config / "..data")
        if version > 1:
            shutil.rmtree(config / f"..2026_12_04_{version - 1}")

    publish(1, "Goldfish")
    (config / "snacks.yaml").symlink_to("..data/snacks.yaml")
    watched = Watched(config / "snacks.yaml", pantry)
    try:
        publish(2, "Popcorn")
        assert watched.heard() and watched.snacks() == {"Popcorn"}
        publish(3, "Pretzel")
        assert watched.heard() and watched.snacks() == {"Pretzel"}
        write_spec(config / "mine.yaml", ["Waffle"], pantry=str(pantry))  # re-pointed at a file of our own
        (config / "link_tmp").symlink_to("mine.yaml")
        os.rename(config / "link_tmp", config / "snacks.yaml")
        assert watched.heard() and watched.snacks() == {"Waffle"}
        (config / "mine.yaml").write_text((config / "mine.yaml").read_text().replace("Waffle", "Toffee"))
        assert watched.heard() and watched.snacks() == {"Toffee"}  # written in place where the link points
    finally:
        watched.close()


def test_a_symlinked_directory_on_the_way_re_pointed_reloads(jail: Path) -> None:
    """~/.config -> dotfiles/a (a dotfile manager): ~ hears that name, re-pointed, though saves there are quiet."""
    home = jail / "home"
    for which, snack in (("a", "Goldfish"), ("b", "Popcorn")):
        (home / "dotfiles" / which / "snackwatch").mkdir(parents=True)
        write_spec(home / "dotfiles" / which / "snackwatch" / "snacks.yaml", [snack], pantry=str(home / "pantry"))
    (home / ".config").symlink_to("dotfiles/a")
    (home / "pantry").mkdir()
    watched = Watched(home / ".config" / "snackwatch" / "snacks.yaml", home / "pantry")
    try:
        save(home / "dotfiles" / "a" / "app.json", "x")  # a save beside the real spec directory: quiet
        assert not watched.woken()
        (home / "link_tmp").symlink_to("dotfiles/b")
        os.rename(home / "link_tmp", home / ".config")
        assert watched.heard() and watched.snacks() == {"Popcorn"}
        spec = home / "dotfiles" / "b" / "snackwatch" / "snacks.yaml"
        spec.write_text(spec.read_text().replace("Popcorn", "Pretzel"))
        assert watched.heard() and watched.snacks() == {"Pretzel"}
    finally:
        watched.close()


def test_a_directory_made_a_symlink_while_arming_is_armed_again_by_name(
    jail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~/.config is a plain directory when the roles are decided, a symlink by the time the watches are added: the
    roles are looked at again after arming, so ~ hears that name (a later re-point is not missed)."""
    home = jail / "home"
    real = home / "dotfiles" / "snackwatch"
    real.mkdir(parents=True)
    (home / ".config" / "snackwatch").mkdir(parents=True)
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify")
    arm, calls = InotifySource.arm, []

    def swapped_meanwhile(source: InotifySource, wanted: dict[str, object]) -> object:
        if not calls:
            shutil.rmtree(home / ".config")
            (home / ".config").symlink_to("dotfiles")
        calls.append(wanted)
        return arm(source, wanted)  # type: ignore[arg-type]

    monkeypatch.setattr(InotifySource, "arm", swapped_meanwhile)
    try:
        watcher.arm({}, [str(home / ".config" / "snackwatch")])
        fd = watcher.fileno()
        assert fd is not None and inotify_mask(fd, home) & IN_CREATE  # ~ hears ".config" by name now
        assert len(calls) == 2  # armed again once, then the roles held
    finally:
        watcher.close()
        dirty.close()


def test_a_conf_d_file_added_and_written_in_place_reloads(jail: Path) -> None:
    confd = jail / "snacks.d"
    confd.mkdir()
    pantry = jail / "pantry"
    pantry.mkdir()
    write_spec(confd / "10-base.yaml", ["Goldfish"], pantry=str(pantry))
    watched = Watched(confd, pantry)
    try:
        (confd / "notes.txt").write_text("beside the specs")
        assert not watched.heard()
        write_spec(confd / "20-more.yaml", ["Popcorn"], pantry=str(jail / "other"))
        assert watched.heard() and watched.snacks() == {"Goldfish", "Popcorn"}
        added = confd / "20-more.yaml"
        added.write_text(added.read_text().replace("Popcorn", "Pretzel"))
        assert watched.heard() and watched.snacks() == {"Goldfish", "Pretzel"}
    finally:
        watched.close()


def _wakeups(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts wake-ups in /proc")
def test_an_app_saving_ten_times_a_second_in_a_watched_parent_wakes_the_daemon_zero_times(
    jail: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str]
) -> None:
    home = jail / "home"
    spec = home / ".config" / "snackwatch" / "snacks.yaml"
    spec.parent.mkdir(parents=True)
    write_spec(spec, ["Goldfish"], pantry=str(home / "pantry"))
    running = start_daemon(spec, "--log-level", "debug")
    if POLL_FOREVER:  # the daemon's own start-up (the status write) is over: no timer left
        wait_until(lambda: blocked_without_timeout(running.proc.pid), 3.0, "the loop asleep in poll(2), no timeout")
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(home / ".config"), str(home)], stdout=subprocess.PIPE, env=daemon_env
    )
    try:
        assert saver.stdout is not None and saver.stdout.readline().strip() == b"ready"
        if not POLL_FOREVER:
            time.sleep(0.3)  # the daemon's own start-up (status write) is over, we trust
        before, lines = _wakeups(running.proc.pid), len(running.logs())
        assert saver.stdout.readline().strip() == b"done"  # ten saves a second in ~/.config and in ~, for 1 s
        woken = _wakeups(running.proc.pid) - before
        told = running.logs()[lines:]
        # other test runs on this machine mount and unmount: a mount table change wakes every daemon (and says so)
        assert woken == 0 or any(line.get("event") == "mounts" for line in told), (woken, told)
    finally:
        saver.kill()
        saver.wait()
        assert saver.stdout is not None
        saver.stdout.close()
    (home / "pantry" / "Goldfish").unlink()  # still awake for what matters
    deadline = time.monotonic() + 2.0
    while not (home / "pantry" / "Goldfish").exists():
        assert time.monotonic() < deadline, "Goldfish not restored"
        time.sleep(0.005)


SAVER = """
import os, sys, time
print("ready", flush=True)
time.sleep(0.4)
for i in range(10):
    for where in sys.argv[1:]:
        temp = os.path.join(where, f".settings.json.{i}")
        with open(temp, "w") as saved:
            saved.write(str(i))
        os.chmod(temp, 0o600)
        os.rename(temp, os.path.join(where, "settings.json"))
    time.sleep(0.1)
print("done", flush=True)
"""
