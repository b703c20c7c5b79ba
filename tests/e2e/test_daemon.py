"""End to end: the real `snackwatch run` subprocess on tmp dirs with real inotify (and watchdog's Observer)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    IS_LINUX,
    POLL_FOREVER,
    Running,
    SnackEntry,
    blocked_without_timeout,
    daemon_environment,
    daemon_starter,
    wait_until,
    write_spec,
)

SEED: list[SnackEntry] = [
    "Goldfish",
    "FruitGummies",
    {"name": "StringCheese", "content": "mozzarella\n", "mode": "0640"},
]
# The smoke tests (the shared daemon's, and @both) run on our inotify path and on watchdog's platform Observer
# (what macOS gets); the rest on the default backend. The loop's logic itself is tested in-process (tests/loop/).
BACKENDS = ["inotify", "observer"] if IS_LINUX else ["observer"]
both = pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture
def backend() -> str:
    return BACKENDS[0]


@pytest.fixture
def seeded(spec_path: Path, start_daemon: Callable[..., Running], backend: str) -> Running:
    write_spec(spec_path, SEED)
    running = start_daemon(spec_path, "--watcher", backend)
    assert sorted(os.listdir(running.pantry)) == ["FruitGummies", "Goldfish", "StringCheese"]
    return running


# --- one seeded daemon per backend, shared by the tests that leave it as they found it ------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def shared_daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A seeded daemon started once per backend: a start costs ~0.2 s, and these tests only remove snacks and
    wait for the line of every repair they cause, so each begins with a quiet daemon and a full pantry."""
    base = tmp_path_factory.mktemp(f"shared-{request.param}")
    spec = base / "config" / "snacks.yaml"
    spec.parent.mkdir()
    write_spec(spec, SEED)
    with daemon_starter(base, daemon_environment(base)) as start:
        running = start(spec, "--watcher", request.param)
        assert f"watcher {request.param}" in running.events("start")[0]["message"]
        yield running


@pytest.fixture
def shared(shared_daemon: Running) -> Iterator[Running]:
    """The shared daemon, checked after each test to be as the test found it (so a culprit fails, not its heir)."""
    yield shared_daemon
    assert shared_daemon.proc.poll() is None
    assert sorted(os.listdir(shared_daemon.pantry)) == ["FruitGummies", "Goldfish", "StringCheese"]
    assert (shared_daemon.pantry / "StringCheese").read_text() == "mozzarella\n"


def repairs(running: Running) -> int:
    """The repairs the shared daemon's status file counts (its state directory is beside its log)."""
    status = next((running.log_path.parent / "state").glob("*.status.json"))
    return int(json.loads(status.read_text())["counts"]["repairs"])


def wait_repairs(running: Running, count: int) -> None:
    """Wait until the daemon counts `count` repairs: it has then logged every line about them (a test waits
    for every repair it caused, so the next one starts with a quiet daemon; quick repeats are not each logged)."""
    wait_until(lambda: repairs(running) >= count, 2.0, f"{count} repairs counted")


def test_start_creates_the_seed_snacks_and_says_so(shared: Running) -> None:
    assert (shared.pantry / "StringCheese").read_text() == "mozzarella\n"
    assert "3 snacks" in shared.events("start")[0]["message"]  # and the backend asked for (shared_daemon)
    assert shared.events("created")[0]["snacks"] == ["Goldfish", "FruitGummies", "StringCheese"]


def test_deleted_snack_is_restored_with_one_log_line(shared: Running) -> None:
    before = len(shared.logs())
    (shared.pantry / "Goldfish").unlink()
    wait_until(lambda: (shared.pantry / "Goldfish").exists(), 2.0, "Goldfish restored")
    lines = wait_until(lambda: shared.logs()[before:], 2.0, "a log line")
    assert [entry["message"] for entry in lines] == ["restored Goldfish"]


def test_snack_moved_away_comes_back_well_below_watchdogs_half_second(shared: Running, tmp_path: Path) -> None:
    """watchdog holds IN_MOVED_FROM ~0.5 s to pair moves; neither of our paths may wait for that."""
    before = repairs(shared)
    elapsed = []
    for attempt in range(5):
        started = time.monotonic()
        os.rename(shared.pantry / "FruitGummies", tmp_path / f"moved-{attempt}")
        wait_until(lambda: (shared.pantry / "FruitGummies").exists(), 2.0, "FruitGummies back")
        elapsed.append(time.monotonic() - started)
    assert sorted(elapsed)[2] < 0.2, elapsed  # median far below 0.5 s (typically ~1 ms)
    assert (tmp_path / "moved-0").exists()  # the moved file itself is untouched
    wait_repairs(shared, before + 5)


