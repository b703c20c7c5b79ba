"""Issue 22 item 8: an early SIGHUP, completion of awkward names, status alignment and counts, honest warnings."""

from __future__ import annotations

import importlib.abc
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, events, wait_until, write_spec

from snackwatch.cli import main
from snackwatch.prune import Pruner
from snackwatch.specset import SpecSet
from snackwatch.state_writer import StateWriter
from snackwatch.status import render_status


class _Stop(Exception):
    """Raised where `snackwatch.daemon` would be imported: the test has seen what it came for."""


class _CatchDaemonImport(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.sighup: object = None

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "snackwatch.daemon":
            self.sighup = signal.getsignal(signal.SIGHUP)
            raise _Stop


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("saved_handlers")
def test_run_queues_sighup_before_the_daemon_is_even_imported(spec_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_spec(spec_path, ["Goldfish"])
    monkeypatch.delitem(sys.modules, "snackwatch.daemon", raising=False)
    finder = _CatchDaemonImport()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    with pytest.raises(_Stop):
        main(["run", "-c", str(spec_path)])
    assert finder.sighup not in (signal.SIG_DFL, signal.SIG_IGN, None)  # a handler that queues the request


def test_a_sighup_right_after_spawn_is_a_reload_once_the_loop_runs(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """The earliest moment a handler exists (SigCgt shows SIGHUP caught, ~30 ms after exec, before the
    daemon is imported): a SIGHUP then is queued and answered as a reload, not a death."""
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path, wait=False)
    pid = running.proc.pid
    wait_until(lambda: _catches(pid, signal.SIGHUP), 5, "a SIGHUP handler")
    running.proc.send_signal(signal.SIGHUP)
    [reload] = running.wait_event("reload")
    assert "spec reloaded: no change" in reload["message"] and running.proc.poll() is None
    assert running.stop() == 0


def _catches(pid: int, signum: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in text.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & (1 << (signum - 1)))


# --- status: wide names aligned, each pantry once, "1 repair" ----------------------------------------------------


def _status(snacks: dict[str, dict[str, object]], repairs: int) -> dict[str, object]:
    counts = {"snacks": len(snacks), "ok": len(snacks), "failing": 0, "conflicts": 0, "repairs": repairs}
    return {"pid": 42, "started": 1_700_000_000.0, "watcher": "inotify", "config": "/etc/snackwatch/conf.d",
            "spec": {"ok": True, "problems": []}, "pantries": ["/p", "/p", "/q"], "counts": counts,
            "last_reconcile": 1_700_000_000.0, "snacks": snacks}  # fmt: skip


def test_status_aligns_wide_names_lists_each_pantry_once_and_says_1_repair() -> None:
    names = ["Goldfish", "煎餅せんべい", "🍪 cookie", "Cafe\u0301"]
    snacks = {f"/p/{name}": {"name": name, "state": "ok", "repairs": 0} for name in names}
    lines = render_status(_status(snacks, 1)).splitlines()
    assert lines[2] == "pantries /p, /q"
    assert ", 1 repair, last full reconcile" in lines[3]
    rows = lines[6:]
    assert len(rows) == 4
    columns = {_width_before(row, " ok ") for row in rows}  # where STATE starts, in terminal columns
    assert columns == {_width_before(lines[5], " STATE ")} == {28}
    assert ", 2 repairs," in render_status(_status(snacks, 2))


def _width_before(row: str, marker: str) -> int:
    before = row[: row.index(marker)]
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in before)


# --- a state file that cannot be written is named, not the directory that failed -------------------------------


def test_an_unwritable_state_file_is_named_with_where_it_failed(
    tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    (tmp_path / "nonexistent").write_text("")  # what a HOME of /nonexistent amounts to: no way to make it
    status_file = tmp_path / "nonexistent" / ".local" / "state" / "snackwatch" / "snacks-0123.status.json"
    StateWriter(status_file).write({"counts": {}})
    [warning] = events(log_lines, "state_unwritable")
    assert warning["message"].startswith(f"cannot write state file {status_file}: Not a directory (ENOTDIR)")
    assert warning["message"].endswith(f"(at {status_file.parent})")


# --- why: a file the prune breaker holds back says so -----------------------------------------------------------


def test_why_on_a_file_held_back_by_the_prune_breaker_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    spec, pantry = tmp_path / "snacks.yaml", tmp_path / "pantry"
    names = [f"snack-{index}" for index in range(8)]
    write_spec(spec, names, pantry=str(pantry), extra="prune: true\n")
    pruner = Pruner(spec)
    pantry.mkdir()
    for name in names:
        (pantry / name).touch()
        pruner.record_before_publish([(str(pantry / name), os.lstat(pantry / name), spec)])
    pruner.save()
    write_spec(spec, names[:2], pantry=str(pantry), extra="prune: true\n")  # 6 of 8 leave: past the breaker
    pruner.prune(SpecSet.load(spec).desired, confirmed=False)
    assert (pantry / "snack-5").exists()
    assert main(["why", "-c", str(spec), "snack-5"]) == 1  # no spec declares it
    out = capsys.readouterr().out
    assert out.startswith(f"snack-5: {pantry / 'snack-5'}\n  no spec declares it now; snackwatch created it for {spec}")
    assert "held back by the prune circuit breaker: 6 files left that spec" in out
    assert f"`snackwatch prune --yes -c {spec}` deletes them once" in out
    assert main(["why", "-c", str(spec), "Caviar"]) == 1
    assert "no spec declares it (specs:" in capsys.readouterr().out
