"""Spec parsing and validation: every rule in design.md, without a filesystem (parse_spec on bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snackwatch.desired import merge
from snackwatch.errors import SpecError
from snackwatch.spec import MAX_SPEC_BYTES, Snack, load_spec, parse_mode, parse_spec

SPEC = Path("/etc/snackwatch/snacks.yaml")


def parse(text: str) -> object:
    return parse_spec(text.encode(), SPEC)


def error_of(text: str | bytes) -> SpecError:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(SpecError) as caught:
        parse_spec(data, SPEC)
    return caught.value


def test_bare_names_and_mappings() -> None:
    spec = parse_spec(
        b"version: 1\npantry: /pantry\nsnacks:\n  - Goldfish\n  - name: StringCheese\n"
        b'    content: "mozzarella\\n"\n    mode: "0640"\n',
        SPEC,
    )
    assert spec.pantry == Path("/pantry")
    assert spec.snacks == (Snack("Goldfish", 4), Snack("StringCheese", 5, "mozzarella\n", 0o640))


def test_relative_pantry_is_relative_to_the_spec_file() -> None:
    spec = parse_spec(b"pantry: ./pantry\nsnacks: [a]\n", SPEC)
    assert spec.pantry == Path("/etc/snackwatch/pantry")
    assert parse_spec(b"pantry: ../x\nsnacks: []\n", SPEC).pantry == Path("/etc/x")


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ada")
    assert parse_spec(b"pantry: ~/pantry\nsnacks: []\n", SPEC).pantry == Path("/home/ada/pantry")


def test_names_are_taken_literally_not_as_yaml_booleans_or_numbers() -> None:
    spec = parse_spec(b"pantry: /p\nsnacks: [yes, 0640, null-ish, 1.5]\n", SPEC)
    assert [snack.name for snack in spec.snacks] == ["yes", "0640", "null-ish", "1.5"]


def test_nested_names_and_prune() -> None:
    spec = parse_spec(b"pantry: /p\nprune: true\nsnacks: [drinks/Juice, drinks/cold/Soda]\n", SPEC)
    assert [snack.name for snack in spec.snacks] == ["drinks/Juice", "drinks/cold/Soda"]
    assert spec.prune is True
    assert parse_spec(b"pantry: /p\nsnacks: []\n", SPEC).prune is False


def test_explicit_empty_list_is_zero_snacks() -> None:
    assert parse_spec(b"pantry: /p\nsnacks: []\n", SPEC).snacks == ()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty"),
        ("# only a comment\n\n# another\n", 1, "empty"),
        ("pantry: /p\nsnaks: [a]\n", 2, "unknown key 'snaks' in the spec (did you mean 'snacks'?)"),
        ("pantry: /p\nsnacks:\n  - name: a\n    contents: x\n", 4, "did you mean 'content'"),
        ("pantry: /p\nsnacks:\n  - name: a\n    colour: x\n", 4, "unknown key 'colour'"),
        ("pantry: /p\nsnacks:\n  - a\n  - b\n  - a\n", 5, "duplicate snack 'a' (first declared on line 3)"),
        ("pantry: /p\nsnacks: [a]\npantry: /q\n", 3, "duplicate key 'pantry'"),
        ("pantry: /p\nsnacks:\n  - name: a\n    name: b\n", 4, "duplicate key 'name'"),
        ("pantry: /p\nsnacks:\n  - ''\n", 3, "empty"),
        ("pantry: /p\nsnacks:\n  - .\n", 3, "'.' or '..' component"),
        ("pantry: /p\nsnacks:\n  - ..\n", 3, "'.' or '..' component"),
        ("pantry: /p\nsnacks:\n  - drinks/../../etc/passwd\n", 3, "'.' or '..' component"),
        ("pantry: /p\nsnacks:\n  - drinks//Juice\n", 3, "empty"),
        ("pantry: /p\nsnacks:\n  - drinks/\n", 3, "empty"),
        ("pantry: /p\nsnacks:\n  - /etc/passwd\n", 3, "absolute path"),
        ("pantry: /p\nsnacks:\n  - drinks/.snackwatch-x\n", 3, "reserved prefix"),
        ("pantry: /p\nsnacks:\n  - drinks/Juice\n  - drinks\n", 3, "needs 'drinks' to be a directory"),
        ("pantry: /p\nprune: yes\nsnacks: []\n", 2, "prune must be true or false"),
        ('pantry: /p\nsnacks:\n  - "a\\0b"\n', 3, "NUL"),
        ("pantry: /p\nsnacks:\n  - .snackwatch-x\n", 3, "reserved prefix"),
        ("pantry: /p\nsnacks:\n  - &x a\n  - *x\n", 3, "anchors/aliases are not allowed"),
        ("pantry: /p\nsnacks:\n  - name: a\n    mode: rw-r--r--\n", 4, "octal"),
        ("pantry: /p\nsnacks:\n  - name: a\n    mode: '99999'\n", 4, "octal"),
        ("pantry: /p\nsnacks:\n  - content: x\n", 3, "missing 'name'"),
        ("pantry: /p\nsnacks:\n  - [a, b]\n", 3, "a snack must be a mapping"),
        ("pantry: /p\nsnacks:\n  - name: [a]\n", 3, "single value"),
        ("pantry: /p\nsnacks: a\n", 2, "snacks must be a list"),
        ("pantry: /p\nsnacks:\n", 2, "snacks must be a list"),
        ("snacks: [a]\n", 1, "missing key 'pantry'"),
        ("pantry: /p\n", 1, "missing key 'snacks'"),
        ("pantry: ''\nsnacks: []\n", 1, "pantry must be a directory path"),
        ("version: 2\npantry: /p\nsnacks: []\n", 1, "only version: 1"),
        ("- a\n- b\n", 1, "the spec must be a mapping"),
        ("pantry: /p\nsnacks: [a\n", 2, "invalid YAML"),  # at EOF: the last line, not one past it
        ("pantry: /p\nsnacks:\n  - a\n - b\n", 4, "invalid YAML"),
        ("pantry: /p\nsnacks: []\n---\npantry: /q\n", 3, "invalid YAML"),
        ('pantry: /p\nsnacks:\n  - a\n  - "x\\n<0>forged"\n', 4, "control character (U+000A)"),
        ('pantry: /p\nsnacks:\n  - "\\e[31mred"\n', 3, "control character (U+001B)"),
        ('pantry: /p\nsnacks:\n  - name: "tab\\there"\n', 3, "control character (U+0009)"),
        ('pantry: /p\nsnacks:\n  - "del\\x7f"\n', 3, "control character (U+007F)"),
        ('pantry: /p\nsnacks:\n  - "drinks/c1\\x9b31m"\n', 3, "control character (U+009B)"),
        ('pantry: /p\nsnacks:\n  - "nel\\N"\n', 3, "control character (U+0085)"),
        ('pantry: "/p\\x1b[2J"\nsnacks: []\n', 1, "pantry '/p\\x1b[2J' contains a control character"),
        ("pantry: /p\nsnacks:\n  - a\n  - " + "x" * 256 + "\n", 4, "component of 256 bytes"),
        ("pantry: /p\nsnacks:\n  - d/" + "\u00e9" * 128 + "\n", 3, "component of 256 bytes"),
        ("pantry: /p\nsnacks:\n  - " + "/".join(["d"] * 33) + "\n", 3, "33 components deep (at most 32)"),
        ("pantry: /p\nsnacks:\n  - " + "/".join(["d" * 200] * 21) + "\n", 3, "path of 4223 bytes"),
        ("pantry: /" + "p" * 200 + "/x\nsnacks:\n  - " + "/".join(["d" * 250] * 16) + "\n", 3, "at most 4095"),
        ("pantry: /" + "/".join(["p" * 250] * 17) + "\nsnacks: []\n", 1, "pantry '/ppp"),
    ],
)
def test_invalid_specs_name_the_line(text: str, line: int, fragment: str) -> None:
    error = error_of(text)
    assert error.line == line, str(error)
    assert fragment in error.message
    assert str(error).startswith(f"{SPEC}:{line}: ")


def test_half_written_spec_is_an_error_not_fewer_snacks() -> None:
    full = 'version: 1\npantry: /p\nsnacks:\n  - name: Goldfish\n    mode: "0640"\n'
    # Cut mid-mapping (after "- name: Gold"): either invalid YAML or an invalid snack, never "valid".
    error = error_of(full[: full.index("mode")] + 'mode: "06')
    assert error.line == 5


def test_invalid_utf8_names_its_line() -> None:
    error = error_of(b"pantry: /p\nsnacks:\n  - caf\xe9\n")
    assert error.line == 3 and "UTF-8" in error.message


def test_billion_laughs_is_refused_without_expanding() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    error = error_of("\n".join(lines) + "\npantry: /p\nsnacks: *a9\n")
    assert "not allowed" in error.message or "unknown key" in error.message


def test_aliases_are_refused_even_where_keys_are_known() -> None:
    error = error_of("pantry: &p /p\nsnacks:\n  - name: a\n    content: *p\n")
    assert error.line == 1 and "aliases are not allowed" in error.message


def test_parse_mode() -> None:
    assert parse_mode("0640") == 0o640
    assert parse_mode("0o755") == 0o755
    assert parse_mode("4755") == 0o4755
    assert parse_mode("640") == 0o640
    for bad in ("", "0o", "8", "rwx", "077777", "-1"):
        assert parse_mode(bad) is None


def test_load_spec_bounds_the_file_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as stream:
        stream.truncate(MAX_SPEC_BYTES + 10)
    with pytest.raises(SpecError) as caught:
        load_spec(big)
    assert caught.value.line == 1 and "larger than 16 MiB" in caught.value.message


def test_load_spec_missing_file_is_a_spec_error_without_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert caught.value.line is None
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: cannot read spec: No such file or directory"


def test_names_at_the_limits_are_accepted() -> None:
    deepest = "/".join(["d"] * 31 + ["x" * 255])
    longest = "/".join(["y" * 255] * 15 + ["z" * 252])  # with "/p/": 4095 bytes, PATH_MAX less its NUL
    spec = parse_spec(f"pantry: /p\nsnacks: [{deepest}, {longest}, caf\u00e9]\n".encode(), SPEC)
    assert [snack.name for snack in spec.snacks] == [deepest, longest, "caf\u00e9"]
    assert len(f"/p/{longest}".encode()) == 4095


def test_a_hundred_names_32_deep_merge_into_one_entry_per_directory() -> None:
    names = ["/".join([f"top{i}"] + [f"level{j}" for j in range(31)]) for i in range(100)]
    desired = merge([parse_spec(("pantry: /p\nsnacks:\n" + "".join(f"  - {n}\n" for n in names)).encode(), SPEC)])
    assert len(desired.directories) == 1 + 100 * 31 and desired.count == 100
    assert len(desired.children["/p"]) == 100
    assert all(len(children) == 1 for parent, children in desired.children.items() if parent != "/p")
    assert desired.directories[-1].count("/") == 32


def test_a_snack_under_a_root_pantry_needs_no_empty_directory() -> None:
    desired = merge([parse_spec(b"pantry: /\nsnacks: [srv/x]\n", SPEC)])
    assert desired.directories == ("/", "/srv") and desired.children == {"/": {"srv"}}
