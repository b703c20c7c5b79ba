"""Light commands stay light: only `run` imports the daemon's heavy modules (watchdog, loguru, asyncio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_spec

from snackwatch.cli import main

HEAVY = ("watchdog", "loguru", "asyncio")
# Run a command in a fresh interpreter, then name the heavy modules it imported (on stderr's last line).
PROBE = """
import sys
from snackwatch.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
print(",".join(sorted(m for m in sys.argv[1].split(",") if m in sys.modules)), file=sys.stderr)
"""
COMMANDS = {  # command line (after `snackwatch`) -> modules it must not import beyond HEAVY
    "--version": ("yaml", "json"),
    "check": (),
    "diff": (),
    "once --dry-run": (),
    "status": ("yaml",),  # from the daemon's status file alone, whatever the spec on disk says
    "why Goldfish": (),
    "prune": (),
    "unit": ("yaml",),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_light_commands_do_not_import_the_daemon(command: str, spec_path: Path, daemon_env: dict[str, str]) -> None:
    write_spec(spec_path, ["Goldfish"])
    forbidden = (*HEAVY, *COMMANDS[command])
    args = [*command.split(), *(["-c", str(spec_path)] if command not in ("--version", "unit") else [])]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(forbidden), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=daemon_env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == "", f"`snackwatch {command}` imported {result.stderr.splitlines()[-1]}"


def test_run_is_the_command_that_imports_the_daemon(spec_path: Path, daemon_env: dict[str, str]) -> None:
    """The probe itself works: `run` on an invalid spec gets as far as importing the daemon, then exits 2."""
    spec_path.write_text("pantry: ./p\nsnacks: [a, a]\n")
    probe = [sys.executable, "-c", PROBE, ",".join(HEAVY), "run", "-c", str(spec_path)]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=30, env=daemon_env)
    assert result.stderr.splitlines()[-1] == ",".join(sorted(HEAVY))


def test_status_never_reads_the_spec(
    spec_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken spec is no reason for `status` to fail: it answers from the daemon's status file (here: none)."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))  # as root, XDG_* would be ignored
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    spec_path.write_text("snacks: [unclosed\n")
    assert main(["status", "-c", str(spec_path)]) == 3
    assert capsys.readouterr().err == f"snackwatch: no daemon is running for {spec_path}\n"
