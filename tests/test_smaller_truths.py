"""Issue 22 item 8: an early SIGHUP, completion of awkward names, status alignment and counts, honest warnings."""

from __future__ import annotations

import importlib.abc
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Running, wait_until, write_spec

from snackwatch.cli import main


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
