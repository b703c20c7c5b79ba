"""`check` over several paths reports every file's error; `diff` on a conf.d shows the good files and names the bad."""

from __future__ import annotations

from pathlib import Path

from test_cli import snackwatch

from snackwatch.checking import MAX_REPORTED


def test_check_takes_several_paths_and_names_every_broken_file(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "good.yaml").write_text("pantry: ./p\nsnacks: [a]\n")
    (confd / "typo.yaml").write_text("pantry: ./p\nsnacks:\n  - b\n  - name: x\n    colour: red\n")
    (confd / "empty.yaml").write_text("# nothing yet\n")
    (tmp_path / "dup.yaml").write_text("pantry: ./q\nsnacks: [c, c]\n")
    (tmp_path / "fine.yaml").write_text("pantry: ./q\nsnacks: [c]\n")
    result = snackwatch("check", str(confd), str(tmp_path / "dup.yaml"), str(tmp_path / "fine.yaml"))
    assert result.returncode == 2
    assert result.stdout == f"{tmp_path}/fine.yaml: ok (1 snacks, pantry {tmp_path}/q)\n"
    assert result.stderr.splitlines() == [
        f"snackwatch: {confd}/empty.yaml:1: spec is empty (it must name a pantry and snacks)",
        f"snackwatch: {confd}/typo.yaml:5: unknown key 'colour' in a snack "
        "(allowed: name, type, content, source, target, mode, owner, group, enforce)",
        f"snackwatch: {tmp_path}/dup.yaml:2: duplicate snack 'c' (first declared on line 2)",
    ]
    # -c and paths together, all valid: exit 0, one ok line each
    result = snackwatch("check", "-c", str(tmp_path / "fine.yaml"), str(confd / "good.yaml"))
    assert (result.returncode, result.stdout.count(": ok ("), result.stderr) == (0, 2, "")


def test_check_reports_clashes_and_caps_the_error_list(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "a.yaml").write_text("pantry: ./p\nsnacks: [same]\n")
    (confd / "b.yaml").write_text("pantry: ./p\nsnacks: [same]\n")
    for number in range(MAX_REPORTED + 9):
        (confd / f"x{number:03}.yaml").write_text("pantry: ./p\nsnacks: 3\n")
    result = snackwatch("check", str(confd))
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == MAX_REPORTED + 1
    assert lines[-1] == f"snackwatch: ... and 10 more errors ({MAX_REPORTED + 10} in all)"
    assert all(line.endswith(":2: snacks must be a list") for line in lines[:MAX_REPORTED])
    everything = snackwatch("check", str(confd / "a.yaml"), str(confd / "b.yaml"))  # two configs: no clash
    assert everything.returncode == 0


def test_diff_on_a_conf_d_shows_the_good_files_and_names_the_broken_one(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "good.yaml").write_text("pantry: ./p\nsnacks: [Goldfish]\n")
    (confd / "bad.yaml").write_text("pantry: ./p\nsnacks: [Pretzels\n")
    result = snackwatch("diff", "-c", str(confd))
    assert (result.returncode, result.stdout) == (2, "+ Goldfish\n")
    assert result.stderr.startswith(f"snackwatch: {confd}/bad.yaml:") and "left out" in result.stderr
    assert result.stderr.count("\n") == 1
