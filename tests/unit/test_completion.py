"""Shell completion as a user gets it: the bash script sourced in a real bash, COMPREPLY read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snackwatch.cli import build_parser, main
from snackwatch.completion import completion_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# Complete each command line (words separated by spaces; the last word is the one being completed, may be empty).
DRIVER = r"""
source "$1"; shift
for line in "$@"; do
  read -ra COMP_WORDS <<< "$line"; [[ "$line" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$line"; COMP_POINT=${#line}; COMPREPLY=()
  _shtab_snackwatch
  echo "${COMPREPLY[*]}"
done
"""


def complete(tmp_path: Path, *lines: str, env: dict[str, str] | None = None) -> list[str]:
    script = tmp_path / "snackwatch.bash"
    script.write_text(completion_script(build_parser(), "bash"))
    command = ["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", str(script), *lines]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, env=env, check=True)
    return result.stdout.splitlines()


def test_bash_completes_commands_options_choices_and_paths(tmp_path: Path) -> None:
    (tmp_path / "snacks.yaml").write_text("pantry: ./p\nsnacks: []\n")
    replies = complete(
        tmp_path,
        "snackwatch st",
        "snackwatch ",
        "snackwatch run --watcher ",
        "snackwatch run --log-format ",
        "snackwatch run --log-",
        "snackwatch status --",
        f"snackwatch check -c {tmp_path}/snacks",
        f"snackwatch check {tmp_path}/snacks",
        "snackwatch completion ",
    )
    assert replies == [
        "status",
        "run once check diff status why prune unit schema completion",
        "auto inotify observer polling",
        "text json",
        "--log-level --log-format --log-file",
        "--help --config --json",
        f"{tmp_path}/snacks.yaml",
        f"{tmp_path}/snacks.yaml",  # check's PATH arguments complete files too
        "bash zsh",
    ]


def test_bash_completes_snack_names_for_why_with_the_real_parser(tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "# comment\npantry: ./p   # where\nsnacks:\n  - Goldfish\n  - 'Fruit Gummies'  # quoted\n"
        '  - name: "StringCheese"\n    content: "a: b"\n  - mode: "0600"\n    name: drinks/Juice\n'
        "  - \"esc\\u00e9aped\"\n  - 'it''s'\n  - >-\n    folded\n  - {name: Flow}\n"
        "prune: false\n"
    )
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "a.yaml").write_text("pantry: ./a\nsnacks: [Apple, {name: Avocado}]\n")
    (confd / "b.yml").write_text("pantry: ./b\nsnacks:\n  - Banana\n")
    bin_dir = tmp_path / "bin"  # the `snackwatch` the user completes: it reads its own spec
    bin_dir.mkdir()
    (bin_dir / "snackwatch").write_text(f'#!/bin/sh\nexec {sys.executable} -m snackwatch "$@"\n')
    (bin_dir / "snackwatch").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "SNACKWATCH_CONFIG": str(spec)}
    replies = complete(
        tmp_path,
        f"snackwatch why -c {spec} ",
        f"snackwatch why --config {spec} S",
        f"snackwatch why -c {confd} ",
        "snackwatch why F",
        f"snackwatch why -c {tmp_path}/absent.yaml ",
        env=env,
    )
    assert replies == [
        "Goldfish Fruit\\ Gummies StringCheese drinks/Juice escéaped it\\'s folded Flow",
        "StringCheese",
        "Apple Avocado Banana",
        "Fruit\\ Gummies Flow",  # inserted quoted: one argument
        "",
    ]


def test_the_names_mode_is_hidden_and_prints_one_name_a_line(
    spec_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path.write_text("pantry: ./p\nsnacks: [Goldfish, 'my file.txt']\n")
    assert main(["_names", "-c", str(spec_path)]) == 0
    assert capsys.readouterr().out == "Goldfish\nmy file.txt\n"
    assert "_names" not in build_parser().format_help()
    assert "_names" not in completion_script(build_parser(), "bash").split("# End Custom Preamble")[1]


def test_zsh_script_defines_the_completion_function(tmp_path: Path) -> None:
    script = completion_script(build_parser(), "zsh")
    assert script.startswith("#compdef snackwatch")
    assert "_snackwatch_snacks" in script and "(auto inotify observer polling)" in script
    if shutil.which("zsh"):
        (tmp_path / "_snackwatch").write_text(script)
        subprocess.run(["zsh", "-n", str(tmp_path / "_snackwatch")], check=True, timeout=10)


def test_bash_completes_directories_symlinks_and_copies_but_not_their_other_keys_nor_enforce(tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "pantry: ./p\ndefaults:\n  owner: root\n  mode: '0640'\n  enforce: [mode]\nsnacks:\n  - Goldfish\n"
        "  - name: logs\n    type: directory\n  - logs/today\n  - type: symlink\n    name: current\n"
        "    target: releases/v2\n    enforce: true\n  - name: app.conf\n    source: templates/app.conf\n"
        "    group: adm\n    enforce: [content, type]\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.conf").write_text("port=80\n")  # a source that is not there is a spec error
    bin_dir = tmp_path / "bin"  # the `snackwatch` the user completes: it reads its own spec
    bin_dir.mkdir()
    (bin_dir / "snackwatch").write_text(f'#!/bin/sh\nexec {sys.executable} -m snackwatch "$@"\n')
    (bin_dir / "snackwatch").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "SNACKWATCH_CONFIG": str(spec)}
    assert complete(tmp_path, "snackwatch why ", env=env) == ["Goldfish logs logs/today current app.conf"]
