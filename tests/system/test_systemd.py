"""snackwatch under a real systemd: the shipped units, run by a private `systemd --user` manager."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import IS_LINUX, IS_ROOT, Running, SnackEntry, wait_until, write_spec

from snackwatch import units

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy/ansible/molecule/default"))
from private_manager import (  # one copy of the cgroup plumbing, shared with the molecule scenario
    IGNORED_ENV,
    JOIN_CGROUPS_AND_EXEC,
    ROOT_MANAGER_TRACES,
    own_cgroup_dirs,
    procs_pids,
)

SYSTEMD = shutil.which("systemd") or next(
    (path for path in ("/usr/lib/systemd/systemd", "/lib/systemd/systemd") if os.access(path, os.X_OK)), None
)
HAVE_SYSTEMD = IS_LINUX and SYSTEMD is not None and shutil.which("systemctl") is not None
HAVE_ANALYZE = IS_LINUX and shutil.which("systemd-analyze") is not None
SHIPPED = Path(__file__).resolve().parents[2] / "systemd"
UNIT = "snackwatch.service"
HARDENED_UNIT = "snackwatch-hardened.service"
WATCHDOG_SEC = 0.5  # the ping schedule itself is tested in-process (test_notify.py)
# The test unit restarts after 100 ms, not the shipped 2 s: the point is that Restart=on-failure restarts it at all.
RESTART_SEC = 0.1


def _manager_missing() -> str:
    if not HAVE_SYSTEMD:
        return "systemd is not installed (no systemd or systemctl)"
    return "" if IS_ROOT else "a private systemd --user manager needs root here (own cgroups, /run/systemd/system)"


MANAGER_MISSING = _manager_missing()
needs_manager = pytest.mark.skipif(bool(MANAGER_MISSING), reason=MANAGER_MISSING)
needs_analyze = pytest.mark.skipif(not HAVE_ANALYZE, reason="systemd is not installed (no systemd-analyze)")
# `python -c` prefix that hands the daemon what systemd would: JOURNAL_STREAM naming its stderr
WITH_JOURNAL_STREAM = (
    "import os, sys; st = os.fstat(2); os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def tmp_env(tmp_path: Path) -> dict[str, str]:
    """systemd-analyze's scratch (TMPDIR) and, for --user, its runtime directory, inside `tmp_path`."""
    (tmp_path / "run").mkdir(mode=0o700, exist_ok=True)
    return dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"), TMPDIR=str(tmp_path))


