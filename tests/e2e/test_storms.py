"""Hostile churn: another user's storm of unrelated events costs a bounded amount and hides no real deletion."""

from __future__ import annotations

import array
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    AS_NOBODY,
    IS_LINUX,
    Running,
    inotify_mask,
    needs_root_linux,
    require_nobody_runs,
    wait_until,
    write_spec,
)

from snackwatch.chase import WalkRules
from snackwatch.desired import merge
from snackwatch.dirty import DirtySet, Mark
from snackwatch.reconcile import Status, reconcile_directory
from snackwatch.spec import Snack, Spec
from snackwatch.watch import HAVE_INOTIFY, Blocked, Watcher
from snackwatch.watch.inotify import InotifySource
from snackwatch.watch.storm import STORM_MUTE, STORM_SCAN, StormPolicy

pytestmark = pytest.mark.skipif(not (IS_LINUX and HAVE_INOTIFY), reason="inotify is Linux only")

CHURN = """
import os, signal, sys, time
pantry, seconds = sys.argv[1], float(sys.argv[2])
end, i, stop = time.monotonic() + seconds, 0, []
signal.signal(signal.SIGINT, lambda *_: stop.append(True))  # the test has seen what it needed: finish a round
print("churning", flush=True)
while time.monotonic() < end and not stop:
    path = f"{pantry}/junk{i % 50}"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    os.utime(path)
    os.unlink(path)
    i += 1
print(i)
"""


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Watcher, DirtySet, Path]]:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    watcher.track({str(pantry): frozenset({"Goldfish", "drinks"})})
    watcher.arm([str(pantry)], [])
    yield watcher, dirty, pantry
    watcher.close()
    dirty.close()


def test_removals_of_unrelated_names_are_dropped_in_the_read_loop(watched: tuple[Watcher, DirtySet, Path]) -> None:
    watcher, dirty, pantry = watched
    for i in range(500):
        (pantry / f"junk{i}").touch()
        (pantry / f"junk{i}").unlink()
    assert watcher.read_events() is False  # only noise: nothing to repair
    batch = dirty.take()
    assert batch.names == set() and batch.scan == set() and batch.marks == set()  # nothing fails: no nudge
    assert watcher.noise_heard() == 500  # counted for read pacing
    watcher.watch_attributes(True)  # a repair fails: a removal may have freed space for it
    (pantry / "junk").touch()
    (pantry / "junk").unlink()
    assert watcher.read_events() is True and dirty.take().marks == {Mark.NUDGE}
    watcher.watch_attributes(False)
    (pantry / "Goldfish").touch()
    (pantry / "junk").touch()
    (pantry / "Goldfish").unlink()
    (pantry / "junk").unlink()
    assert watcher.read_events() is True
    assert dirty.take().names == {(str(pantry), "Goldfish")}


