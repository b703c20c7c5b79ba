"""A spec re-read in O(changed): the lines an edit changed, widened to whole list items, parsed alone (pure).

An editor's save of a 100,000-snack spec usually changes one line. Parsing the whole file again costs
~0.3 s; this parses only the items the edit touched and keeps every other Snack as it is. Anything it
cannot prove equal to a full parse (an edit outside the `snacks:` list, a file without a final newline, a
directory entry, an error of any kind) returns None, and the caller parses the whole file: errors are
always the full parser's, so an invalid save is told and refused exactly as before.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import yaml

from snackwatch.errors import SpecError
from snackwatch.spec import LineMap, Snack, Spec, SpecRef, _Loader, _Validator, read_source_bytes

MAX_MOVES = 256  # snacks parsed by patches, or line moves, kept before a full parse starts the map again
_STEPS = (1 << 16, 1 << 12, 1 << 8, 1 << 4, 1)  # chunk sizes for the common prefix and suffix


class Declared(Protocol):
    """What the patch asks of the specs in force about names outside the lines it parses."""

    def snack(self, name: str) -> Snack | None:
        """The snack of this spec with that name, or None."""

    def is_directory(self, name: str) -> bool:
        """Whether other names need `name` (relative to the pantry) to be a directory."""


class Patched(NamedTuple):
    """The new spec, and its snacks that replace old ones: `gone` (old objects) and `came` (new objects). A
    snack only moved to another line is in both, equal but for its line."""

    spec: Spec
    gone: tuple[Snack, ...]
    came: tuple[Snack, ...]


class Span(NamedTuple):
    """old[start:old_end] was replaced by new[start:new_end]; every offset at the start of a line."""

    start: int
    old_end: int
    new_end: int


def changed_span(old: bytes, new: bytes) -> Span:
    """The lines that differ between two texts that both end with a newline (whole lines, the shortest span)."""
    limit = min(len(old), len(new))
    prefix = _common_prefix(old, new, limit)
    suffix = _common_suffix(old, new, limit - prefix)
    start = old.rfind(b"\n", 0, prefix) + 1
    old_end, new_end = len(old) - suffix, len(new) - suffix
    if not (_line_start(old, old_end) and _line_start(new, new_end)):
        newline = old.find(b"\n", old_end)  # the suffix is the same text in both: move both past its first newline
        step = (newline + 1 if newline >= 0 else len(old)) - old_end
        old_end, new_end = old_end + step, new_end + step
    return Span(start, old_end, new_end)


def patch_spec(
    old: Spec,
    old_data: bytes,
    new_data: bytes,
    declared: Declared,
    read_source: Callable[[Path], bytes] = read_source_bytes,
) -> Patched | None:
    """`old` (parsed from `old_data`) turned into the spec `new_data` holds by parsing only the list items the
    edit touched; None when that cannot be shown to equal `parse_spec(new_data)` (then parse it whole)."""
    if not (old.snacks and old_data.endswith(b"\n") and new_data.endswith(b"\n")) or old_data == new_data:
        return None
    span = changed_span(old_data, new_data)
    first_line = old_data.count(b"\n", 0, span.start) + 1
    old_lines = old_data.count(b"\n", span.start, span.old_end)
    shift = new_data.count(b"\n", span.start, span.new_end) - old_lines
    snacks, line_of = old.snacks, old.line_of
    first = bisect.bisect_right(snacks, first_line, key=line_of) - 1  # the item the edit starts in
    after = bisect.bisect_left(snacks, first_line + old_lines, key=line_of)  # the first item it leaves alone
    if first < 0:
        return None  # the edit starts above the list: the header may have changed
    item_start = _line_offset(old_data, span.start, first_line - line_of(snacks[first]))
    indent = _item_indent(old_data, item_start)
    if indent is None or not new_data.startswith(indent, item_start):
        return None  # not a block list item, or the edit made its first line something else
    if after < len(snacks):
        old_stop = _next_lines(old_data, span.old_end, line_of(snacks[after]) - (first_line + old_lines))
        new_stop = span.new_end + (old_stop - span.old_end)
        if not _opens_item(old_data, old_stop, indent):
            return None  # the next item's dash is not on its value's line: the edit may reach into it
    elif _items(old_data[item_start:]) is None:
        return None  # the old list was followed by keys (`prune: true`) the edit may have changed
    else:
        old_stop, new_stop = len(old_data), len(new_data)  # to the end: what follows must parse as the list, or fail
    if not (
        _self_contained(new_data[item_start:new_stop], indent)
        and _self_contained(old_data[item_start:old_stop], indent)
    ):
        return None
    fragment = _parse_items(old, new_data[item_start:new_stop], line_of(snacks[first]), read_source)
    replaced = snacks[first:after]
    if fragment is None or not _fits(fragment, replaced, declared):
        return None
    lines = _moved(old, replaced, fragment, snacks[after:], (first_line + old_lines, shift))
    if lines is None:
        return None
    spec = old.with_snacks(snacks[:first] + fragment + snacks[after:], lines, old.source_files)
    return Patched(spec, replaced, fragment)


def _moved(
    old: Spec, replaced: tuple[Snack, ...], fragment: tuple[Snack, ...], tail: tuple[Snack, ...], move: tuple[int, int]
) -> LineMap | None:
    """The spec's line map after a patch: the fragment's snacks are where they were parsed; the lines from
    `move[0]` on moved by `move[1]`. None past MAX_MOVES (then parse it whole: the map starts again)."""
    below, shift = move
    gone = {snack.name for snack in replaced}
    born = [(name, line + shift if line >= below else line) for name, line in old.lines.born if name not in gone]
    born += [(snack.name, snack.line) for snack in fragment]
    steps = old.lines.steps
    if shift:
        first_parsed = next((snack.line for snack in tail if not _is_born(snack.name, born)), None)
        if first_parsed is not None:
            steps = (*steps, (first_parsed, shift))
    if not steps:
        return old.lines  # nothing moved yet: every snack is on the line it was parsed on
    if len(born) > MAX_MOVES or len(steps) > MAX_MOVES:
        return None
    return LineMap(steps, tuple(born))


def _is_born(name: str, born: list[tuple[str, int]]) -> bool:
    return any(known == name for known, _ in born)


def _parse_items(old: Spec, text: bytes, line: int, read_source: Callable[[Path], bytes]) -> tuple[Snack, ...] | None:
    """The list items in `text` (whose first line is line `line` of the spec), checked like the whole spec's
    with its pantry and defaults; None on any error."""
    items = _items(text)
    if items is None:
        return None
    validator = _Validator(old.path, 1 << 30, read_source)
    validator.pantry_bytes = len(str(old.pantry).encode("utf-8"))
    validator.anchors = b"&" in text
    validator.defaults = old.defaults
    validator.place(str(old.pantry), SpecRef(old.path, old.prune))
    try:
        snacks = validator.snacks(items)
    except SpecError:
        return None
    if validator.errors:
        return None
    offset = line - 2  # the fragment's line 2 is the spec's `line`
    return tuple(snack.on_line(snack.line + offset) for snack in snacks)


def _items(text: bytes) -> yaml.SequenceNode | None:
    """The list items in `text` composed as the value of `snacks:` (nothing else may be there), or None."""
    try:
        root = yaml.compose("snacks:\n" + text.decode("utf-8"), Loader=_Loader)
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(root, yaml.MappingNode) or len(root.value) != 1:
        return None
    key, items = root.value[0]
    if not isinstance(key, yaml.ScalarNode) or key.value != "snacks" or not isinstance(items, yaml.SequenceNode):
        return None
    return items


def _fits(fragment: tuple[Snack, ...], replaced: tuple[Snack, ...], declared: Declared) -> bool:
    """The new items agree with the names outside them: no duplicate, no file where a directory is needed.
    Directory entries (they shape the walk's rules) are left to the full parse."""
    if any(snack.type == "directory" or snack.source is not None for snack in fragment + replaced):
        return False  # directories shape the walk's rules; sources are read and watched: the full parse
    replaced_names = {snack.name for snack in replaced}
    for snack in fragment:
        if snack.name not in replaced_names and declared.snack(snack.name) is not None:
            return False  # a duplicate: the full parse names both lines
        if declared.is_directory(snack.name):
            return False
        parent = snack.name.rpartition("/")[0]
        while parent:
            other = declared.snack(parent)
            if other is not None and parent not in replaced_names:
                return False  # a file or symlink where this name needs a directory
            parent = parent.rpartition("/")[0]
    return True


def _line_start(data: bytes, offset: int) -> bool:
    return offset == 0 or offset == len(data) or data[offset - 1 : offset] == b"\n"


def _line_offset(data: bytes, offset: int, back: int) -> int:
    """The start of the line `back` lines above the line starting at `offset`."""
    for _ in range(back):
        offset = data.rfind(b"\n", 0, offset - 1) + 1
    return offset


def _next_lines(data: bytes, offset: int, forward: int) -> int:
    """The start of the line `forward` lines below the line starting at `offset`."""
    for _ in range(forward):
        offset = data.index(b"\n", offset) + 1
    return offset


def _opens_item(data: bytes, offset: int, indent: bytes) -> bool:
    """The line at `offset` is a list item at the list's indent with its value on the same line (`  - name`)."""
    end = data.find(b"\n", offset)
    rest = data[offset : end if end >= 0 else len(data)]
    if not rest.startswith(indent + b" "):
        return False
    value = rest[len(indent) + 1 :].strip()
    return bool(value) and not value.startswith(b"#")


def _self_contained(region: bytes, indent: bytes) -> bool:
    """Lines that parse the same alone as in the file: nothing less indented than the list's dash but comments
    (no `...`, `---`, key or outdented item that would end the list or the document there), no tab-indented
    line, and no anchor (an alias elsewhere in the file could name it)."""
    if b"&" in region:
        return False
    dash = len(indent) - 1
    for line in region.split(b"\n"):
        body = line.lstrip(b" ")
        if not body.strip() or body.startswith(b"#"):
            continue
        if len(line) - len(body) < dash or body.startswith(b"\t"):
            return False
    return True


def _item_indent(data: bytes, offset: int) -> bytes | None:
    """`  -` for a block list item starting at `offset` (its indent and dash), or None."""
    end = data.find(b"\n", offset)
    line = data[offset:end]
    body = line.lstrip(b" ")
    if not body.startswith(b"-") or body[1:2] not in (b" ", b""):
        return None
    return line[: len(line) - len(body) + 1]


def _common_prefix(old: bytes, new: bytes, limit: int) -> int:
    """How many leading bytes the two texts share (compared in chunks of shrinking size, each in C)."""
    start = 0
    for size in _STEPS:
        while start + size <= limit and old[start : start + size] == new[start : start + size]:
            start += size
    return start


def _common_suffix(old: bytes, new: bytes, limit: int) -> int:
    """How many trailing bytes the two texts share, at most `limit`."""
    size, old_len, new_len = 0, len(old), len(new)
    for step in _STEPS:
        while (
            size + step <= limit
            and old[old_len - size - step : old_len - size] == new[new_len - size - step : new_len - size]
        ):
            size += step
    return size
