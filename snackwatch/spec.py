"""The desired state: frozen Spec/Snack values and load_spec(), pure parsing plus validation."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from snackwatch.errors import SpecError

MAX_SPEC_BYTES = 16 * 1024 * 1024
RESERVED_PREFIX = ".snackwatch-"
TOP_KEYS = ("version", "pantry", "prune", "snacks")
SNACK_KEYS = ("name", "content", "mode")

# libyaml's composer is ~15x faster on big specs; the pure-Python one is the fallback.
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A name that needs no further checks: one component, no dot start (so not ., .. or the reserved prefix).
_PLAIN_NAME = re.compile(r"[^./\x00][^/\x00]*")


class Snack(NamedTuple):
    """One file that must exist in the pantry; content and mode apply only when it is created."""

    name: str
    line: int = 0
    content: str | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Spec:
    """A validated spec file: where the pantry is and which snacks it must hold."""

    path: Path
    pantry: Path
    snacks: tuple[Snack, ...]
    prune: bool = False  # delete files snackwatch created when they leave this spec (guarded)


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at `path`; raise SpecError naming `path:line` on any problem."""
    return parse_spec(read_spec_bytes(path), path)


def read_spec_bytes(path: Path) -> bytes:
    """Read at most MAX_SPEC_BYTES (+1 to detect excess) so a runaway file cannot exhaust memory."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecError(path, None, f"cannot read spec: {error.strerror or error}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(path, 1, f"spec is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB")
    return data


def parse_spec(data: bytes, path: Path) -> Spec:
    """Validate spec bytes as read from `path` (used for the error location and relative pantry)."""
    path = Path(os.path.abspath(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SpecError(path, line, "spec is not valid UTF-8") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise SpecError(
            path, mark.line + 1 if mark is not None else 1, f"invalid YAML: {error.problem or error.context}"
        ) from None
    except yaml.YAMLError as error:
        raise SpecError(path, 1, f"invalid YAML: {error}") from None
    if root is None:
        raise SpecError(path, 1, "spec is empty (it must name a pantry and snacks)")
    return _Validator(path).spec(root)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a snack (a relative path inside the pantry, e.g. drinks/Juice), or None if it can."""
    if not name:
        return "snack name is empty"
    if "\0" in name:
        return "snack name contains a NUL byte"
    if name.startswith("/"):
        return f"snack name {name!r} is an absolute path (names are relative to the pantry)"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"snack name {name!r} has an empty, '.' or '..' component"
        if part.startswith(RESERVED_PREFIX):
            return f"snack name {name!r} uses the reserved prefix {RESERVED_PREFIX!r}"
    return None


def parse_mode(text: str) -> int | None:
    """An octal permission string such as "0640" or "0o640" as an int, or None if it is not one."""
    digits = text[2:] if text.lower().startswith("0o") else text
    if not digits or any(ch not in "01234567" for ch in digits):
        return None
    value = int(digits, 8)
    return value if value <= 0o7777 else None


class _Validator:
    """Walks the composed YAML nodes (they carry line marks) and builds a Spec or raises."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[int] = set()

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError(self.path, node.start_mark.line + 1, message)

    def visit(self, node: yaml.Node) -> yaml.Node:
        # The composer returns the same node object for every alias of an anchor: a second visit
        # is an alias. Refusing them keeps "billion laughs" specs from ever being expanded.
        if id(node) in self.seen:
            raise self.fail(node, "this anchored value is reused by an alias; YAML anchors/aliases are not allowed")
        self.seen.add(id(node))
        return node

    def mapping(self, node: yaml.Node, allowed: tuple[str, ...], what: str) -> dict[str, yaml.Node]:
        if not isinstance(self.visit(node), yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        fields: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, "a key")
            if key in fields:
                raise self.fail(key_node, f"duplicate key {key!r}")
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
                raise self.fail(key_node, f"unknown key {key!r} in {what}{suggestion}")
            fields[key] = value_node
        return fields

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(self.visit(node), yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a list or mapping")
        return str(node.value)

    def spec(self, root: yaml.Node) -> Spec:
        fields = self.mapping(root, TOP_KEYS, "the spec")
        if "version" in fields and self.scalar(fields["version"], "version") != "1":
            raise self.fail(fields["version"], "unsupported version (only version: 1 exists)")
        if "pantry" not in fields:
            raise self.fail(root, "missing key 'pantry' (the directory that holds the snacks)")
        if "snacks" not in fields:
            raise self.fail(root, "missing key 'snacks' (the list of files to keep)")
        prune = False
        if "prune" in fields:
            text = self.scalar(fields["prune"], "prune")
            if text not in ("true", "false"):
                raise self.fail(fields["prune"], "prune must be true or false")
            prune = text == "true"
        return Spec(self.path, self.pantry(fields["pantry"]), self.snacks(fields["snacks"]), prune)

    def pantry(self, node: yaml.Node) -> Path:
        text = self.scalar(node, "pantry")
        if not text.strip() or "\0" in text:
            raise self.fail(node, "pantry must be a directory path")
        expanded = Path(os.path.expanduser(text))
        return Path(os.path.abspath(self.path.parent / expanded))

    def snacks(self, node: yaml.Node) -> tuple[Snack, ...]:
        if not isinstance(self.visit(node), yaml.SequenceNode):
            raise self.fail(node, "snacks must be a list")
        snacks: list[Snack] = []
        lines: dict[str, int] = {}
        seen = self.seen
        for item in node.value:
            # Fast path for the common case, a bare plain name (100k of them parse in a fraction of a second);
            # anything unusual takes the full route below.
            name = item.value if item.__class__ is yaml.ScalarNode else None
            if name and id(item) not in seen and _PLAIN_NAME.fullmatch(name):
                seen.add(id(item))
                snack = Snack(name, item.start_mark.line + 1)
            else:
                snack = self.snack(item)
            if snack.name in lines:
                raise self.fail(item, f"duplicate snack {snack.name!r} (first declared on line {lines[snack.name]})")
            lines[snack.name] = snack.line
            snacks.append(snack)
        for snack in (snack for snack in snacks if "/" in snack.name):  # "drinks" is a snack, or a directory
            parent = snack.name.rpartition("/")[0]
            while parent:
                if parent in lines:
                    raise SpecError(
                        self.path,
                        snack.line,
                        f"snack {snack.name!r} needs {parent!r} to be a directory, "
                        f"but line {lines[parent]} declares it as a snack",
                    )
                parent = parent.rpartition("/")[0]
        return tuple(snacks)

    def snack(self, node: yaml.Node) -> Snack:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return Snack(self.name(node), line)
        fields = self.mapping(node, SNACK_KEYS, "a snack")
        if "name" not in fields:
            raise self.fail(node, "snack is missing 'name'")
        content = self.scalar(fields["content"], "content") if "content" in fields else None
        mode = None
        if "mode" in fields:
            mode = parse_mode(self.scalar(fields["mode"], "mode"))
            if mode is None:
                raise self.fail(fields["mode"], 'mode must be an octal string such as "0640"')
        return Snack(self.name(fields["name"]), line, content, mode)

    def name(self, node: yaml.Node) -> str:
        name = self.scalar(node, "a snack name")
        problem = name_problem(name)
        if problem is not None:
            raise self.fail(node, problem)
        return name