def test_content_is_written_only_on_creation(shared: Running) -> None:
    before = repairs(shared)
    cheese = shared.pantry / "StringCheese"
    cheese.write_text("cheddar")
    (shared.pantry / "Goldfish").unlink()
    wait_until(lambda: (shared.pantry / "Goldfish").exists(), 2.0, "Goldfish restored")
    assert cheese.read_text() == "cheddar"
    cheese.unlink()
    wait_until(lambda: cheese.exists(), 2.0, "StringCheese restored")
    assert cheese.read_text() == "mozzarella\n"
    assert oct(cheese.stat().st_mode & 0o7777) == oct(0o640)
    wait_repairs(shared, before + 2)


def test_unrelated_files_are_ignored(shared: Running) -> None:
    before = len(shared.logs())
    for index in range(20):
        (shared.pantry / f"note-{index}").write_text("x")
        (shared.pantry / f"note-{index}").unlink()
    (shared.pantry / "Goldfish").unlink()  # a marker event after the noise
    wait_until(lambda: len(shared.logs()) > before, 2.0, "restore logged")
    assert [entry["message"] for entry in shared.logs()[before:]] == ["restored Goldfish"]
    assert not any(name.startswith("note-") for name in os.listdir(shared.pantry))


def test_sighup_rereads_the_spec(shared: Running) -> None:
    before = len(shared.logs())
    shared.proc.send_signal(signal.SIGHUP)
    reload = wait_until(lambda: [e for e in shared.logs()[before:] if e.get("event") == "reload"], 2.0, "reload")
    assert "no change" in reload[0]["message"]


# --- a daemon of its own per test ----------------------------------------------------------------------------


@both
def test_idle_daemon_logs_nothing(seeded: Running) -> None:
    """Idle is silent and free: no periodic line (the seed logged every 5 s) and no timer at all, which the
    kernel shows as the main thread sleeping in poll(2) without a timeout (bench: 10 s idle, 0 wakeups; the
    parts' next_due() is None when idle: tests/loop). A daemon of its own: after a targeted repair the held
    directory is released HOLD_IDLE (2 s) later, one wake-up (tests/loop/test_loop_held.py)."""
    before = len(seeded.logs())
    if POLL_FOREVER:
        wait_until(lambda: blocked_without_timeout(seeded.proc.pid), 3.0, "the loop asleep in poll(2), no timeout")
    time.sleep(0.3)  # an idle window, not a wait for a condition: nothing may happen in it
    assert len(seeded.logs()) == before
    assert not POLL_FOREVER or blocked_without_timeout(seeded.proc.pid)


def save_by_rename(spec: Path, text: str) -> None:
    temp = spec.with_name(".snacks.yaml.swp")
    temp.write_text(text)
    os.rename(temp, spec)


def save_in_place(spec: Path, text: str) -> None:
    with open(spec, "r+") as stream:  # truncate + write, seen at close
        stream.truncate(0)
        stream.write(text)


def save_with_sed(spec: Path, text: str) -> None:
    old = spec.read_text()
    last = old.rstrip("\n").splitlines()[-1]
    added = text[len(old) :].strip("\n")
    subprocess.run(["sed", "-i", f"$a\\{added}", str(spec)], check=True)
    assert spec.read_text().rstrip("\n").endswith(added) and last in spec.read_text()


@pytest.mark.parametrize(
    ("backend", "save"),
    [(BACKENDS[0], save_by_rename), (BACKENDS[0], save_in_place), (BACKENDS[0], save_with_sed)]
    + [(backend, save_in_place) for backend in BACKENDS[1:]],  # the close of an in-place write, on the Observer
)
def test_spec_edits_apply_live(seeded: Running, spec_path: Path, save: Callable[[Path, str], None]) -> None:
    save(spec_path, spec_path.read_text() + "  - Pretzels\n")
    wait_until(lambda: (seeded.pantry / "Pretzels").exists(), 2.0, "Pretzels created")
    reload = seeded.wait_event("reload")[0]
    assert reload["added"] == ["Pretzels"] and "+Pretzels" in reload["message"]


