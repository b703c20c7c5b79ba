"""Issue 10, items 1, 2, 5, 10: lock, state and pruning hold against a local attacker (uid 65534), as root."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_NOBODY, NOBODY, Running, events, needs_root_linux, require_nobody_runs, wait_until, write_spec

from snackwatch.chase import BlockedPath, open_directory
from snackwatch.desired import Desired
from snackwatch.errors import SnackwatchError, UntrustedPath
from snackwatch.lock import SpecLock, flock_holders, lock_path, process_start, running_pid, runtime_dir
from snackwatch.prune import Pruner, confirm_prune, confirmation_problem, confirmation_text, in_pantry
from snackwatch.specset import SpecSet
from snackwatch.state import owned_path, prune_confirm_path, state_dir

pytestmark = needs_root_linux("plays an unprivileged attacker (setpriv to uid 65534) against root")

SECRET = "root only\n"
# Run by the attacker: swap pantry/drinks and pantry/evil (a symlink to a root-only directory) forever.
EXCHANGE_LOOP = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "os.chdir(sys.argv[1]); print('swapping', flush=True)\n"
    "while True: libc.renameat2(-100, b'drinks', -100, b'evil', 2)  # AT_FDCWD, RENAME_EXCHANGE\n"
)


@pytest.fixture
def area() -> Iterator[Path]:
    """Scratch space the attacker can write to, like /tmp (pytest's tmp_path is root-only 0700); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="snackwatch-attack-"))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root)


@pytest.fixture
def secret(area: Path) -> Path:
    """A root-only directory holding a root-only 0600 file: what the attacker aims at."""
    vault = area / "secret"
    vault.mkdir(mode=0o700)
    target = vault / "Juice"
    target.write_text(SECRET)
    target.chmod(0o600)
    return target


@pytest.fixture
def own_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Root's own runtime and state directories (not yet created), handed over like systemd does."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    return tmp_path


def as_nobody(*command: str) -> None:
    subprocess.run([*AS_NOBODY, *command], check=True, capture_output=True, timeout=10)


def pruning_spec(path: Path, snacks: list[str], pantry: Path) -> Desired:
    write_spec(path, snacks, pantry=str(pantry), extra="prune: true\n")
    return SpecSet.load(path).desired


def create_and_record(pruner: Pruner, pantry: Path, names: list[str], spec: Path) -> None:
    """What the daemon does for a pruning spec: create each file and tell the pruner."""
    pantry.mkdir(exist_ok=True)
    for name in names:
        (pantry / name).touch()
        pruner.record_before_publish([(str(pantry / name), os.lstat(pantry / name), spec)])
    pruner.save()


# --- 1. trusted runtime and state directories ------------------------------------------------------


def test_root_ignores_xdg_and_refuses_another_users_directory_with_a_planted_symlink(
    area: Path, secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "snacks.yaml"
    xdg = area / "xdg"
    as_nobody("mkdir", "-m", "0700", str(xdg), str(xdg / "snackwatch"))
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))  # inherited through su / sudo -E
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    assert (runtime_dir(), state_dir()) == (Path("/run/snackwatch"), Path("/var/lib/snackwatch"))
    # the same planted symlink where root is told to keep its lock (RUNTIME_DIRECTORY through sudo -E)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(xdg / "snackwatch"))
    monkeypatch.setenv("STATE_DIRECTORY", str(xdg / "snackwatch"))
    as_nobody("ln", "-s", str(secret), str(lock_path(spec)))
    as_nobody("ln", "-s", str(secret), str(owned_path(spec)))
    with pytest.raises(
        UntrustedPath, match=r"runtime directory .*owned by nobody \(uid 65534\), not by root \(uid 0\)"
    ):
        SpecLock(spec)
    with pytest.raises(UntrustedPath, match="state directory"):
        Pruner(spec)
    with pytest.raises(UntrustedPath):
        running_pid(spec)
    assert secret.read_text() == SECRET and secret.stat().st_mode & 0o777 == 0o600


