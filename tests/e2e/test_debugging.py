"""The debugging user (issue 12): status, why, prune and the metrics tell the truth whatever state the spec is in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Running, wait_until, write_spec

from snackwatch.cli import main
from snackwatch.errors import SnackwatchError, SpecError
from snackwatch.lock import SpecLock, instance_name
from snackwatch.metrics import metrics_text
from snackwatch.neighbours import kept_paths
from snackwatch.spec import parse_spec
from snackwatch.status import render_status

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], daemon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI in-process (a few ms a call), with the runtime and state directories the daemon under test uses."""
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.setenv(name, daemon_env[name])

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def cli_until(cli: Cli, text: str, *args: str) -> tuple[int, str, str]:
    """Run the CLI until `text` is in its output (the daemon writes its status file at most every 0.2 s)."""

    def attempt() -> tuple[int, str, str] | None:
        result: tuple[int, str, str] = cli(*args)
        return result if text in result[1] else None

    return wait_until(attempt, 3.0, f"{text!r} in the output of {args}")


# --- item 1: status, why and prune answer from the daemon whatever the spec on disk is ---------------------------


def test_status_why_and_prune_answer_while_the_spec_on_disk_is_broken_or_gone(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Cli
) -> None:
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    running = start_daemon(spec_path)
    spec_path.write_text("version: 1\npantry: ./pantry\nsnacks:\n  - Goldfish\n  - bad: [")  # a typo saved
    running.wait_event("spec_invalid")
    code, out, _ = cli_until(cli, "invalid YAML", "status", "-c", str(spec_path))
    assert code == 0 and f"{spec_path}:5: invalid YAML" in out and "the last good spec is in force" in out
    code, out, _ = cli("status", "--json", "-c", str(spec_path))
    assert code == 0 and '"ok": false' in out
    code, out, _ = cli("why", "Pretzels", "-c", str(spec_path))
    assert code == 0, out
    assert out.startswith(f"spec on disk: {spec_path}:5: invalid YAML") and f"declared at {spec_path}:5" in out
    assert "on disk: present" in out
    code, out, err = cli("prune", "-c", str(spec_path))
    assert (code, out) == (2, "") and "nothing pruned until it is valid" in err and err.count("\n") == 1
    spec_path.rename(spec_path.with_name("moved-away.yaml"))
    code, out, _ = cli("why", "Goldfish", "-c", str(spec_path))
    assert code == 0 and "cannot read spec: No such file or directory" in out and "Goldfish: " in out
    assert cli("why", "Caviar", "-c", str(spec_path))[0] == 1
    running.stop()
    code, _, err = cli("status", "-c", str(spec_path))  # no daemon, no spec: "not running", not a spec error
    assert code == 3 and "no daemon is running" in err
    assert cli("why", "Goldfish", "-c", str(spec_path))[0] == 2  # no daemon to ask: the spec's own error


# --- item 7: bad values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0.0001", "0", "-1", "86401", "soon"])
def test_resync_must_be_a_sane_finite_number_of_seconds(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--resync", value])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and "--resync" in err


def test_check_fails_a_pantry_that_is_not_a_directory(spec_path: Path, cli: Cli) -> None:
    (spec_path.parent / "pantry").write_text("a file")
    write_spec(spec_path, ["Goldfish"])
    code, _, err = cli("check", "-c", str(spec_path))
    assert (code, err) == (
        2,
        f"snackwatch: {spec_path}:2: pantry {spec_path.parent / 'pantry'} exists but is not a directory\n",
    )
    write_spec(spec_path, ["Goldfish"], pantry="./pantry/below")
    code, _, err = cli("check", "-c", str(spec_path))
    assert code == 2 and err.startswith(f"snackwatch: {spec_path}:2: pantry ") and "below a file" in err


def test_unusable_log_metrics_and_runtime_paths_say_what_they_were_for(
    spec_path: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish"])
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("")
    for option, path, why in [
        ("--log-file", tmp_path, "is a directory"),
        ("--log-file", tmp_path / "fifo", "is not a regular file"),  # would block the first log line
        ("--metrics-file", tmp_path / "file" / "m.prom", "is not a directory"),
        ("--metrics-file", Path("/dev/null"), "is not a regular file"),  # renamed over: never a device
    ]:
        code, _, err = cli("run", "-c", str(spec_path), option, str(path))
        assert code == 2 and err.startswith(f"snackwatch: {option} {path}: ") and why in err, err
        assert err.count("\n") == 1
    if Path("/proc/version").is_file():  # a file no one may append to, even root: the open itself fails
        code, _, err = cli("run", "-c", str(spec_path), "--log-file", "/proc/version")
        assert code == 2 and err.startswith("snackwatch: --log-file /proc/version: ") and err.count("\n") == 1
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "file" / "run"))
    with pytest.raises(SnackwatchError, match=r"cannot be used as snackwatch's runtime directory \(lock files\)"):
        SpecLock(spec_path)


