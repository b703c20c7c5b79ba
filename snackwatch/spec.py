"""The desired state: frozen Spec/Snack values and load_spec(), pure parsing plus validation."""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from snackwatch.errors import SpecBeingWritten, SpecError

MAX_SPEC_BYTES = 16 * 1024 * 1024
RESERVED_PREFIX = ".snackwatch-"
NAME_MAX = 255  # bytes in one path component (UTF-8)
PATH_MAX = 4096  # bytes in a whole path with its terminating NUL, so at most 4095 of text
MAX_DEPTH = 32  # components in a snack name
TOP_KEYS = ("version", "pantry", "prune", "snacks")
SNACK_KEYS = ("name", "content", "mode")

_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
# libyaml's composer is ~15x faster on big specs; the pure-Python one is the fallback.
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# C0 controls, DEL and C1 controls: a name or pantry holding one could forge log lines or terminal output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A name that needs no further checks: one component, no dot start (so not ., .. or the reserved prefix),
# no control character, at most 63 characters (so at most 252 bytes: within NAME_MAX).
_PLAIN_NAME = re.compile(r"[^./\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]{0,62}")
# A pantry this short leaves room for any plain name within PATH_MAX.
_ROOMY_PANTRY = PATH_MAX - 1 - 1 - 4 * 63


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
    pantry_line: int = 0  # where `pantry:` is, for errors about the directory it names


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at `path`; raise SpecError naming `path:line` on any problem."""
    return parse_spec(read_spec_bytes(path), path)


def read_spec_bytes(path: Path, *, follow: bool = True) -> bytes:
    """Read at most MAX_SPEC_BYTES (+1 to detect excess) so a runaway file cannot exhaust memory.

    Opened non-blocking and refused unless a regular file, so a FIFO or device never hangs us. `follow=False`
    (a file found in a conf.d directory) refuses a symlink: only the path the user named may be one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            raise SpecError(path, None, "is a symlink, not followed inside a conf.d directory") from None
        raise SpecError(path, None, f"cannot read spec: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecError(path, None, f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')})")
        with _no_writer(fd, path), open(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecError(path, None, f"cannot read spec: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(path, 1, f"spec is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB")
    return data


@contextlib.contextmanager
def _no_writer(fd: int, path: Path) -> Iterator[None]:
    """Hold a read lease while reading: the kernel grants it only if no process has the file open for writing,
    and a writer that opens it meanwhile waits for our release. So a spec is never read half-written.
    Where leases are not to be had (not the file's owner, or the filesystem has none), read without one."""
    setlease = getattr(fcntl, "F_SETLEASE", None)  # Linux only
    try:
        if setlease is not None:
            fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
    except OSError as error:
        if error.errno == errno.EAGAIN:
            raise SpecBeingWritten(path, None, "is open for writing by another process: read once closed") from None
        setlease = None
    try:
        yield
    finally:
        if setlease is not None:
            fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)


def parse_spec(data: bytes, path: Path) -> Spec:
    """Validate spec bytes as read from `path` (used for the error location and relative pantry)."""
    path = Path(os.path.abspath(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SpecError(path, line, "spec is not valid UTF-8") from None
    last_line = max(1, text.count("\n") + (not text.endswith("\n")))  # an error at EOF is on the last line
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = min(mark.line + 1, last_line) if mark is not None else 1
        raise SpecError(path, line, f"invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise SpecError(path, 1, f"invalid YAML: {error}") from None
    if root is None:
        raise SpecError(path, 1, "spec is empty (it must name a pantry and snacks)")
    return _Validator(path, last_line).spec(root)


def name_problem(name: str, pantry_bytes: int = 0) -> str | None:
    """Why `name` cannot be a snack (a relative path inside the pantry, e.g. drinks/Juice), or None if it can.

    `pantry_bytes` is the length of the pantry path, for the PATH_MAX check of the whole path.
    """
    if not name:
        return "snack name is empty"
    problem = _text_problem(name, "snack name")
    if problem is not None:
        return problem
    if name.startswith("/"):
        return f"snack name {name!r} is an absolute path (names are relative to the pantry)"
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        return f"snack name {name[:60]!r}... is {len(parts)} components deep (at most {MAX_DEPTH})"
    for part in parts:
        if part in ("", ".", ".."):
            return f"snack name {name!r} has an empty, '.' or '..' component"
        if part.startswith(RESERVED_PREFIX):
            return f"snack name {name!r} uses the reserved prefix {RESERVED_PREFIX!r}"
    return _length_problem(name, parts, pantry_bytes + 1, "snack name")


def _text_problem(text: str, what: str) -> str | None:
    """A NUL or control character (C0, DEL, C1) in a name or pantry, or None."""
    if "\0" in text:
        return f"{what} contains a NUL byte"
    control = _CONTROL.search(text)
    if control is not None:
        return f"{what} {text[:60]!r} contains a control character (U+{ord(control.group()):04X})"
    return None


def _length_problem(text: str, parts: list[str], prefix_bytes: int, what: str) -> str | None:
    """A component longer than NAME_MAX bytes, or a whole path (with `prefix_bytes` before it) past PATH_MAX."""
    for part in parts:
        size = len(part.encode("utf-8"))
        if size > NAME_MAX:
            return f"{what} has a component of {size} bytes: {part[:40]!r}... (at most {NAME_MAX} bytes)"
    size = prefix_bytes + len(text.encode("utf-8"))
    if size >= PATH_MAX:
        return f"{what} {text[:40]!r}... makes a path of {size} bytes (at most {PATH_MAX - 1}, PATH_MAX with its NUL)"
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

    def __init__(self, path: Path, last_line: int) -> None:
        self.path = path
        self.last_line = last_line
        self.seen: set[int] = set()
        self.pantry_bytes = 0  # the pantry path's length, for the PATH_MAX check of each name

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError(self.path, min(node.start_mark.line + 1, self.last_line), message)

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
        pantry = fields["pantry"]
        return Spec(self.path, self.pantry(pantry), self.snacks(fields["snacks"]), prune, pantry.start_mark.line + 1)

    def pantry(self, node: yaml.Node) -> Path:
        text = self.scalar(node, "pantry")
        if not text.strip():
            raise self.fail(node, "pantry must be a directory path")
        problem = _text_problem(text, "pantry")
        if problem is not None:
            raise self.fail(node, problem)
        pantry = Path(os.path.abspath(self.path.parent / os.path.expanduser(text)))
        problem = _length_problem(str(pantry), str(pantry).split("/"), 0, "pantry")
        if problem is not None:
            raise self.fail(node, problem)
        self.pantry_bytes = len(str(pantry).encode("utf-8"))
        return pantry

    def snacks(self, node: yaml.Node) -> tuple[Snack, ...]:
        if not isinstance(self.visit(node), yaml.SequenceNode):
            raise self.fail(node, "snacks must be a list")
        snacks: list[Snack] = []
        lines: dict[str, int] = {}
        seen = self.seen
        plain = _PLAIN_NAME.fullmatch if self.pantry_bytes <= _ROOMY_PANTRY else lambda name: None
        for item in node.value:
            # Fast path for the common case, a bare plain name (100k of them parse in a fraction of a second);
            # anything unusual takes the full route below.
            name = item.value if item.__class__ is yaml.ScalarNode else None
            if name and id(item) not in seen and plain(name):
                seen.add(id(item))
                snack = Snack(name, item.start_mark.line + 1)
            else:
                snack = self.snack(item)
            if snack.name in lines:
                raise self.fail(item, f"duplicate snack {snack.name!r} (first declared on line {lines[snack.name]})")
            lines[snack.name] = snack.line
            snacks.append(snack)
        self.check_directories(snacks, lines)
        return tuple(snacks)

    def check_directories(self, snacks: list[Snack], lines: dict[str, int]) -> None:
        """A name such as "drinks" is a snack or a directory, not both; each directory is looked at once."""
        directories: set[str] = set()
        for snack in (snack for snack in snacks if "/" in snack.name):
            parent = snack.name.rpartition("/")[0]
            while parent and parent not in directories:
                if parent in lines:
                    raise SpecError(
                        self.path,
                        snack.line,
                        f"snack {snack.name!r} needs {parent!r} to be a directory, "
                        f"but line {lines[parent]} declares it as a snack",
                    )
                directories.add(parent)
                parent = parent.rpartition("/")[0]

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
        problem = name_problem(name, self.pantry_bytes)
        if problem is not None:
            raise self.fail(node, problem)
        return name
