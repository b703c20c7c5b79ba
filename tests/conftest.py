"""Shared test helpers: write specs, run the real daemon as a subprocess, wait on conditions with deadlines."""

from __future__ import annotations

import compileall
import contextlib
import functools
import io
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from loguru import logger

from snackwatch import cli
from snackwatch.cli import main
from snackwatch.lock import instance_name

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(ROOT / "bench"))
from daemonlog import LogFile  # noqa: E402  # one log reader for the bench and these tests

T = TypeVar("T")
SnackEntry = str | dict[str, str]
IS_LINUX = sys.platform.startswith("linux")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")
# argv: LINK PLACE TARGET. A symlink LINK -> TARGET made, then exchanged with PLACE in one renameat2: no moment
# where PLACE is missing (a root daemon would make it again) and the attacker's swap cannot be raced.
EXCHANGE_FOR_SYMLINK = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
link, place = sys.argv[1], sys.argv[2]
os.symlink(sys.argv[3], link)
if libc.renameat2(-100, link.encode(), -100, place.encode(), 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
    raise OSError(ctypes.get_errno(), "renameat2")
"""


@functools.cache
def _nobody_runs(executable: str, code: str) -> str:
    """Why uid NOBODY cannot run `code` with `executable` (an empty string when it can)."""
    try:
        done = subprocess.run([*AS_NOBODY, executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=30)
    except OSError as error:
        return str(error)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit code nonzero"])[-1]


def require_nobody_runs(executable: str = sys.executable, code: str = "import snackwatch") -> None:
    """Skip (with the reason) a test whose attacker, uid NOBODY, cannot even start: an attack that could not run
    must not pass as 'nothing happened' (a checkout under a 0700 home directory, a venv only root can read)."""
    problem = _nobody_runs(executable, code)
    if problem:
        pytest.skip(f"uid {NOBODY} cannot run {executable} here ({problem}): the attack could not be played")


# poll(2) with timeout -1, or ppoll(2) with no timeout: /proc/PID/syscall's number and third argument
POLL_FOREVER = {"x86_64": {7: "0xffffffff", 271: "0x0"}, "aarch64": {73: "0x0"}}.get(platform.machine(), {})


def blocked_without_timeout(pid: int) -> bool:
    """Whether the daemon's main thread sleeps in poll(2) with no timeout: no timer of any part is pending."""
    number, *arguments = Path(f"/proc/{pid}/syscall").read_text().split()
    return number.isdigit() and len(arguments) > 2 and POLL_FOREVER.get(int(number)) == arguments[2]


def wait_until(predicate: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def write_spec(path: Path, snacks: Sequence[SnackEntry], pantry: str = "./pantry", extra: str = "") -> Path:
    """Write a valid spec file (atomically, like an editor's save by rename)."""
    lines = ["version: 1", f"pantry: {pantry}", "snacks:" if snacks else "snacks: []"]
    for snack in snacks:
        if isinstance(snack, str):
            lines.append(f"  - {json.dumps(snack)}")
        else:
            lines.append(f"  - name: {json.dumps(snack['name'])}")
            lines.extend(f"    {key}: {json.dumps(value)}" for key, value in snack.items() if key != "name")
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("\n".join(lines) + "\n" + extra)
    temp.rename(path)
    return path


@dataclass
class Running:
    """A `snackwatch run` subprocess logging JSON lines to a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    pantry: Path
    log: LogFile = field(init=False)

    def __post_init__(self) -> None:
        self.log = LogFile(self.log_path)

    def logs(self) -> list[dict[str, Any]]:
        """Every line so far: only what was appended since the last look is read and parsed."""
        return list(self.log.refresh())

    def events(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs() if entry.get("event") == event]

    def wait_event(self, event: str, timeout: float = 5.0, count: int = 1) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            assert self.proc.poll() is None or event == "stop", f"daemon exited early: {self.log_path.read_text()}"
            matches = self.events(event)
            return matches if len(matches) >= count else None

        return wait_until(found, timeout, f"log event {event!r} x{count}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _wait_first_status(running: Running, spec: Path, env: dict[str, str]) -> None:
    """After its start line the daemon tells what the first pass did, then writes its status file: once that
    file is there (or the daemon said it cannot write it), every line of the start is in the log."""
    if not env.get("STATE_DIRECTORY"):
        return
    status = Path(env["STATE_DIRECTORY"]) / f"{instance_name(spec)}.status.json"

    def written() -> bool:
        try:
            return bool(json.loads(status.read_text()).get("pid") == running.proc.pid)
        except (OSError, ValueError):
            return bool(running.events("state_unwritable"))

    wait_until(written, 5.0, "the daemon's first status file")


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    """A spec path in its own directory with a pantry next to it (./pantry)."""
    config = tmp_path / "config"
    config.mkdir()
    return config / "snacks.yaml"


def daemon_environment(base: Path) -> dict[str, str]:
    """The daemon's own runtime and state directories (0700, ours, under `base`) the way systemd hands them
    over: root ignores XDG variables. Nothing inherited from a service manager around the test run."""
    env = dict(os.environ)
    for name, folder in (("RUNTIME_DIRECTORY", "run"), ("STATE_DIRECTORY", "state")):
        (base / folder).mkdir(mode=0o700, exist_ok=True)
        env[name] = str(base / folder)
    inherited = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "SNACKWATCH_CONFIG")
    for name in (*inherited, "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        env.pop(name, None)
    env["SNACKWATCH_JOURNAL_SOCKET"] = str(base / "no-journal")  # never the host's journald
    return env


@pytest.fixture
def daemon_env(tmp_path: Path) -> dict[str, str]:
    return daemon_environment(tmp_path)


@pytest.fixture
def own_state_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime and state directories of a daemon run in-process (0700, ours), as systemd hands them over."""
    for name, folder in (("RUNTIME_DIRECTORY", "run"), ("STATE_DIRECTORY", "state")):
        (tmp_path / folder).mkdir(mode=0o700, exist_ok=True)
        monkeypatch.setenv(name, str(tmp_path / folder))


@contextlib.contextmanager
def daemon_starter(base: Path, base_env: dict[str, str]) -> Iterator[Callable[..., Running]]:
    """Start `python -m snackwatch run` on a spec (logs under `base`); wait until it is running; kill leftovers
    when the block ends."""
    started: list[Running] = []

    def start(
        spec: Path,
        *args: str,
        wait: bool = True,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        launcher: Sequence[str] = (sys.executable, "-m", "snackwatch"),
    ) -> Running:
        log_path = base / f"daemon-{len(started)}.log"
        command = [*prefix, *launcher, "run", "-c", str(spec), "--log-format", "json", *args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=log, env=env or base_env)
        running = Running(proc, log_path, spec.parent / "pantry")
        started.append(running)
        if wait:
            running.wait_event("start", timeout=10)
            _wait_first_status(running, spec, env or base_env)
        return running

    try:
        yield start
    finally:
        for running in started:
            print(f"--- daemon log {running.log_path.name} ---\n{running.log_path.read_text(errors='replace')}")
            if running.proc.poll() is None:
                running.proc.kill()
                running.proc.wait(5)


@pytest.fixture
def start_daemon(tmp_path: Path, daemon_env: dict[str, str]) -> Iterator[Callable[..., Running]]:
    """Start `python -m snackwatch run` on a spec; wait until it is running; kill leftovers at teardown."""
    with daemon_starter(tmp_path, daemon_env) as start:
        yield start


def needs_root_linux(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (IS_LINUX and IS_ROOT), reason=f"needs root on Linux: {reason}")


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """loguru records as dicts (level, message, extra fields), captured in-process: a list sink."""
    lines: list[dict[str, Any]] = []

    def sink(message: Any) -> None:
        record = message.record
        lines.append({"level": record["level"].name, "message": record["message"], **record["extra"]})

    sink_id = logger.add(sink, level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink_id)


def events(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == event]


def _directory_in_tmp(mode: int) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="snackwatch-test-", dir="/tmp"))
    path.chmod(mode)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A root-owned 0755 directory that another user can reach (pytest's tmp_path is under a 0700 directory)."""
    yield from _directory_in_tmp(0o755)


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A root-owned 1777 directory another user can reach and write (like /tmp)."""
    yield from _directory_in_tmp(0o1777)


def snackwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in process (main() with stdout/stderr captured and `env` as the whole environment): the same
    code path as the console script, without an interpreter start per call. Subprocess smoke tests follow."""
    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def inotify_mask(fd: int, directory: Path) -> int:
    """The mask the kernel holds for an inotify fd's watch on `directory` (from /proc/self/fdinfo)."""
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        fields = dict(field.split(":", 1) for field in line.split()[1:] if ":" in field)
        if line.startswith("inotify") and int(fields["ino"], 16) == directory.stat().st_ino:
            return int(fields["mask"], 16)
    raise AssertionError(f"no watch on {directory}")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging() replaces loguru's sinks and patcher and the root logger's handlers: put the defaults back."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logger.remove()
    logger.configure(patcher=lambda record: None)
    logger.add(sys.stderr)
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile snackwatch once: each daemon or command a test starts would otherwise compile it again where
    PYTHONDONTWRITEBYTECODE is set (as on CI: ~50 ms a start, over 10 s a suite)."""
    compileall.compile_dir(Path(cli.__file__).parent, quiet=1)
