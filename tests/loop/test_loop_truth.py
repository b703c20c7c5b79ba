"""The daemon tells the truth in every state, in-process: spec broken or fixed, dry run, first creations, debug."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events, write_spec
from fake_loop import Loop, start_loop

from snackwatch.dirty import Mark
from snackwatch.parts import Options
from snackwatch.reload import MAX_SETTLE

SEED = ["Goldfish", "FruitGummies", "StringCheese"]


pytestmark = pytest.mark.usefixtures("own_state_dirs")  # the daemon's runtime and state directories, ours


@pytest.fixture
def loop(spec_path: Path, request: pytest.FixtureRequest, log_lines: list[dict[str, Any]]) -> Iterator[Loop]:
    """Started after the log sink, so the start's lines are heard too."""
    write_spec(spec_path, SEED)
    options = getattr(request, "param", Options())
    started = start_loop(spec_path, options)
    yield started
    started.close()


def saved(loop: Loop, spec_path: Path) -> None:
    """An editor saved the spec: the watcher marks it, and the reload settles."""
    loop.watcher.mark(Mark.SPEC, spec_path.parent, spec_path.name)
    loop.turn()
    loop.turn(advance=MAX_SETTLE)


def test_a_fresh_pantry_is_created_not_repaired_and_status_lists_every_snack(
    loop: Loop, log_lines: list[dict[str, Any]]
) -> None:
    status = loop.daemon.status()
    assert status["status_line"] == "3/3 snacks ok, 0 repairs, 0 failing, 0 conflicts"
    assert status["counts"]["created"] == 3  # type: ignore[index]
    assert sorted(info["name"] for info in status["snacks"].values()) == sorted(SEED)  # type: ignore[attr-defined]
    assert status["snacks_listed"] == "all" and status["pantries"] == [str(loop.pantry)]
    assert status["dry_run"] is False and status["watcher"] == "fake"
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    assert events(log_lines, "restored")[0]["snacks"] == ["Goldfish"]
    assert loop.daemon.status()["counts"]["repairs"] == 1  # type: ignore[index]


def test_a_fixed_spec_is_ok_in_status_at_once_and_a_sighup_on_a_broken_one_says_why(
    loop: Loop, spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    good = spec_path.read_bytes()
    spec_path.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - [Goldfish\n")  # a typo saved in the editor
    saved(loop, spec_path)
    assert len(events(log_lines, "spec_invalid")) == 1
    broken = loop.daemon.status()
    assert broken["spec"]["ok"] is False  # type: ignore[index]
    assert "spec invalid" in str(broken["status_line"]) and "last good spec in force" in str(broken["status_line"])
    loop.daemon.signals.reload()  # systemctl reload: answered with the error, not "no change"
    loop.turn()
    assert len(events(log_lines, "spec_invalid")) == 2 and events(log_lines, "reload") == []
    spec_path.write_bytes(good)  # fixed: back to the last good bytes
    saved(loop, spec_path)
    assert events(log_lines, "spec_ok")
    fixed = loop.daemon.status()
    assert fixed["spec"]["ok"] is True  # type: ignore[index]
    assert fixed["status_line"] == "3/3 snacks ok, 0 repairs, 0 failing, 0 conflicts"


@pytest.mark.parametrize("loop", [Options(dry_run=True)], indirect=True)
def test_dry_run_on_a_missing_pantry_says_so_once_and_status_shows_the_snacks_missing(
    loop: Loop, log_lines: list[dict[str, Any]]
) -> None:
    assert not loop.pantry.exists()
    status = loop.daemon.status()
    assert status["dry_run"] is True and status["counts"]["missing"] == 3  # type: ignore[index]
    assert status["status_line"] == "0/3 snacks ok, 0 repairs, 0 failing, 0 conflicts, 3 missing (dry run)"
    assert {info["state"] for info in status["snacks"].values()} == {"missing"}  # type: ignore[attr-defined]
    told = [line["event"] for line in log_lines if line["level"] != "DEBUG"]
    assert told.index("start") < told.index("would_create")  # what the first pass found comes after the start
    assert [line for line in log_lines if line["level"] in ("ERROR", "WARNING")] == []
    loop.until_idle()
    assert len(events(log_lines, "would_create_directory")) == 1


def test_debug_lines_tell_each_batch_and_decision_and_the_rest_stays_info(
    loop: Loop, spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    (loop.pantry / "Goldfish").unlink()
    loop.watcher.removed(loop.pantry, "Goldfish")
    loop.turn()
    batch = events(log_lines, "batch")[0]
    assert batch["level"] == "DEBUG" and f"{loop.pantry}/Goldfish" in batch["message"]
    repair = events(log_lines, "repair")[0]
    assert "targeted repair" in repair["message"] and "Goldfish" in repair["message"]
    assert events(log_lines, "full_pass")[0]["message"].endswith(": start")
    write_spec(spec_path, SEED)  # the same bytes saved again: re-read, unchanged
    saved(loop, spec_path)
    assert events(log_lines, "reread")
    said = {line["event"]: line["level"] for line in log_lines}
    assert said["restored"] == said["start"] == said["created"] == "INFO"
    assert {said[event] for event in ("batch", "repair", "full_pass", "reread")} == {"DEBUG"}


def test_a_reload_that_moves_the_pantry_says_so_once_not_every_name_twice(
    loop: Loop, spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, SEED, pantry="./shelf")
    saved(loop, spec_path)
    [reload] = events(log_lines, "reload")
    assert reload["message"] == f"spec reloaded: pantry {loop.pantry} -> {spec_path.parent / 'shelf'} (3 snacks)"
    assert (spec_path.parent / "shelf" / "Goldfish").exists()


def test_thirty_directories_lost_at_once_are_one_line(loop: Loop, log_lines: list[dict[str, Any]]) -> None:
    gone = [loop.pantry / f"d{index}" for index in range(30)]
    for directory in gone:  # an rm -rf of a pantry's subdirectories: every watch tells its loss in one batch
        loop.watcher.mark(Mark.GONE, directory)
    loop.watcher.mark(Mark.GONE, loop.pantry)
    loop.turn()
    assert len(events(log_lines, "pantry_gone")) <= 1
