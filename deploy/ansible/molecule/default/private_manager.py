"""Start or stop a private `systemd --user` manager in a cgroup of its own, for the molecule scenario (root only).

The manager lives in a child of our cgroup in every hierarchy: in the root cgroup, `systemd --user` would move
every process on the machine into its init.scope. Its XDG_RUNTIME_DIR, XDG_CONFIG_HOME and XDG_STATE_HOME come
from the environment (molecule.yml sets them); the record of what was started and added is kept in RECORD.
tests/system/test_systemd.py imports its cgroup plumbing from here (one copy); this one works across playbook runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

IGNORED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM", "LISTEN_", "INVOCATION_ID", "MANAGERPID", "DBUS_")
# what a root `systemd --user` leaves in /run/systemd
ROOT_MANAGER_TRACES = ("system", "unit-root", "systemd-units-load")
# `python -c` launcher: join the cgroups (their cgroup.procs files) listed before "--", then exec what follows
JOIN_CGROUPS_AND_EXEC = (
    "import os, sys; from pathlib import Path; cut = sys.argv.index('--'); "
    "[Path(procs).write_text(str(os.getpid())) for procs in sys.argv[1:cut]]; "
    "os.execv(sys.argv[cut + 1], sys.argv[cut + 1 :])"
)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"private_manager: timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def own_cgroup_dirs() -> list[Path]:
    """This process's cgroup directory in every mounted hierarchy (cgroup v1 controllers and v2)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype, options = fields[fields.index("-") + 1], set(fields[fields.index("-") + 3].split(","))
        if fstype == "cgroup2":
            key: str | None = ""
        elif fstype == "cgroup":
            key = next((name for name in own if name and set(name.split(",")) <= options), None)
        else:
            continue
        if key is not None and key in own:
            dirs.append(Path(fields[4]) / os.path.relpath(own[key], fields[3]))
    return dirs


def make_cgroups(name: str) -> list[Path]:
    made: list[Path] = []
    for parent in own_cgroup_dirs():
        (parent / name).mkdir()
        made.append(parent / name)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty: no task could join
            if (parent / knob).exists():
                (parent / name / knob).write_text((parent / knob).read_text())
    return made


def cgroup_pids(dirs: list[Path]) -> set[int]:
    every_procs = (procs for path in filter(Path.exists, dirs) for procs in path.rglob("cgroup.procs"))
    return {pid for procs in every_procs for pid in procs_pids(procs)}


def procs_pids(procs: Path) -> list[int]:
    """The pids in one cgroup.procs file; none if that cgroup went away while we looked (systemd removes
    its units' cgroups as they stop)."""
    try:
        return [int(pid) for pid in procs.read_text().split()]
    except FileNotFoundError:
        return []


def start(record: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(IGNORED_ENV)}
    runtime_dir = Path(env["XDG_RUNTIME_DIR"])
    for name in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        Path(env[name]).mkdir(mode=0o700, parents=True, exist_ok=True)
    run = Path("/run/systemd")
    added = [str(run / name) for name in ROOT_MANAGER_TRACES if not (run / name).exists()]
    (run / "system").mkdir(parents=True, exist_ok=True)  # systemd --user exits at once without this marker
    cgroups = make_cgroups(f"snackwatch-molecule-{os.getpid()}")
    systemd = shutil.which("systemd") or "/usr/lib/systemd/systemd"
    procs = [str(path / "cgroup.procs") for path in cgroups]
    log_path = record.with_suffix(".log")
    with open(log_path, "wb") as log:
        manager = subprocess.Popen(
            [sys.executable, "-c", JOIN_CGROUPS_AND_EXEC, *procs, "--", systemd, "--user"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this helper and the playbook that ran it
        )
    record.write_text(json.dumps({"pid": manager.pid, "cgroups": [str(path) for path in cgroups], "added": added}))

    def listening() -> bool:
        if manager.poll() is not None:
            raise SystemExit(f"private_manager: systemd --user exited: {log_path.read_text()}")
        return (runtime_dir / "systemd" / "private").exists()

    wait_until(listening, 10, "the private systemd --user manager's socket")
    print(f"systemd --user pid {manager.pid}, XDG_RUNTIME_DIR={runtime_dir}")


def stop(record: Path) -> None:
    """SIGTERM the manager (it stops its units), kill what is left in its cgroup, remove what start() added."""
    if not record.exists():
        print("no private manager recorded: nothing to stop")
        return
    started = json.loads(record.read_text())
    cgroups = [Path(path) for path in started["cgroups"]]
    if started["pid"] in cgroup_pids(cgroups):  # still ours: it never left its cgroup
        os.kill(started["pid"], signal.SIGTERM)
        try:
            wait_until(lambda: started["pid"] not in cgroup_pids(cgroups), 15, "systemd --user to exit")
        except SystemExit as timed_out:
            print(timed_out)
    for pid in cgroup_pids(cgroups):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not cgroup_pids(cgroups), 10, "the private cgroup to empty")
    for path in filter(Path.exists, cgroups):
        for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            child.rmdir()
        path.rmdir()
    for trace in map(Path, started["added"]):
        with contextlib.suppress(OSError):  # a directory only if still empty: never someone else's
            trace.rmdir() if trace.is_dir() else trace.unlink(missing_ok=True)
    record.unlink()
    print(f"stopped systemd --user pid {started['pid']}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit("usage: private_manager.py start|stop RECORD")
    (start if sys.argv[1] == "start" else stop)(Path(sys.argv[2]))
