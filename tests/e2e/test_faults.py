"""Real faults against the real daemon: full disks, no permission, read-only mounts, fights, overflow, lost watches."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import IS_LINUX, Running, needs_root_linux, wait_until, write_spec

from snackwatch.lock import SpecLock

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
pytestmark = pytest.mark.skipif(not IS_LINUX, reason="fault injection uses Linux mounts, sysctls and /proc")


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "snackwatch-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[None]:
    knob = Path("/proc/sys") / name.replace(".", "/")
    original = knob.read_text()
    knob.write_text(f"{value}\n")
    try:
        yield
    finally:
        knob.write_text(original)


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of `pid`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def resources(pid: int) -> dict[str, int]:
    """Threads, open fds and inotify watches held by `pid`."""
    fds = list(Path(f"/proc/{pid}/fd").iterdir())
    watches = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) == "anon_inode:inotify":
                info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                watches += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return {"threads": len(list(Path(f"/proc/{pid}/task").iterdir())), "fds": len(fds), "watches": watches}


def lines_about(running: Running, name: str, since: int = 0) -> list[dict[str, object]]:
    return [
        entry
        for entry in running.logs()[since:]
        if name in str(entry.get("message")) or name == entry.get("snack") or name in list(entry.get("snacks", []))
    ]


# --- failing repairs: backoff, bounded logs, instant recovery ---------------------------------------


@needs_root_linux("mounts a tiny tmpfs")
def test_disk_full_backs_off_then_recovers_when_space_is_freed(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """A real ENOSPC on a real tiny tmpfs; the retry schedule and its one line are checked on an injected clock
    (tests/loop/test_loop_faults.py), so the window here is short."""
    pantry = spec_path.parent / "pantry"
    with tmpfs(pantry, "size=64k,nr_inodes=8"):
        fillers = []
        with contextlib.suppress(OSError):
            for index in range(100):
                (pantry / f"filler-{index}").touch()
                fillers.append(pantry / f"filler-{index}")
        write_spec(spec_path, ["Goldfish"])
        running = start_daemon(spec_path)
        failing = running.wait_event("failing")[0]
        assert failing["snacks"] == ["Goldfish"] and "No space left on device" in failing["message"]
        start_ticks = cpu_ticks(running.proc.pid)
        window_start = time.monotonic()
        time.sleep(0.5)  # a fault window: the first retries (0.02, 0.22, 0.42 s) go on in it, quiet and cheap
        ticks = cpu_ticks(running.proc.pid) - start_ticks
        assert len(lines_about(running, "Goldfish")) == 1  # one line when it starts failing, none per retry
        assert ticks / CLOCK_TICKS < 0.1 * (time.monotonic() - window_start)
        before = time.monotonic()
        fillers[0].unlink()  # freeing space in the pantry retries at once
        wait_until((pantry / "Goldfish").exists, 1.0, "Goldfish back within 1 s of freeing space")
        assert time.monotonic() - before < 1.0
        assert running.wait_event("recovered")[0]["snacks"] == ["Goldfish"]
        running.stop()


@needs_root_linux("drops capabilities to act as an unprivileged process")
def test_permission_denied_backs_off_then_recovers_when_permissions_change(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """The daemon runs as uid 0 with every capability dropped (setpriv): a real unprivileged process that
    can still reach the interpreter under /root. The pantry is root's but 0555, and without CAP_DAC_OVERRIDE root
    obeys it: EACCES. (A pantry another user owns is refused as a conflict before any create: test_kinds.py.)"""
    pantry = spec_path.parent / "pantry"
    pantry.mkdir()
    pantry.chmod(0o555)
    write_spec(spec_path, ["Goldfish", "FruitGummies"])
    no_caps = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
    running = start_daemon(spec_path, prefix=no_caps)
    failing = running.wait_event("failing")[0]
    assert failing["snacks"] == ["Goldfish", "FruitGummies"] and "Permission denied" in failing["message"]
    status = Path(f"/proc/{running.proc.pid}/status").read_text()
    assert "CapEff:\t0000000000000000" in status
    before = time.monotonic()
    pantry.chmod(0o777)  # the pantry's permissions change: retry at once
    wait_until(lambda: (pantry / "Goldfish").exists() and (pantry / "FruitGummies").exists(), 1.0, "snacks back")
    assert time.monotonic() - before < 1.0
    running.wait_event("recovered")


@needs_root_linux("remounts a tmpfs read-only")
def test_read_only_filesystem_recovers_when_remounted_read_write(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    pantry = spec_path.parent / "pantry"
    with tmpfs(pantry, "size=1m"):
        subprocess.run(["mount", "-o", "remount,ro", str(pantry)], check=True)
        write_spec(spec_path, ["Goldfish"])
        running = start_daemon(spec_path)
        failing = running.wait_event("failing")[0]
        assert "Read-only file system" in failing["message"]
        before = time.monotonic()
        subprocess.run(["mount", "-o", "remount,rw", str(pantry)], check=True)
        wait_until((pantry / "Goldfish").exists, 1.0, "Goldfish back after remount rw")
        assert time.monotonic() - before < 1.0
        running.wait_event("recovered")
        running.stop()


# --- fights ---------------------------------------------------------------------------------------

FIGHTER = """
import os, sys, time
path, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
"""


def test_fight_is_noticed_once_and_backed_off(spec_path: Path, start_daemon: Callable[..., Running]) -> None:
    """A real process deleting in a tight loop: the daemon notices once and backs off, at a small CPU cost. The
    snack back after the fight, the fight over, the rules: tests/loop/test_loop_faults.py and test_ledger.py."""
    write_spec(spec_path, ["Goldfish", "FruitGummies"])
    running = start_daemon(spec_path)
    goldfish = running.pantry / "Goldfish"
    since = len(running.logs())
    start_ticks = cpu_ticks(running.proc.pid)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", FIGHTER, str(goldfish), "0.6"], check=True)
    elapsed = time.monotonic() - started
    cpu_share = (cpu_ticks(running.proc.pid) - start_ticks) / CLOCK_TICKS / elapsed
    fight_lines = lines_about(running, "Goldfish", since)
    assert cpu_share < 0.20, f"daemon used {cpu_share:.0%} of a core during the fight"
    assert len(fight_lines) <= 10, fight_lines
    warnings = running.events("fight")
    assert len(warnings) == 1 and warnings[0]["snacks"] == ["Goldfish"]
    assert "something else keeps deleting it" in warnings[0]["message"]
    (running.pantry / "FruitGummies").unlink()  # the other snack was never held back
    wait_until((running.pantry / "FruitGummies").exists, 1.0, "FruitGummies restored")


# --- overflow, lost directories, leaks ------------------------------------------------------------


@needs_root_linux("lowers /proc/sys/fs/inotify/max_queued_events")
@pytest.mark.parametrize("backend", ["inotify", "observer"])
def test_queue_overflow_leads_to_a_full_resync(
    spec_path: Path, start_daemon: Callable[..., Running], backend: str
) -> None:
    names = [f"snack-{index:04d}" for index in range(300)]
    write_spec(spec_path, names)
    with sysctl("fs.inotify.max_queued_events", 64):  # applies to inotify instances created from now on
        running = start_daemon(spec_path, "--watcher", backend)
    pantry = running.pantry
    os.kill(running.proc.pid, signal.SIGSTOP)  # frozen: 300 removals cannot fit in a queue of 64, whatever the load
    try:
        for name in names:
            (pantry / name).unlink()
    finally:
        os.kill(running.proc.pid, signal.SIGCONT)
    wait_until(lambda: all((pantry / name).exists() for name in names), 10.0, "all 300 snacks back")
    assert len(os.listdir(pantry)) == 300
    overflow = running.wait_event("overflow")
    assert len(overflow) == 1 and "full resync" in overflow[0]["message"]


def remove_pantry_once(pantry: Path, how: str, graveyard: Path, daemon_pid: int) -> None:
    if how == "move":
        pantry.rename(graveyard / f"moved-{time.monotonic_ns()}")
        return
    # rm -rf while the daemon is frozen: otherwise its restores race rm's unlinks, rmdir fails with
    # ENOTEMPTY, and a retrying rm becomes a fighter. Thawed, it finds the queued events of a finished rm -rf.
    os.kill(daemon_pid, signal.SIGSTOP)
    try:
        shutil.rmtree(pantry)
    finally:
        os.kill(daemon_pid, signal.SIGCONT)


def test_pantry_removed_or_moved_20_times_without_leaks(
    spec_path: Path, start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    snacks = ["Goldfish", "FruitGummies", "StringCheese"]
    write_spec(spec_path, snacks)
    running = start_daemon(spec_path)
    pantry = running.pantry
    graveyard = tmp_path / "graveyard"
    graveyard.mkdir()
    (pantry / "Goldfish").unlink()  # a targeted repair holds the pantry (held.py: its fd, a guard, its watches)
    wait_until((pantry / "Goldfish").exists, 2.0, "Goldfish restored")
    baseline = resources(running.proc.pid)
    for round_ in range(20):
        remove_pantry_once(pantry, "move" if round_ % 2 else "rm", graveyard, running.proc.pid)
        wait_until(
            lambda: pantry.is_dir() and sorted(os.listdir(pantry)) == sorted(snacks), 3.0, f"pantry back ({round_})"
        )
        (pantry / "Goldfish").unlink()  # proves the watch was re-armed on the new directory
        wait_until((pantry / "Goldfish").exists, 2.0, f"Goldfish restored after re-arm ({round_})")
    after = resources(running.proc.pid)
    if after != baseline:  # any mount change on the machine (other tests mount) drops the held set: hold it again
        (pantry / "Goldfish").unlink()
        wait_until((pantry / "Goldfish").exists, 2.0, "Goldfish restored")
        after = resources(running.proc.pid)
    assert after == baseline
    assert len(running.events("pantry_gone")) == 20  # one line per removal
    assert running.proc.poll() is None


# --- the spec file ---------------------------------------------------------------------------------


def test_spec_deleted_keeps_last_good_and_is_picked_up_again(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path)
    spec_path.unlink()
    warning = running.wait_event("spec_missing")[0]
    assert warning["level"] == "WARNING" and "keeping the last good spec (1 snacks)" in warning["message"]
    (running.pantry / "Goldfish").unlink()
    wait_until((running.pantry / "Goldfish").exists, 2.0, "Goldfish restored from the last good spec")
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    wait_until((running.pantry / "Popcorn").exists, 2.0, "spec picked up when it came back")
    assert len(running.events("spec_missing")) == 1


def test_configmap_style_symlink_swap_reloads(tmp_path: Path, start_daemon: Callable[..., Running]) -> None:
    """Kubernetes mounts a ConfigMap as snacks.yaml -> ..data/snacks.yaml, ..data -> ..<timestamp>/; an update
    writes a new timestamped dir and renames a new ..data symlink over the old one."""
    config = tmp_path / "configmap"
    config.mkdir()

    def publish(version: int, snacks: list[str]) -> None:
        data = config / f"..2026_11_25_{version}"
        data.mkdir()
        write_spec(data / "snacks.yaml", snacks, pantry=str(tmp_path / "pantry"))
        (config / "..data_tmp").symlink_to(data.name)
        os.rename(config / "..data_tmp", config / "..data")

    publish(1, ["Goldfish"])
    (config / "snacks.yaml").symlink_to("..data/snacks.yaml")
    running = start_daemon(config / "snacks.yaml")
    publish(2, ["Goldfish", "Popcorn"])
    wait_until((tmp_path / "pantry" / "Popcorn").exists, 2.0, "Popcorn created after the swap")
    assert running.wait_event("reload")[0]["added"] == ["Popcorn"]


def billion_laughs() -> str:
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"lol{i}: &lol{i} [" + ",".join([f"*lol{i - 1}"] * 10) + "]" for i in range(1, 12)]
    return "\n".join(lines) + "\npantry: ./pantry\nsnacks: *lol11\n"


BAD_SPECS: dict[str, Callable[[Path], object]] = {
    "typo": lambda path: path.write_text("pantry: ./pantry\nsnacks:\n  - Goldfish\n snacks: x\n"),
    "zero bytes": lambda path: path.write_text(""),
    "half written": lambda path: path.write_text('pantry: ./pantry\nsnacks:\n  - name: "Gold'),
    "billion laughs": lambda path: path.write_text(billion_laughs()),
    "100 MB": lambda path: os.truncate(path, 100 * 1024 * 1024),
}


# `snackwatch check`, then the peak RSS of its own memory (VmHWM: not the forking test process's, which a child's
# ru_maxrss inherits) on a last stderr line.
CHECK_AND_PEAK = """
import sys
from snackwatch.cli import main
try:
    code = main(sys.argv[1:])
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(peak.split()[1], file=sys.stderr)
raise SystemExit(code)
"""


@pytest.mark.parametrize("kind", list(BAD_SPECS))
def test_check_rejects_bad_specs_quickly_with_bounded_memory(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.touch()
    BAD_SPECS[kind](spec)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHECK_AND_PEAK, "check", "-c", str(spec)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert time.monotonic() - started < 5.0
    *said, peak = done.stderr.splitlines()
    assert int(peak) < 80 * 1024, f"{peak} KiB"  # the 100 MB file is never read whole
    assert said and all(line.startswith(f"snackwatch: {spec}:") for line in said) and "Traceback" not in done.stderr
    if kind == "billion laughs":  # each unknown key is named, and the alias is refused, never expanded
        assert "YAML anchors/aliases are not allowed" in done.stderr
    else:
        assert len(said) == 1


def test_running_daemon_survives_every_bad_spec(spec_path: Path, start_daemon: Callable[..., Running]) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path)
    for count, (kind, write) in enumerate(BAD_SPECS.items(), start=1):
        temp = spec_path.with_name(".bad.tmp")
        temp.touch()
        write(temp)
        temp.rename(spec_path)
        errors = running.wait_event("spec_invalid", count=count)
        assert "keeping the last good spec (1 snacks)" in errors[-1]["message"], kind
        (running.pantry / "Goldfish").unlink()
        wait_until((running.pantry / "Goldfish").exists, 2.0, f"Goldfish restored under the last good spec ({kind})")
    assert len(running.events("spec_invalid")) == len(BAD_SPECS)
    assert running.proc.poll() is None
    assert "Traceback" not in running.log_path.read_text()


# --- symlinks and directories in a snack's place ---------------------------------------------------


def test_symlinks_and_directories_in_a_snacks_place_are_conflicts(
    spec_path: Path, start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    write_spec(spec_path, ["Goldfish", {"name": "StringCheese", "content": "mozzarella\n"}, "Pretzels"])
    running = start_daemon(spec_path)
    pantry = running.pantry
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    dangling = tmp_path / "nowhere"

    def plant_symlink(name: str, target: Path) -> None:
        temp = pantry / f"plant-{name}"
        temp.symlink_to(target)
        os.rename(temp, pantry / name)  # atomically replaces the snack

    plant_symlink("Goldfish", dangling)
    plant_symlink("StringCheese", victim)
    shutil.rmtree(pantry / "Pretzels", ignore_errors=True)
    (pantry / "Pretzels").unlink()
    with contextlib.suppress(FileExistsError):
        (pantry / "Pretzels").mkdir()  # may lose the race to the restore: then it is a file, as it should be
    expected = {"Goldfish", "StringCheese"} | ({"Pretzels"} if (pantry / "Pretzels").is_dir() else set())
    wait_until(lambda: {e["snacks"][0] for e in running.events("conflict")} >= expected, 2.0, "conflicts reported")
    conflicts = {entry["snacks"][0]: entry["message"] for entry in running.events("conflict")}
    assert "a symlink stands where snack Goldfish should be" in conflicts["Goldfish"]
    assert "a symlink stands where snack StringCheese should be" in conflicts["StringCheese"]
    assert not dangling.exists() and victim.read_text() == "keep me"
    assert (pantry / "Goldfish").is_symlink()  # never removed either
    running.proc.send_signal(signal.SIGHUP)  # a full pass does not report the same conflicts again
    running.wait_event("reload")
    assert len(running.events("conflict")) == len(conflicts)


# --- one daemon per spec, watch limits --------------------------------------------------------------


def test_second_instance_exits_1_and_lock_survives_sigkill(
    spec_path: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    first = start_daemon(spec_path)
    second = start_daemon(spec_path, wait=False)
    assert second.proc.wait(10) == 1
    assert f"already running (pid {first.proc.pid})" in second.log_path.read_text()
    first.stop(signal.SIGKILL)
    third = start_daemon(spec_path)  # flock died with the process
    assert third.stop() == 0
    monkeypatch.setenv("RUNTIME_DIRECTORY", daemon_env["RUNTIME_DIRECTORY"])
    SpecLock(spec_path).release()  # and is released on a clean exit: the lock a daemon's start takes is free


@needs_root_linux("lowers the inotify sysctls")
@pytest.mark.parametrize("knob", ["fs.inotify.max_user_instances", "fs.inotify.max_user_watches"])
def test_inotify_limits_fall_back_to_polling(spec_path: Path, start_daemon: Callable[..., Running], knob: str) -> None:
    write_spec(spec_path, ["Goldfish"])
    with sysctl(knob, 0):
        running = start_daemon(spec_path, "--poll-interval", "0.1")  # the fallback's interval too
    assert "watcher polling" in running.events("start")[0]["message"]
    warnings = [entry for entry in running.logs() if "falling back to polling every 0.1 s" in entry["message"]]
    assert len(warnings) == 1 and warnings[0]["level"] == "WARNING"
    if knob == "fs.inotify.max_user_watches":  # the fallback made mid-arm: its polling really restores
        (running.pantry / "Goldfish").unlink()
        wait_until((running.pantry / "Goldfish").exists, 3.0, "restored by polling")