def test_spec_replaced_with_mv_and_removed_snack_stays_on_disk(seeded: Running, spec_path: Path) -> None:
    other = spec_path.parent.parent / "new.yaml"
    write_spec(other, ["Goldfish", "Popcorn"])
    subprocess.run(["mv", str(other), str(spec_path)], check=True)
    wait_until(lambda: (seeded.pantry / "Popcorn").exists(), 2.0, "Popcorn created")
    reload = seeded.wait_event("reload")[0]
    assert reload["removed"] == ["FruitGummies", "StringCheese"]
    assert (seeded.pantry / "FruitGummies").exists()  # removing from the spec never deletes
    (seeded.pantry / "FruitGummies").unlink()
    (seeded.pantry / "Goldfish").unlink()
    wait_until(lambda: (seeded.pantry / "Goldfish").exists(), 2.0, "Goldfish restored")
    assert not (seeded.pantry / "FruitGummies").exists()  # no longer desired, not restored


def test_invalid_spec_keeps_the_last_good_one_and_logs_one_error(seeded: Running, spec_path: Path) -> None:
    good = spec_path.read_text()
    save_by_rename(spec_path, good + "  - Pretzels\n  - bad: [\n")
    error = seeded.wait_event("spec_invalid")[0]
    assert error["level"] == "ERROR" and f"{spec_path}:" in error["message"]
    assert "keeping the last good spec (3 snacks)" in error["message"]
    save_in_place(spec_path, good + "  - Pretzels\n  - bad: [\n")  # the same error again: not logged again
    (seeded.pantry / "Goldfish").unlink()  # the last good spec is still in force
    wait_until(lambda: (seeded.pantry / "Goldfish").exists(), 2.0, "Goldfish restored")
    assert not (seeded.pantry / "Pretzels").exists()
    save_by_rename(spec_path, "")  # an empty spec is an error, not "zero snacks"
    wait_until(lambda: len(seeded.events("spec_invalid")) == 2, 2.0, "empty spec error")
    assert ":1: spec is empty" in seeded.events("spec_invalid")[1]["message"]
    save_by_rename(spec_path, good + "  - Pretzels\n")
    wait_until(lambda: (seeded.pantry / "Pretzels").exists(), 2.0, "next good save applied")
    assert len(seeded.events("spec_invalid")) == 2
    assert seeded.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_exit_zero_quickly_without_traceback(seeded: Running, sig: int) -> None:
    started = time.monotonic()
    assert seeded.stop(sig) == 0
    assert time.monotonic() - started < 1.0
    text = seeded.log_path.read_text()
    assert "Traceback" not in text
    assert seeded.events("stop")


def test_json_logs_are_one_object_per_line(seeded: Running) -> None:
    (seeded.pantry / "Goldfish").unlink()
    wait_until(lambda: seeded.events("restored"), 2.0, "a restore")
    seeded.stop()
    entries = seeded.logs()
    assert entries and not any(entry.get("raw") for entry in entries)
    assert {"time", "level", "message"} <= set(entries[0])


@both
def test_pantry_removed_is_recreated(seeded: Running) -> None:
    shutil.rmtree(seeded.pantry, ignore_errors=True)
    wait_until(
        lambda: (
            sorted(os.listdir(seeded.pantry)) == ["FruitGummies", "Goldfish", "StringCheese"]
            if seeded.pantry.is_dir()
            else None
        ),
        3.0,
        "pantry restored",
    )
    (seeded.pantry / "Goldfish").unlink()  # watches were re-armed on the new directory
    wait_until(lambda: (seeded.pantry / "Goldfish").exists(), 2.0, "Goldfish restored in new pantry")


def test_dry_run_only_logs(spec_path: Path, start_daemon: Callable[..., Running]) -> None:
    write_spec(spec_path, ["Goldfish"])
    (spec_path.parent / "pantry").mkdir()
    running = start_daemon(spec_path, "--dry-run")
    assert running.events("would_create")[0]["snacks"] == ["Goldfish"]
    assert os.listdir(running.pantry) == []


def test_polling_backend_restores_too(spec_path: Path, start_daemon: Callable[..., Running]) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path, "--polling", "--poll-interval", "0.1")  # not the default 1 s wait per look
    assert "watcher polling" in running.events("start")[0]["message"]
    (running.pantry / "Goldfish").unlink()
    wait_until(lambda: (running.pantry / "Goldfish").exists(), 4.0, "Goldfish restored by polling")
