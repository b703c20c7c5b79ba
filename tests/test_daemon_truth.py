"""The daemon tells the truth in every state: spec broken or fixed, dry run, first creations, debug logs."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Running, wait_until, write_spec

SEED = ["Goldfish", "FruitGummies", "StringCheese"]


def status_file(env: dict[str, str]) -> dict[str, Any] | None:
    """The daemon's status file (written at most every 0.2 s after a change), or None before the first write."""
    for path in Path(env["STATE_DIRECTORY"]).glob("*.status.json"):
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return None


def wait_status(env: dict[str, str], predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    return wait_until(lambda: (data := status_file(env)) is not None and predicate(data) and data, 3.0, what)


def test_a_fresh_pantry_is_created_not_repaired_and_the_start_line_comes_first(
    spec_path: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str]
) -> None:
    write_spec(spec_path, SEED)
    running = start_daemon(spec_path)
    running.wait_event("created")
    events = [line["event"] for line in running.logs()]
    assert events[:2] == ["start", "created"]
    assert running.events("created")[0]["snacks"] == SEED and running.events("restored") == []
    status = wait_status(daemon_env, lambda data: True, "the status file")
    assert status["status_line"] == "3/3 snacks ok, 0 repairs, 0 failing, 0 conflicts"
    assert status["counts"]["created"] == 3
    assert sorted(info["name"] for info in status["snacks"].values()) == sorted(SEED)  # every snack listed
    assert status["snacks_listed"] == "all" and status["pantries"] == [str(running.pantry)]
    assert status["dry_run"] is False and status["watcher"] == "inotify"
    (running.pantry / "Goldfish").unlink()
    restored = running.wait_event("restored")[0]
    assert restored["snacks"] == ["Goldfish"]
    wait_status(daemon_env, lambda data: data["counts"]["repairs"] == 1, "one repair counted")


def test_a_fixed_spec_is_ok_in_status_at_once_and_a_sighup_on_a_broken_one_says_why(
    spec_path: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str]
) -> None:
    write_spec(spec_path, SEED)
    good = spec_path.read_bytes()
    running = start_daemon(spec_path)
    spec_path.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - [Goldfish\n")  # a typo saved in the editor
    running.wait_event("spec_invalid")
    broken = wait_status(daemon_env, lambda data: not data["spec"]["ok"], "status to show the broken spec")
    assert "spec invalid" in broken["status_line"] and "last good spec in force" in broken["status_line"]
    running.proc.send_signal(signal.SIGHUP)  # systemctl reload: answered with the error, not "no change"
    running.wait_event("spec_invalid", count=2)
    assert running.events("reload") == []
    spec_path.write_bytes(good)  # fixed: back to the last good bytes
    running.wait_event("spec_ok")
    fixed = wait_status(daemon_env, lambda data: data["spec"]["ok"], "status to show the spec ok again")
    assert fixed["status_line"] == "3/3 snacks ok, 0 repairs, 0 failing, 0 conflicts"


def test_dry_run_on_a_missing_pantry_says_so_once_and_status_shows_the_snacks_missing(
    spec_path: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str]
) -> None:
    write_spec(spec_path, SEED)
    running = start_daemon(spec_path, "--dry-run")
    assert not running.pantry.exists()
    status = wait_status(daemon_env, lambda data: True, "the status file")
    assert status["dry_run"] is True and status["counts"]["missing"] == 3
    assert status["status_line"] == "0/3 snacks ok, 0 repairs, 0 failing, 0 conflicts, 3 missing (dry run)"
    assert {info["state"] for info in status["snacks"].values()} == {"missing"}
    told = [line["event"] for line in running.logs()]
    assert told.index("start") < told.index("would_create")  # what the first pass found comes after the start
    assert [line for line in running.logs() if line["level"] in ("ERROR", "WARNING")] == []
    assert len(running.events("would_create_directory")) == 1


def test_debug_logs_tell_each_batch_and_decision_and_info_does_not(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, SEED)
    debug = start_daemon(spec_path, "--log-level", "debug")
    (debug.pantry / "Goldfish").unlink()
    debug.wait_event("restored")
    batch = debug.wait_event("batch")[0]
    assert batch["level"] == "DEBUG" and f"{debug.pantry}/Goldfish" in batch["message"]
    repair = debug.wait_event("repair")[0]
    assert "targeted repair" in repair["message"] and "Goldfish" in repair["message"]
    assert debug.events("full_pass")[0]["message"].endswith(": start")
    write_spec(spec_path, SEED)  # the same bytes saved again: re-read, unchanged
    debug.wait_event("reread")
    debug.stop()
    info = start_daemon(spec_path)
    (info.pantry / "Goldfish").unlink()
    info.wait_event("restored")
    assert {line["level"] for line in info.logs()} == {"INFO"}
