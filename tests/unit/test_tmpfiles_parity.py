"""Side by side with systemd-tmpfiles: the same f/d/L/C lines and an equivalent spec give the same trees."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import needs_root_linux

from snackwatch.cli import main

# (tmpfiles line with {root} for the directory, the equivalent snack): where both create, the same result
CASES = [
    (
        "d {root}/logs 0750 nobody nogroup -",
        "  - {name: logs, type: directory, mode: '0750', owner: nobody, group: nogroup}",
    ),
    ("f {root}/Goldfish 0640 nobody nogroup -", "  - {name: Goldfish, mode: '0640', owner: nobody, group: nogroup}"),
    ("f {root}/motd - - - - hello", "  - {name: motd, content: hello}"),
    ("f {root}/plain - - - -", "  - plain"),
    (
        "f {root}/byid 0600 65534 65534 - secret",
        "  - {name: byid, content: secret, mode: '0600', owner: '65534', group: '65534'}",
    ),
    ("L {root}/current - - - - releases/v2", "  - {name: current, type: symlink, target: releases/v2}"),
    (
        "L {root}/theirs - nobody nogroup - target",
        "  - {name: theirs, type: symlink, target: target, owner: nobody, group: nogroup}",
    ),
    (
        "C {root}/app.conf 0640 root adm - {source}",
        "  - {name: app.conf, source: app.conf.in, mode: '0640', owner: root, group: adm}",
    ),
    ("d {root}/deep/er 0700 - - -", "  - {name: deep/er, type: directory, mode: '0700'}"),
    ("f {root}/deep/er/file 0600 - - - x", "  - {name: deep/er/file, content: x, mode: '0600'}"),
    ("d {root}/srv - nobody - -", "  - {name: srv, type: directory, owner: nobody}"),
]


def tree(root: Path) -> dict[str, tuple[str, int, int, int, bytes | str | None]]:
    """Every entry below `root`: kind, mode, uid, gid, and its bytes or link text."""
    found: dict[str, tuple[str, int, int, int, bytes | str | None]] = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            info = os.lstat(path)
            kind = "l" if stat.S_ISLNK(info.st_mode) else "d" if stat.S_ISDIR(info.st_mode) else "f"
            data = os.readlink(path) if kind == "l" else path.read_bytes() if kind == "f" else None
            mode = stat.S_IMODE(info.st_mode) if kind != "l" else 0o777
            found[str(path.relative_to(root))] = (kind, mode, info.st_uid, info.st_gid, data)
    return found


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


@needs_root_linux("both create files for other users")
@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles is not installed")
@pytest.mark.usefixtures("umask_077")
def test_tmpfiles_and_snackwatch_give_the_same_trees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "app.conf.in"
    source.write_text("port=80\n")
    by_tmpfiles, by_snackwatch = tmp_path / "tmpfiles", tmp_path / "snackwatch"
    config = tmp_path / "parity.conf"
    config.write_text("".join(line.format(root=by_tmpfiles, source=source) + "\n" for line, _ in CASES))
    done = subprocess.run(["systemd-tmpfiles", "--create", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    spec = tmp_path / "snacks.yaml"
    spec.write_text(f"pantry: {by_snackwatch}\nsnacks:\n" + "".join(snack + "\n" for _, snack in CASES))
    assert main(["once", "-c", str(spec)]) == 0, capsys.readouterr().err
    ours, theirs = tree(by_snackwatch), tree(by_tmpfiles)
    assert ours == theirs
    assert len(theirs) == len(CASES) + 1  # every line made something (and deep/ on the way)
    assert stat.S_IMODE(os.lstat(by_snackwatch).st_mode) == stat.S_IMODE(os.lstat(by_tmpfiles).st_mode) == 0o755