def snackwatch_unit(*args: str, python: str = sys.executable) -> str:
    """What `snackwatch unit [--user]` prints for `python` (by default this interpreter)."""
    done = subprocess.run([python, "-m", "snackwatch", "unit", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- a private cgroup and a private systemd --user manager -------------------------------------


class PrivateCgroup:
    """A child of our cgroup in every hierarchy. A manager started in it owns only what it starts
    (in the root cgroup, `systemd --user` would move every process on the machine into its init.scope),
    and teardown can find and kill anything left in it."""

    def __init__(self, name: str) -> None:
        self.dirs: list[Path] = []
        try:
            for parent in own_cgroup_dirs():
                (parent / name).mkdir()
                self.dirs.append(parent / name)
                for knob in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty: no task could join
                    if (parent / knob).exists():
                        (parent / name / knob).write_text((parent / knob).read_text())
        except OSError:
            self.remove()
            raise

    def run_inside(self, command: list[str]) -> list[str]:
        """`command`, prefixed so that it joins these cgroups before it starts."""
        return [
            sys.executable,
            "-c",
            JOIN_CGROUPS_AND_EXEC,
            *(str(path / "cgroup.procs") for path in self.dirs),
            "--",
            *command,
        ]

    def pids(self) -> set[int]:
        every_procs = (procs for path in filter(Path.exists, self.dirs) for procs in path.rglob("cgroup.procs"))
        return {pid for procs in every_procs for pid in procs_pids(procs)}

    def remove(self) -> None:
        """Kill whatever is left inside, then remove every directory, deepest first."""
        for pid in self.pids():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.pids(), 10, "the private cgroup to empty")
        for path in filter(Path.exists, self.dirs):
            for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                child.rmdir()
            path.rmdir()


class UserManager:
    """`systemd --user` with its own runtime, config (the spec's %E) and state directories under `root`."""

    def __init__(self, root: Path) -> None:
        self.runtime_dir = root / "run"
        self.config_home = root / "config"
        self.state_home = root / "state"
        self.unit_dir = self.config_home / "systemd" / "user"
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.unit_dir.mkdir(parents=True)
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(IGNORED_ENV)}
        self.env.update(
            XDG_RUNTIME_DIR=str(self.runtime_dir),
            XDG_CONFIG_HOME=str(self.config_home),
            XDG_STATE_HOME=str(self.state_home),
        )
        self.log_path = root / "manager.log"
        self.unit_log = root / "unit.log"  # what the user unit's commands write (no journald here)
        self.cgroup = PrivateCgroup(f"snackwatch-test-{os.getpid()}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert SYSTEMD is not None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cgroup.run_inside([SYSTEMD, "--user"]),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_until(self._listening, 10, "the private systemd --user manager's socket")

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"systemd --user exited: {self.log_path.read_text()}"
        return (self.runtime_dir / "systemd" / "private").exists()

    def close(self) -> None:
        """SIGTERM: the manager stops its units and exits; then nothing may be left in its cgroup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.cgroup.remove()

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 or not check, f"systemctl --user {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        shown = {}
        for line in self.systemctl("show", unit, f"--property={','.join(properties)}").stdout.splitlines():
            name, _, value = line.partition("=")
            shown[name] = value
        return shown

    def install(self, name: str, text: str, drop_in: str = "") -> None:
        (self.unit_dir / name).write_text(text)
        if drop_in:
            (self.unit_dir / f"{name}.d").mkdir(exist_ok=True)
            (self.unit_dir / f"{name}.d" / "test.conf").write_text(drop_in)
        self.systemctl("daemon-reload")


@pytest.fixture(scope="module")
def run_systemd_traces() -> Iterator[None]:
    """Run as root, systemd --user and systemd-analyze leave files in /run/systemd: what we added goes again."""
    run = Path("/run/systemd")
    added = [run / name for name in ROOT_MANAGER_TRACES if not (run / name).exists()]
    yield
    for path in added:
        with contextlib.suppress(OSError):  # a directory only if still empty: never someone else's
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def systemd_marker(run_systemd_traces: None) -> None:
    """systemd --user exits at once unless /run/systemd/system exists (the "booted with systemd" marker)."""
    Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def box() -> Iterator[Path]:
    """Scratch space outside /tmp: the hardened unit has PrivateTmp=yes, and must still see the spec,
    its pantry and the manager's notify socket."""
    root = Path(tempfile.mkdtemp(prefix="snackwatch-test-", dir="/var/lib"))
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def manager(systemd_marker: None, box: Path) -> Iterator[UserManager]:
    started = UserManager(box / "manager")
    try:
        started.start()
        yield started
    finally:
        started.close()


# --- the user unit -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_unit(manager: UserManager) -> str:
    """The user unit as `snackwatch unit --user` prints it, installed with a short WatchdogSec and RestartSec (the
    watchdog and the restart are what is tested here, not the shipped delays). The manager runs as
    root here, and root ignores XDG_STATE_HOME: STATE_DIRECTORY keeps its state in the box, not /var/lib."""
    state = f"Environment=STATE_DIRECTORY={manager.state_home / 'snackwatch'}\n"
    output = f"StandardOutput=append:{manager.unit_log}\nStandardError=append:{manager.unit_log}\n"
    timing = f"WatchdogSec={int(WATCHDOG_SEC * 1000)}ms\nRestartSec={int(RESTART_SEC * 1000)}ms\n"
    manager.install(UNIT, snackwatch_unit("--user"), f"[Service]\n{timing}{state}{output}")
    return UNIT


@pytest.fixture
def user_spec(manager: UserManager, user_unit: str, box: Path) -> Iterator[Path]:
    """A fresh %E/snackwatch/snacks.yaml, a symlink to spec/snacks.yaml: an edit there is seen only on reload."""
    for folder in (manager.config_home / "snackwatch", box / "spec"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    target = write_spec(box / "spec" / "snacks.yaml", ["Goldfish", "Pretzels"], pantry=str(box / "spec" / "pantry"))
    (manager.config_home / "snackwatch" / "snacks.yaml").symlink_to(target)
    yield target
    manager.systemctl("stop", user_unit)
    manager.systemctl("reset-failed", user_unit, check=False)


def start(manager: UserManager, unit: str) -> dict[str, str]:
    manager.systemctl("start", unit)
    return manager.show(unit, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Result")


def process_environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return {name: value for name, _, value in (entry.partition("=") for entry in entries) if name}


def proc_status(pid: int) -> dict[str, str]:
    fields = (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: value.strip() for name, value in fields}


@needs_manager
def test_start_returns_once_ready_after_the_first_reconcile(manager: UserManager, user_spec: Path) -> None:
    state = start(manager, UNIT)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running")
    assert sorted(os.listdir(user_spec.parent / "pantry")) == ["Goldfish", "Pretzels"]  # READY=1 came after them
    assert "2/2 snacks ok" in state["StatusText"]


@needs_manager
def test_a_deleted_snack_comes_back_and_status_counts_it(manager: UserManager, user_spec: Path) -> None:
    start(manager, UNIT)
    snack = user_spec.parent / "pantry" / "Goldfish"
    snack.unlink()
    wait_until(snack.exists, 5, "Goldfish to be restored")
    wait_until(lambda: "1 repair," in manager.show(UNIT, "StatusText")["StatusText"], 5, "STATUS= to count it")


@needs_manager
def test_reload_applies_an_edited_spec(manager: UserManager, user_spec: Path) -> None:
    start(manager, UNIT)
    # an edit to the symlink's target, then an explicit reload (RELOADING=1 ... READY=1)
    write_spec(user_spec, ["Goldfish", "Pretzels", "Popcorn"], pantry=str(user_spec.parent / "pantry"))
    manager.systemctl("reload", UNIT)
    wait_until((user_spec.parent / "pantry" / "Popcorn").exists, 5, "Popcorn after the reload")
    wait_until(lambda: "3/3 snacks ok" in manager.show(UNIT, "StatusText")["StatusText"], 5, "STATUS= after reload")
    assert manager.show(UNIT, "ActiveState")["ActiveState"] == "active"  # RELOADING=1 was followed by READY=1


@needs_manager
def test_watchdog_pings_keep_a_healthy_service_running_and_a_hung_daemon_is_restarted(
    manager: UserManager, user_spec: Path
) -> None:
    """One start for both sides of the watchdog: pings keep the service past its period; once the loop stops
    pinging, the watchdog kills it and Restart=on-failure starts it again."""
    before = start(manager, UNIT)
    first_ping = int(manager.show(UNIT, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
    time.sleep(1.6 * WATCHDOG_SEC)  # deliberate: outlive the watchdog period (the ping schedule: test_notify.py)
    after = manager.show(UNIT, "ActiveState", "MainPID", "NRestarts", "WatchdogTimestampMonotonic")
    assert (after["ActiveState"], after["MainPID"], after["NRestarts"]) == ("active", before["MainPID"], "0")
    assert int(after["WatchdogTimestampMonotonic"]) > first_ping
    hung = int(before["MainPID"])
    os.kill(hung, signal.SIGSTOP)  # the loop stops: no more WATCHDOG=1
    try:
        wait_until(lambda: manager.show(UNIT, "Result")["Result"] == "watchdog", 10 * WATCHDOG_SEC, "the watchdog")
    finally:
        with contextlib.suppress(ProcessLookupError):  # systemd's SIGABRT (+SIGCONT) may have ended it already
            os.kill(hung, signal.SIGKILL)
    restarted = wait_until(lambda: _restarted(manager), 10, "Restart=on-failure to start it again")
    assert restarted["MainPID"] != str(hung)


def _restarted(manager: UserManager) -> dict[str, str] | None:
    state = manager.show(UNIT, "ActiveState", "SubState", "NRestarts", "MainPID")
    running = (state["ActiveState"], state["SubState"]) == ("active", "running")
    return state if running and state["NRestarts"] == "1" else None


@needs_manager
def test_stop_leaves_it_inactive_with_result_success(manager: UserManager, user_spec: Path) -> None:
    start(manager, UNIT)
    manager.systemctl("stop", UNIT)
    state = manager.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert (state["ActiveState"], state["Result"], state["ExecMainStatus"]) == ("inactive", "success", "0")


@needs_manager
def test_reload_of_an_invalid_spec_fails_and_the_daemon_keeps_its_spec(manager: UserManager, user_spec: Path) -> None:
    pid = start(manager, UNIT)["MainPID"]
    user_spec.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - Goldfish\n  - [Pretzels\n")
    logged = manager.unit_log.stat().st_size
    done = manager.systemctl("reload", UNIT, check=False)
    assert done.returncode != 0, done.stdout + done.stderr  # ExecReload= checked the spec first: no signal sent
    config = manager.config_home / "snackwatch" / "snacks.yaml"  # %E/snackwatch/snacks.yaml, a link to user_spec
    said = manager.unit_log.read_text()[logged:]
    assert f"snackwatch: {config}:5: invalid YAML" in said  # check's one line, in the unit's log (the journal)
    state = manager.show(UNIT, "ActiveState", "MainPID")
    assert state == {"ActiveState": "active", "MainPID": pid}
    snack = user_spec.parent / "pantry" / "Pretzels"
    snack.unlink()
    wait_until(snack.exists, 5, "Pretzels restored: the daemon keeps its last good spec")


@needs_manager
def test_restart_after_a_typo_runs_on_the_last_good_spec(manager: UserManager, user_spec: Path) -> None:
    start(manager, UNIT)  # the spec is applied, so saved as the last good one
    user_spec.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - Goldfish\n  - [Pretzels\n")
    manager.systemctl("stop", UNIT)
    (user_spec.parent / "pantry" / "Pretzels").unlink()
    state = start(manager, UNIT)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running")
    assert "running on the last good spec of " in state["StatusText"], state
    assert "snacks.yaml:5: invalid YAML" in state["StatusText"]
    assert (user_spec.parent / "pantry" / "Pretzels").exists()


@needs_manager
def test_a_broken_spec_fails_the_start_without_restarts(manager: UserManager, user_spec: Path) -> None:
    for saved in (manager.state_home / "snackwatch").glob("*.last-good.json"):
        saved.unlink()  # a first start: no last good spec to run on
    user_spec.write_text("version: 1\nsnacks: [Goldfish\n")
    assert manager.systemctl("start", UNIT, check=False).returncode != 0
    state = manager.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert state == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "2", "NRestarts": "0"}


# --- the hardened system unit ----------------------------------------------------------------


def venv_running_this_snackwatch(where: Path) -> str:
    """A venv at `where` (without pip: quick) whose python imports this snackwatch and its dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True)
    python = str(where / "bin" / "python3")
    purelib = [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    site_packages = Path(subprocess.run(purelib, check=True, capture_output=True, text=True).stdout.strip())
    this_snackwatch = [*site.getsitepackages(), str(Path(units.__file__).resolve().parent.parent)]
    (site_packages / "this-snackwatch.pth").write_text("".join(f"{path}\n" for path in this_snackwatch))
    return python


@pytest.fixture(params=["this", "/tmp", "/var/tmp"], ids=["this-python", "venv-in-tmp", "venv-in-var-tmp"])
def hardened_python(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """The Python to render the hardened unit with (this one, or a venv where PrivateTmp=yes hides it),
    and a scratch folder under /tmp or /var/tmp that the unit must not see."""
    where = "/tmp" if request.param == "this" else request.param
    scratch = Path(tempfile.mkdtemp(prefix="snackwatch-test-", dir=where))
    try:
        yield (sys.executable if request.param == "this" else venv_running_this_snackwatch(scratch / "venv")), scratch
    finally:
        shutil.rmtree(scratch)


@needs_manager
def test_hardened_system_unit_creates_snacks_with_cap_chown_alone(
    manager: UserManager, box: Path, hardened_python: tuple[str, Path]
) -> None:
    """`snackwatch unit` with every sandboxing setting kept; only its spec and pantry move into the box. Its one
    capability, CAP_CHOWN, and the chown calls its seccomp filter lets through give a snack its declared owner."""
    python, scratch = hardened_python
    system = Path(tempfile.mkdtemp(prefix="system-", dir=box))
    snacks: list[SnackEntry] = [
        "Goldfish",
        {"name": "Cheese", "content": "brie\n", "mode": "0640"},
        {"name": "Theirs", "owner": "65534", "group": "65534"},
        {"name": "link", "type": "symlink", "target": "Cheese", "owner": "65534"},
    ]
    spec = write_spec(system / "snacks.yaml", snacks)
    pantry = system / "pantry"  # missing: ExecStartPre= creates it
    text = snackwatch_unit(python=python).replace("/etc/snackwatch/snacks.yaml", str(spec))
    assert text.count("/pantry\n") == 2  # ExecStartPre= and ReadWritePaths=
    assert "\nPrivateTmp=yes\n" in text and "\nProtectSystem=strict\n" in text
    manager.install(HARDENED_UNIT, text.replace("/pantry\n", f"{pantry}\n"))
    (scratch / "not-bound").write_text("the host's /tmp or /var/tmp\n")
    try:
        state = start(manager, HARDENED_UNIT)
        assert state["ActiveState"] == "active"
        assert sorted(os.listdir(pantry)) == ["Cheese", "Goldfish", "Theirs", "link"]
        assert (pantry / "Cheese").read_text() == "brie\n" and (pantry / "Cheese").stat().st_mode & 0o777 == 0o640
        theirs, link = os.lstat(pantry / "Theirs"), os.lstat(pantry / "link")
        assert (theirs.st_uid, theirs.st_gid, link.st_uid) == (65534, 65534, 65534)
        sandbox = proc_status(int(state["MainPID"]))
        assert (sandbox["NoNewPrivs"], sandbox["Seccomp"]) == ("1", "2")
        assert int(sandbox["CapEff"], 16) == int(sandbox["CapBnd"], 16) == 1 << 0  # CAP_CHOWN, nothing else
        inside = Path(f"/proc/{state['MainPID']}/root")  # its / (its mount namespace), seen from outside
        assert (inside / Path(python).relative_to("/")).exists()  # bound back in, even from /tmp
        assert not (inside / scratch.relative_to("/") / "not-bound").exists()  # the rest of /tmp stays out
        (pantry / "Goldfish").unlink()
        wait_until((pantry / "Goldfish").exists, 5, "Goldfish restored inside the sandbox")
        state_dir = Path(process_environ(int(state["MainPID"]))["STATE_DIRECTORY"])  # writable in the sandbox
        wait_until(lambda: any(state_dir.iterdir()), 5, "the daemon's state files")
        manager.systemctl("stop", HARDENED_UNIT)
        assert manager.show(HARDENED_UNIT, "Result")["Result"] == "success"
    finally:
        manager.systemctl("stop", HARDENED_UNIT, check=False)
        manager.systemctl("reset-failed", HARDENED_UNIT, check=False)


# --- the unit files themselves -----------------------------------------------------------------


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_the_package_data_is_the_systemd_folder(user: bool) -> None:
    shipped = SHIPPED / "user" / UNIT if user else SHIPPED / UNIT
    assert units.template(user=user) == shipped.read_text()


def test_render_runs_the_given_python() -> None:
    system, user = units.render("/opt/sw/bin/python3"), units.render("/opt/sw/bin/python3", user=True)
    assert "ExecStart=/opt/sw/bin/python3 -m snackwatch run -c /etc/snackwatch/snacks.yaml\n" in system
    assert "ExecStart=/opt/sw/bin/python3 -m snackwatch run -c %E/snackwatch/snacks.yaml\n" in user
    for text, config in ((system, "/etc/snackwatch/snacks.yaml"), (user, "%E/snackwatch/snacks.yaml")):
        reload = f"ExecReload=/opt/sw/bin/python3 -m snackwatch check -c {config}\nExecReload=/bin/kill -HUP $MAINPID\n"
        assert reload in text  # the same config checked first, then the daemon signalled
    assert units.TEMPLATE_COMMAND not in system + user


def test_render_quotes_and_escapes_an_awkward_path() -> None:
    text = units.render("/srv/Jane Doe/100%/$venv/bin/python3")
    assert 'ExecStart="/srv/Jane Doe/100%%/$venv/bin/python3" -m snackwatch run' in text


def test_render_binds_an_install_in_a_home_back_into_the_system_unit() -> None:
    text = units.render("/root/venv/bin/python3", bind_paths=["/root/venv", "/home/a b/lib"])
    assert 'ProtectHome=tmpfs\nBindReadOnlyPaths=/root/venv\nBindReadOnlyPaths="/home/a b/lib"\n' in text
    assert "ProtectHome=yes" not in text
    assert "BindReadOnlyPaths" not in units.render("/root/venv/bin/python3", user=True, bind_paths=["/root/venv"])


def test_render_binds_an_install_in_tmp_into_the_private_tmp() -> None:
    text = units.render("/tmp/ci/.venv/bin/python3", bind_paths=["/tmp/ci/.venv", "/var/tmp/py", "/home/a"])
    assert "\nPrivateTmp=yes\nBindReadOnlyPaths=/tmp/ci/.venv\nBindReadOnlyPaths=/var/tmp/py\n" in text
    assert "\nProtectHome=tmpfs\nBindReadOnlyPaths=/home/a\nPrivateTmp=yes\n" in text
    only_tmp = units.render("/tmp/ci/.venv/bin/python3", bind_paths=["/tmp/ci/.venv"])
    assert "\nProtectHome=yes\nPrivateTmp=yes\nBindReadOnlyPaths=/tmp/ci/.venv\n" in only_tmp
    with pytest.raises(ValueError, match="does not hide"):
        units.render("/opt/sw/bin/python3", bind_paths=["/opt/sw"])


def test_hidden_by_sandbox_keeps_the_outermost_home_and_tmp_paths() -> None:
    paths = ["/usr/lib/python3", "/root/.pyenv/x/lib", "/root/.pyenv/x/", "/home/a/venv", "/run/user/0/v", "/homes/b"]
    paths += ["/tmp/ci/.venv/lib", "/tmp/ci/.venv", "/var/tmp/py", "/var/tmpx", "/tmpx/y"]
    hidden = ["/home/a/venv", "/root/.pyenv/x", "/run/user/0/v", "/tmp/ci/.venv", "/var/tmp/py"]
    assert units.hidden_by_sandbox(paths) == hidden


@needs_analyze
@pytest.mark.usefixtures("run_systemd_traces")
def test_awkward_paths_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    python = tmp_path / "Jane Doe" / "100%" / "$venv" / "python3"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    unit = tmp_path / UNIT
    unit.write_text(units.render(str(python), bind_paths=["/home/Jane Doe/100%", "/tmp/Jane Doe/$venv"]))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, env=tmp_env(tmp_path)
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_analyze
@pytest.mark.usefixtures("run_systemd_traces")
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path, user: bool) -> None:
    flags = ["--user"] if user else []
    unit = tmp_path / UNIT
    unit.write_text(snackwatch_unit(*flags))
    done = subprocess.run(
        ["systemd-analyze", *flags, "verify", str(unit)], capture_output=True, text=True, env=tmp_env(tmp_path)
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_analyze
@pytest.mark.usefixtures("run_systemd_traces")
@pytest.mark.parametrize("rendered", [False, True], ids=["shipped", "rendered"])
def test_system_unit_exposure_is_at_most_1(tmp_path: Path, rendered: bool) -> None:
    unit = SHIPPED / UNIT
    if rendered:
        unit = tmp_path / UNIT
        unit.write_text(snackwatch_unit())
    command = ["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)]
    done = subprocess.run(command, capture_output=True, text=True, env=tmp_env(tmp_path))
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert done.returncode == 0 and score is not None, done.stdout + done.stderr
    assert float(score.group(1)) <= 1.0  # with CAP_CHOWN for owner:/group: (issue 19)


# --- journald ----------------------------------------------------------------------------------


def test_journal_lines_carry_their_priority_and_no_timestamp(
    spec_path: Path, start_daemon: Callable[..., Running]
) -> None:
    """What systemd does when stderr goes to the journal: JOURNAL_STREAM names stderr's device:inode."""
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    (spec_path.parent / "pantry" / "Pretzels").mkdir(parents=True)  # a conflict: a warning
    running = start_daemon(
        spec_path, "--log-format", "text", wait=False, prefix=[sys.executable, "-c", WITH_JOURNAL_STREAM]
    )
    wait_until(lambda: "<6>snackwatch" in running.log_path.read_text(), 10, "the start line")
    assert running.stop() == 0
    lines = running.log_path.read_text().splitlines()
    assert all(re.match(r"<[0-7]>[^<\d]", line) for line in lines), lines
    assert "<6>created Goldfish" in lines
    assert any(line.startswith("<4>conflict: a directory stands where snack Pretzels") for line in lines), lines
    assert any(line.startswith("<6>snackwatch stopped") for line in lines), lines
