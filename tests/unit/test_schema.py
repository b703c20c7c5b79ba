"""The spec's JSON Schema agrees with the parser wherever a schema can decide: every spec text in tests/, plus
cases of our own, goes to both; the cases a schema cannot judge are listed by the parser's message."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import snackwatch

from snackwatch.errors import SpecError
from snackwatch.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "snackwatch" / "spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SPEC = Path("/etc/snackwatch/snacks.yaml")

# What a schema cannot see, by the parser's message: the cases where the parser refuses and the schema accepts.
CANNOT_DECIDE = {
    r"duplicate snack": "uniqueness of a name across list items that may be strings or mappings",
    r"anchors/aliases are not allowed": "an editor resolves aliases before validating",
    r"bytes": "lengths in UTF-8 bytes (a schema counts characters)",
    r"declares it as a (snack|file)": "a name that is also another name's directory",
    r"cannot read source|source .* is not a regular file": "whether a source file exists (the parser reads it)",
    r"unknown (user|group)": "whether a user or group name exists on this host",
    r"snack name is empty|pantry must be a directory path": "an empty value loads as null, as `null` (a name) does",
    r"mode must be an octal string": "an unquoted mode loads as a number whose digits a schema cannot see (0758)",
    r"unsupported version": "`version: 01` or `1.0` load as the number 1",
    r"prune must be true or false": "`True`/`TRUE` load as booleans; the parser takes `true` and `false` only",
    r"spec is empty": "an empty document or one of comments only is null to an editor, which then says nothing",
}

# (spec text, valid per the contract): our own cases, on top of the texts harvested from the tests.
OWN_CASES = [
    ("pantry: /p\nsnacks: [123, null, 1.5, true, ~, 0640, yes]\n", True),
    ("pantry: /p\nsnacks:\n  - name: a\n    mode: 0640\n", True),
    ('pantry: /p\nsnacks:\n  - name: a\n    mode: "0o640"\n', True),
    ("pantry: /p\nsnacks:\n  - name: a\n    mode: 0o640\n", True),
    ('pantry: /p\nsnacks:\n  - name: a\n    mode: "0758"\n', False),
    ("pantry: /p\nsnacks:\n  - name: a\n    mode: 0758\n", False),  # cannot decide: 758 is a number
    ('pantry: /p\nsnacks:\n  - name: a\n    mode: "17777"\n', False),
    ("pantry: /p\nsnacks:\n  - name: a\n    mode: rw\n", False),
    ("pantry: 123\nsnacks: []\n", True),
    ("pantry: ''\nsnacks: []\n", False),
    ("pantry: '  '\nsnacks: []\n", False),
    ('pantry: "/p\\x1b[31m"\nsnacks: []\n', False),
    ("pantry: [/p]\nsnacks: []\n", False),
    ("version: 2\npantry: /p\nsnacks: []\n", False),
    ("version: '1'\npantry: /p\nsnacks: []\n", True),
    ("version: 01\npantry: /p\nsnacks: []\n", False),  # cannot decide
    ("pantry: /p\nprune: yes\nsnacks: []\n", False),
    ("pantry: /p\nprune: 'true'\nsnacks: []\n", True),
    ("pantry: /p\nprune: True\nsnacks: []\n", False),  # cannot decide
    ("pantry: /p\n", False),
    ("snacks: []\n", False),
    ("pantry: /p\nsnacks: {a: 1}\n", False),
    ("pantry: /p\nsnacks:\n  - [a]\n", False),
    ("pantry: /p\nsnacks:\n  - content: x\n", False),
    ("pantry: /p\nsnacks:\n  - name: [a]\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    content: [x]\n", False),
    ("pantry: /p\nsnacks:\n  - /etc/passwd\n", False),
    ("pantry: /p\nsnacks:\n  - a/./b\n", False),
    ("pantry: /p\nsnacks:\n  - .snackwatch-1-abc.tmp\n", False),
    ("pantry: /p\nsnacks:\n  - d/.snackwatch-x\n", False),
    ("pantry: /p\nsnacks:\n  - .snackwatch\n", True),
    ('pantry: /p\nsnacks:\n  - "tab\\tname"\n', False),
    ('pantry: /p\nsnacks:\n  - "c1\\x85"\n', False),
    ("pantry: /p\nsnacks:\n  - " + "/".join(["d"] * 33) + "\n", False),
    ("pantry: /p\nsnacks:\n  - " + "/".join(["d"] * 32) + "\n", True),
    ("pantry: /p\nsnacks:\n  - " + "x" * 256 + "\n", False),
    ("pantry: /p\nsnacks:\n  - " + "é" * 200 + "\n", False),  # cannot decide: 200 characters, 400 bytes
    ("pantry: /p\nsnacks: [a, a]\n", False),  # cannot decide
    ("pantry: /p\nsnacks: [a, a/b]\n", False),  # cannot decide
    ("pantry: /p\nsnacks:\n  - &x a\n  - *x\n", False),  # cannot decide
    ("pantry: /p\nsnacks:\n  - name:\n", False),  # cannot decide
    ("", False),  # cannot decide
    ("pantry: /p\nsnacks: [a\n", False),
    ("pantry: /p\nsnacks: [a]\ncolour: red\n", False),
    # the kinds and drift keys (issues 19 and 20): the contract's example, and its errors
    (
        "version: 1\npantry: /home/alice/work\ndefaults:\n  owner: root\n  group: root\n  mode: '0640'\n"
        "  directory_mode: '0750'\n  enforce: [mode]\nsnacks:\n  - Goldfish\n  - name: logs\n    type: directory\n"
        "    mode: '0750'\n  - name: current\n    type: symlink\n    target: releases/v2\n  - name: app.conf\n"
        "    content: port=80\n    owner: root\n    group: 0\n    mode: '0640'\n    enforce: true\n",
        True,
    ),
    ("pantry: /p\nsnacks:\n  - name: a\n    owner: 0\n    group: 4\n", True),
    ("pantry: /p\nsnacks:\n  - name: a\n    owner: -1\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    group: ''\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    owner: [root]\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    type: fifo\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    type: symlink\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    target: b\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    type: directory\n    content: x\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    content: x\n    source: t/a\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    enforce: [content, colour]\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    enforce: sometimes\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    enforce: false\n", True),
    ("pantry: /p\nsnacks:\n  - name: a\n    enforce: [mode, owner, type]\n", True),
    ("pantry: /p\ndefaults:\n  enforce: true\nsnacks: [a]\n", True),
    ("pantry: /p\ndefaults:\n  mode: '0640'\n  colour: red\nsnacks: []\n", False),
    ("pantry: /p\ndefaults:\n  directory_mode: 0750\nsnacks: []\n", True),
    ("pantry: /p\ndefaults: [owner]\nsnacks: []\n", False),
    ("pantry: /p\nsnacks:\n  - name: a\n    source: no/such/template\n", False),  # cannot decide
    ("pantry: /p\nsnacks:\n  - name: a\n    owner: no-such-user-here\n", False),  # cannot decide
]


def load_as_an_editor_does(text: str) -> Any:
    """The document as yaml-language-server sees it (YAML 1.2 core schema: `0640` is 640, `yes` a string,
    aliases resolved); ValueError where it reports a YAML error (syntax, duplicate keys)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None
    return _value(root)