# --- item 8: one daemon per spec, however spelled; two specs keeping one file ------------------------------------


def test_every_spelling_of_a_spec_path_is_one_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real" / "conf"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(real)
    spellings = [real / "s.yaml", tmp_path / "link" / "s.yaml", Path("s.yaml"), Path("../conf/s.yaml")]
    spellings.append(tmp_path / "link" / ".." / "conf" / "s.yaml")  # `..` after a symlink: the kernel's answer
    assert len({instance_name(path) for path in spellings}) == 1
    assert instance_name(real) == instance_name(tmp_path / "link" / ".." / "conf") == instance_name(Path("."))
    assert instance_name(real / "s.yaml") != instance_name(real / "t.yaml")


def test_a_spec_reached_another_way_finds_the_running_daemon(
    spec_path: Path, tmp_path: Path, start_daemon: Callable[..., Running], cli: Cli, daemon_env: dict[str, str]
) -> None:
    write_spec(spec_path, ["Goldfish"])
    running = start_daemon(spec_path)
    (tmp_path / "via").symlink_to(spec_path.parent)
    code, out, _ = cli("status", "-c", str(tmp_path / "via" / "snacks.yaml"))
    assert code == 0 and f"pid {running.proc.pid}" in out
    second = subprocess.run(
        [sys.executable, "-m", "snackwatch", "run", "-c", str(tmp_path / "via" / ".." / "via" / "snacks.yaml")],
        capture_output=True, text=True, timeout=30, env=daemon_env,
    )  # fmt: skip
    assert second.returncode == 1 and f"already running (pid {running.proc.pid})" in second.stderr


def test_a_second_daemon_on_another_spec_keeping_the_same_file_warns_naming_it(
    tmp_path: Path, start_daemon: Callable[..., Running]
) -> None:
    pantry = tmp_path / "shared"
    first = write_spec(tmp_path / "first.yaml", ["Apple", "Pear"], pantry=str(pantry))
    second = write_spec(tmp_path / "second.yaml", ["Apple", "Plum"], pantry=str(pantry))
    start_daemon(first)
    other = start_daemon(second)
    warning = other.wait_event("shared_files")[0]
    assert warning["other"] == str(first) and "(Apple)" in warning["message"] and "Pear" not in warning["message"]


def test_another_daemons_files_come_from_its_status_else_from_its_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", ["Apple", "Pear"])
    on_disk = {str(tmp_path / "pantry" / name) for name in ("Apple", "Pear")}
    listed = {"config": str(spec), "pantries": [str(tmp_path / "pantry")], "snacks": {"/x/Apple": {}}}
    assert kept_paths({**listed, "snacks_listed": "all"}) == kept_paths(listed) == {"/x/Apple"}
    assert kept_paths({**listed, "snacks_listed": "with a story (more than 1000 snacks)"}) == on_disk | {"/x/Apple"}
    assert kept_paths({"config": str(spec), "snacks": {}}) == on_disk  # an older daemon: snacks with a story only


# --- item 9: metrics without duplicate series --------------------------------------------------------------------

_SAMPLE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)'
)


def series(text: str) -> list[str]:
    """Every sample's `name{labels}` in a Prometheus text exposition; fails on a line that is not valid."""
    found = []
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        if line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        assert match is not None, f"not a sample line: {line!r}"
        float(match.group(3))
        assert match.group(1).removesuffix("_total") in {t.removesuffix("_total") for t in typed}, line
        found.append(line.rsplit(" ", 1)[0])
    return found


def status_of(config: str, snacks: dict[str, dict[str, object]]) -> dict[str, object]:
    counts = {"snacks": len(snacks), "ok": len(snacks), "failing": 0, "conflicts": 0, "repairs": 1}
    return {"config": config, "spec": {"ok": True, "problems": []}, "counts": counts, "last_reconcile": 1.5,
            "snacks": snacks}  # fmt: skip