def test_our_own_temp_files_are_not_even_noise(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    watcher.track({str(pantry): frozenset({"Goldfish"})})
    watcher.track_specs({str(pantry): frozenset({"snacks.yaml"})})  # a pantry beside its spec: the slow path
    watcher.arm([str(pantry)], [str(pantry)])
    try:
        for i in range(20):  # what publishing a snack with content leaves behind: a temp file, then its unlink
            temp = pantry / f".snackwatch-1-{i:012x}.tmp"
            temp.write_text("x")
            temp.unlink()
        (pantry / "other.log").write_text("x")
        assert watcher.read_events() is False and dirty.take().marks == set()
        assert watcher.noise_heard() == 1  # other.log made (its writes are not heard); nothing of ours
    finally:
        watcher.close()
        dirty.close()


@needs_root_linux("gives the pantry to another user")
def test_a_pantry_the_ownership_rule_refuses_is_not_watched_so_its_churn_costs_nothing(tmp_path: Path) -> None:
    """The watch opens a snack directory with creation's rules: another user's pantry (which creation refuses)
    gets no watch, so a storm in it wakes nothing (it once cost a blocked repair per event: 90 % of a core)."""
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    os.chown(theirs, 65534, 65534)
    rules = {str(d): WalkRules(owners=(0,), makers={}) for d in (theirs, ours)}
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify")
    try:
        armed = watcher.arm({str(d): str(d) for d in (theirs, ours)}, [], rules)
        assert list(armed.failures) == [str(theirs)] and isinstance(armed.failures[str(theirs)], Blocked)
        (theirs / "Goldfish").write_text("x")
        (theirs / "Goldfish").unlink()
        assert watcher.read_events() is False and dirty.take().marks == set()
        (ours / "Goldfish").write_text("x")
        (ours / "Goldfish").unlink()
        assert watcher.read_events() is True and (str(ours), "Goldfish") in dirty.take().names
    finally:
        watcher.close()
        dirty.close()


def test_saves_in_a_watched_parent_wake_nothing_and_a_replaced_pantry_is_still_heard(tmp_path: Path) -> None:
    """The pantry is a plain directory: its own watch hears it moved or removed, so its parent hears no saves."""
    home = tmp_path / "home"
    (home / "pantry").mkdir(parents=True)
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify")
    watcher.arm({str(home / "pantry"): str(home / "pantry")}, [])
    fd = watcher.fileno()
    assert fd is not None
    try:
        for i in range(10):  # an app saving its settings atomically beside the pantry
            (home / f".settings.{i}").write_text("x")
            (home / f".settings.{i}").chmod(0o600)
            (home / f".settings.{i}").rename(home / "settings.json")
        assert select.select([fd], [], [], 0) == ([], [], [])  # nothing queued: no wake-up at all
        assert watcher.read_events() is False and watcher.noise_heard() == 0
        (home / "new").mkdir()
        (home / "pantry").rename(home / "old")
        (home / "new").rename(home / "pantry")  # the pantry's name now leads to another directory
        assert watcher.read_events() is True and str(home / "pantry") in dirty.take().gone
    finally:
        watcher.close()
        dirty.close()


def test_attribute_changes_are_heard_only_while_something_fails(watched: tuple[Watcher, DirtySet, Path]) -> None:
    watcher, dirty, pantry = watched
    fd = watcher.fileno()
    assert fd is not None
    in_attrib = 0x4
    assert not inotify_mask(fd, pantry) & in_attrib  # a touch storm queues nothing
    for _ in range(100):
        os.utime(pantry)
    assert watcher.read_events() is False and dirty.take().marks == set()
    watcher.watch_attributes(True)  # a repair is failing: a chmod of the pantry may fix it
    assert inotify_mask(fd, pantry) & in_attrib
    pantry.chmod(0o755)
    watcher.read_events()
    assert Mark.NUDGE in dirty.take().marks
    watcher.watch_attributes(False)
    assert not inotify_mask(fd, pantry) & in_attrib


@needs_root_linux("plays another user with setpriv")
def test_another_users_churn_in_a_shared_pantry_hides_no_real_deletion(
    public_dir: Path, start_daemon: Callable[..., Running]
) -> None:
    spec_path = public_dir / "snacks.yaml"
    pantry = public_dir / "pantry"
    pantry.mkdir()
    pantry.chmod(0o1777)
    snacks = [f"snack{i}" for i in range(200)]
    write_spec(spec_path, snacks)
    running = start_daemon(spec_path)
    require_nobody_runs(code="pass")
    churn = subprocess.Popen([*AS_NOBODY, sys.executable, "-c", CHURN, str(pantry), "10"], stdout=subprocess.PIPE)
    assert churn.stdout is not None and churn.stdout.readline() == b"churning\n"  # it runs, as nobody
    restored = 0
    while churn.poll() is None and restored < 20:
        snack = pantry / snacks[restored * 7]
        snack.unlink()
        wait_until(snack.exists, 2.0, f"{snack.name} restored during the churn")
        restored += 1
    churn.send_signal(signal.SIGINT)  # 20 restores seen during the churn: it may stop (10 s at most)
    out, _ = churn.communicate(timeout=10)
    assert restored == 20 and int(out) > 0  # the churner really ran meanwhile (its pace is the machine's)
    assert sorted(os.listdir(pantry)) == sorted(snacks)
    assert all(not line.get("raw") and "junk" not in line["message"] for line in running.logs())
    assert [line for line in running.logs() if line["level"] not in ("INFO",)] == []


def test_a_name_removed_again_and_again_is_not_a_burst(watched: tuple[Watcher, DirtySet, Path]) -> None:
    watcher, dirty, pantry = watched
    for _ in range(200):  # one snack's place flipped: 200 events, one name
        (pantry / "Goldfish").touch()
        (pantry / "Goldfish").unlink()
    assert watcher.read_events() is True
    batch = dirty.take()
    assert batch.names == {(str(pantry), "Goldfish")} and batch.scan == set()


def test_only_the_specs_own_names_are_spec_changes(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "pantry").mkdir()
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify")
    watcher.track_specs({str(etc): frozenset({"snacks.yaml", "..data"})})
    watcher.arm([], [str(etc)])
    try:
        (etc / "pantry").chmod(0o700)  # the pantry next to the spec, touched by anyone who may
        (etc / "busy.log").write_text("x")
        assert watcher.read_events() is False
        assert dirty.take().marks == set()
        (etc / "snacks.yaml").write_text("x")
        watcher.read_events()
        assert Mark.SPEC in dirty.take().marks
    finally:
        watcher.close()
        dirty.close()


IN_DELETE = 0x200


def storm_after_100(watcher: Watcher) -> int:
    """The watcher's inotify source set to call 100 meaningless events a storm; its fd."""
    source = watcher._source
    assert isinstance(source, InotifySource)
    source.storm.policy = StormPolicy(noise=100)
    fd = watcher.fileno()
    assert fd is not None
    return fd


def test_a_storm_mutes_a_directorys_removals_and_scans_it_instead(
    watched: tuple[Watcher, DirtySet, Path],
) -> None:
    watcher, dirty, pantry = watched
    fd = storm_after_100(watcher)
    for i in range(300):
        (pantry / f"junk{i}").touch()
        (pantry / f"junk{i}").unlink()
    watcher.read_events()
    assert not inotify_mask(fd, pantry) & IN_DELETE  # the kernel queues no more removals from there
    now = time.monotonic()
    assert watcher.storm_scans(now) == {str(pantry)}  # scanned at once, then every STORM_SCAN
    assert watcher.storm_scans(now) == set()
    due = watcher.next_due()
    assert due is not None and due <= now + STORM_SCAN
    assert watcher.storm_scans(now + STORM_SCAN) == {str(pantry)}
    assert watcher.storm_scans(now + STORM_MUTE) == {str(pantry)}  # heard again, one last scan
    assert inotify_mask(fd, pantry) & IN_DELETE and watcher.next_due() is None
    (pantry / "Goldfish").touch()
    (pantry / "Goldfish").unlink()
    watcher.read_events()
    assert (str(pantry), "Goldfish") in dirty.take().names


def test_a_scan_leaves_snacks_in_backoff_to_their_schedule(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    desired = merge([Spec(tmp_path / "s.yaml", pantry, (Snack("Goldfish", 3), Snack("Popcorn", 4)))])
    outcomes = reconcile_directory(desired, str(pantry), held={str(pantry / "Goldfish")})
    assert [(o.entry.name, o.status) for o in outcomes] == [("Popcorn", Status.CREATED)]
    assert not (pantry / "Goldfish").exists()


def test_churn_in_the_pantrys_parent_is_muted_and_a_re_pointed_pantry_still_seen(
    watched: tuple[Watcher, DirtySet, Path], tmp_path: Path
) -> None:
    watcher, dirty, pantry = watched
    fd = storm_after_100(watcher)
    assert inotify_mask(fd, tmp_path) & IN_DELETE  # the parent hears names removed, "pantry" among them
    for i in range(300):  # another user's churn beside the pantry
        (tmp_path / f"junk{i}").touch()
        (tmp_path / f"junk{i}").unlink()
    assert watcher.read_events() is False and dirty.take().gone == set()  # noise: nothing to do
    assert not inotify_mask(fd, tmp_path) & IN_DELETE  # muted in the kernel: the churn costs nothing more
    pantry.rename(tmp_path / "old")  # meanwhile the pantry is re-created: heard by the parent's scan
    (tmp_path / "pantry").mkdir()
    watcher.read_events()
    dirty.take()
    now = time.monotonic()
    watcher.storm_scans(now + STORM_SCAN)
    assert str(pantry) in dirty.take().gone
    watcher.storm_scans(now + STORM_MUTE)  # the storm is over: heard event by event again
    assert inotify_mask(fd, tmp_path) & IN_DELETE


@needs_root_linux("plays another user's directory")
def test_a_watch_never_sits_where_the_safe_walk_refused_to_go(public_dir: Path) -> None:
    """Another user swaps `drinks/` for a symlink to a root-only directory: the walk refuses it, so no watch is
    added there, and what happens in the target is never heard (issue 21 item 6)."""
    pantry = public_dir / "pantry"
    pantry.mkdir(mode=0o1777)
    root_only = public_dir / "root-only"
    root_only.mkdir(mode=0o700)
    (root_only / "Juice").touch()
    os.symlink(root_only, pantry / "drinks")
    os.lchown(pantry / "drinks", 65534, 65534)  # planted by uid 65534 in the 1777 pantry
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    try:
        drinks = str(pantry / "drinks")
        watcher.track({drinks: frozenset({"Juice"}), str(pantry): frozenset({"drinks"})})
        armed = watcher.arm({str(pantry): str(pantry), drinks: str(pantry)}, [])
        assert "symlink" in str(armed.failures[drinks])  # refused, with what is in the way
        fd = watcher.fileno()
        assert fd is not None
        watched = {line for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines() if "inotify" in line}
        assert not any(f"ino:{root_only.stat().st_ino:x} " in line for line in watched)
        (root_only / "Juice").unlink()
        assert watcher.read_events() is False and dirty.take().names == set()
    finally:
        watcher.close()
        dirty.close()


def queued(fd: int) -> int:
    """Bytes of events the kernel still holds for an inotify fd (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def test_a_mass_deletions_first_buffer_is_repaired_before_the_rest_is_read(tmp_path: Path) -> None:
    """5,000 snacks deleted at once: the first wake-up reads one full buffer (a burst: its directory's scan makes
    every missing snack), the next reads on as before (up to 4 buffers), and every name is marked in the end."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.access("/dev/shm", os.W_OK) else tmp_path
    try:
        pantry = shm / "pantry"
        pantry.mkdir()
        names = [f"s{i:04d}" for i in range(5_000)]  # 16+16-byte events: 2,048 in a 64 KiB read
        dirty = DirtySet()
        watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
        try:
            watcher.track({str(pantry): frozenset(names)})
            watcher.arm([str(pantry)], [])
            for name in names:
                os.close(os.open(pantry / name, os.O_CREAT | os.O_WRONLY, 0o644))
            for name in names:
                os.unlink(pantry / name)
            fd = watcher.fileno()
            assert fd is not None
            assert watcher.read_events() is True
            first = dirty.take()
            assert first.scan == {str(pantry)} and queued(fd) >= 32 * len(names) - 65536  # one buffer read
            assert watcher.read_events() is True  # the burst goes on: no early end this time
            assert queued(fd) == 0
            second = dirty.take()
            assert second.scan == {str(pantry)} and second.names == set()
            assert watcher.read_events() is False  # nothing left
        finally:
            watcher.close()
            dirty.close()
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_a_queue_kept_full_never_holds_the_loop_in_one_read(tmp_path: Path) -> None:
    """An attacker who keeps the inotify queue full: one wake-up reads at most a few full buffers, then the turn
    runs (repairs, the storm guard's mute) before the rest is read."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.access("/dev/shm", os.W_OK) else tmp_path
    try:
        pantry = shm / "pantry"
        pantry.mkdir()
        dirty = DirtySet()
        watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
        try:
            watcher.track({str(pantry): frozenset({"Goldfish"})})
            watcher.arm([str(pantry)], [])
            for i in range(12_000):  # 12,000 removals of 16+16-byte events: more than 4 reads of 64 KiB hold
                os.close(os.open(pantry / f"junk-{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
                os.unlink(pantry / f"junk-{i:06d}")
            fd = watcher.fileno()
            assert fd is not None
            watcher.read_events()
            assert select.select([fd], [], [], 0)[0] == [fd]  # the rest waits for the next wake-up
        finally:
            watcher.close()
            dirty.close()
    finally:
        shutil.rmtree(shm, ignore_errors=True)
