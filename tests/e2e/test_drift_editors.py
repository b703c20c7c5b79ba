"""Editors against the real daemon (issue 20): what only the kernel shows (IN_CLOSE_WRITE, IN_ATTRIB, a rename
over the name) on an enforced file, which comes back, and on one not enforced, whose edit is kept."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import IS_LINUX, Running, wait_until, write_spec

from snackwatch.cli import main

DECLARED = "port=80\n"
SNACKS = [
    {"name": "app.conf", "content": DECLARED, "mode": "0600", "enforce": ["content", "mode"]},
    {"name": "free.conf", "content": DECLARED, "mode": "0600"},
]


def vim_edit(path: Path) -> None:
    """vim's own save (`ex`/`vim -es`, no vimrc): its backup-and-write dance, whatever it is on this build."""
    editor = shutil.which("vim") or shutil.which("ex")
    assert editor is not None
    subprocess.run([editor, "-es", "-u", "NONE", "-c", "%s/80/8080/", "-c", "wq", str(path)], check=True, timeout=10)


def sed_edit(path: Path) -> None:
    """`sed -i`: a new file in the directory renamed over the name."""
    subprocess.run(["sed", "-i", "s/80/8080/", str(path)], check=True, timeout=10)


def nano_edit(path: Path) -> None:
    """nano's save: the file truncated and written in place."""
    with open(path, "w") as stream:
        stream.write("port=8080\n")


def writebackup_edit(path: Path) -> None:
    """vim's writebackup where no vim is installed: write a new file, rename it over the name."""
    temp = path.with_name(path.name + ".swp-new")
    temp.write_text("port=8080\n")
    temp.rename(path)


EDITORS = {"sed": sed_edit, "nano": nano_edit, "rename": writebackup_edit}
if shutil.which("vim") or shutil.which("ex"):
    EDITORS["vim"] = vim_edit


@pytest.fixture
def cli(
    daemon_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str]]:
    """The CLI in-process, with the runtime and state directories of the daemon under test."""
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.setenv(name, daemon_env[name])

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(args))
        return code, capsys.readouterr().out

    return run


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(not IS_LINUX, reason="inotify: the change events of an enforced file are Linux's")
@pytest.mark.parametrize("backend", ["inotify", "observer"])
def test_editors_on_an_enforced_file_get_it_back_and_on_a_free_one_keep_their_edit(
    backend: str, spec_path: Path, start_daemon: Callable[..., Running], cli: Callable[..., tuple[int, str]]
) -> None:
    write_spec(spec_path, SNACKS)
    running = start_daemon(spec_path, "--watcher", backend)
    enforced, free = running.pantry / "app.conf", running.pantry / "free.conf"
    enforced.chmod(0o644)
    wait_until(lambda: mode_of(enforced) == 0o600, 2.0, "the mode put back after chmod")
    for name, edit in EDITORS.items():
        edit(enforced)
        wait_until(lambda: enforced.read_text() == DECLARED and mode_of(enforced) == 0o600, 2.0, f"{name} undone")
    corrected = running.wait_event("corrected", count=1 + len(EDITORS))
    assert corrected[0]["message"] == "corrected app.conf: mode 0644 -> 0600"
    assert running.events("fight") == []
    sed_edit(free)

    def drifting() -> dict[str, Any] | None:
        code, out = cli("status", "--json", "-c", str(spec_path))
        data: dict[str, Any] = json.loads(out) if code == 0 else {}
        info = data.get("snacks", {}).get(str(free), {})
        return info if info.get("state") == "drift" else None

    info = wait_until(drifting, 2.0, "free.conf drifting in status")
    assert [aspect["aspect"] for aspect in info["drift"]] == ["content"]  # sed keeps the mode
    assert free.read_text() == "port=8080\n"  # the edit is kept
    code, out = cli("diff", "-c", str(spec_path))
    assert code == 1 and "~ free.conf: content differs (not enforced)" in out
    assert [line for line in running.logs() if line.get("snack") == "free.conf" and line["level"] != "DEBUG"] == []
    assert sorted(os.listdir(running.pantry)) == ["app.conf", "free.conf"]  # no temp file or backup left
