"""Issue 10, items 3, 4, 6, 7, 9 played for real: an unprivileged user (uid 65534) against root's snackwatch."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import AS_NOBODY, EXCHANGE_FOR_SYMLINK, NOBODY, Running, needs_root_linux, wait_until, write_spec
from loguru import logger

from snackwatch.apply import create_snack
from snackwatch.chase import MAX_SYMLINKS, BlockedPath, open_directory
from snackwatch.cli import main
from snackwatch.desired import Desired, merge
from snackwatch.errors import SpecError
from snackwatch.logsetup import printable, setup_logging
from snackwatch.plan import Kind
from snackwatch.reconcile import Status, reconcile_all, reconcile_names
from snackwatch.spec import Defaults, Snack, Spec
from snackwatch.specset import SpecSet

SECRET = b"SECRET-" + b"s" * 65536  # big enough that writing it takes a while


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


def test_a_snack_without_mode_gets_0644_whatever_the_umask_after_its_content(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert create_snack(fd, "Cheese", Snack("Cheese", content="mozzarella\n"))
        finally:
            os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / "Cheese").st_mode) == 0o644
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


# --- item 4: the pantry path is walked like chase(CHASE_SAFE) ------------------------------------------------


def desired_for(pantry: Path, *snacks: Snack, owner: int | None = None) -> Desired:
    """A spec for `pantry`; `owner`: its `defaults.owner`, who may own the directories on the way besides root."""
    return merge([Spec(pantry.parent / "snacks.yaml", pantry, snacks, defaults=Defaults(owner=owner))])


@needs_root_linux("plays the owner of the pantry's parent against root")
def test_a_pantry_swapped_for_a_symlink_to_a_root_only_directory_is_refused(public_dir: Path) -> None:
    home = public_dir / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    root_only = public_dir / "root-only"
    root_only.mkdir(mode=0o700)
    pantry = home / "pantry"
    snacks = Snack("Goldfish"), Snack("drinks/Juice"), Snack("Secret", content="s", mode=0o600)
    desired = desired_for(pantry, *snacks, owner=NOBODY)  # the home's owner is trusted: declared
    assert {o.status for o in reconcile_all(desired)} == {Status.CREATED}
    swap = f"mv {pantry} {home / 'old'} && ln -s {root_only} {pantry}"
    subprocess.run([*AS_NOBODY, "sh", "-c", swap], check=True)

    outcomes = reconcile_all(desired)
    assert {(o.status, o.kind) for o in outcomes} == {(Status.CONFLICT, Kind.SYMLINK)} and len(outcomes) == 3
    for directory in desired.directories:  # every repair and every re-arm goes through open_directory
        outcomes = reconcile_names(desired, directory, desired.files[directory])
        assert all(o.status is Status.CONFLICT for o in outcomes)
        with pytest.raises(BlockedPath):
            open_directory(directory, str(pantry), create=True)
    assert os.listdir(root_only) == []


@pytest.mark.parametrize("absolute", [False, True])
def test_a_root_owned_symlink_in_a_root_owned_directory_is_followed(tmp_path: Path, absolute: bool) -> None:
    release = tmp_path / "release"
    (release / "v1").mkdir(parents=True)
    (release / "current").symlink_to(release / "v1" if absolute else "v1")
    desired = desired_for(release / "current" / "pantry", Snack("drinks/Juice"))
    assert [o.status for o in reconcile_all(desired)] == [Status.CREATED]
    assert (release / "v1" / "pantry" / "drinks" / "Juice").is_file()
    (release / "next").symlink_to("../release/v2")  # re-pointed by rename, as a deploy does
    os.rename(release / "next", release / "current")
    assert [o.status for o in reconcile_all(desired)] == [Status.CREATED]
    assert (release / "v2" / "pantry" / "drinks" / "Juice").is_file()


@pytest.mark.parametrize(
    ("link_owner", "holder_owner", "holder_mode"),
    [
        (NOBODY, 0, 0o755),  # another user's symlink in our directory
        (0, NOBODY, 0o755),  # our symlink in another user's directory (they could swap it)
        (0, 0, 0o775),  # a group may swap it
        (0, 0, 0o1777),  # /tmp: sticky, but anyone may plant one
    ],
)
@needs_root_linux("chowns to another user")
def test_an_untrusted_symlink_to_the_pantry_is_a_conflict(
    tmp_path: Path, link_owner: int, holder_owner: int, holder_mode: int
) -> None:
    holder, target = tmp_path / "holder", tmp_path / "target"
    holder.mkdir()
    target.mkdir()
    (holder / "pantry").symlink_to(target)
    os.lchown(holder / "pantry", link_owner, link_owner)
    os.chown(holder, holder_owner, holder_owner)
    holder.chmod(holder_mode)
    desired = desired_for(holder / "pantry", Snack("Goldfish"), owner=NOBODY)  # the holder's owner is declared
    assert [(o.status, o.kind) for o in reconcile_all(desired)] == [(Status.CONFLICT, Kind.SYMLINK)]
    assert os.listdir(target) == []


def test_symlink_loops_and_long_chains_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(BlockedPath):
        open_directory(str(tmp_path / "a"), str(tmp_path / "a"), create=True)
    (tmp_path / "d").mkdir()
    for hop in range(MAX_SYMLINKS + 1):  # l0 -> l1 -> ... -> l40 -> d
        (tmp_path / f"l{hop}").symlink_to(f"l{hop + 1}" if hop < MAX_SYMLINKS else "d")
    os.close(open_directory(str(tmp_path / "l1"), str(tmp_path / "l1"), create=False))
    with pytest.raises(BlockedPath):
        open_directory(str(tmp_path / "l0"), str(tmp_path / "l0"), create=False)


def test_a_file_on_the_way_to_the_pantry_is_a_conflict_and_missing_parts_are_made(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    desired = desired_for(tmp_path / "file" / "pantry", Snack("Goldfish"))
    assert [(o.status, o.kind) for o in reconcile_all(desired)] == [(Status.CONFLICT, Kind.FILE)]
    desired = desired_for(tmp_path / "a" / "b" / "pantry", Snack("c/Goldfish"))
    with pytest.raises(FileNotFoundError):
        open_directory(str(tmp_path / "a" / "b" / "pantry"), str(tmp_path / "a" / "b" / "pantry"), create=False)
    assert [o.status for o in reconcile_all(desired)] == [Status.CREATED]
    assert (tmp_path / "a" / "b" / "pantry" / "c" / "Goldfish").is_file()


# --- item 7: log lines carry no control characters and no priority the daemon did not choose ---------------


def log_hostile_lines(path: Path, monkeypatch: pytest.MonkeyPatch, *, journald: bool) -> list[str]:
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}" if journald else "1:2")
        setup_logging(
            stream=stream, log_file=str(path.with_suffix(".file")), journal_socket=str(path.with_suffix(".no"))
        )
        logger.info("restored {}", "x\n<0>forged emergency")
        logger.warning("conflict at {}", "\x1b[2J\x1b[31mred\x9b")
        try:
            raise OSError("bad\nname\x1b[0m")
        except OSError:
            logger.exception("repair failed")
        logging.getLogger("watchdog").warning("stdlib\r\n<1>too")
        logger.remove()
    return path.read_text().splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_journald_lines_cannot_be_forged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = log_hostile_lines(tmp_path / "log", monkeypatch, journald=True)
    assert lines[:3] == [
        r"<6>restored x\n<0>forged emergency",
        r"<4>conflict at \x1b[2J\x1b[31mred\x9b",
        "<3>repair failed",
    ]
    traceback_lines = lines[3:-1]
    assert traceback_lines[0] == "<3>Traceback (most recent call last):"
    assert traceback_lines[-2:] == ["<3>OSError: bad", r"<3>name\x1b[0m"]  # each line of it under <3>
    assert all(line.startswith("<3>") for line in traceback_lines)
    assert lines[-1] == r"<4>watchdog: stdlib\r\n<1>too"
    assert not any(char in "".join(lines) for char in "\x1b\x9b\r")
    file_lines = (tmp_path / "log.file").read_text().splitlines()
    assert file_lines[0].endswith(r"INFO    restored x\n<0>forged emergency") and "\x1b" not in file_lines[1]


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_let_no_escape_through_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = log_hostile_lines(tmp_path / "log", monkeypatch, journald=False)
    assert lines[0].endswith(r"INFO    restored x\n<0>forged emergency")
    assert lines[1].endswith(r"WARNING conflict at \x1b[2J\x1b[31mred\x9b")
    assert lines[-3:-1] == ["OSError: bad", r"name\x1b[0m"]
    assert not any(char in "".join(lines) for char in "\x1b\x9b\r")


def test_printable_escapes_controls_only() -> None:
    assert printable("tab\tstays, caf\u00e9 too") == "tab\tstays, caf\u00e9 too"
    assert printable("a\nb\rc\x00d\x7fe\x85") == r"a\nb\rc\x00d\x7fe\x85"


def test_a_conf_d_file_named_with_an_escape_is_reported_escaped(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "\x1b[2Jx.yaml").write_text("pantry: /p\nsnacks: [a\n")
    with pytest.raises(SpecError) as caught:
        SpecSet.load(confd)
    assert str(caught.value).startswith(f"{confd}/\\x1b[2Jx.yaml:2: invalid YAML")


@needs_root_linux("plays the owner of the pantry's parent against a root daemon")
def test_the_daemon_refuses_a_pantry_exchanged_for_a_symlink_at_runtime(
    public_dir: Path, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    home = public_dir / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    root_only = public_dir / "root-only"
    root_only.mkdir(mode=0o700)
    defaults = "defaults:\n  owner: 65534\n"  # the home's owner is trusted: declared
    spec = write_spec(tmp_path / "snacks.yaml", ["a", "drinks/Juice"], pantry=str(home / "pantry"), extra=defaults)
    running = start_daemon(spec)
    wait_until((home / "pantry" / "drinks" / "Juice").exists, what="the snacks created")
    exchange = [*AS_NOBODY, "/usr/bin/python3", "-c", EXCHANGE_FOR_SYMLINK, str(home / "link"), str(home / "pantry")]
    subprocess.run([*exchange, str(root_only)], check=True)  # atomically: the pantry is now that symlink
    conflicts = running.wait_event("conflict")  # the re-arm's full pass: one line for what is in the way
    assert {snack for line in conflicts for snack in line["snacks"]} == {"a", "drinks/Juice"}
    assert f"{home / 'pantry'} is a symlink owned by nobody: not followed" in conflicts[0]["message"]
    assert os.listdir(root_only) == []
    assert running.stop() == 0
