"""The plain-list path of the spec parser (a big list of bare names read without a node tree) gives exactly what
the full parse gives: the same Spec, or the same errors (then it stepped aside and the full parse ran)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import snackwatch.spec as spec_module
from snackwatch.errors import SpecError
from snackwatch.spec import parse_spec

SPEC = Path("/etc/snackwatch/snacks.yaml")
HEADERS = [
    "version: 1\npantry: /pantry\nsnacks:\n",
    "pantry: /pantry\nprune: true\nsnacks:\n",
    "pantry: /pantry\ndefaults:\n  owner: root\n  mode: '0600'\n  enforce: true\nsnacks:\n",
    "snacks:\n",  # no pantry: an error either way
    "pantry: /pantry\nsnacks: # the list\n",
    "pantry: /pantry\nsnacks:\n  - name: first\n    mode: '0640'\n",
    "pantry: '/pantry\nsnacks:\n",  # unterminated quote
    "pantry: /" + "/".join(["p" * 200] * 20) + "/" + "q" * 9 + "\nsnacks:\n",  # 4,030 bytes: room for 62 in d/
]
NAMES = ["a", "b1", "1", "true", "null", "x.y", "d/e", "d/f", "d", "g/h/i", "a//b", "dir/", "a/../b", "_x", "+y"]
NAMES += ["d/.h", "d/-h", "d/" + "x" * 63, "d/" + "x" * 64, "z" * 63, "z" * 64, "e/f/" + "w" * 40]
ODD_LINES = ["  # a comment\n", "\n", "  - a  \n", "  - a\r\n", "    - nested\n", "prune: false\n", "  - 'q'\n"]


def parsed(text: str) -> object:
    try:
        return parse_spec(text.encode(), SPEC, lambda path: b"")
    except SpecError as error:
        return ("error", str(error), [str(also) for also in error.also])


def random_text(rng: random.Random) -> str:
    """Mostly a valid list (distinct names, nested ones under directories no file takes); now and then a name
    the checks refuse, a duplicate, a file where a directory is needed, or a line of another form."""
    indent = rng.choice(["  ", "", "    "])
    names = [f"{rng.choice(['s', 'e/f', 'g/h/i', 'n'])}{index}" for index in rng.sample(range(1000), 30)]
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        names.insert(rng.randrange(len(names) + 1), rng.choice(NAMES + names))
    lines = [f"{indent}- {name}\n" for name in names]
    if rng.random() < 0.1:
        lines.append(f"{indent}- {'n' * 70}\n")  # past the plain name's 63 characters: the full check
    if rng.random() < 0.2:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(ODD_LINES))
    return rng.choice(HEADERS) + "".join(lines)


def test_the_plain_list_path_and_the_full_parse_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    taken = 0
    for _ in range(400):
        text = random_text(rng)
        monkeypatch.setattr(spec_module, "PLAIN_LIST_LINES", 10**9)
        full = parsed(text)
        monkeypatch.setattr(spec_module, "PLAIN_LIST_LINES", 1)
        assert parsed(text) == full, text
        taken += spec_module._plain_list(text, SPEC, 1, lambda path: b"") is not None
    assert taken > 50  # the path is taken, not only stepped aside from


def test_a_big_plain_list_is_read_whole_with_its_lines() -> None:
    text = "pantry: /pantry\nsnacks:\n" + "".join(f"  - s{i:05d}\n" for i in range(5000))
    spec = parse_spec(text.encode(), SPEC)
    assert len(spec.snacks) == 5000 and spec.snacks[-1].name == "s04999" and spec.snacks[-1].line == 5002
    assert spec_module._plain_list(text, SPEC, 5002, lambda path: b"") == spec
