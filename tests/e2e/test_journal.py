"""Under journald: each record is one native-protocol datagram with filterable fields; no socket, the <N> form."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, needs_root_linux, wait_until, write_spec
from loguru import logger

from snackwatch.journal import SOCKET_VARIABLE, encode, field_name
from snackwatch.logsetup import setup_logging

WITH_JOURNAL_STREAM = (  # as systemd hands it over: JOURNAL_STREAM names the daemon's stderr
    "import os, sys; st = os.fstat(2); os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


JOURNALD = "/usr/lib/systemd/systemd-journald"
# Run as `unshare --mount --propagation private python -c REAL_JOURNAL SPEC PANTRY`: a real systemd-journald of its
# own (tmpfs over /run and /var/log in this mount namespace only), the daemon logging to it the way a unit does,
# one snack deleted and restored, then what `journalctl` finds by field, printed as JSON.
REAL_JOURNAL = r"""
import json, os, subprocess, sys, time
spec, pantry = sys.argv[1], sys.argv[2]
for target in ("/run", "/var/log"):
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)
os.makedirs("/run/systemd/journal")
os.makedirs("/run/log/journal")
quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
own = {key: value for key, value in os.environ.items() if not key.endswith("_DIRECTORY")}  # not the daemon's
journald = subprocess.Popen([JOURNALD], env=own, **quiet)
daemon = None
def until(test, what):
    deadline = time.monotonic() + 10
    while not test():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)
def journal(*args):
    command = ["journalctl", "--directory=/run/log/journal", "--no-pager", "-o", "json", *args]
    out = subprocess.run(command, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]
try:
    until(lambda: os.path.exists("/run/systemd/journal/socket"), "journald's socket")
    stream = os.fstat(2)  # stderr: a file here; systemd hands a unit its journal stream this way
    env = {**os.environ, "JOURNAL_STREAM": f"{stream.st_dev}:{stream.st_ino}"}
    env.pop("SNACKWATCH_JOURNAL_SOCKET", None)
    command = [sys.executable, "-m", "snackwatch", "run", "-c", spec, "--log-format", "json"]
    daemon = subprocess.Popen(command, env=env)
    until(lambda: journal("SYSLOG_IDENTIFIER=snackwatch", "EVENT=start"), "the start entry")
    os.unlink(os.path.join(pantry, "Goldfish"))
    until(lambda: journal("EVENT=restored"), "the restored entry")
    daemon.terminate()
    code = daemon.wait(10)
    until(lambda: journal("EVENT=stop"), "the stop entry")
    warnings = journal("-p", "warning", "SYSLOG_IDENTIFIER=snackwatch")
    print(json.dumps({"code": code, "goldfish": journal("SNACK=Goldfish"), "warnings": warnings}))
finally:
    for process in (daemon, journald):
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
""".replace("JOURNALD", repr(JOURNALD))


def decode(datagram: bytes) -> list[tuple[str, str]]:
    """journald's reading of a native datagram: KEY=value lines, or KEY, a 64-bit length, the value, a newline."""
    fields, at = [], 0
    while at < len(datagram):
        end = datagram.index(b"\n", at)
        line = datagram[at:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            at = end + 1
        else:
            key, (size,) = line, struct.unpack("<Q", datagram[end + 1 : end + 9])
            value = datagram[end + 9 : end + 9 + size]
            assert datagram[end + 9 + size : end + 10 + size] == b"\n"
            at = end + 10 + size
        fields.append((key.decode(), value.decode()))
    return fields


class Journal:
    """A datagram socket standing in for /run/systemd/journal/socket; entries() are the decoded datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setblocking(False)
        self.received: list[dict[str, list[str]]] = []

    def entries(self) -> list[dict[str, list[str]]]:
        while True:
            try:
                datagram = self.socket.recv(1 << 20)
            except BlockingIOError:
                return self.received
            entry: dict[str, list[str]] = {}
            for key, value in decode(datagram):
                entry.setdefault(key, []).append(value)
            self.received.append(entry)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "j.sock")
    yield journal
    journal.socket.close()


def under_journal(path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
    """setup_logging() with `path` as the stream systemd's JOURNAL_STREAM names, then a few records."""
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        setup_logging(stream=stream, **options)
        logger.bind(event="restored", snacks=["Goldfish", "Pretzels"], trigger="delete").info("restored Goldfish")
        logger.bind(event="fight", snack="Goldfish").warning("fight over Goldfish")
        try:
            raise OSError("disk\nfull")
        except OSError:
            logger.opt(exception=True).bind(event="failing").error("cannot restore {}", "x\n<0>forged")
        logger.remove()


def test_the_datagram_format_is_journalds() -> None:
    data = encode([("MESSAGE", "one line"), ("TRACE", "two\nlines"), ("EMPTY", "")])
    assert data == b"MESSAGE=one line\nTRACE\n" + struct.pack("<Q", 9) + b"two\nlines\nEMPTY=\n"
    assert decode(data) == [("MESSAGE", "one line"), ("TRACE", "two\nlines"), ("EMPTY", "")]
    assert [field_name(key) for key in ("snack", "_PID", "9lives", "a-b.c", "")] == [
        "SNACK",
        "PID",
        "LIVES",
        "A_B_C",
        "FIELD",
    ]


@pytest.mark.usefixtures("restore_logging")
def test_records_go_to_the_journal_socket_with_their_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: Journal
) -> None:
    under_journal(tmp_path / "stderr", monkeypatch, fmt="json", journal_socket=str(journal.path))
    assert (tmp_path / "stderr").read_text() == ""  # nothing on the stream: every entry went as a datagram
    restored, fight, failing = journal.entries()
    assert restored["MESSAGE"] == ["restored Goldfish"] and restored["PRIORITY"] == ["6"]
    assert restored["SYSLOG_IDENTIFIER"] == ["snackwatch"] and restored["EVENT"] == ["restored"]
    assert restored["SNACK"] == ["Goldfish", "Pretzels"] and restored["TRIGGER"] == ["delete"]  # SNACK=x filters
    assert fight["SNACK"] == ["Goldfish"] and fight["PRIORITY"] == ["4"]  # `snack=` is a one-item list too
    assert failing["PRIORITY"] == ["3"] and failing["EVENT"] == ["failing"]
    message = failing["MESSAGE"][0].split("\n")
    assert message[0] == r"cannot restore x\n<0>forged"  # the message itself is one line, escaped
    assert message[1] == "Traceback (most recent call last):" and message[-2:] == ["OSError: disk", "full"]
    assert all(key.isupper() and not key.startswith("_") for entry in journal.entries() for key in entry)