def test_own_directories_are_made_0700_and_nothing_in_them_is_followed(
    own_dirs: Path, secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "snacks.yaml"
    lock = SpecLock(spec)  # creates the runtime directory
    assert (own_dirs / "run").stat().st_mode & 0o777 == 0o700
    assert running_pid(spec) == os.getpid()
    lock.release()
    os.unlink(lock.path)
    lock.path.symlink_to(secret)  # whoever put it there: never followed, never truncated
    with pytest.raises(UntrustedPath, match="lock file: it is a symlink"):
        SpecLock(spec)
    lock.path.unlink()
    os.mkfifo(lock.path)  # and a FIFO never hangs us
    with pytest.raises(UntrustedPath, match="not a regular file"):
        SpecLock(spec)
    assert secret.read_text() == SECRET
    (own_dirs / "run").chmod(0o777)
    with pytest.raises(UntrustedPath, match="mode 0777 lets others write"):
        SpecLock(spec)
    shutil.rmtree(own_dirs / "run")
    (own_dirs / "run").symlink_to(secret.parent)  # a root-owned 0700 directory, reached through a symlink
    with pytest.raises(UntrustedPath, match="symlink or not a directory"):
        SpecLock(spec)


def test_a_user_refuses_a_runtime_directory_someone_else_made(area: Path) -> None:
    """As a non-root user, /tmp/snackwatch-UID (or any runtime dir) made by someone else is refused with one
    line, by `run` and every command that looks for the daemon (`status` here: the cheap one to start)."""
    squatted = area / "snackwatch-65534"
    squatted.mkdir(mode=0o755)  # another user got there first
    state = area / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    spec = write_spec(area / "snacks.yaml", ["Goldfish"], pantry=str(area / "pantry"))
    env = {"PATH": os.environ["PATH"], "RUNTIME_DIRECTORY": str(squatted), "STATE_DIRECTORY": str(state)}
    require_nobody_runs()
    command = [*AS_NOBODY, sys.executable, "-m", "snackwatch", "status", "-c", str(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20, env=env, cwd=area)
    assert done.returncode == 1
    assert done.stderr == (
        f"snackwatch: {squatted}: not safe as snackwatch's runtime directory (lock files): "
        "it is owned by root (uid 0), not by nobody (uid 65534) that snackwatch runs as: not used\n"
    )
    assert os.listdir(squatted) == []


# --- 2. pruning stays inside the pantry --------------------------------------------------------------


def test_a_forged_record_deletes_nothing_outside_the_pantry(
    own_dirs: Path, tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    spec = tmp_path / "snacks.yaml"
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    (pantry / "link").symlink_to(tmp_path)  # a way out, for a path that looks inside
    victims = [tmp_path / "passwd", tmp_path / "shadow"]
    for victim in victims:
        victim.write_text(SECRET)
    desired = pruning_spec(spec, [], pantry)
    forged = {
        str(victims[0]): victims[0],  # outside every pantry
        str(pantry / "link" / "shadow"): victims[1],  # inside by name, outside through a symlink
    }
    files = {}
    for path, real in forged.items():
        info = real.stat()
        files[path] = {
            "dev": info.st_dev,
            "ino": info.st_ino,
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "spec": str(spec),
        }
    record = owned_path(spec)
    record.parent.mkdir(mode=0o700)
    record.write_text(json.dumps({"version": 1, "files": files}))
    Pruner(spec).prune(desired, confirmed=True)
    assert all(victim.read_text() == SECRET for victim in victims)
    assert [line["files"] for line in events(log_lines, "prune_outside")] == [[str(victims[0])]]
    assert [line["files"] for line in events(log_lines, "prune_kept")] == [[str(pantry / "link" / "shadow")]]
    assert not events(log_lines, "pruned")
    assert in_pantry(str(pantry / "a"), str(pantry)) and in_pantry(str(pantry / "d" / "a"), str(pantry) + "/")
    for escape in (f"{pantry}/../passwd", f"{pantry}/d/../../passwd", f"{pantry}/./a", f"{pantry}//a", str(pantry)):
        assert not in_pantry(escape, str(pantry))
    assert not in_pantry(f"{pantry}-other/a", str(pantry))


def test_a_rename_exchange_race_never_deletes_outside_the_pantry(
    area: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attacker owns the pantry and swaps `drinks` with a symlink to a root-only directory, nonstop,
    while root prunes drinks/Juice 40 times: secret/Juice must survive every trial."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(area / "run"))
    monkeypatch.setenv("STATE_DIRECTORY", str(area / "state"))
    pantry = area / "pantry"
    pantry.mkdir(mode=0o755)
    os.chown(pantry, NOBODY, NOBODY)
    (pantry / "drinks").mkdir()
    as_nobody("ln", "-s", str(secret.parent), str(pantry / "evil"))
    spec = area / "snacks.yaml"
    pruning_spec(spec, ["drinks/Juice"], pantry)
    without_juice = pruning_spec(spec, [], pantry)
    pruner = Pruner(spec)
    require_nobody_runs(code="pass")
    attacker = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-I", "-S", "-c", EXCHANGE_LOOP, str(pantry)], stdout=subprocess.PIPE
    )
    outcomes = {"pruned": 0, "blocked": 0}
    try:
        assert attacker.stdout is not None and attacker.stdout.readline() == b"swapping\n"
        for _ in range(40):
            drinks = wait_until(lambda: _open_real(pantry), 2.0, "the real drinks/ between swaps")
            try:
                fd = os.open("Juice", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=drinks)
                pruner.record_before_publish([(str(pantry / "drinks" / "Juice"), os.fstat(fd), spec)])
                os.close(fd)
                pruner.prune(without_juice, confirmed=True)
                outcomes["blocked" if "Juice" in os.listdir(drinks) else "pruned"] += 1
            finally:
                os.close(drinks)
            assert secret.read_text() == SECRET, f"secret/Juice deleted or changed after {outcomes}"
    finally:
        attacker.kill()
        attacker.wait()
        assert attacker.stdout is not None
        attacker.stdout.close()
    assert outcomes["pruned"] >= 1, outcomes  # the race really ran both ways, and pruning still worked
    assert secret.read_text() == SECRET


def _open_real(pantry: Path) -> int | None:
    try:
        return open_directory(str(pantry / "drinks"), str(pantry), create=False)
    except (BlockedPath, FileNotFoundError):
        return None


# --- 5. confirmations and signals --------------------------------------------------------------------


def test_a_stale_confirmation_is_ignored_once_and_the_breaker_holds(
    own_dirs: Path, tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    spec = tmp_path / "snacks.yaml"
    pantry = tmp_path / "pantry"
    names = [f"snack-{index}" for index in range(8)]
    pruning_spec(spec, names, pantry)
    create_and_record(Pruner(spec), pantry, names, spec)
    without_any = pruning_spec(spec, [], pantry)
    killed = subprocess.Popen(["sleep", "30"])  # a daemon that got a confirmation, then was killed
    left_behind = confirmation_text(killed.pid, process_start(killed.pid), time.time())
    killed.kill()
    killed.wait()
    confirmation = prune_confirm_path(spec)
    confirmation.write_text(left_behind)
    pruner = Pruner(spec)  # the next daemon
    assert pruner.take_confirmation() is False
    assert not confirmation.exists()
    assert [line["message"].split(":")[0] for line in events(log_lines, "prune_confirmation_ignored")] == [
        f"ignored a prune confirmation left for another daemon (pid {killed.pid}), not this one (pid {os.getpid()})"
    ]
    pruner.prune(without_any, confirmed=False)
    assert sorted(os.listdir(pantry)) == names and len(events(log_lines, "prune_blocked")) == 1
    confirmation.write_text(confirmation_text(os.getpid(), pruner.started, time.time() - 61))  # ours, expired
    assert pruner.take_confirmation() is False
    confirmation.write_text(confirmation_text(os.getpid(), pruner.started, time.time()))  # ours, fresh
    assert pruner.take_confirmation() is True
    assert pruner.take_confirmation() is False  # consumed once
    pruner.prune(without_any, confirmed=True)
    assert os.listdir(pantry) == []


def test_confirmation_is_bound_to_pid_and_start_time() -> None:
    now = 1000.0
    fresh = confirmation_text(42, 7, now).encode()
    assert confirmation_problem(fresh, 42, 7, now + 59) == ""
    assert "another daemon" in confirmation_problem(fresh, 42, 8, now)  # the pid, reused by a later process
    assert "expired" in confirmation_problem(fresh, 42, 7, now + 61)
    assert "expired" in confirmation_problem(confirmation_text(42, 7, now + 3600).encode(), 42, 7, now)  # too far
    assert "unreadable" in confirmation_problem(b"1764133000.0\n", 42, 7, now)  # the old format: a bare time
    assert confirmation_problem(b'{"pid": 42, "started": 7, "expires": true}', 42, 7, now) != ""


def test_a_pid_written_into_the_lock_file_is_never_signalled(own_dirs: Path, tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    desired = pruning_spec(spec, ["Goldfish"], tmp_path / "pantry")
    victim = subprocess.Popen(["sleep", "30"])  # SIGHUP would end it
    try:
        SpecLock(spec).release()  # the runtime directory and an unlocked lock file
        lock = lock_path(spec)
        lock.write_text(f"{victim.pid}\n")  # no one holds the lock: the pid proves nothing
        assert running_pid(spec) is None
        assert confirm_prune(spec, desired) == "nothing to prune"  # pruned here, under the lock
        holder = os.open(lock, os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)  # held by this process, while the file names the victim
        lock.write_text(f"{victim.pid}\n")
        assert running_pid(spec) == -1
        with pytest.raises(SnackwatchError, match="not by the pid written in it"):
            confirm_prune(spec, desired)
        lock.write_text(f"{os.getpid()}\n")
        assert running_pid(spec) == os.getpid()  # the real holder, proven by /proc/locks
        lock.write_text(f"{victim.pid} {holder}\n")  # the victim and our fd: fdinfo proves nothing for it
        assert running_pid(spec) == -1
        lock.write_text(f"{os.getpid()} {holder}\n")
        assert running_pid(spec) == os.getpid()  # proven by /proc/PID/fdinfo/FD, as the daemon writes it
        os.close(holder)
        assert running_pid(spec) is None
    finally:
        victim.terminate()
        assert victim.wait() == -signal.SIGTERM  # ours: it never got a SIGHUP
    info = os.stat(lock)
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    locks = f"1: FLOCK  ADVISORY  WRITE 7 {where} 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 8 {where} 0 EOF\n"
    locks += f"2: POSIX  ADVISORY  WRITE 9 {where} 0 EOF\n3: FLOCK  ADVISORY  WRITE 10 00:01:{info.st_ino} 0 EOF\n"
    assert flock_holders(locks, info.st_dev, info.st_ino) == {7}


# --- 10. malformed records, full state filesystems ------------------------------------------------------

MALFORMED = {
    "a list of files": '{"version": 1, "files": []}',
    "not JSON": '{"files": {',
    "wrong types": '{"files": {"PANTRY/a": {"dev": "1", "ino": 2, "size": 0, "mtime_ns": 0, "spec": "SPEC"}}}',
    "a bool": '{"files": {"PANTRY/a": {"dev": true, "ino": 2, "size": 0, "mtime_ns": 0, "spec": "SPEC"}}}',
    "a symlink": "symlink",
    "a FIFO": "fifo",
}


@pytest.mark.parametrize("flaw", MALFORMED)
def test_a_malformed_record_is_logged_once_and_never_pruned_from(
    flaw: str, own_dirs: Path, tmp_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    spec = tmp_path / "snacks.yaml"
    pantry = tmp_path / "pantry"
    pruning_spec(spec, ["a", "b"], pantry)
    create_and_record(Pruner(spec), pantry, ["a", "b"], spec)  # a sound record, with matching files
    record = owned_path(spec)
    sound = json.loads(record.read_text())
    record.unlink()
    text = MALFORMED[flaw].replace("PANTRY", str(pantry)).replace("SPEC", str(spec))
    if flaw == "a symlink":
        (tmp_path / "elsewhere.json").write_text(json.dumps(sound))
        record.symlink_to(tmp_path / "elsewhere.json")
    elif flaw == "a FIFO":
        os.mkfifo(record)
    elif flaw in ("wrong types", "a bool"):  # one bad entry puts its spec's whole record in doubt
        files = {**json.loads(text)["files"], f"{pantry}/b": sound["files"][f"{pantry}/b"]}
        record.write_text(json.dumps({"files": files}))
    else:
        record.write_text(text)
    pruner = Pruner(spec)
    pruner.prune(pruning_spec(spec, [], pantry), confirmed=True)
    assert sorted(os.listdir(pantry)) == ["a", "b"]
    assert len(events(log_lines, "owned_unsound")) == 1 and not events(log_lines, "pruned")
    assert json.loads(record.read_text()) == {"version": 1, "files": {}}  # rewritten sound, without the doubt
    assert not record.is_symlink()
    if flaw == "a symlink":  # replaced, not written through
        assert json.loads((tmp_path / "elsewhere.json").read_text()) == sound


@needs_root_linux("mounts a tiny tmpfs")
def test_the_daemon_starts_and_runs_with_a_malformed_record_on_a_full_state_filesystem(
    spec_path: Path, daemon_env: dict[str, str], start_daemon: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(daemon_env["STATE_DIRECTORY"])
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(state)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("STATE_DIRECTORY", str(state))
        owned_path(spec_path).write_text('{"files": []}')
        filler = os.open(state / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(filler, b"x" * 4096)
        os.close(filler)
        write_spec(spec_path, ["Goldfish", "Pretzels"], extra="prune: true\n")
        running = start_daemon(spec_path)
        assert running.wait_event("owned_unsound")[0]["file"] == str(owned_path(spec_path))
        running.wait_event("owned_unwritable")
        assert ".status.json: No space left on device" in running.wait_event("state_unwritable")[0]["message"]
        (running.pantry / "Goldfish").unlink()
        wait_until((running.pantry / "Goldfish").exists, 3.0, "Goldfish restored with the state fs full")
        write_spec(spec_path, ["Goldfish"], extra="prune: true\n")  # Pretzels leaves the spec: nothing is pruned
        running.wait_event("reload")
        assert running.stop() == 0
        assert (running.pantry / "Pretzels").exists() and not running.events("pruned")
        assert len(running.events("owned_unsound")) == 1 and len(running.events("owned_unwritable")) == 1
    finally:
        subprocess.run(["umount", str(state)], check=True)
