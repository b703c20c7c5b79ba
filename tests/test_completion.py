"""Shell completion as a user gets it: the bash script sourced in a real bash, COMPREPLY read back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from snackwatch.cli import build_parser
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
        "snackwatch completion ",
    )
    assert replies == [
        "status",
        "run once check diff status why prune unit completion",
        "auto inotify observer polling",
        "text json",
        "--log-level --log-format --log-file",
        "--help --config --json",
        f"{tmp_path}/snacks.yaml",
        "bash zsh",
    ]


def test_bash_completes_snack_names_for_why_from_the_spec_without_python(tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "# comment\npantry: ./p   # where\nsnacks:\n  - Goldfish\n  - 'Fruit Gummies'  # quoted\n"
        '  - name: "StringCheese"\n    content: "a: b"\n  - mode: "0600"\n    name: drinks/Juice\n'
        "prune: false\nother:\n  - NotASnack\n"
    )
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "a.yaml").write_text("pantry: ./a\nsnacks:\n- Apple\n")
    (confd / "b.yml").write_text("pantry: ./b\nsnacks:\n  - Banana\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SNACKWATCH_CONFIG": str(spec)}  # no python on PATH
    replies = complete(
        tmp_path,
        f"snackwatch why -c {spec} ",
        f"snackwatch why --config {spec} S",
        f"snackwatch why -c {confd} ",
        "snackwatch why G",
        f"snackwatch why -c {tmp_path}/absent.yaml ",
        env=env,
    )
    assert replies == [
        "Goldfish Fruit Gummies StringCheese drinks/Juice",
        "StringCheese",
        "Apple Banana",
        "Goldfish",
        "",
    ]


def test_zsh_script_defines_the_completion_function(tmp_path: Path) -> None:
    script = completion_script(build_parser(), "zsh")
    assert script.startswith("#compdef snackwatch")
    assert "_snackwatch_snacks" in script and "(auto inotify observer polling)" in script
    if shutil.which("zsh"):
        (tmp_path / "_snackwatch").write_text(script)
        subprocess.run(["zsh", "-n", str(tmp_path / "_snackwatch")], check=True, timeout=10)


def test_bash_completes_directories_symlinks_and_copies_but_not_their_other_keys(tmp_path: Path) -> None:
    spec = tmp_path / "snacks.yaml"
    spec.write_text(
        "pantry: ./p\ndefaults:\n  owner: root\n  mode: '0640'\nsnacks:\n  - Goldfish\n"
        "  - name: logs\n    type: directory\n  - logs/today\n  - type: symlink\n    name: current\n"
        "    target: releases/v2\n  - name: app.conf\n    source: templates/app.conf\n    group: adm\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SNACKWATCH_CONFIG": str(spec)}
    assert complete(tmp_path, "snackwatch why ", env=env) == ["Goldfish logs logs/today current app.conf"]
