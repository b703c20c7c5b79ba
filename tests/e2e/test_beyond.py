"""Status, why, guarded pruning, conf.d spec directories and nested snacks, against the real daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, wait_until, write_spec

from snackwatch.cli import main


@pytest.fixture
def cli(
    daemon_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The snackwatch CLI in-process (a few ms a call, not an interpreter's start), with the runtime and state
    directories of the daemon under test."""
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.setenv(name, daemon_env[name])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


# --- status and why --------------------------------------------------------------------------------


def test_status_reports_each_snack_and_exits_3_without_a_daemon(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    write_spec(spec_path, ["Goldfish", "FruitGummies", "StringCheese"])
    assert cli("status", "-c", str(spec_path)).returncode == 3
    running = start_daemon(spec_path)
    (running.pantry / "Goldfish").unlink()
    wait_until((running.pantry / "Goldfish").exists, 2.0, "Goldfish restored")
    os.kill(running.proc.pid, signal.SIGSTOP)  # swap the file for a directory before the daemon looks
    try:
        (running.pantry / "FruitGummies").unlink()
        (running.pantry / "FruitGummies").mkdir()
    finally:
        os.kill(running.proc.pid, signal.SIGCONT)

    def status_json() -> dict[str, Any] | None:
        result = cli("status", "--json", "-c", str(spec_path))
        data: dict[str, Any] | None = json.loads(result.stdout) if result.returncode == 0 else None
        return data if data and data["counts"]["conflicts"] == 1 else None

    data = wait_until(status_json, 3.0, "status with the conflict")
    counts = {key: data["counts"][key] for key in ("snacks", "ok", "failing", "conflicts")}
    assert counts == {"snacks": 3, "ok": 2, "failing": 0, "conflicts": 1}  # repairs vs creations: test_ledger
    snacks = data["snacks"]
    goldfish = snacks[str(running.pantry / "Goldfish")]
    assert goldfish["repairs"] == 1 and goldfish["trigger"] == "deleted or moved away"  # creation at start: no story
    assert snacks[str(running.pantry / "FruitGummies")]["state"] == "conflict"
    table = cli("status", "-c", str(spec_path))
    assert table.returncode == 0
    assert "snackwatch running (pid" in table.stdout and "FruitGummies" in table.stdout
    assert "a directory is in its place" in table.stdout
    running.stop()
    assert cli("status", "-c", str(spec_path)).returncode == 3


def test_why_explains_a_snack_and_says_when_none_declares_it(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    write_spec(spec_path, ["Goldfish", "FruitGummies"])
    running = start_daemon(spec_path)
    (running.pantry / "FruitGummies").unlink()
    wait_until((running.pantry / "FruitGummies").exists, 2.0, "restored")

    def explained() -> str | None:
        out = cli("why", "FruitGummies", "-c", str(spec_path)).stdout
        return out if "deleted or moved away" in out else None

    text = wait_until(explained, 3.0, "why with the last repair")
    assert f"declared at {spec_path}:5" in text
    assert "on disk: present" in text and "1 in all" in text
    unknown = cli("why", "Caviar", "-c", str(spec_path))
    assert unknown.returncode == 1 and "Caviar: no spec declares it" in unknown.stdout


def test_metrics_file_is_written_atomically_when_something_changes(
    spec_path: Path, start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    write_spec(spec_path, ["Goldfish"])
    metrics = tmp_path / "snackwatch.prom"
    running = start_daemon(spec_path, "--metrics-file", str(metrics))
    wait_until(metrics.exists, 2.0, "metrics file")
    (running.pantry / "Goldfish").unlink()
    labels = f'spec="{spec_path}",snack="Goldfish"'
    wait_until(lambda: f"snackwatch_repairs_total{{{labels}}} 1" in metrics.read_text(), 2.0, "repair count")
    text = metrics.read_text()
    assert f'snackwatch_spec_valid{{config="{spec_path}"}} 1' in text
    assert f"snackwatch_snack_failing{{{labels}}} 0" in text
    assert f'snackwatch_last_reconcile_timestamp_seconds{{config="{spec_path}"}}' in text
    written = metrics.stat().st_ino  # every write is a new file renamed into place
    # (no write at all when nothing changed: tests/loop/test_loop_status.py, on an injected clock)
    (running.pantry / "Goldfish").unlink()
    wait_until(lambda: f"snackwatch_repairs_total{{{labels}}} 2" in metrics.read_text(), 2.0, "second repair")
    assert metrics.stat().st_ino != written


# --- pruning ---------------------------------------------------------------------------------------


def test_prune_deletes_only_files_it_created_that_left_the_spec(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    pantry = spec_path.parent / "pantry"
    pantry.mkdir()
    (pantry / "Heirloom").write_text("mine, not snackwatch's")
    write_spec(spec_path, ["Goldfish", "FruitGummies", "StringCheese", "Heirloom", "Pretzels"], extra="prune: true\n")
    running = start_daemon(spec_path)
    (pantry / "user-tmp").write_text("user's own")  # replaced by the user (by rename: no moment without it)
    (pantry / "user-tmp").rename(pantry / "StringCheese")
    write_spec(spec_path, ["Goldfish", "Pretzels"], extra="prune: true\n")
    pruned = running.wait_event("pruned")[0]
    assert pruned["files"] == [str(pantry / "FruitGummies")]
    assert not (pantry / "FruitGummies").exists()
    assert (pantry / "Heirloom").read_text() == "mine, not snackwatch's"  # never created by snackwatch
    assert (pantry / "StringCheese").read_text() == "user's own"  # changed since: kept, and said so
    assert running.wait_event("prune_kept")[0]["files"] == [str(pantry / "StringCheese")]


def test_circuit_breaker_keeps_files_until_prune_yes(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    names = [f"snack-{index}" for index in range(8)]
    write_spec(spec_path, names, extra="prune: true\n")
    running = start_daemon(spec_path)
    pantry = running.pantry
    spec_path.write_text("pantry: ./pantry\nprune: true\nsnacks:\n  - snack-0\n  - bad: [\n")  # a typo
    running.wait_event("spec_invalid")
    write_spec(spec_path, [], extra="prune: true\n")  # valid, but would delete all 8
    warning = running.wait_event("prune_blocked")[0]
    assert warning["count"] == 8 and "snackwatch prune --yes" in warning["message"]
    assert sorted(os.listdir(pantry)) == names
    assert cli("prune", "-c", str(spec_path)).stdout.count("would prune") == 8
    result = cli("prune", "--yes", "-c", str(spec_path))
    assert result.returncode == 0 and f"pid {running.proc.pid}" in result.stdout
    wait_until(lambda: os.listdir(pantry) == [], 3.0, "pruned after confirmation")
    assert len(running.wait_event("pruned")[0]["files"]) == 8  # the line follows the unlinks


def test_prune_yes_without_a_daemon_prunes_directly(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    write_spec(spec_path, ["a", "b", "c", "d", "e"], extra="prune: true\n")
    running = start_daemon(spec_path)
    running.stop()
    write_spec(spec_path, [], extra="prune: true\n")
    result = cli("prune", "--yes", "-c", str(spec_path))
    assert result.returncode == 0 and result.stdout.count("pruned ") == 5
    assert os.listdir(running.pantry) == []


# --- several specs (conf.d) --------------------------------------------------------------------------


def test_a_directory_of_specs_is_watched_live(tmp_path: Path, start_daemon: Callable[..., Running]) -> None:
    confd = tmp_path / "snacks.d"
    confd.mkdir()
    write_spec(confd / "a.yaml", ["Goldfish"], pantry=str(tmp_path / "one"))
    write_spec(confd / "b.yaml", ["drinks/Juice"], pantry=str(tmp_path / "two"))
    (confd / "notes.txt").write_text("not a spec")
    running = start_daemon(confd)
    assert (tmp_path / "one" / "Goldfish").exists() and (tmp_path / "two" / "drinks" / "Juice").exists()
    write_spec(confd / "c.yaml", ["Popcorn"], pantry=str(tmp_path / "three"))
    wait_until((tmp_path / "three" / "Popcorn").exists, 2.0, "a spec added to the directory is picked up")
    (confd / "b.yaml").unlink()
    reload = wait_until(lambda: [e for e in running.events("reload") if "dropped b.yaml" in e["message"]], 2.0, "drop")
    assert reload[0]["removed"] == [str(tmp_path / "two" / "drinks" / "Juice")]
    assert (tmp_path / "two" / "drinks" / "Juice").exists()  # a removed spec's files stay
    (tmp_path / "one" / "Goldfish").unlink()
    wait_until((tmp_path / "one" / "Goldfish").exists, 2.0, "still keeping a.yaml's snacks")


def test_two_specs_claiming_one_file_is_an_error_naming_both_that_freezes_nothing_else(
    tmp_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    confd = tmp_path / "snacks.d"
    confd.mkdir()
    pantry = tmp_path / "pantry"
    write_spec(confd / "a.yaml", ["Goldfish"], pantry=str(pantry))
    running = start_daemon(confd)
    write_spec(confd / "b.yaml", ["Pretzels", "Goldfish"], pantry=str(pantry))
    error = running.wait_event("spec_invalid")[0]
    assert f"{confd / 'b.yaml'}:5: snack 'Goldfish'" in error["message"]
    assert f"is also declared at {confd / 'a.yaml'}:4" in error["message"]
    wait_until((pantry / "Pretzels").exists, 3.0, "b.yaml's other snacks applied")  # only the clash is held
    write_spec(confd / "a.yaml", ["Goldfish", "Popcorn"], pantry=str(pantry))  # the others' edits still apply
    wait_until((pantry / "Popcorn").exists, 3.0, "a.yaml's edit applied beside the clash")
    status = wait_until(
        lambda: (
            (data := json.loads(cli("status", "--json", "-c", str(confd)).stdout))["counts"]["snacks"] == 3 and data
        ),
        3.0,
        "the status file to catch up (it is written at most every 0.2 s)",
    )
    assert status["snacks"][str(pantry / "Goldfish")]["spec"] == str(confd / "a.yaml")  # first owner keeps it
    assert not status["spec"]["ok"] and "b.yaml:5" in status["spec"]["problems"][0]
    running.stop()
    result = cli("check", "-c", str(confd))
    assert result.returncode == 2 and "a.yaml:4" in result.stderr and "b.yaml:5" in result.stderr


# --- nested snacks -------------------------------------------------------------------------------------


def test_nested_snacks_directories_are_made_watched_and_rearmed(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, ["drinks/Juice", "drinks/cold/Soda", "Goldfish"])
    running = start_daemon(spec_path)
    drinks = running.pantry / "drinks"
    assert (drinks / "Juice").is_file() and (drinks / "cold" / "Soda").is_file()
    (drinks / "cold" / "Soda").unlink()
    wait_until((drinks / "cold" / "Soda").exists, 2.0, "nested snack restored")
    for _ in range(3):
        os.kill(running.proc.pid, signal.SIGSTOP)  # rm -rf drinks/ completes before the daemon looks
        try:
            shutil.rmtree(drinks)
        finally:
            os.kill(running.proc.pid, signal.SIGCONT)
        wait_until(lambda: (drinks / "Juice").exists() and (drinks / "cold" / "Soda").exists(), 2.0, "drinks back")
        (drinks / "Juice").unlink()  # the recreated directory is watched again
        wait_until((drinks / "Juice").exists, 2.0, "Juice restored in the recreated directory")
    assert running.events("pantry_gone")


def test_a_symlink_planted_as_a_nested_directory_is_never_followed(
    spec_path: Path, start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    write_spec(spec_path, ["drinks/Juice"])
    running = start_daemon(spec_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.kill(running.proc.pid, signal.SIGSTOP)
    try:
        shutil.rmtree(running.pantry / "drinks")
        (running.pantry / "drinks").symlink_to(elsewhere)
    finally:
        os.kill(running.proc.pid, signal.SIGCONT)
    conflict = running.wait_event("conflict")[0]
    assert conflict["message"].startswith(
        f"conflict: {running.pantry / 'drinks'} is a symlink owned by root: not followed"
    )
    assert conflict["snacks"] == ["drinks/Juice"]
    assert list(elsewhere.iterdir()) == []
