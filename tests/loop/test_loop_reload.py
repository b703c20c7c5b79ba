"""Reloads in O(changed), in-process: an edit is applied to what it changed and nothing else is looked at; an
invalid edit changes nothing; an edit the patch cannot prove falls back to the full parse, merge and pass.

A snack removed behind the daemon's back (no event told) shows which path ran: only a full pass restores it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import events
from fake_loop import Loop, start_loop

from snackwatch.desired import merge
from snackwatch.dirty import Mark
from snackwatch.errors import SpecError
from snackwatch.spec import load_spec

pytestmark = pytest.mark.usefixtures("own_state_dirs")

HEADER = "version: 1\npantry: ./pantry\n{extra}snacks:\n"
SNACKS = "  - a\n  - name: b\n    mode: '0640'\n  - c\n  - d\n"


@pytest.fixture
def loop(spec_path: Path) -> Iterator[Loop]:
    save(spec_path, HEADER.format(extra="prune: true\n") + SNACKS)
    started = start_loop(spec_path)
    yield started
    started.close()


def save(spec: Path, text: str) -> None:
    temp = spec.with_name(".snacks.yaml.tmp")
    temp.write_text(text)
    temp.rename(spec)


def edited(loop: Loop, spec: Path, text: str) -> None:
    """An editor's save, heard, then read once it settled."""
    save(spec, text)
    loop.watcher.mark(Mark.SPEC, spec.parent, spec.name)
    loop.turn()
    loop.turn(advance=0.25)


def full_passes(lines: list[dict[str, Any]]) -> list[str]:
    return [line["message"].rsplit(": ", 1)[1] for line in events(lines, "full_pass")]


def test_a_changed_mode_applies_to_that_snack_only(
    spec_path: Path, log_lines: list[dict[str, Any]], loop: Loop
) -> None:
    (loop.pantry / "a").unlink()  # behind the daemon's back: only a full pass would bring it back
    (loop.pantry / "b").unlink()
    edited(loop, spec_path, HEADER.format(extra="prune: true\n") + SNACKS.replace("0640", "0600"))
    assert (loop.pantry / "b").stat().st_mode & 0o777 == 0o600  # looked at: recreated with its new mode
    assert not (loop.pantry / "a").exists()  # not looked at
    assert full_passes(log_lines) == ["start"]
    assert [line["message"] for line in events(log_lines, "reload")] == ["spec reloaded: ~b (4 snacks)"]


def test_a_snack_taken_out_is_pruned_and_a_line_inserted_moves_the_lines_below(
    spec_path: Path, log_lines: list[dict[str, Any]], loop: Loop
) -> None:
    (loop.pantry / "a").unlink()
    edited(loop, spec_path, HEADER.format(extra="prune: true\n") + SNACKS.replace("  - c\n", ""))
    assert not (loop.pantry / "c").exists()  # it left the spec: pruned (the daemon created it)
    assert [line["files"] for line in events(log_lines, "pruned")] == [[str(loop.pantry / "c")]]
    assert loop.daemon.status()["snacks"][str(loop.pantry / "d")]["line"] == 8  # type: ignore[index]
    edited(loop, spec_path, HEADER.format(extra="prune: true\n") + "  - new\n" + SNACKS.replace("  - c\n", ""))
    assert (loop.pantry / "new").exists() and not (loop.pantry / "a").exists()
    assert full_passes(log_lines) == ["start"]
    rows = loop.daemon.status()["snacks"]
    lines = {Path(path).name: row["line"] for path, row in rows.items()}  # type: ignore[union-attr]
    assert lines["d"] == 9 and lines["new"] == 5  # where a fresh parse puts them


def test_an_invalid_edit_changes_nothing_and_names_its_line(
    spec_path: Path, log_lines: list[dict[str, Any]], loop: Loop
) -> None:
    (loop.pantry / "a").unlink()
    before = loop.parts.specs.desired
    edited(loop, spec_path, HEADER.format(extra="prune: true\n") + SNACKS.replace("  - c\n", "  - [c\n"))
    assert loop.parts.specs.desired is before
    assert (loop.pantry / "c").exists() and not (loop.pantry / "a").exists()
    with pytest.raises(SpecError) as refused:
        load_spec(spec_path)
    invalid = events(log_lines, "spec_invalid")  # the full parser's error, told once: `path:line: invalid YAML`
    assert [line["message"].split(";")[0] for line in invalid] == [str(refused.value)]
    assert refused.value.line == 9 and "invalid YAML" in str(refused.value)
    assert full_passes(log_lines) == ["start"]


def test_an_edit_the_patch_cannot_prove_takes_the_full_path_to_the_same_desired_state(
    spec_path: Path, log_lines: list[dict[str, Any]], loop: Loop
) -> None:
    (loop.pantry / "a").unlink()
    text = HEADER.format(extra="") + SNACKS + "  - name: e\n    type: directory\n"  # prune and a directory
    edited(loop, spec_path, text)
    assert full_passes(log_lines) == ["start", "spec reload"]
    assert (loop.pantry / "a").exists() and (loop.pantry / "e").is_dir()
    fresh = merge([load_spec(spec_path)])
    assert loop.parts.specs.desired.by_path() == fresh.by_path()