_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _value(node: yaml.Node | None) -> Any:
    if node is None:
        return None
    if isinstance(node, yaml.MappingNode):
        mapping = {}
        for key, value in node.value:
            name = _value(key)
            if name in mapping:
                raise ValueError(f"duplicate key {name!r}")
            mapping[name] = _value(value)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [_value(item) for item in node.value]
    text = node.value
    if node.style is not None:  # quoted or a block scalar: a string
        return text
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    for pattern, base in ((r"[-+]?[0-9]+", 10), (r"0o[0-7]+", 8), (r"0x[0-9a-fA-F]+", 16)):
        if re.fullmatch(pattern, text):
            return int(text[2:] if base != 10 else text, base)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def harvested_specs() -> list[str]:
    """Every string or bytes literal in tests/*.py that looks like a whole spec (names both keys)."""
    found: dict[str, None] = {}
    for source in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                value = node.value if isinstance(node.value, str) else node.value.decode("utf-8", "replace")
                if "pantry:" in value and "snacks:" in value and source.name != "test_schema.py":
                    found[value] = None
    return list(found)


def parser_verdict(text: str) -> str | None:
    """None if the parser accepts `text`, else its message."""
    try:
        parse_spec(text.encode(), SPEC)
    except SpecError as error:
        return error.message
    return None


def schema_verdict(text: str) -> str | None:
    """None if the schema accepts `text` as an editor loads it, else the first problem."""
    try:
        document = load_as_an_editor_does(text)
    except ValueError as error:
        return f"YAML: {error}"
    if document is None:
        return None  # an empty document: an editor has nothing to validate
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(document))
    return None if error is None else error.message


def why_they_differ(parser: str | None, schema: str | None) -> str:
    """'' when the two agree (both accept, or both refuse), else which known limit explains it, else 'unexplained'."""
    if (parser is None) == (schema is None):
        return ""
    if parser is None:
        return "unexplained"  # a false alarm: the schema refuses what the parser accepts
    for pattern, reason in CANNOT_DECIDE.items():
        if re.search(pattern, parser):
            return reason
    return "unexplained"


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_and_parser_agree_on_every_spec_in_the_tests() -> None:
    texts = harvested_specs()
    assert len(texts) > 50  # the harvest found the tests' specs
    unexplained = []
    for text in texts:
        parser, schema = parser_verdict(text), schema_verdict(text)
        if why_they_differ(parser, schema) == "unexplained":
            unexplained.append((text, parser, schema))
    assert unexplained == []


@pytest.mark.parametrize(("text", "valid"), OWN_CASES)
def test_schema_and_parser_on_our_cases(text: str, valid: bool) -> None:
    parser, schema = parser_verdict(text), schema_verdict(text)
    difference = why_they_differ(parser, schema)
    assert difference != "unexplained", (parser, schema)
    assert (parser is None) == valid, parser
    if not difference:
        assert (schema is None) == valid, schema


def test_the_cases_a_schema_cannot_decide_are_the_listed_ones() -> None:
    """The list above, case by case: each known limit is met by at least one case, and no case escapes it."""
    met = {why_they_differ(parser_verdict(text), schema_verdict(text)) for text, _ in OWN_CASES}
    assert met - {""} == set(CANNOT_DECIDE.values())


def test_snackwatch_schema_prints_the_shipped_schema() -> None:
    result = snackwatch("schema")
    assert result.returncode == 0 and json.loads(result.stdout) == SCHEMA


def test_the_example_spec_names_its_schema_and_is_valid() -> None:
    example = ROOT / "config" / "snacks.yaml"
    text = example.read_text()
    line = next(line for line in text.splitlines() if "yaml-language-server:" in line)
    target = example.parent / line.split("$schema=", 1)[1].strip()
    assert json.loads(target.read_text()) == SCHEMA
    assert schema_verdict(text) is None and parser_verdict(text) is None
