"""--log-file and --metrics-file as another user (uid 65534, via setpriv) would attack them: never followed,
never another user's file, never a directory others may swap; the metrics file keeps its documented mode."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Running, needs_root_linux, snackwatch, wait_until, write_spec

from snackwatch.outputs import LOG_KEPT, LogFile, UnsafeOutput, check_output_file, write_output_atomically

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
pytestmark = needs_root_linux("plays another user with setpriv")


def as_nobody(script: str) -> None:
    """Run `script` (sh) as uid 65534; it must succeed: the attack is really possible for that user."""
    subprocess.run([*AS_NOBODY, "sh", "-ec", script], check=True, timeout=10)


def run(spec: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    """`snackwatch run` in process: these runs end before the daemon would start."""
    result = snackwatch("run", "-c", str(spec), *args, env=env)
    return result.returncode, result.stderr


@pytest.fixture
def sticky(public_dir: Path) -> Path:
    """A 1777 directory, like /tmp: anyone may create names in it."""
    directory = public_dir / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def test_a_log_symlink_to_a_root_only_file_is_refused(
    spec_path: Path, sticky: Path, daemon_env: dict[str, str]
) -> None:
    secret = sticky.parent / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o440)
    as_nobody(f"ln -s {secret} {sticky}/snackwatch.log")
    write_spec(spec_path, ["Goldfish"])
    code, err = run(spec_path, daemon_env, "--log-file", str(sticky / "snackwatch.log"))
    assert (code, err) == (2, f"snackwatch: --log-file {sticky}/snackwatch.log: is a symlink: not followed\n")
    assert secret.read_text() == "root's\n"


def test_a_log_file_another_user_created_first_is_refused(
    spec_path: Path, sticky: Path, daemon_env: dict[str, str]
) -> None:
    as_nobody(f"echo 'snackwatch stopped' > {sticky}/snackwatch.log; chmod 0666 {sticky}/snackwatch.log")
    write_spec(spec_path, ["Goldfish"])
    code, err = run(spec_path, daemon_env, "--log-file", str(sticky / "snackwatch.log"))
    assert code == 2 and err == (
        f"snackwatch: --log-file {sticky}/snackwatch.log: is owned by uid {NOBODY}, not by uid 0: not used\n"
    )
    assert (sticky / "snackwatch.log").read_text() == "snackwatch stopped\n"  # nothing of ours appended


def test_output_directories_others_may_swap_are_refused(public_dir: Path, sticky: Path) -> None:
    open_dir = public_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # writable by all, not sticky: anyone may rename our file away and put theirs
    with pytest.raises(UnsafeOutput, match=r"writable by others \(mode 0777\) without the sticky bit"):
        check_output_file(open_dir / "snackwatch.prom", "--metrics-file")
    as_nobody(f"mkdir -m 0755 {sticky}/theirs")  # a directory of theirs: they may put anything in it, any time
    theirs = sticky / "theirs"
    with pytest.raises(UnsafeOutput, match=rf"its directory {theirs} is owned by uid {NOBODY}: not used"):
        check_output_file(theirs / "snackwatch.prom", "--metrics-file")


def test_a_metrics_directory_swapped_for_a_symlink_is_not_written_through(
    spec_path: Path, public_dir: Path, start_daemon: Callable[..., Running], daemon_env: dict[str, str]
) -> None:
    """The metrics directory lives in a directory the user may write (0777): swapped for a symlink to a
    root-only directory, the next write is refused (one warning) and nothing lands in the target."""
    parent = public_dir / "collector"
    parent.mkdir()
    parent.chmod(0o777)
    metrics_dir = parent / "textfile"
    metrics_dir.mkdir()
    target = public_dir / "root-only"
    target.mkdir(mode=0o700)
    (target / "snackwatch.prom").write_text("precious\n")
    write_spec(spec_path, ["Goldfish"])
    metrics = metrics_dir / "snackwatch.prom"
    running = start_daemon(spec_path, "--metrics-file", str(metrics), "--metrics-mode", "0640")
    wait_until(metrics.exists, 3, "the metrics file")
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o640 and metrics.stat().st_uid == 0
    as_nobody(f"mv {metrics_dir} {parent}/moved && ln -s {target} {metrics_dir}")
    (running.pantry / "Goldfish").unlink()  # a repair: the metrics are written again
    wait_until(lambda: running.events("state_unwritable"), 3, "the refusal")
    assert "is a symlink" in running.events("state_unwritable")[0]["message"]
    assert (target / "snackwatch.prom").read_text() == "precious\n" and os.listdir(target) == ["snackwatch.prom"]
    assert running.stop() == 0
    code, err = run(spec_path, daemon_env, "--metrics-file", str(metrics))  # and at start: exit 2
    assert (
        code == 2
        and err == f"snackwatch: --metrics-file {metrics}: its directory {metrics_dir} is a symlink: not used\n"
    )


def test_metrics_mode_build_info_and_up_0_after_a_clean_stop(
    spec_path: Path, tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    metrics = tmp_path / "metrics" / "snackwatch.prom"  # the directory is created
    running = start_daemon(spec_path, "--metrics-file", str(metrics))
    wait_until(metrics.exists, 3, "the metrics file")
    config = f'config="{spec_path}"'
    text = metrics.read_text()
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644  # the default: a textfile collector's own user reads it
    assert f"snackwatch_up{{{config}}} 1" in text and "snackwatch_build_info{" + config + ',version="' in text
    assert running.stop() == 0
    assert f"snackwatch_up{{{config}}} 0" in metrics.read_text()


def test_the_log_file_rotates_within_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("snackwatch.outputs.LOG_ROTATE_BYTES", 100)
    log = LogFile(tmp_path / "logs" / "snackwatch.log")
    for number in range(40):
        log.write(f"line {number:02} of about twenty bytes\n")
    log.close()
    kept = sorted(path.name for path in (tmp_path / "logs").iterdir())
    assert kept == ["snackwatch.log", *(f"snackwatch.log.{n}" for n in range(1, LOG_KEPT + 1))]
    assert (tmp_path / "logs" / "snackwatch.log").read_text().endswith("line 39 of about twenty bytes\n")
    assert stat.S_IMODE((tmp_path / "logs" / "snackwatch.log").stat().st_mode) == 0o640


def test_an_atomic_metrics_write_replaces_and_never_follows(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    (tmp_path / "m.prom").symlink_to(target)
    with pytest.raises(UnsafeOutput, match="is a symlink: not followed"):
        write_output_atomically(tmp_path / "m.prom", "x 1\n", 0o644, "--metrics-file")
    (tmp_path / "m.prom").unlink()
    write_output_atomically(tmp_path / "m.prom", "x 1\n", 0o604, "--metrics-file")
    assert (tmp_path / "m.prom").read_text() == "x 1\n" and target.read_text() == "keep\n"
    assert stat.S_IMODE((tmp_path / "m.prom").stat().st_mode) == 0o604
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "m.prom"]  # no temp file left
