"""The spec reloader in-process: settle vs forced reloads, each problem told once, a file revived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import events, write_spec

from snackwatch.reload import SPEC_SETTLE, SpecReloader
from snackwatch.specset import SpecSet


def reloader_for(spec_path: Path, changes: list[float] | None = None) -> SpecReloader:
    write_spec(spec_path, ["Goldfish"])
    return SpecReloader(SpecSet.load(spec_path), on_change=None if changes is None else changes.append)


def test_an_editor_save_is_read_after_the_settle_time_and_told_as_a_change(
    spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    reloader = reloader_for(spec_path)
    write_spec(spec_path, ["Goldfish", "FruitGummies"])
    reloader.changed(10.0)
    assert reloader.next_due() == 10.0 + SPEC_SETTLE
    assert reloader.due(10.0 + SPEC_SETTLE / 2) is None  # still settling: nothing read
    reloaded = reloader.due(10.0 + SPEC_SETTLE)
    assert reloaded is not None and not reloaded.forced and reloaded.desired is not None
    assert reloaded.desired.count == 2
    assert reloader.next_due() is None
    assert [line["added"] for line in events(log_lines, "reload")] == [["FruitGummies"]]


def test_sighup_reloads_at_once_even_unchanged(spec_path: Path, log_lines: list[dict[str, Any]]) -> None:
    reloader = reloader_for(spec_path)
    reloader.changed(1.0)
    reloader.request()
    reloaded = reloader.due(1.0)  # forced: no settle wait, and the pending settle is dropped
    assert reloaded is not None and reloaded.forced and reloaded.desired is not None
    assert reloader.next_due() is None and not reloader.requested
    assert "no change" in events(log_lines, "reload")[0]["message"]


def test_a_problem_is_told_once_and_the_last_good_spec_stays(spec_path: Path, log_lines: list[dict[str, Any]]) -> None:
    changes: list[float] = []
    reloader = reloader_for(spec_path, changes)
    spec_path.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - [unclosed\n")
    for now in (1.0, 2.0, 3.0):  # the editor keeps touching the broken file
        reloader.changed(now)
        reloaded = reloader.due(now + SPEC_SETTLE)
        assert reloaded is not None and reloaded.desired is None
    invalid = events(log_lines, "spec_invalid")
    assert len(invalid) == 1 and invalid[0]["level"] == "ERROR"
    assert f"{spec_path}:" in invalid[0]["message"] and "keeping the last good spec (1 snacks)" in invalid[0]["message"]
    assert list(reloader.problems) == [spec_path] and changes == [1.0 + SPEC_SETTLE]
    assert reloader.specs.desired.count == 1


def test_a_broken_file_restored_to_its_last_good_bytes_is_revived(
    spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    reloader = reloader_for(spec_path)
    good = spec_path.read_bytes()
    spec_path.unlink()
    reloader.changed(1.0)
    reloader.due(2.0)
    missing = events(log_lines, "spec_missing")
    assert len(missing) == 1 and "until it is back" in missing[0]["message"]
    spec_path.write_bytes(good)
    reloader.changed(3.0)
    reloaded = reloader.due(4.0)
    assert reloaded is not None and reloaded.desired is None  # same bytes: nothing to apply
    assert len(events(log_lines, "spec_ok")) == 1 and reloader.problems == {}


def test_a_spec_open_for_writing_is_not_read_and_a_sighup_waits_for_its_close(
    spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    reloader = reloader_for(spec_path)
    with open(spec_path, "a") as writer:  # a writer has it open: the kernel refuses our read lease
        writer.write("  - Fru")
        writer.flush()
        reloader.request()  # before any event told us of the writer (the loop was busy): the read finds it
        assert reloader.due(1.0) is None  # not read: it could be half a file
        assert reloader.writing and reloader.requested
        # Told and bounded at once: no event may come before the close to bring the loop back for it.
        assert [line["event"] for line in log_lines if line.get("event", "").startswith("reload")] == ["reload_wait"]
        assert reloader.next_due() == 1.0 + 5.0  # the SIGHUP is answered within WRITE_WAIT at the latest
        assert reloader.due(1.1) is None
        assert [line["event"] for line in log_lines if line.get("event", "").startswith("reload")] == ["reload_wait"]
        writer.write("itGummies\n")
    reloader.changed(2.0, {str(spec_path): False})  # IN_CLOSE_WRITE
    reloaded = reloader.due(2.0)
    assert reloaded is not None and reloaded.forced and reloaded.desired is not None
    assert [line["added"] for line in events(log_lines, "reload")] == [["FruitGummies"]]


def test_a_busy_directory_postpones_the_read_by_at_most_max_settle(spec_path: Path) -> None:
    reloader = reloader_for(spec_path)
    for step in range(100):  # something touches the directory every 5 ms
        reloader.changed(step * 0.005)
    assert reloader.next_due() == 0.2
