"""Drift (issue 20): each declared aspect seen, and put back when enforced, for each kind; in-process on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import IS_LINUX, inotify_mask, needs_root_linux

from snackwatch.backoff import Change, FightPolicy, Health
from snackwatch.cli import main
from snackwatch.desired import Desired, merge
from snackwatch.dirty import DirtySet
from snackwatch.drift import Aspect, drift_of
from snackwatch.errors import SpecError
from snackwatch.reconcile import Outcome, Status, reconcile_all, reconcile_names
from snackwatch.spec import Snack, load_spec, parse_spec
from snackwatch.watch import HAVE_INOTIFY, Watcher
from snackwatch.watch.inotify import InotifySource
from snackwatch.watch.storm import StormGuard, StormPolicy

NOBODY = 65534
IN_ATTRIB, IN_DELETE = 0x4, 0x200
EUID = os.geteuid()


def info(mode: int, uid: int = EUID, gid: int = 0, size: int = 0) -> os.stat_result:
    """An lstat result with what drift_of reads: mode (with its kind), owner, group, size."""
    return os.stat_result((mode, 1, 1, 1, uid, gid, size, 0, 0, 0))


# --- the pure comparison ---------------------------------------------------------------------------------


def test_each_aspect_of_a_file_is_compared_only_when_declared() -> None:
    plain = Snack("a")
    assert drift_of(plain, info(stat.S_IFREG | 0o600, size=5), None, b"hello", EUID) == []  # nothing declared
    declared = Snack("a", content="port=80\n", mode=0o600, group=4)
    found = drift_of(declared, info(stat.S_IFREG | 0o644, gid=0, size=10), None, b"port=8080\n", EUID)
    assert [a.change() for a in found] == ["content differs", "mode 0644 -> 0600", "group root -> adm"]
    in_line = info(stat.S_IFREG | 0o600, gid=4, size=8)
    assert drift_of(declared, in_line, None, b"port=80\n", EUID) == []
    empty = Snack("e", content="")  # `content: ""` declares an empty file
    assert [a.name for a in drift_of(empty, info(stat.S_IFREG | 0o644, size=1), None, b"x", EUID)] == ["content"]


def test_a_name_another_user_owns_drifts_in_owner_even_without_owner_declared() -> None:
    found = drift_of(Snack("motd"), info(stat.S_IFREG | 0o644, uid=NOBODY), None, None, 0)
    assert found == [Aspect("owner", "nobody", "root")]
    assert found[0].against() == "owner nobody, spec says root"
    assert drift_of(Snack("motd", owner=NOBODY), info(stat.S_IFREG | 0o644, uid=NOBODY), None, None, 0) == []


def test_directories_symlinks_and_kinds() -> None:
    directory = Snack("logs", type="directory", mode=0o750)
    assert [a.change() for a in drift_of(directory, info(stat.S_IFDIR | 0o755), None, None, EUID)] == [
        "mode 0755 -> 0750"
    ]
    link = Snack("current", type="symlink", target="releases/v2")
    assert [a.change() for a in drift_of(link, info(stat.S_IFLNK | 0o777), "releases/v1", None, EUID)] == [
        "target releases/v1 -> releases/v2"
    ]
    assert drift_of(link, info(stat.S_IFREG | 0o644), None, None, EUID) == [Aspect("type", "file", "symlink")]


# --- enforce in the spec -----------------------------------------------------------------------------------


def test_enforce_true_a_list_and_defaults(tmp_path: Path) -> None:
    spec = parse_spec(
        b"pantry: ./p\ndefaults:\n  enforce: [mode, target]\nsnacks:\n  - a\n  - name: b\n    enforce: true\n"
        b"  - name: c\n    type: symlink\n    target: x\n  - name: d\n    enforce: [type, content]\n"
        b"  - name: e\n    enforce: false\n",
        tmp_path / "s.yaml",
    )
    assert [sorted(s.enforce) for s in spec.snacks] == [
        ["mode"],  # a file has no target: the defaults apply as far as they fit
        ["content", "mode", "owner"],
        ["target"],
        ["content", "type"],
        [],
    ]


@pytest.mark.parametrize(
    ("snack", "line", "message"),
    [
        ("  - name: a\n    enforce: [content, colour]\n", 4, "unknown enforce aspect 'colour' (allowed: "),
        ("  - name: a\n    enforce: [mdoe]\n", 4, "unknown enforce aspect 'mdoe' (did you mean 'mode'?)"),
        ("  - name: a\n    enforce: sometimes\n", 4, "enforce must be true, false or a list of"),
        ("  - name: a\n    enforce: [target]\n", 4, "enforce 'target' is not an aspect of a file"),
    ],
)
def test_a_bad_enforce_is_an_error_at_its_line(tmp_path: Path, snack: str, line: int, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("pantry: ./p\nsnacks:\n" + snack)
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert str(raised.value).startswith(f"{path}:{line}: {message}")


# --- seen and put back on disk -------------------------------------------------------------------------------


def desired_of(tmp_path: Path, snacks: str) -> Desired:
    path = tmp_path / "snacks.yaml"
    path.write_text("pantry: ./p\nsnacks:\n" + snacks)
    return merge([load_spec(path)])


def changed(desired: Desired, *names: str) -> list[Outcome]:
    """What the daemon does when an event says these entries changed in place."""
    return reconcile_names(desired, str(desired.specs[0].pantry), names, changed=True)


ENFORCED = """\
  - name: app.conf
    content: "port=80\\n"
    mode: "0600"
    enforce: [content, mode]
  - name: logs
    type: directory
    mode: "0750"
    enforce: true
  - name: current
    type: symlink
    target: releases/v2
    enforce: [target]
