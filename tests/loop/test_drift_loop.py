"""Drift in the loop (issue 20): enforced aspects put back on the event, fights over them, drift in status and
metrics, a reload that leaves drift told once; real parts, a scripted watcher and an injected clock."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events, needs_root_linux, write_spec
from fake_loop import Loop, start_loop

from snackwatch.dirty import Mark
from snackwatch.metrics import metrics_text
from snackwatch.reconcile import owners_drift, reconcile_all
from snackwatch.reload import MAX_SETTLE
from snackwatch.specset import SpecSet


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, folder in (("RUNTIME_DIRECTORY", "run"), ("STATE_DIRECTORY", "state")):
        (tmp_path / folder).mkdir(mode=0o700)
        monkeypatch.setenv(name, str(tmp_path / folder))


@pytest.fixture
def loops() -> Iterator[list[Loop]]:
    started: list[Loop] = []
    yield started
    for loop in started:
        loop.close()


def conf(mode: str, enforce: list[str] | None = None) -> dict[str, Any]:
    snack: dict[str, Any] = {"name": "app.conf", "content": "port=80\n", "mode": mode}
    if enforce is not None:
        snack["enforce"] = enforce
    return snack


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_enforced_mode_and_content_are_put_back_on_the_event_and_count_as_repairs(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, [conf("0600", ["content", "mode"]), "Goldfish"])
    loop = start_loop(spec_path)
    loops.append(loop)
    assert loop.watcher.enforced == {str(loop.pantry): frozenset({"app.conf"})}  # only there do masks grow
    path = loop.pantry / "app.conf"
    path.chmod(0o644)
    loop.watcher.changed(loop.pantry, "app.conf")
    loop.turn(advance=1.0)
    assert mode_of(path) == 0o600
    path.write_text("port=8080\n")  # in place, as nano does
    loop.watcher.changed(loop.pantry, "app.conf")
    loop.turn(advance=1.0)
    assert path.read_text() == "port=80\n"
    lines = events(log_lines, "corrected")
    assert [(line["message"], line["level"], line["trigger"]) for line in lines] == [
        ("corrected app.conf: mode 0644 -> 0600", "INFO", "changed on disk"),
        ("corrected app.conf: content put back (8 bytes)", "INFO", "changed on disk"),
    ]
    info = loop.daemon.status()["snacks"][str(path)]  # type: ignore[index]
    assert (info["state"], info["repairs"], info["trigger"]) == ("ok", 2, "changed on disk")
    loop.watcher.changed(loop.pantry, "app.conf")  # our own change, heard back: nothing to do, nothing said
    loop.turn(advance=1.0)
    loop.until_idle()
    assert len(events(log_lines, "corrected")) == 2 and loop.parts.next_due() is None  # idle: nothing polled


def test_an_editor_that_keeps_rewriting_an_enforced_file_is_a_fight_told_once_and_backed_off(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, [conf("0600", ["content"])])
    loop = start_loop(spec_path)
    loops.append(loop)
    path = loop.pantry / "app.conf"
    fight = loop.parts.options.fight
    for _ in range(fight.threshold + 1):  # rewritten within ms of each correction
        path.write_text("theirs\n")
        loop.watcher.changed(loop.pantry, "app.conf")
        loop.turn(advance=0.001)
    [line] = events(log_lines, "fight")
    assert line["level"] == "WARNING" and "is changed again right after each correction" in line["message"]
    path.write_text("theirs\n")
    loop.watcher.changed(loop.pantry, "app.conf")
    loop.turn(advance=0.001)
    assert path.read_text() == "theirs\n"  # held back: the backoff decides when to look again
    assert len(events(log_lines, "corrected")) == fight.quiet_after + 1  # then single corrections are not told
    loop.until_idle(limit=30.0)
    assert path.read_text() == "port=80\n"
    over = events(log_lines, "fight_over")
    assert len(over) == 1 and "the fight is over" in over[0]["message"]


def test_a_reload_that_leaves_drift_says_so_once_and_status_and_metrics_show_it(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, [conf("0644"), "Goldfish"])
    loop = start_loop(spec_path)
    loops.append(loop)
    path = loop.pantry / "app.conf"
    write_spec(spec_path, [conf("0600"), "Goldfish"])  # tightening a secret: not enforced
    for _ in range(2):  # saved twice: told once
        loop.watcher.mark(Mark.SPEC, spec_path.parent, spec_path.name)
        loop.turn()
        loop.turn(advance=MAX_SETTLE)
    [line] = events(log_lines, "drift")
    assert (line["level"], line["message"]) == (
        "INFO",
        "app.conf left as is: mode 0644, spec says 0600 (enforce: [mode] keeps it in line)",
    )
    assert mode_of(path) == 0o644
    status = loop.daemon.status()
    assert status["status_line"] == "1/2 snacks ok, 0 repairs, 0 failing, 0 conflicts, 1 drifting"
    assert status["counts"]["drift"] == 1  # type: ignore[index]
    info = status["snacks"][str(path)]  # type: ignore[index]
    assert info["state"] == "drift" and info["reason"] == "mode 0644 -> 0600 (not enforced)"
    assert info["drift"] == [{"aspect": "mode", "on_disk": "0644", "declared": "0600", "enforced": False}]
    metrics = metrics_text(status)
    assert f'snackwatch_snack_drift{{spec="{spec_path}",snack="app.conf",aspect="mode"}} 1' in metrics
    assert 'state="drift"} 1' in metrics
    path.chmod(0o600)  # the user puts it in line; a rename over it (an event) shows it
    loop.watcher.removed(loop.pantry, "app.conf")
    loop.turn(advance=1.0)
    assert loop.daemon.status()["counts"]["drift"] == 0  # type: ignore[index]


def test_drift_appearing_while_running_is_in_status_not_in_the_log(
    spec_path: Path, loops: list[Loop], log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, [conf("0600")])
    loop = start_loop(spec_path)
    loops.append(loop)
    path = loop.pantry / "app.conf"
    temp = loop.pantry / "edit.tmp"
    temp.write_text("port=8080\n")
    os.rename(temp, path)  # an editor's save by rename: heard as a name moved over
    loop.watcher.removed(loop.pantry, "app.conf")
    loop.turn(advance=1.0)
    assert path.read_text() == "port=8080\n"
    said = [line for line in log_lines if line["level"] != "DEBUG" and line.get("event") not in ("start", "created")]
    assert said == []
    info = loop.daemon.status()["snacks"][str(path)]  # type: ignore[index]
    assert info["state"] == "drift" and [a["aspect"] for a in info["drift"]] == ["content", "mode"]  # umask's 0644


@needs_root_linux("plays another user who created a snack's name first")
def test_a_squatted_name_drifts_in_owner_in_status(spec_path: Path, loops: list[Loop]) -> None:
    write_spec(spec_path, ["motd"])
    pantry = spec_path.parent / "pantry"
    pantry.mkdir()
    (pantry / "motd").write_text("theirs\n")
    os.chown(pantry / "motd", 65534, 65534)
    loop = start_loop(spec_path)
    loops.append(loop)
    status = loop.daemon.status()
    info = status["snacks"][str(pantry / "motd")]  # type: ignore[index]
    assert info["state"] == "drift" and info["reason"] == "owner nobody -> root (not enforced)"
    assert status["status_line"] == "0/1 snacks ok, 0 repairs, 0 failing, 0 conflicts, 1 drifting"
    assert (pantry / "motd").read_text() == "theirs\n" and (pantry / "motd").stat().st_uid == 65534


@needs_root_linux("plays another user who created snacks' names first")
def test_the_start_leaves_the_owner_look_for_after_ready_and_finds_the_same(spec_path: Path) -> None:
    """A start's pass skips the owner lstat of name-only snacks (a report only); owners_drift finds what a pass
    with it finds (issue 23: 100k lstats, ~0.2 s, after READY instead of before)."""
    write_spec(spec_path, ["motd", "issue", "hosts"])
    pantry = spec_path.parent / "pantry"
    pantry.mkdir()
    for name in ("motd", "hosts"):
        (pantry / name).write_text("theirs\n")
        os.chown(pantry / name, 65534, 65534)
    (pantry / "issue").touch()  # ours
    desired = SpecSet.load(spec_path).desired
    assert reconcile_all(desired, owners=False) == []
    with_owners = sorted((o.entry.name, o.drift) for o in reconcile_all(desired))
    assert sorted((o.entry.name, o.drift) for o in owners_drift(desired)) == with_owners
    assert [name for name, _ in with_owners] == ["hosts", "motd"]
