"""Issue 10, items 3, 4, 6, 7, 9 played for real: an unprivileged user (uid 65534) against root's snackwatch."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import needs_root_linux, write_spec

from snackwatch.apply import create_snack
from snackwatch.cli import main
from snackwatch.errors import SpecError
from snackwatch.spec import Snack
from snackwatch.specset import SpecSet

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
SECRET = b"SECRET-" + b"s" * 65536  # big enough that writing it takes a while


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A root-owned 0755 directory that uid 65534 can reach (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="snackwatch-attack-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


# --- item 3: a secret snack's temp file is 0600 before its first byte ----------------------------------------

_RACING_READER = """
import os, sys
pantry, stop = sys.argv[1], sys.argv[2]
held, seen, reads = [], 0, 0
print("ready", flush=True)
while not os.path.exists(stop):
    for fd in held:  # opened while the temp was young: read it now that the content may be in
        reads += b"SECRET" in os.pread(fd, 16, 0)
        os.close(fd)
    held = []
    for name in os.listdir(pantry):
        if name.startswith(".snackwatch-"):
            seen += 1
            try:
                held.append(os.open(os.path.join(pantry, name), os.O_RDONLY))
            except OSError:
                pass
print(seen, reads)
"""


@needs_root_linux("plays an unprivileged reader against root")
def test_a_racing_reader_never_reads_a_0600_snack(public_dir: Path) -> None:
    pantry = public_dir / "pantry"
    pantry.mkdir(mode=0o755)
    stop = public_dir / "stop"
    reader = subprocess.Popen(
        [*AS_NOBODY, "/usr/bin/python3", "-c", _RACING_READER, str(pantry), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
    snack = Snack("Secret", content=SECRET.decode(), mode=0o600)
    fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(200):
            assert create_snack(fd, "Secret", snack)
            os.unlink("Secret", dir_fd=fd)
    finally:
        os.close(fd)
        stop.touch()
    seen, reads = map(int, reader.communicate(timeout=10)[0].split())
    assert seen > 0, "the reader never saw a temp file: the race was not played"
    assert reads == 0, f"the reader read the secret {reads} times ({seen} temp files seen)"


def test_a_snack_without_mode_gets_the_umask_default_after_its_content(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert create_snack(fd, "Cheese", Snack("Cheese", content="mozzarella\n"))
        finally:
            os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / "Cheese").st_mode) == 0o640
    assert (tmp_path / "Cheese").read_text() == "mozzarella\n"


# --- item 6: a FIFO or symlink dropped into a conf.d directory -----------------------------------------------


def test_a_fifo_in_conf_d_is_named_not_waited_on(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write_spec(confd / "a.yaml", ["Goldfish"], pantry=str(tmp_path / "pantry"))
    specs = SpecSet.load(confd)
    os.mkfifo(confd / "x.yaml")
    started = time.monotonic()
    with pytest.raises(SpecError) as caught:
        SpecSet.load(confd)
    assert str(caught.value) == f"{confd / 'x.yaml'}: not a regular file (a FIFO)"
    reload = specs.reload(forced=True, broken=set())
    assert str(reload.problems[confd / "x.yaml"]) == f"{confd / 'x.yaml'}: not a regular file (a FIFO)"
    assert time.monotonic() - started < 1.0


def test_the_named_spec_may_be_a_symlink_but_not_one_inside_conf_d(tmp_path: Path) -> None:
    real = write_spec(tmp_path / "real.yaml", ["Goldfish"], pantry=str(tmp_path / "pantry"))
    named = tmp_path / "named.yaml"
    named.symlink_to(real)  # GNU stow, a ConfigMap: the file the user names may be a symlink
    assert SpecSet.load(named).desired.count == 1
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "x.yaml").symlink_to(real)
    with pytest.raises(SpecError) as caught:
        SpecSet.load(confd)
    assert "x.yaml: is a symlink, not followed inside a conf.d directory" in str(caught.value)


def test_the_named_spec_as_a_fifo_or_directory_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(SpecError, match=r"fifo.yaml: not a regular file \(a FIFO\)$"):
        SpecSet.load(tmp_path / "fifo.yaml")
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "dir.yaml").mkdir()
    with pytest.raises(SpecError, match=r"dir.yaml: not a regular file \(a directory\)$"):
        SpecSet.load(confd)


def test_check_and_status_do_not_hang_on_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write_spec(confd / "a.yaml", ["Goldfish"], pantry=str(tmp_path / "pantry"))
    os.mkfifo(confd / "x.yaml")
    assert main(["check", "-c", str(confd)]) == 2
    assert "x.yaml: not a regular file (a FIFO)" in capsys.readouterr().err
    assert main(["status", "-c", str(confd)]) in (2, 3)  # the spec error, or no daemon: either way, at once
