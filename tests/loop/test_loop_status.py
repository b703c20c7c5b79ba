"""The loop's status writes in-process: never between a deletion and its repair, rows bounded and cheap."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_spec
from fake_loop import Loop, start_loop

from snackwatch import status_view
from snackwatch.dirty import Mark
from snackwatch.ledger import HISTORY_KEPT
from snackwatch.parts import Options
from snackwatch.state_writer import HOLD_MAX, STATE_SETTLE, StateWriter

pytestmark = pytest.mark.usefixtures("own_state_dirs")  # the daemon's runtime and state directories, ours


@pytest.fixture
def loop(spec_path: Path) -> Iterator[Loop]:
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    started = start_loop(spec_path)
    yield started
    started.close()


def spy_writes(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, bool]]:
    """Each status write: which snacks were on disk at that moment."""
    writes: list[dict[str, bool]] = []
    write = loop.parts.state.write

    def spied(status: dict[str, Any], text: str | None = None, *, stopped: bool = False) -> None:
        writes.append({name: (loop.pantry / name).exists() for name in ("Goldfish", "Popcorn")})
        write(status, text, stopped=stopped)

    monkeypatch.setattr(loop.parts.state, "write", spied)
    return writes


def test_a_status_write_never_runs_between_a_deletion_and_its_repair(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = spy_writes(loop, monkeypatch)
    loop.parts.state.changed(loop.clock.now)  # a write is due...
    loop.clock.now += STATE_SETTLE
    (loop.pantry / "Goldfish").unlink()  # ...when a deletion comes: the repair goes first
    loop.watcher.removed(loop.pantry, "Goldfish")
    late = loop.watcher.watch_attributes

    def deleted_meanwhile(on: bool) -> None:  # the watchdog thread marks Popcorn while the turn runs
        late(on)
        if (loop.pantry / "Popcorn").exists():
            (loop.pantry / "Popcorn").unlink()
            loop.watcher.removed(loop.pantry, "Popcorn")

    monkeypatch.setattr(loop.watcher, "watch_attributes", deleted_meanwhile)
    loop.turn()
    assert writes == []  # Popcorn is marked and not yet repaired: the due write waits for it
    monkeypatch.setattr(loop.watcher, "watch_attributes", late)
    loop.turn()
    assert writes == [{"Goldfish": True, "Popcorn": True}]
    status = json.loads(loop.parts.state.status_file.read_text())
    assert status["counts"]["repairs"] == 2 and status["snacks"][str(loop.pantry / "Popcorn")]["repairs"] == 1


def test_after_a_mass_restore_the_status_lists_a_bounded_story_and_counts_the_rest(
    spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("snackwatch.ledger.HISTORY_KEPT", 5)
    monkeypatch.setattr("snackwatch.status_view.STATUS_LISTED", 5)
    names = [f"snack{i:02}" for i in range(12)]
    write_spec(spec_path, names)
    loop = start_loop(spec_path)
    try:
        for name in names:  # one by one, so the last five repaired are the story kept
            (loop.pantry / name).unlink()
            loop.watcher.removed(loop.pantry, name)
            loop.turn(advance=1.0)
        loop.turn(advance=STATE_SETTLE)
        status = json.loads(loop.parts.state.status_file.read_text())
        assert status["counts"]["repairs"] == 12 and len(loop.parts.ledger.history) == 5
        assert sorted(info["name"] for info in status["snacks"].values()) == names[-5:]
        assert status == loop.daemon.status() | {"updated": status["updated"]}  # the cached rows say the same
        fresh = status_view.snacks_with_a_story(loop.parts.ledger, loop.clock.now, 5)  # no cache: chosen anew
        assert status["snacks"] == fresh
    finally:
        loop.close()
    assert HISTORY_KEPT >= 1000  # a spec of up to 1,000 snacks keeps every snack's story


def test_a_reload_runs_without_the_collector_then_collects_and_freezes_once(
    loop: Loop, spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gc.isenabled()  # start() collected once and froze what the spec built
    frozen = gc.get_freeze_count()
    during: list[bool] = []
    due = loop.parts.reloader.due
    monkeypatch.setattr(loop.parts.reloader, "due", lambda now: during.append(gc.isenabled()) or due(now))
    loop.turn()
    assert during == []  # nothing to reload: the collector is never touched
    write_spec(spec_path, ["Goldfish", "Popcorn", "Cheese"])
    loop.watcher.mark(Mark.SPEC, spec_path.parent, spec_path.name)
    loop.turn()
    loop.until_idle(limit=5.0)
    assert during == [False] and gc.isenabled() and (loop.pantry / "Cheese").exists()
    assert gc.get_freeze_count() > frozen  # what the new spec built was frozen


def test_a_status_write_rebuilds_only_the_rows_whose_story_changed(
    spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"snack{i:02}" for i in range(30)]
    write_spec(spec_path, names)
    loop = start_loop(spec_path)
    try:
        built: list[str] = []
        real = status_view.snack_status

        def counted(ledger: Any, entry: Any, now: float, view: Any = None) -> dict[str, object]:
            built.append(entry.snack.name)
            return real(ledger, entry, now, view)

        monkeypatch.setattr(status_view, "snack_status", counted)
        loop.daemon.status()
        built.clear()
        (loop.pantry / "snack07").unlink()
        loop.watcher.removed(loop.pantry, "snack07")
        loop.turn(advance=STATE_SETTLE)
        loop.turn(advance=STATE_SETTLE)  # the status write
        assert built == ["snack07"]
        status = json.loads(loop.parts.state.status_file.read_text())
        assert len(status["snacks"]) == 30 and status["snacks"][str(loop.pantry / "snack07")]["repairs"] == 1
    finally:
        loop.close()


def test_a_held_status_write_waits_at_most_hold_max(tmp_path: Path) -> None:
    writer = StateWriter(tmp_path / "state" / "x.status.json")
    writer.changed(10.0)
    snapshot = ({"counts": {}}, '{"counts":{}}')
    writer.write_if_due(10.0 + STATE_SETTLE, lambda: snapshot, hold=True)  # a deletion waits: not now
    assert writer.next_due() == 10.0 + STATE_SETTLE and not writer.status_file.exists()
    writer.write_if_due(10.0 + STATE_SETTLE + HOLD_MAX, lambda: snapshot, hold=True)  # endless churn: now anyway
    assert writer.next_due() is None and json.loads(writer.status_file.read_text()) == {"counts": {}}


def test_the_metrics_file_is_rewritten_only_when_something_changed(spec_path: Path, tmp_path: Path) -> None:
    """Noise and a spec saved with the same bytes change nothing: no metrics write at all (e2e: test_beyond.py
    shows the file replaced atomically on a real repair)."""
    write_spec(spec_path, ["Goldfish"])
    metrics = tmp_path / "snackwatch.prom"
    loop = start_loop(spec_path, Options(metrics_file=metrics))
    try:
        loop.until_idle()
        written = metrics.stat().st_ino
        loop.watcher.mark(Mark.NUDGE, loop.pantry)  # an unrelated name created and removed beside the snacks
        loop.turn(advance=0.001)
        spec_path.write_bytes(spec_path.read_bytes())  # saved with the same bytes
        loop.watcher.mark(Mark.SPEC, spec_path.parent, spec_path.name)
        loop.until_idle()
        assert metrics.stat().st_ino == written and loop.parts.next_due() is None
        (loop.pantry / "Goldfish").unlink()
        loop.watcher.removed(loop.pantry, "Goldfish")
        loop.turn()
        loop.until_idle()
        assert metrics.stat().st_ino != written
        assert f'snackwatch_repairs_total{{spec="{spec_path}",snack="Goldfish"}} 1' in metrics.read_text()
    finally:
        loop.close()