@pytest.mark.usefixtures("restore_logging")
def test_without_the_socket_each_line_keeps_its_priority_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    under_journal(tmp_path / "stderr", monkeypatch, fmt="json", journal_socket=str(tmp_path / "absent"))
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines[0].startswith("<6>{") and lines[1].startswith("<4>{") and lines[2].startswith("<3>{")
    restored, fight = json.loads(lines[0][3:]), json.loads(lines[1][3:])
    assert restored["snacks"] == ["Goldfish", "Pretzels"] and fight["snacks"] == ["Goldfish"]
    assert "snack" not in fight  # one shape per concept: snacks, a list


@pytest.mark.usefixtures("restore_logging")
def test_the_log_file_honours_the_log_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = tmp_path / "logs" / "snackwatch.log"
    under_journal(tmp_path / "stderr", monkeypatch, fmt="json", log_file=str(log_file), journal_socket="/nonexistent")
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [entry["event"] for entry in entries] == ["restored", "fight", "failing"]
    assert entries[1]["snacks"] == ["Goldfish"] and entries[0]["level"] == "INFO"
    under_journal(tmp_path / "stderr", monkeypatch, fmt="text", log_file=str(log_file), journal_socket="/nonexistent")
    assert log_file.read_text().splitlines()[3].endswith("INFO    restored Goldfish")  # appended, as text


def test_the_daemon_under_journald_sends_its_events(
    spec_path: Path, start_daemon: Any, daemon_env: dict[str, str], journal: Journal
) -> None:
    write_spec(spec_path, ["Goldfish"])
    env = {**daemon_env, SOCKET_VARIABLE: str(journal.path)}
    running: Running = start_daemon(spec_path, wait=False, env=env, prefix=[sys.executable, "-c", WITH_JOURNAL_STREAM])
    events = lambda: {entry["EVENT"][0]: entry for entry in journal.entries() if "EVENT" in entry}  # noqa: E731
    wait_until(lambda: "start" in events(), 10, "the start entry")
    (running.pantry / "Goldfish").unlink()
    wait_until(lambda: "restored" in events(), 5, "the restored entry")
    assert events()["restored"]["SNACK"] == ["Goldfish"] and events()["restored"]["PRIORITY"] == ["6"]
    assert running.stop() == 0
    wait_until(lambda: "stop" in events(), 5, "the stop entry")
    assert running.log_path.read_text() == ""  # stderr stayed empty: the journal got everything


@needs_root_linux("mounts a tmpfs over /run in a mount namespace of its own for a private journald")
@pytest.mark.skipif(
    not (os.access(JOURNALD, os.X_OK) and shutil.which("unshare") and shutil.which("journalctl")),
    reason="no systemd-journald, unshare or journalctl here",
)
def test_a_real_journald_files_the_daemons_entries_by_field(spec_path: Path, daemon_env: dict[str, str]) -> None:
    """`journalctl SNACK=Goldfish` and `journalctl -p warning` answer as the README says, from a real journald."""
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    (spec_path.parent / "pantry" / "Pretzels").mkdir(parents=True)  # a conflict: a warning
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", REAL_JOURNAL]
    result = subprocess.run(
        [*command, str(spec_path), str(spec_path.parent / "pantry")],
        capture_output=True,
        text=True,
        timeout=60,
        env=daemon_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["code"] == 0 and result.stderr == ""  # the daemon's stderr stayed empty: all went to the journal
    about_goldfish = {entry["EVENT"] for entry in found["goldfish"]}
    assert {"created", "restored"} <= about_goldfish, found["goldfish"]
    restored = next(entry for entry in found["goldfish"] if entry["EVENT"] == "restored")
    assert restored["PRIORITY"] == "6" and restored["MESSAGE"] == "restored Goldfish"
    assert restored["SYSLOG_IDENTIFIER"] == "snackwatch" and restored["_TRANSPORT"] == "journal"
    warnings = [(entry["EVENT"], entry["PRIORITY"], entry.get("SNACK")) for entry in found["warnings"]]
    assert warnings == [("conflict", "4", "Pretzels")], warnings


@pytest.mark.usefixtures("restore_logging")
def test_an_entry_the_journal_refuses_goes_to_the_stream_with_its_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: Journal
) -> None:
    """journald restarting (its socket gone for a moment): the line is not lost, it is written in the <N> form."""
    with open(tmp_path / "stderr", "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        setup_logging(stream=stream, journal_socket=str(journal.path))
        logger.bind(event="restored", snacks=["Goldfish"]).info("restored Goldfish")
        journal.path.unlink()  # the socket's name is gone: sendto fails with ENOENT
        logger.bind(event="conflict", snack="Pretzels").warning("conflict at Pretzels")
        logger.remove()
    assert [entry["MESSAGE"] for entry in journal.entries()] == [["restored Goldfish"]]
    assert (tmp_path / "stderr").read_text() == "<4>conflict at Pretzels\n"
