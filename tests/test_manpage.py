"""snackwatch(1): built from the real parser as the package build does, rendered by man, complete."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from argparse_manpage.manpage import Manpage
from build_manpages.build_manpages import get_pyproject_settings, parse_manpages_spec

from snackwatch import __version__
from snackwatch.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGE = "man/snackwatch.1"
HAND_WRITTEN = ("SPEC FORMAT", "EXIT STATUS", "SIGNALS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO")
INSTALLED = Path(sys.prefix) / "share" / "man" / "man1" / "snackwatch.1"


def generated_page(parser: argparse.ArgumentParser) -> str:
    """The page exactly as setup.py's build_manpages writes it, from pyproject.toml's [tool.build_manpages]."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # the spec's paths (the include file) are relative to the project, as in a build
    try:
        data = parse_manpages_spec(get_pyproject_settings())[PAGE]
        return str(Manpage(parser, _data={**data, "version": __version__, "project_name": "snackwatch"}))
    finally:
        os.chdir(cwd)


def render(roff: str, tmp_path: Path) -> str:
    """Plain text as `man` shows it: one long line per paragraph, ASCII, no hyphenation to split option names."""
    source = tmp_path / "snackwatch.1"
    source.write_text(roff)
    if shutil.which("man"):
        command = ["man", "-l", "-P", "cat", str(source)]
    elif shutil.which("groff"):
        command = ["groff", "-man", "-Tascii", "-P-c", str(source)]
    else:
        pytest.skip("neither man (man-db) nor groff is installed")
    env = {**os.environ, "MANWIDTH": "10000", "LC_ALL": "C", "MAN_KEEP_FORMATTING": "", "MANROFFOPT": "-rHY=0"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env, check=True)
    assert result.stderr == "", f"roff warnings: {result.stderr}"
    return result.stdout


def commands_and_options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):  # -h/--help: every command has it, the page says nothing
            yield from action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"snackwatch {name}"
                yield from commands_and_options(sub)


def test_page_names_every_command_and_option_and_has_the_hand_written_sections(tmp_path: Path) -> None:
    parser = build_parser()
    text = render(generated_page(parser), tmp_path)
    missing = [word for word in commands_and_options(parser) if word not in text]
    assert not missing, f"the man page lacks {missing}"
    assert [heading for heading in HAND_WRITTEN if f"\n{heading}\n" not in text] == []
    assert "snackwatch - keep declared files present in a directory" in text


def test_a_new_option_reaches_the_page(tmp_path: Path) -> None:
    """The page follows the parser: an option added to it is on the page without touching the page's source."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands.choices["status"].add_argument("--brand-new-option", help="only in this test")
    text = render(generated_page(parser), tmp_path)
    assert "--brand-new-option" in text and "only in this test" in text


@pytest.mark.skipif(not INSTALLED.exists(), reason=f"no installed page at {INSTALLED} (an editable install)")
def test_installed_page_is_current(tmp_path: Path) -> None:
    """`pip install .` put the page under <prefix>/share/man/man1 (MANPATH=<prefix>/share/man man snackwatch),
    and it lacks no command or option of today's parser (reinstall after changing the parser)."""
    text = render(INSTALLED.read_text(), tmp_path)
    missing = [word for word in commands_and_options(build_parser()) if word not in text]
    assert not missing, f"the installed man page lacks {missing}: reinstall"


SPEC_PAGE = ROOT / "man" / "snackwatch.5"
INSTALLED_5 = Path(sys.prefix) / "share" / "man" / "man5" / "snackwatch.5"


def schema_keys() -> set[str]:
    """Every key the spec's JSON Schema knows (top level, defaults, entries)."""
    schema = json.loads((ROOT / "snackwatch" / "spec.schema.json").read_text())
    return (
        set(schema["properties"])
        | set(schema["properties"]["defaults"]["properties"])
        | set(schema["$defs"]["entry"]["properties"])
    )


def render_with_warnings(page: Path) -> str:
    """`man --warnings -l` as a user would read the page; any roff warning fails."""
    if not shutil.which("man"):
        pytest.skip("man (man-db) is not installed")
    env = {**os.environ, "MANWIDTH": "10000", "LC_ALL": "C", "MAN_KEEP_FORMATTING": "", "MANROFFOPT": "-rHY=0"}
    command = ["man", "--warnings", "-l", "-P", "cat", str(page)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env, check=True)
    assert result.stderr == "", f"roff warnings: {result.stderr}"
    return result.stdout


def test_spec_page_describes_every_key_and_renders_without_warnings() -> None:
    text = render_with_warnings(SPEC_PAGE)
    tagged = re.findall(r"^ {7}([a-z_]+(?:, [a-z_]+)*)(?: +|$)", text, re.MULTILINE)  # .TP paragraph tags
    described = {word for tag in tagged for word in tag.split(", ")}
    assert sorted(schema_keys() - described) == []  # each key has its own paragraph
    assert {"file", "directory", "symlink"} <= described  # and so does each kind
    for section in (
        "TOP-LEVEL KEYS",
        "ENTRIES",
        "DEFAULTS",
        "KINDS",
        "DRIFT AND ENFORCE",
        "CONF.D",
        "ERRORS",
        "EXAMPLE",
    ):
        assert f"\n{section}\n" in text
    assert "snackwatch(1)" in text


def test_command_page_lists_commands_and_refers_to_the_spec_page(tmp_path: Path) -> None:
    text = render(generated_page(build_parser()), tmp_path)
    assert "\nCOMMANDS\n" in text and "POSITIONAL ARGUMENTS" not in text
    assert "snackwatch(5)" in text


@pytest.mark.skipif(not INSTALLED_5.exists(), reason=f"no installed page at {INSTALLED_5} (an editable install)")
def test_installed_spec_page_is_current() -> None:
    assert INSTALLED_5.read_bytes() == SPEC_PAGE.read_bytes()
