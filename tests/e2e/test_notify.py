"""sd_notify against real AF_UNIX datagram sockets, the daemon's notifications, and journald's <N> prefix."""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import IS_LINUX, Running, write_spec
from loguru import logger

from snackwatch.logsetup import setup_logging, under_journald
from snackwatch.notify import Notifier


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, bind_address: str, env_value: str) -> None:
        self.env_value = env_value  # what NOTIFY_SOCKET says
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_address)
        self.received: list[str] = []

    def receive(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        message = self.sock.recv(4096).decode()
        self.received.append(message)
        return message

    def until(self, prefix: str, timeout: float = 5.0) -> str:
        """The next message starting with `prefix` (others are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.001, deadline - time.monotonic()))
            if message.startswith(prefix):
                return message

    def pending(self) -> list[str]:
        """Whatever already arrived, without waiting."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    """NOTIFY_SOCKET as a filesystem path, or as an abstract '@' name (Linux only)."""
    if request.param == "path":
        bound = Listener(str(tmp_path / "notify"), str(tmp_path / "notify"))
    elif IS_LINUX:
        name = f"snackwatch-test-{secrets.token_hex(8)}"
        bound = Listener("\0" + name, "@" + name)
    else:
        pytest.skip("abstract unix sockets are Linux only")
    yield bound
    bound.sock.close()


@pytest.fixture
def notifier(listener: Listener) -> Iterator[Notifier]:
    sender = Notifier({"NOTIFY_SOCKET": listener.env_value})
    yield sender
    sender.close()


# --- Notifier --------------------------------------------------------------------------------


def test_ready_carries_the_status(listener: Listener, notifier: Notifier) -> None:
    notifier.ready("2/2 snacks ok")
    assert listener.receive() == "READY=1\nSTATUS=2/2 snacks ok"


def test_status_is_sent_only_when_it_changes(listener: Listener, notifier: Notifier) -> None:
    notifier.ready("a")
    for status in ("a", "b", "b", "a", "a"):
        notifier.status(status)
    notifier.stopping()  # a marker: everything before it has arrived
    listener.until("STOPPING=1")
    assert listener.received == ["READY=1\nSTATUS=a", "STATUS=b", "STATUS=a", "STOPPING=1"]


def test_reloading_carries_the_monotonic_clock(listener: Listener, notifier: Notifier) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", listener.receive())
    assert match is not None and before <= int(match.group(1)) <= after


def test_stopping_and_watchdog(listener: Listener, notifier: Notifier) -> None:
    notifier.watchdog()
    notifier.stopping()
    assert [listener.receive(), listener.receive()] == ["WATCHDOG=1", "STOPPING=1"]


@pytest.mark.parametrize("value", ["", "relative/notify", "vsock:2:1234"])
def test_without_a_usable_socket_every_call_is_a_no_op(value: str) -> None:
    sender = Notifier({"NOTIFY_SOCKET": value} if value else {})
    assert not sender.send("READY=1")
    sender.ready("x")
    sender.status("y")
    sender.close()


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    sender = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not sender.send("READY=1")
    sender.close()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
    ids=["usec", "our-pid", "other-pid", "zero", "garbage", "unset"],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    assert Notifier(environ).watchdog_interval == interval


# --- the daemon's notifications --------------------------------------------------------------


@pytest.mark.parametrize("listener", ["path"], indirect=True)
def test_daemon_notifies_ready_status_watchdog_reloading_and_stopping(
    listener: Listener, spec_path: Path, daemon_env: dict[str, str], start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    env = dict(daemon_env, NOTIFY_SOCKET=listener.env_value, WATCHDOG_USEC="200000")
    running = start_daemon(spec_path, env=env, wait=False)
    assert listener.until("READY=1", 10).startswith("READY=1\nSTATUS=2/2 snacks ok, 0 repairs")
    assert sorted(os.listdir(running.pantry)) == ["Goldfish", "Pretzels"]  # READY=1 only after the first reconcile

    for _ in range(3):  # every 0.1 s: half of WATCHDOG_USEC
        listener.until("WATCHDOG=1", 2)
    (running.pantry / "Goldfish").unlink()
    assert listener.until("STATUS=").startswith("STATUS=2/2 snacks ok, 1 repair,")

    running.proc.send_signal(signal.SIGHUP)
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", listener.until("RELOADING=1"))
    assert listener.until("READY=1").startswith("READY=1\nSTATUS=")

    assert running.stop() == 0
    assert listener.until("STOPPING=1") == "STOPPING=1"


# --- journald's <N> prefix -------------------------------------------------------------------


def log_through_setup_logging(path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: str | None) -> list[str]:
    """Log a few lines through setup_logging() into `path`, JOURNAL_STREAM set to `journal_stream` (or its own)."""
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream or f"{info.st_dev}:{info.st_ino}")
        setup_logging(stream=stream, journal_socket=str(path.with_suffix(".no-journal")))  # the <N> form
        logger.info("restored Goldfish")
        logger.warning("conflict: <b>not a color tag</b>")
        logger.error("cannot restore Pretzels")
        logging.getLogger("watchdog.observers").warning("from the stdlib")
        logger.remove()
    return path.read_text().splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_journald_lines_carry_the_priority_and_no_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert log_through_setup_logging(tmp_path / "log", monkeypatch, None) == [
        "<6>restored Goldfish",
        "<4>conflict: <b>not a color tag</b>",
        "<3>cannot restore Pretzels",
        "<4>watchdog.observers: from the stdlib",
    ]


@pytest.mark.usefixtures("restore_logging")
def test_another_journal_stream_gets_the_normal_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = log_through_setup_logging(tmp_path / "log", monkeypatch, "1:2")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    restored Goldfish", lines[0]), lines


def test_under_journald_compares_device_and_inode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "log", "w") as stream, open(tmp_path / "other", "w") as other:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert under_journald(stream)
        assert not under_journald(other)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not under_journald(stream)


def test_watchdog_pings_are_scheduled_at_half_the_interval_by_the_loop() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "2000000"})
    sent: list[str] = []
    notifier.send = lambda message: sent.append(message) or True  # type: ignore[method-assign]
    assert notifier.next_due() is None  # not before the loop starts it
    notifier.start_watchdog(10.0)
    assert notifier.next_due() == 10.0
    for now in (10.0, 10.5, 10.99, 11.0, 11.2, 12.0):
        notifier.tick(now)
    assert sent == ["WATCHDOG=1"] * 3  # at 10.0, 11.0 and 12.0
    assert notifier.next_due() == 13.0
    assert Notifier({}).next_due() is None  # no watchdog asked for: nothing ever due
