"""The last good spec survives restarts (issue 22): saved per spec file, used at start when the file is invalid."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, events, wait_until, write_spec

from snackwatch.backoff import BackoffPolicy, FightPolicy
from snackwatch.cli import main
from snackwatch.errors import SpecError
from snackwatch.lastgood import LastGood
from snackwatch.ledger import Ledger
from snackwatch.narrator import Narrator
from snackwatch.reconcile import reconcile_all
from snackwatch.reload import SPEC_SETTLE, SpecReloader
from snackwatch.specset import SpecSet
from snackwatch.trigger import Trigger

TYPO = "version: 1\npantry: ./pantry\nsnacks:\n  - Goldfish\n  - bad: [\n"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("STATE_DIRECTORY", str(folder))
    return folder


def saved_copies(state: Path) -> list[str]:
    return sorted(path.name for path in state.iterdir() if path.name.endswith(".last-good.json"))


def test_a_spec_read_valid_is_saved_once_and_an_invalid_one_at_start_runs_on_it(
    spec_path: Path, state: Path, log_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    SpecSet.load(spec_path, strict=False, keep_last_good=True)
    [name] = saved_copies(state)
    copy = state / name
    assert name.startswith("snacks-") and stat.S_IMODE(copy.stat().st_mode) == 0o600
    first = json.loads(copy.read_text())
    assert first["path"] == str(spec_path) and "Pretzels" in first["text"]
    SpecSet.load(spec_path, strict=False, keep_last_good=True)  # the same bytes: not rewritten, time kept
    assert json.loads(copy.read_text())["applied"] == first["applied"]

    monkeypatch.chdir(spec_path.parent.parent)  # the saved copy's relative pantry is resolved at the spec's own path
    spec_path.write_text(TYPO)
    specs = SpecSet.load(spec_path, strict=False, keep_last_good=True)
    assert [entry.path for entry in specs.desired.entries()] == [
        str(spec_path.parent / "pantry" / name) for name in ("Goldfish", "Pretzels")
    ]
    assert list(specs.from_saved) == [spec_path] and str(specs.problems[spec_path]).startswith(f"{spec_path}:5:")
    reloader = SpecReloader(specs)
    reloader.start(1.0)
    [warning] = [line for line in log_lines if line["level"] in ("WARNING", "ERROR")]
    assert warning["event"] == "spec_last_good" and warning["level"] == "WARNING"
    assert (
        f"{spec_path}:5: invalid YAML" in warning["message"]
        and "running on the last good spec of 20" in warning["message"]
    )
    note = reloader.status_note()
    assert note.startswith("; running on the last good spec of ") and ": snacks.yaml:5: invalid YAML" in note
    assert reloader.spec_status()["last_good"] == note[2:]
    assert json.loads(copy.read_text())["applied"] == first["applied"]  # the invalid file saved nothing

    write_spec(spec_path, ["Goldfish", "Popcorn"])  # fixed: read from disk again, saved as the new last good
    reloader.changed(2.0)
    reloaded = reloader.due(2.0 + SPEC_SETTLE)
    assert reloaded is not None and reloaded.desired is not None
    assert reloader.status_note() == "" and reloader.spec_status()["last_good"] is None
    specs.save_last_good()  # the daemon's turn saves it once the reload is applied
    assert "Popcorn" in json.loads(copy.read_text())["text"]


def test_no_saved_copy_or_no_last_good_still_fails_and_check_judges_the_disk(spec_path: Path, state: Path) -> None:
    spec_path.write_text(TYPO)
    with pytest.raises(SpecError, match=":5: invalid YAML"):
        SpecSet.load(spec_path, strict=False, keep_last_good=True)  # first start: nothing saved
    write_spec(spec_path, ["Goldfish"])
    SpecSet.load(spec_path, strict=False, keep_last_good=True)
    spec_path.write_text(TYPO)
    with pytest.raises(SpecError):
        SpecSet.load(spec_path, strict=False, keep_last_good=False)  # --no-last-good
    assert main(["check", "-c", str(spec_path)]) == 2
    spec_path.unlink()  # removed while stopped: a decision, not replaced by its copy
    with pytest.raises(SpecError, match=r"it was removed: its last good spec of .* is not used"):
        SpecSet.load(spec_path, strict=False, keep_last_good=True)


def test_a_conf_d_file_removed_while_stopped_is_dropped_and_said(
    tmp_path: Path, state: Path, log_lines: list[dict[str, Any]]
) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write_spec(confd / "a.yaml", ["Goldfish"])
    write_spec(confd / "b.yaml", ["Pretzels"])
    SpecSet.load(confd, strict=False, keep_last_good=True)
    assert len(saved_copies(state)) == 2
    (confd / "b.yaml").unlink()
    (confd / "a.yaml").write_text("pantry: ./pantry\nsnacks: [Goldfish\n")
    write_spec(confd / "c.yaml", ["Popcorn"])
    specs = SpecSet.load(confd, strict=False, keep_last_good=True)
    assert sorted(entry.snack.name for entry in specs.desired.entries()) == ["Goldfish", "Popcorn"]
    assert list(specs.from_saved) == [confd / "a.yaml"] and list(specs.removed) == [confd / "b.yaml"]
    SpecReloader(specs).start(1.0)
    [removed] = events(log_lines, "spec_removed")
    assert f"{confd / 'b.yaml'} was removed while snackwatch was stopped: starting without it" in removed["message"]
    assert [name.split(".", 1)[1] for name in saved_copies(state)] == ["a.yaml.last-good.json", "c.yaml.last-good.json"]


def test_a_planted_or_forged_copy_counts_as_none(spec_path: Path, state: Path) -> None:
    write_spec(spec_path, ["Goldfish"])
    last_good = LastGood(spec_path)
    target = last_good.saved_path(spec_path)
    elsewhere = spec_path.parent / "forged.json"
    elsewhere.write_text(json.dumps({"version": 1, "path": str(spec_path), "applied": 1.0, "text": "x"}))
    target.symlink_to(elsewhere)  # a symlink in the state directory is never followed
    spec_path.write_text(TYPO)
    with pytest.raises(SpecError):
        SpecSet.load(spec_path, strict=False, keep_last_good=True)
    target.unlink()
    other = spec_path.parent / "other.yaml"  # a copy naming another spec file is not this one's
    target.write_text(json.dumps({"version": 1, "path": str(other), "applied": 1.0, "text": "pantry: /x\nsnacks: []"}))
    with pytest.raises(SpecError):
        SpecSet.load(spec_path, strict=False, keep_last_good=True)


def test_a_spec_file_that_becomes_a_directory_is_a_spec_error_and_the_last_good_stays(
    spec_path: Path, state: Path, log_lines: list[dict[str, Any]]
) -> None:
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    reloader = SpecReloader(SpecSet.load(spec_path, strict=False, keep_last_good=True))
    spec_path.rename(spec_path.with_name("keep.yaml"))
    spec_path.mkdir()
    write_spec(spec_path / "other.yaml", ["Popcorn"])
    reloader.changed(1.0)
    reloaded = reloader.due(1.0 + SPEC_SETTLE)
    assert reloaded is not None and reloaded.desired is None and reloader.specs.desired.count == 2
    [missing] = events(log_lines, "spec_missing")
    assert f"{spec_path}: is now a directory; it was a spec file when snackwatch started" in missing["message"]
    assert "keeping the last good spec (2 snacks)" in missing["message"]
    assert reloader.status_note() == f"; spec invalid ({spec_path}), last good spec in force"


def test_a_conf_d_directory_that_becomes_a_file_is_a_spec_error(tmp_path: Path, state: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write_spec(confd / "a.yaml", ["Goldfish"])
    reloader = SpecReloader(SpecSet.load(confd, strict=False, keep_last_good=True))
    (confd / "a.yaml").unlink()
    confd.rmdir()
    write_spec(confd, ["Popcorn"])
    reloader.changed(1.0)
    reloaded = reloader.due(1.0 + SPEC_SETTLE)
    assert reloaded is not None and reloaded.desired is None and reloader.specs.desired.count == 1
    assert "is no longer a directory; it was a directory of specs" in reloader.problems[confd]


def test_restart_after_a_typo_runs_on_the_last_good_spec_and_status_exits_4(
    spec_path: Path,
    start_daemon: Callable[..., Running],
    daemon_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.setenv(name, daemon_env[name])
    write_spec(spec_path, ["Goldfish", "Pretzels"])
    assert start_daemon(spec_path).stop() == 0
    spec_path.write_text(TYPO)
    (spec_path.parent / "pantry" / "Pretzels").unlink()
    running = start_daemon(spec_path)
    wait_until((spec_path.parent / "pantry" / "Pretzels").exists, 5, "Pretzels restored from the last good spec")
    [warning] = running.events("spec_last_good")
    assert warning["level"] == "WARNING" and f"{spec_path}:5: invalid YAML" in warning["message"]

    def status() -> tuple[int, str] | None:
        code = main(["status", "-c", str(spec_path)])
        out = capsys.readouterr().out
        return (code, out) if "running on the last good spec of" in out else None

    code, out = wait_until(status, 3, "status to say it runs on the last good spec")
    assert code == 4 and "snacks.yaml:5: invalid YAML" in out
    write_spec(spec_path, ["Goldfish", "Pretzels"])  # fixed: status is 0 again
    wait_until(lambda: main(["status", "-c", str(spec_path)]) == 0, 3, "status 0 once the spec is valid again")
    assert running.stop() == 0


# --- issue 22 item 7: invisible mistakes are warned about, not refused ---------------------------------------------

LOOKALIKES = (
    "version: 1\npantry: $HOME/pantry\nsnacks:\n"
    '  - "Goldfish "\n  - "Caf\\u00e9"\n  - "Cafe\\u0301"\n  - name: Tool\n    mode: "4755"\n  - Pretzels\n'
)


def test_check_warns_about_invisible_mistakes_and_still_exits_0(
    spec_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path.write_text(LOOKALIKES)
    assert main(["check", "-c", str(spec_path)]) == 0
    out, err = capsys.readouterr()
    assert "ok (5 snacks" in out
    assert err.splitlines() == [
        f"{spec_path}:2: warning: pantry '{spec_path.parent}/$HOME/pantry' contains $HOME: variables are not "
        "expanded, so a directory literally named '$HOME' is made (write the path out; ~ is expanded)",
        f"{spec_path}:4: warning: snack 'Goldfish ' has whitespace at the start or end of a name: "
        "the file is made with it",
        f"{spec_path}:6: warning: snack 'Cafe\\u0301' is the same name as 'Café' (line 5) after Unicode NFC "
        "normalisation: two files whose names look alike",
        f"{spec_path}:7: warning: snack 'Tool' has mode 4755, with the setuid bit: under the shipped systemd unit "
        "(RestrictSUIDSGID=yes) such a mode cannot be applied and creating it fails",
    ]
    write_spec(spec_path, ["Goldfish", "drinks/Juice", {"name": "Cheese", "mode": "0640"}])
    assert main(["check", "-c", str(spec_path)]) == 0
    assert capsys.readouterr().err == ""


def test_the_daemon_logs_each_warning_once_per_change_and_quotes_such_names(
    spec_path: Path, log_lines: list[dict[str, Any]]
) -> None:
    spec_path.write_text(LOOKALIKES.replace("$HOME/", ""))
    reloader = SpecReloader(SpecSet.load(spec_path, strict=False))
    reloader.start(1.0)
    assert len(events(log_lines, "spec_warning")) == 3
    assert all(line["level"] == "WARNING" for line in events(log_lines, "spec_warning"))
    reloader.request()
    reloader.due(2.0)  # an unchanged spec: nothing said again
    assert len(events(log_lines, "spec_warning")) == 3
    spec_path.write_text(LOOKALIKES.replace("$HOME/", "").replace("Pretzels", "' Popcorn'"))
    reloader.changed(3.0)
    reloader.due(3.0 + SPEC_SETTLE)
    warned = events(log_lines, "spec_warning")[3:]
    assert len(warned) == 4 and "snack ' Popcorn' has whitespace" in warned[-1]["message"]  # the file changed
    reload = events(log_lines, "reload")[-1]
    assert "+' Popcorn'" in reload["message"] and "-Pretzels" in reload["message"]


def test_created_lines_quote_a_name_with_edge_whitespace(spec_path: Path, log_lines: list[dict[str, Any]]) -> None:
    spec_path.write_text('pantry: ./pantry\nsnacks:\n  - "Goldfish "\n  - Pretzels\n')
    desired = SpecSet.load(spec_path).desired
    changes = Ledger(desired, BackoffPolicy(), FightPolicy()).fold(reconcile_all(desired), 1.0, Trigger.START)
    Narrator().tell(changes, desired, 1.0)
    assert sorted(os.listdir(spec_path.parent / "pantry")) == ["Goldfish ", "Pretzels"]
    assert [line["message"] for line in log_lines if line["message"].startswith("created")] == [
        "created 'Goldfish ', Pretzels"
    ]