"""


def test_enforced_content_mode_and_target_are_put_back_and_a_hard_link_is_never_written_through(
    tmp_path: Path,
) -> None:
    desired = desired_of(tmp_path, ENFORCED)
    reconcile_all(desired)
    pantry = tmp_path / "p"
    conf = pantry / "app.conf"
    other = tmp_path / "other"
    other.write_text("someone else's\n")
    conf.unlink()
    os.link(other, conf)  # a hard link to another file at the enforced name
    (pantry / "logs").chmod(0o777)
    (pantry / "current").unlink()
    (pantry / "current").symlink_to("releases/v1")
    outcomes = changed(desired, "app.conf", "logs", "current")
    assert [(o.entry.name, o.status, [a.put_back() for a in o.corrected]) for o in outcomes] == [
        ("app.conf", Status.CORRECTED, ["content put back (8 bytes)", "mode 0644 -> 0600"]),
        ("logs", Status.CORRECTED, ["mode 0777 -> 0750"]),
        ("current", Status.CORRECTED, ["target releases/v1 -> releases/v2"]),
    ]
    assert conf.read_text() == "port=80\n" and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert other.read_text() == "someone else's\n" and other.stat().st_nlink == 1  # untouched, its link replaced
    assert stat.S_IMODE((pantry / "logs").stat().st_mode) == 0o750
    assert os.readlink(pantry / "current") == "releases/v2"
    assert [o.status for o in changed(desired, "app.conf", "logs", "current")] == [Status.PRESENT] * 3


def test_a_drift_not_enforced_is_reported_and_left_as_it_is(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, '  - name: app.conf\n    content: "port=80\\n"\n    mode: "0600"\n')
    reconcile_all(desired)
    conf = tmp_path / "p" / "app.conf"
    conf.write_text("port=8080\n")
    conf.chmod(0o644)
    [outcome] = changed(desired, "app.conf")
    assert outcome.status is Status.PRESENT
    assert [a.change() for a in outcome.drift] == ["content differs", "mode 0644 -> 0600"]
    assert conf.read_text() == "port=8080\n" and stat.S_IMODE(conf.stat().st_mode) == 0o644
    [outcome] = reconcile_all(desired)  # a full pass sees it too
    assert outcome.status is Status.PRESENT and len(outcome.drift) == 2
    assert [o.status for o in reconcile_all(desired_of(tmp_path, "  - app.conf\n"))] == []  # nothing declared


def test_a_wrong_kind_is_moved_aside_only_with_type_enforced(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, "  - name: a\n    enforce: [type]\n  - b\n")
    pantry = tmp_path / "p"
    (pantry / "a").mkdir(parents=True)
    (pantry / "a" / "keep").write_text("mine\n")
    (pantry / "b").mkdir()
    outcomes = {o.entry.name: o for o in reconcile_all(desired)}
    assert outcomes["b"].status is Status.CONFLICT  # as before: left alone
    assert outcomes["a"].status is Status.CORRECTED and outcomes["a"].reason.startswith("a.snackwatch-displaced-")
    assert (pantry / "a").is_file() and (pantry / outcomes["a"].reason / "keep").read_text() == "mine\n"


@needs_root_linux("gives an entry to another user")
def test_enforced_owner_is_taken_back_and_a_squatted_name_is_only_reported(tmp_path: Path) -> None:
    desired = desired_of(
        tmp_path,
        "  - name: mine\n    enforce: [owner]\n  - name: theirs\n"
        "  - name: link\n    type: symlink\n    target: t\n    owner: '0'\n    enforce: [owner]\n",
    )
    reconcile_all(desired)
    pantry = tmp_path / "p"
    for name in ("mine", "theirs", "link"):
        os.chown(pantry / name, NOBODY, NOBODY, follow_symlinks=False)
    outcomes = {o.entry.name: o for o in changed(desired, "mine", "theirs", "link")}
    assert outcomes["mine"].status is Status.CORRECTED and os.stat(pantry / "mine").st_uid == 0
    assert os.lstat(pantry / "link").st_uid == 0
    assert outcomes["theirs"].status is Status.PRESENT
    assert [a.change() for a in outcomes["theirs"].drift] == ["owner nobody -> root"]
    assert os.stat(pantry / "theirs").st_uid == NOBODY


# --- what diff and why say -------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_diff_and_why_show_each_drifting_aspect_and_whether_it_is_enforced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        'pantry: ./p\nsnacks:\n  - name: app.conf\n    content: "port=80\\n"\n    mode: "0600"\n'
        "  - name: key\n    mode: '0600'\n    enforce: [mode]\n"
    )
    assert cli(capsys, "once", "-c", str(spec))[0] == 0
    assert cli(capsys, "diff", "-c", str(spec)) == (0, "no drift\n")
    (tmp_path / "p" / "app.conf").write_text("port=8080\n")
    for name in ("app.conf", "key"):
        (tmp_path / "p" / name).chmod(0o644)
    assert cli(capsys, "diff", "-c", str(spec)) == (
        1,
        "~ app.conf: content differs, mode 0644 -> 0600 (not enforced)\n"
        "~ key: mode 0644 -> 0600 (enforced: put back by the daemon)\n",
    )
    _, out = cli(capsys, "why", "-c", str(spec), "app.conf")
    assert (
        "  on disk: present\n"
        "  drift: content differs from the spec (not enforced: enforce: [content] would)\n"
        "  drift: mode 0644, spec says 0600 (not enforced: enforce: [mode] would)\n"
    ) in out
    _, out = cli(capsys, "why", "-c", str(spec), "key")
    assert "  drift: mode 0644, spec says 0600 (enforced: the daemon puts it back)\n" in out
    assert (tmp_path / "p" / "app.conf").read_text() == "port=8080\n"  # diff and why change nothing


# --- fights over enforced aspects (pure) -----------------------------------------------------------------------


def test_a_correction_fight_counts_changes_right_after_our_corrections_never_our_own_echo() -> None:
    health = Health(fight=FightPolicy(window=0.05, threshold=3))
    now = 0.0
    for _ in range(10):  # a human: a change now and then, our change heard back right after each correction
        now += 5.0
        assert health.changed("a", now) == 0.0
        assert health.corrected("a", now + 0.001) is None
        assert health.changed("a", now + 0.002) == 0.0  # the echo: looked at, nothing to put back
        health.looked("a")
    changes = []
    for _ in range(3):  # a tool rewriting it 1 ms after each correction
        now += 0.002
        health.changed("a", now)
        changes.append(health.corrected("a", now + 0.001))
    assert changes == [None, None, Change.FIGHT_STARTED]
    assert health.changed("a", now + 0.01) > 0  # held back: the schedule looks again
    now = health.next_due() or 0.0
    assert health.pop_due(now) == ["a"]
    assert health.present("a", now) is None  # nothing changed meanwhile, but the quiet period is not over
    quiet = health.next_due() or 0.0
    assert health.pop_due(quiet) == ["a"] and health.present("a", quiet) is Change.FIGHT_OVER
    assert health.next_due() is None  # idle again


# --- the kernel's part: only directories holding enforced entries hear changes in place -------------------------


@pytest.mark.skipif(not (IS_LINUX and HAVE_INOTIFY), reason="inotify is Linux only")
def test_only_a_directory_holding_enforced_entries_hears_writes_and_chmods_of_them(tmp_path: Path) -> None:
    enforced, plain = tmp_path / "enforced", tmp_path / "plain"
    for directory in (enforced, plain):
        directory.mkdir()
        for name in ("app.conf", "other"):
            (directory / name).write_text("x\n")
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    try:
        watcher.track({str(enforced): frozenset({"app.conf", "other"}), str(plain): frozenset({"app.conf"})})
        watcher.track_enforced({str(enforced): frozenset({"app.conf"})})
        watcher.arm([str(enforced), str(plain)], [])
        for directory in (enforced, plain):
            (directory / "app.conf").chmod(0o600)
            (directory / "app.conf").write_text("y\n")
            (directory / "other").chmod(0o600)
        (enforced / ".snackwatch-1-abc.tmp").write_text("ours\n")
        assert watcher.read_events() is True
        assert dirty.take().changed == {(str(enforced), "app.conf")}
        watcher.track_enforced({})  # a reload that enforces nothing: the mask narrows again
        (enforced / "app.conf").chmod(0o644)
        assert watcher.read_events() is False and dirty.take().changed == set()
    finally:
        watcher.close()
        dirty.close()


def test_once_puts_enforced_aspects_back_and_says_what_it_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "pantry: ./p\nsnacks:\n  - name: key\n    mode: '0600'\n    enforce: [mode]\n  - name: free\n    mode: '0600'\n"
    )
    assert cli(capsys, "once", "-c", str(spec))[0] == 0
    for name in ("key", "free"):
        (tmp_path / "p" / name).chmod(0o644)
    assert cli(capsys, "once", "--dry-run", "-c", str(spec)) == (
        1,
        "would correct key: mode 0644 -> 0600\n~ free: mode 0644 -> 0600 (not enforced: left as is)\n",
    )
    assert cli(capsys, "once", "-c", str(spec)) == (
        0,
        "corrected key: mode 0644 -> 0600\n~ free: mode 0644 -> 0600 (not enforced: left as is)\n",
    )
    assert stat.S_IMODE((tmp_path / "p" / "key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "p" / "free").stat().st_mode) == 0o644


@pytest.mark.skipif(not (IS_LINUX and HAVE_INOTIFY), reason="inotify is Linux only")
def test_a_chmod_storm_beside_an_enforced_file_mutes_only_the_change_events(tmp_path: Path) -> None:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    for name in ("app.conf", "Goldfish", "junk0", "junk1"):
        (pantry / name).write_text("x\n")
    dirty = DirtySet()
    watcher = Watcher(dirty, "inotify", ignore_prefix=".snackwatch-")
    try:
        watcher.track({str(pantry): frozenset({"app.conf", "Goldfish"})})
        watcher.track_enforced({str(pantry): frozenset({"app.conf"})})
        watcher.arm([str(pantry)], [])
        source = watcher._source
        assert isinstance(source, InotifySource)
        source.change_storm = StormGuard(StormPolicy(noise=100))
        for index in range(150):  # another user's chmod loop on unrelated names (alike events in a row are one)
            (pantry / f"junk{index & 1}").chmod(0o600 if index & 2 else 0o644)
        watcher.read_events()
        mask = inotify_mask(source.fd, pantry)
        assert not mask & IN_ATTRIB and mask & IN_DELETE  # deletions still heard one by one
        dirty.take()
        (pantry / "Goldfish").unlink()
        watcher.read_events()
        assert dirty.take().names == {(str(pantry), "Goldfish")}
        due = source.next_due()
        assert due is not None
        watcher.storm_scans(due)  # on the guard's schedule: the enforced names are checked
        assert dirty.take().changed == {(str(pantry), "app.conf")}
    finally:
        watcher.close()
        dirty.close()


def test_a_hard_linked_file_never_gets_an_enforced_mode_through_its_link(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, "  - name: key\n    mode: '0600'\n    enforce: [mode]\n")
    reconcile_all(desired)
    key, other = tmp_path / "p" / "key", tmp_path / "other"
    other.write_text("someone else's\n")
    other.chmod(0o644)
    key.unlink()
    os.link(other, key)
    [outcome] = changed(desired, "key")
    assert outcome.status is Status.FAILED and "2 hard links" in str(outcome.error)
    assert stat.S_IMODE(other.stat().st_mode) == 0o644  # as systemd-tmpfiles: not changed through a hard link


class Recorded:
    """The ownership record of a pruning spec, as reconcile sees it: what it was told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int]] = []

    def record_before_publish(self, created: list[tuple[str, os.stat_result, Path]]) -> None:
        self.told += [(path, info.st_ino) for path, info, _ in created]

    def forget(self, path: str) -> None:
        self.told.append((path, -1))


def test_a_pruning_specs_file_rewritten_by_enforce_is_recorded_before_it_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "snacks.yaml"
    path.write_text('pantry: ./p\nprune: true\nsnacks:\n  - name: a\n    content: "x\\n"\n    enforce: [content]\n')
    desired = merge([load_spec(path)])
    recorder = Recorded()
    reconcile_all(desired, recorder=recorder)
    (tmp_path / "p" / "a").write_text("theirs\n")
    [outcome] = reconcile_names(desired, str(tmp_path / "p"), ["a"], recorder=recorder, changed=True)
    assert outcome.status is Status.CORRECTED
    assert recorder.told[-1] == (str(tmp_path / "p" / "a"), (tmp_path / "p" / "a").stat().st_ino)
