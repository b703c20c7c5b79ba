"""The bench's child processes (daemons, restorers, the seed loop), their logs, and what /proc says of them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from daemonlog import LogFile

ROOT = Path(__file__).resolve().parent
PR_SET_PDEATHSIG = 1
QUEUE_SYSCTL = Path("/proc/sys/fs/inotify/max_queued_events")
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the bench dies (even by SIGKILL); own process group."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Every process the bench started, each in its own session; `stop_all` ends them and their children."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path = Path("/"),
        env: dict[str, str] | None = None,
        stderr: IO[bytes] | None = None,
        stdout: int | IO[bytes] = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,  # not the caller's: `python -m` would import a snackwatch/ found there
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the bench has one thread
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
        """SIGTERM the process group, SIGKILL it after `timeout`; returns the exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGCONT)  # in case it was stopped mid-measurement
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            code = proc.wait()
        _killpg(proc.pid)  # leftovers in the group (the seed's `sleep 5`)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=3.0)


def _killpg(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass
class Daemon:
    """One `snackwatch run` child logging JSON lines to a file."""

    proc: subprocess.Popen[bytes]
    log: LogFile
    started_at: float  # perf_counter() just before the spawn

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fell_back(self) -> bool:
        """Whether it fell back to polling at runtime (inotify limits hit, e.g. lowered by a test beside the bench)."""
        return bool(self.log.events("watch_limit"))

    def wait_event(self, event: str, timeout: float) -> float:
        """Poll the log until `event` appears; returns perf_counter() when it was seen."""
        deadline = time.perf_counter() + timeout
        while not self.log.events(event):
            if self.proc.poll() is not None:
                raise RuntimeError(f"snackwatch exited ({self.proc.returncode}): {self.log.path.read_text()[-2000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no {event!r} line from snackwatch within {timeout:g} s")
            time.sleep(0.002)
        return time.perf_counter()


def daemon_env(runtime_dir: Path) -> dict[str, str]:
    """The environment of a daemon: its own lock and state directories (as root, XDG_* would be ignored)."""
    env = dict(os.environ)
    env["RUNTIME_DIRECTORY"] = str(runtime_dir)
    env["STATE_DIRECTORY"] = str(runtime_dir.parent / "state")
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "SNACKWATCH_CONFIG"):
        env.pop(name, None)
    return env


def start_daemon(
    children: Children, spec: Path, backend: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Daemon:
    """Start `python -m snackwatch run` on `spec` with `--watcher backend`; does not wait for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = workdir / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    log_path = workdir / "daemon.log"
    argv = [sys.executable, "-m", "snackwatch", "run", "-c", str(spec), "--log-format", "json", "--watcher", backend]
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = children.spawn(argv, cwd=workdir, env=daemon_env(runtime) | (extra_env or {}), stderr=log)
    return Daemon(proc, LogFile(log_path), started)


def start_floor(children: Children, pantry: Path) -> subprocess.Popen[bytes]:
    """Start the minimal raw-inotify restorer on `pantry` and wait until its watch is armed."""
    proc = children.spawn([sys.executable, str(ROOT / "rawinotify.py"), str(pantry)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("the floor restorer did not start")
    return proc


# --- /proc -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadStat:
    """One thread's counters: CPU ticks (utime+stime), context switches, where it sleeps."""

    tid: int
    comm: str
    ticks: int
    child_ticks: int  # cutime+cstime: waited-for children (the seed's date/touch/sleep)
    voluntary: int
    involuntary: int
    wchan: str


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def thread_stat(task: Path) -> ThreadStat | None:
    """Counters of one /proc/PID/task/TID, or None if it is gone."""
    stat = _read(task / "stat")
    if not stat:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state) of proc(5)
    status = dict(line.split(":", 1) for line in _read(task / "status").splitlines() if ":" in line)
    return ThreadStat(
        tid=int(task.name),
        comm=_read(task / "comm").strip(),
        ticks=int(fields[11]) + int(fields[12]),
        child_ticks=int(fields[13]) + int(fields[14]),
        voluntary=int(status.get("voluntary_ctxt_switches", "0")),
        involuntary=int(status.get("nonvoluntary_ctxt_switches", "0")),
        wchan=_read(task / "wchan").strip().split(".")[0] or "-",  # poll_schedule_timeout.constprop.0
    )


def threads(pid: int) -> dict[int, ThreadStat]:
    """Every thread of `pid` by tid."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = thread_stat(task)
        if stat is not None:
            found[stat.tid] = stat
    return found


def thread_states(pid: int) -> list[str]:
    """The state letter (R, S, T, ...) of each thread of `pid`."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = _read(task / "stat")
        if stat:
            states.append(stat[stat.rindex(")") + 2])
    return states


def cpu_ticks(pid: int) -> int:
    """utime+stime of the whole process `pid` (all its threads), in clock ticks."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of `pid` in ns (schedstat: finer than ticks, which round 10 ms away)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = _read(task / "schedstat").split()
        total += int(fields[0]) if fields else 0
    return total


def wait_settled(pid: int, quiet: float = 0.05, timeout: float = 5.0) -> float:
    """Until `pid` spent no CPU for `quiet` seconds (a daemon past its start's tail: the status write, the owner
    look after READY); returns the seconds waited."""
    started = time.perf_counter()
    deadline = started + timeout
    last = cpu_ns(pid)
    while time.perf_counter() < deadline:
        time.sleep(quiet)
        now = cpu_ns(pid)
        if now == last:
            break
        last = now
    return time.perf_counter() - started


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS of `pid` in KiB (or another KiB field of /proc/PID/status: VmHWM is the peak RSS)."""
    for line in _read(Path(f"/proc/{pid}/status")).splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def max_queued_events(value: int) -> Iterator[int]:
    """Lower fs.inotify.max_queued_events (for instances created inside the block); always restore it,
    unless someone else changed it meanwhile (a test suite running beside the bench): theirs stands."""
    original = QUEUE_SYSCTL.read_text().strip()
    QUEUE_SYSCTL.write_text(f"{value}\n")
    try:
        yield int(original)
    finally:
        if QUEUE_SYSCTL.read_text().strip() == str(value):
            QUEUE_SYSCTL.write_text(f"{original}\n")


def queued_events_limit() -> int:
    return int(QUEUE_SYSCTL.read_text())
