"""The command line as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import snackwatch, write_spec

from snackwatch import __version__
from snackwatch.lock import runtime_dir
from snackwatch.state import state_dir
from snackwatch.status import render_status


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The real thing: `python -m snackwatch` in its own process."""
    return subprocess.run([sys.executable, "-m", "snackwatch", *args], capture_output=True, text=True, timeout=30)


def test_version() -> None:
    result = snackwatch("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"snackwatch {__version__}")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("snackwatch")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == f"snackwatch {__version__}"


def test_check_valid_and_invalid(spec_path: Path) -> None:
    write_spec(spec_path, ["Goldfish"])
    result = snackwatch("check", "-c", str(spec_path))
    assert result.returncode == 0 and "ok (1 snacks" in result.stdout
    spec_path.write_text("pantry: ./p\nsnacks:\n  - Goldfish\n  - name: x\n    colour: red\n")
    result = snackwatch("check", "-c", str(spec_path))
    assert result.returncode == 2
    allowed = "name, type, content, source, target, mode, owner, group, enforce"
    expected = f"snackwatch: {spec_path}:5: unknown key 'colour' in a snack (allowed: {allowed})\n"
    assert result.stderr == expected


def test_check_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = snackwatch("check", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "No such file or directory" in result.stderr


def test_config_from_environment(spec_path: Path) -> None:
    write_spec(spec_path, ["a", "b"])
    env = {**os.environ, "SNACKWATCH_CONFIG": str(spec_path)}
    assert "ok (2 snacks" in snackwatch("check", env=env).stdout
    env = {**os.environ, "XDG_CONFIG_HOME": str(spec_path.parent.parent)}
    env.pop("SNACKWATCH_CONFIG", None)
    (spec_path.parent.parent / "snackwatch").mkdir()
    write_spec(spec_path.parent.parent / "snackwatch" / "snacks.yaml", ["c"])
    assert "ok (1 snacks" in snackwatch("check", env=env).stdout


def test_diff_once_and_dry_run(spec_path: Path) -> None:
    write_spec(spec_path, ["Goldfish", {"name": "StringCheese", "mode": "0600"}])
    pantry = spec_path.parent / "pantry"
    result = snackwatch("diff", "-c", str(spec_path))
    assert (result.returncode, result.stdout) == (1, "+ Goldfish\n+ StringCheese (mode 0600)\n")
    result = snackwatch("once", "--dry-run", "-c", str(spec_path))
    assert result.returncode == 1 and "would create Goldfish" in result.stdout
    assert not pantry.exists()
    result = snackwatch("once", "-c", str(spec_path))
    assert (result.returncode, result.stdout) == (0, "created Goldfish\ncreated StringCheese\n")
    assert sorted(os.listdir(pantry)) == ["Goldfish", "StringCheese"]
    assert snackwatch("diff", "-c", str(spec_path)).returncode == 0
    converged = snackwatch("once", "-c", str(spec_path))
    assert (converged.returncode, converged.stdout) == (0, "nothing to do: all 2 snacks are in place\n")


def test_once_exits_1_when_something_is_left_unrepaired(spec_path: Path) -> None:
    write_spec(spec_path, ["Goldfish"])
    (spec_path.parent / "pantry" / "Goldfish").mkdir(parents=True)
    result = snackwatch("once", "-c", str(spec_path))
    assert result.returncode == 1 and "conflict: a directory stands where Goldfish should be" in result.stderr
    diff = snackwatch("diff", "-c", str(spec_path))
    assert diff.returncode == 1 and diff.stdout.startswith("! Goldfish")


def test_usage_errors_exit_2_with_one_line() -> None:
    for args in (["frobnicate"], ["run", "--resync", "0"], ["run", "--poll-interval", "0.01"], ["status", "--jsn"]):
        result = snackwatch(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "error:" in result.stderr


def test_run_with_invalid_spec_exits_2_without_traceback(spec_path: Path) -> None:
    spec_path.write_text("pantry: ./p\nsnacks: [a, a]\n")
    result = smoke("run", "-c", str(spec_path))
    assert result.returncode == 2
    assert result.stderr == f"snackwatch: {spec_path}:2: duplicate snack 'a' (first declared on line 2)\n"


def test_runtime_and_state_directories_follow_systemd_then_root_defaults_then_xdg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert (runtime_dir(), state_dir()) == (Path("/run/snackwatch"), Path("/var/lib/snackwatch"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")  # another user's, inherited by root (sudo -E): ignored
    monkeypatch.setenv("XDG_STATE_HOME", "/home/ada/.local/state")
    assert (runtime_dir(), state_dir()) == (Path("/run/snackwatch"), Path("/var/lib/snackwatch"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/snackwatch")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/snackwatch:/var/lib/other")
    assert (runtime_dir(), state_dir()) == (Path("/run/snackwatch"), Path("/var/lib/snackwatch"))
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("HOME", "/home/ada")
    assert (runtime_dir(), state_dir()) == (Path("/tmp/snackwatch-1000"), Path("/home/ada/.local/state/snackwatch"))


def status_data(snacks: dict[str, dict[str, object]], count: int) -> dict[str, object]:
    counts = {"snacks": count, "ok": count - 1, "failing": 1, "conflicts": 0, "repairs": 2}
    spec = {"ok": True, "problems": []}
    started = 1_700_000_000.0
    return {"pid": 42, "started": started, "watcher": "inotify", "config": "/etc/s.yaml", "spec": spec,
            "counts": counts, "last_reconcile": started, "snacks": snacks}  # fmt: skip


def test_status_table_comes_from_the_status_file_alone() -> None:
    failing = {"name": "Goldfish", "state": "failing", "reason": "No space left on device", "repairs": 0}
    ok = {"name": "FruitGummies", "state": "ok", "repairs": 2, "last_repair": 1_700_000_100.0, "trigger": "deleted"}
    small = render_status(status_data({"/p/Goldfish": failing, "/p/FruitGummies": ok}, 3)).splitlines()
    assert small[0].startswith("snackwatch running (pid 42, up ") and small[0].endswith("watcher inotify")
    assert [line.split()[:3] for line in small[5:7]] == [["FruitGummies", "ok", "2"], ["Goldfish", "failing", "0"]]
    assert small[-1] == "... and 1 more snacks, all ok"
    quiet = {f"/p/s{i}": {"name": f"s{i}", "state": "ok", "repairs": 0} for i in range(60)}
    big = render_status(status_data({**quiet, "/p/Goldfish": failing}, 61)).splitlines()
    assert [line.split()[0] for line in big[5:]] == ["Goldfish", "..."]  # big specs: only snacks with a story
    assert big[-1] == "... and 60 more snacks, all ok"