def test_metrics_of_two_specs_apple_are_two_valid_series() -> None:
    def apple(spec: str, repairs: int) -> dict[str, object]:
        return {"name": "Apple", "spec": spec, "line": 3, "state": "ok", "repairs": repairs}

    confd = status_of(
        "/etc/snacks.d", {"/a/Apple": apple("/etc/snacks.d/a.yaml", 1), "/b/Apple": apple("/etc/snacks.d/b.yaml", 2)}
    )
    quote = status_of('/etc/"odd"\\name.yaml', {"/c/Apple": apple('/etc/"odd"\\name.yaml', 3)})
    one = series(metrics_text(confd))
    assert len(one) == len(set(one)) and sum("snackwatch_repairs_total" in s for s in one) == 2
    both = one + series(metrics_text(quote))  # two daemons' files in one textfile-collector directory
    assert len(both) == len(set(both))
    assert r'snackwatch_spec_valid{config="/etc/\"odd\"\\name.yaml"}' in both


# --- item 11: why by a relative path; no stale history; a closed stdout ----------------------------------------


def test_why_takes_a_path_relative_to_here_and_shows_no_stale_history(
    spec_path: Path, start_daemon: Callable[..., Running], cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish", "drinks/Juice"])
    running = start_daemon(spec_path)
    (running.pantry / "drinks" / "Juice").unlink()
    wait_until((running.pantry / "drinks" / "Juice").exists, 2.0, "Juice restored")
    monkeypatch.chdir(running.pantry)
    code, out, _ = cli_until(cli, "1 in all", "why", "drinks/Juice", "-c", str(spec_path))
    assert code == 0 and f"declared at {spec_path}:5" in out
    monkeypatch.chdir(running.pantry / "drinks")
    assert "Juice: " in cli("why", "./Juice", "-c", str(spec_path))[1]
    running.stop()
    code, out, _ = cli("why", "./Juice", "-c", str(spec_path))
    assert code == 0 and "no daemon is running for this config" in out and "last repair" not in out


def test_a_reader_that_stops_early_ends_the_command_quietly(spec_path: Path) -> None:
    write_spec(spec_path, ["Goldfish"])
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` gone before the first write: EPIPE
    try:
        for args, code in ((["check"], 0), (["diff"], 1)):
            done = subprocess.run(
                [sys.executable, "-m", "snackwatch", *args, "-c", str(spec_path)],
                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30,
            )  # fmt: skip
            assert (done.returncode, done.stderr) == (code, "")
    finally:
        os.close(write_end)


# --- item 12: a parse error names a line the file has ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("pantry: ./p\nsnacks:\n  - a\n  - b: [", 4),  # no trailing newline
        ("pantry: ./p\nsnacks:\n  - a\n  - b: [\n", 4),
        ('pantry: ./p\nsnacks:\n  - "abc', 3),
        ("pantry: ./p\nsnacks:", 2),
        ("pantry: ./p\nsnacks:\n", 2),
    ],
)
def test_a_parse_error_at_the_end_names_the_last_line(text: str, line: int) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(text.encode(), Path("/etc/s.yaml"))
    assert raised.value.line == line <= len(text.splitlines())


# --- the status table uses what the daemon writes --------------------------------------------------------------


def test_the_table_shows_pantries_dry_run_and_the_spec_problem() -> None:
    data = status_of("/etc/s.yaml", {"/p/Apple": {"name": "Apple", "state": "missing", "repairs": 0}})
    data.update(pid=7, started=1.0, watcher="inotify", dry_run=True, pantries=["/p"])
    data["spec"] = {"ok": False, "problems": ["/etc/s.yaml:4: invalid YAML"]}
    lines = render_status(data).splitlines()
    assert lines[0].endswith("watcher inotify, dry run: changes nothing")
    assert lines[1] == "config /etc/s.yaml: /etc/s.yaml:4: invalid YAML (the last good spec is in force)"
    assert lines[2] == "pantry /p" and lines[-1].split()[:2] == ["Apple", "missing"]


def test_status_exits_3_without_daemon_or_spec(tmp_path: Path, cli: Cli) -> None:
    code, out, err = cli("status", "-c", str(tmp_path / "nowhere" / "snacks.yaml"))
    assert (code, out) == (3, "") and "no daemon is running" in err
