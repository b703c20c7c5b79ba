"""The desired state: frozen Spec/Snack values and load_spec(), parsing and validation (sources read by a reader)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import fcntl
import functools
import grp
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import yaml

from snackwatch.errors import SpecBeingWritten, SpecError

MAX_SPEC_BYTES = 16 * 1024 * 1024
T = TypeVar("T")
RESERVED_PREFIX = ".snackwatch-"
NAME_MAX = 255  # bytes in one path component (UTF-8)
PATH_MAX = 4096  # bytes in a whole path with its terminating NUL, so at most 4095 of text
MAX_DEPTH = 32  # components in a snack name
TOP_KEYS = ("version", "pantry", "prune", "defaults", "snacks")
SNACK_KEYS = ("name", "type", "content", "source", "target", "mode", "owner", "group", "enforce")
DEFAULT_KEYS = ("owner", "group", "mode", "directory_mode", "enforce")
ENFORCEABLE = ("content", "mode", "owner", "target", "type")  # `owner` covers owner and group
_ASPECTS_OF = {  # what `enforce: true` means for each kind (never `type`: moving an entry aside is asked by name)
    "file": frozenset({"content", "mode", "owner"}),
    "directory": frozenset({"mode", "owner"}),
    "symlink": frozenset({"target", "owner"}),
}
TYPES = ("file", "directory", "symlink")
FILE_MODE = 0o644  # with no mode: anywhere, whatever the umask (like systemd-tmpfiles)
DIRECTORY_MODE = 0o755

_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
# libyaml's composer is ~15x faster on big specs; the pure-Python one is the fallback.
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAGS: dict[type, str] = {
    yaml.ScalarNode: yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG,
    yaml.SequenceNode: yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
    yaml.MappingNode: yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
}


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The composer without tag resolution: every value is checked as text (`version: 1`, `prune: true`), no tag
    is ever read, so PyYAML's resolver (a Python call and regexps per scalar, ~80 ms per 100k snacks) is skipped."""

    def resolve(self, kind: type, value: object, implicit: object) -> str:
        return _TAGS[kind]

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


# C0 controls, DEL and C1 controls: a name or pantry holding one could forge log lines or terminal output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A name that needs no further checks: one component, no dot start (so not ., .. or the reserved prefix),
# no control character, at most 63 characters (so at most 252 bytes: within NAME_MAX).
_PLAIN_NAME = re.compile(r"[^./\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]{0,62}")
# A list item that YAML can only read as the name itself (a plain scalar of these characters), for _plain_list.
_ITEM_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+/-]*"
_FIRST_ITEM = re.compile(rf"( *)- ({_ITEM_NAME})")
PLAIN_LIST_LINES = 1000  # below this many lines the plain-list path is not worth it: the node tree is small
# A pantry this short leaves room for any plain name within PATH_MAX.
_ROOMY_PANTRY = PATH_MAX - 1 - 1 - 4 * 63


class SpecRef(NamedTuple):
    """What a snack needs of the spec that declares it: its file and whether it prunes. A value, equal across
    reloads that change only snacks, so an unchanged snack is reused as it is (reload O(changed))."""

    path: Path
    prune: bool


_NO_SPEC = SpecRef(Path("/"), False)  # a snack made on its own (tests, tools): merge() places it in its spec


class Traits(NamedTuple):
    """What a spec declares of a snack beside its name, shared by every snack that declares the same (100,000 plain
    snacks hold one): `mode`, `owner` and `group` hold the `defaults:` already. None means the built-in default
    (mode 0644 for files, 0755 for directories; the daemon's euid and egid)."""

    content: str | None = None
    mode: int | None = None
    type: str = "file"  # file | directory | symlink
    target: str | None = None  # a symlink's text, stored as given, never resolved
    source: str | None = None  # the absolute path of the file the content was copied from
    data: bytes | None = None  # the source's bytes, as read with the spec
    owner: int | None = None  # uid
    group: int | None = None  # gid
    enforce: frozenset[str] = frozenset()  # aspects put back when they drift (content, mode, owner, target, type)


class Home(NamedTuple):
    """Where a snack lives, shared by the snacks of one directory of one spec: the spec, the absolute directory,
    the name's directory part (`drinks` for `drinks/Juice`, "" at the pantry's top), and the line its snacks'
    lines count from (a snack keeps its line as a small offset from it: Python shares the ints up to 256, so
    100,000 lines take no int object of their own, ~3 MB less; a parse starts a new Home past 255 lines)."""

    spec: SpecRef
    directory: str
    parent: str
    first: int = 0


def _plain_traits(t: Traits) -> bool:
    """Traits of an empty file with every default (Snack.is_plain)."""
    return (
        t.type == "file"
        and t.content is None
        and t.mode is None
        and t.data is None
        and t.owner is None
        and t.group is None
    )


def all_plain(snacks: Iterable[Snack]) -> bool:
    """Whether every snack is plain (Snack.is_plain): judged once per run of snacks sharing their Traits (a plain
    list's 100,000 share one)."""
    last: Traits | None = None
    for traits in map(itemgetter(2), snacks):
        if traits is not last:
            if not _plain_traits(traits):
                return False
            last = traits
    return True


LINES_PER_HOME = 256  # offsets 0-255 are ints Python shares


class Snack(tuple[str, int, Traits, Home]):
    """One entry that must exist in the pantry (a file, directory or symlink); what it is made with applies only
    when it is created. Four slots: the file name in its directory, the line, the shared Traits and Home (the
    full name is made when asked; the line is an offset from the Home's `first`): at 100,000 snacks this is ~18 MB
    less than an 11-field record plus an Entry.
    The values a drift comparison needs (type, target, content or source bytes, mode, owner, group) are here."""

    __slots__ = ()

    def __new__(  # noqa: PLR0917 (the fields a snack is declared with, as the NamedTuple it was took them)
        cls,
        name: str,
        line: int = 0,
        content: str | None = None,
        mode: int | None = None,
        type: str = "file",
        target: str | None = None,
        source: str | None = None,
        data: bytes | None = None,
        owner: int | None = None,
        group: int | None = None,
        enforce: frozenset[str] = frozenset(),
    ) -> Snack:
        parent, _, base = name.rpartition("/")
        traits = Traits(content, mode, type, target, source, data, owner, group, enforce)
        return tuple.__new__(cls, (base, line, traits, Home(_NO_SPEC, "", parent)))

    @classmethod
    def made(cls, base: str, line: int, traits: Traits, home: Home) -> Snack:
        """A snack from its parts, as the parser makes them (traits and home shared)."""
        return tuple.__new__(cls, (base, line - home.first, traits, home))

    def __repr__(self) -> str:
        return f"Snack({self.name!r}, line={self.line}, {self[2]!r}, in {self[3].directory!r})"

    def __eq__(self, other: object) -> bool:
        """Declared the same (name, line, traits): where merge() placed it (its spec and directory) aside."""
        if not isinstance(other, Snack):
            return NotImplemented
        if self[0] != other[0] or self[2] != other[2] or self[3].parent != other[3].parent:
            return False
        return self[1] + self[3].first == other[1] + other[3].first

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self[0], self[1] + self[3].first, self[2], self[3].parent))

    @property
    def name(self) -> str:
        """The name the spec gives (a path relative to the pantry, e.g. drinks/Juice)."""
        parent = self[3].parent
        return f"{parent}/{self[0]}" if parent else self[0]

    @property
    def line(self) -> int:
        """Where it was parsed; after an O(changed) reload, Spec.line_of() says where it is now."""
        return self[3].first + self[1]

    def on_line(self, line: int) -> Snack:
        return Snack.made(self[0], line, self[2], self[3])

    def _replace(self, **changes: Any) -> Snack:
        """A copy with fields changed, as a NamedTuple's: `name`, `line` or any of the Traits (tools, tests)."""
        name = changes.pop("name", None)
        line = changes.pop("line", self.line)
        traits = self[2]._replace(**changes) if changes else self[2]
        if name is None:
            return Snack.made(self[0], line, traits, self[3])
        parent, _, base = name.rpartition("/")
        home = self[3] if parent == self[3].parent else Home(_NO_SPEC, "", parent)  # merge() places it
        return Snack.made(base, line, traits, home)

    def at(self, home: Home, base: str | None = None) -> Snack:
        """This snack placed in `home` (its spec and directory), under `base` if given."""
        return Snack.made(self[0] if base is None else base, self.line, self[2], home)

    # The slots and the declared values are read in C (itemgetter, attrgetter): no Python frame per read, as a
    # pass over 100,000 snacks reads them hundreds of thousands of times. The stubs give their types.
    if TYPE_CHECKING:

        @property
        def base(self) -> str:
            """The file's name in its directory."""

        @property
        def traits(self) -> Traits: ...

        @property
        def home(self) -> Home: ...

        @property
        def content(self) -> str | None: ...

        @property
        def mode(self) -> int | None: ...

        @property
        def type(self) -> str: ...

        @property
        def target(self) -> str | None: ...

        @property
        def source(self) -> str | None: ...

        @property
        def data(self) -> bytes | None: ...

        @property
        def owner(self) -> int | None: ...

        @property
        def group(self) -> int | None: ...

        @property
        def enforce(self) -> frozenset[str]: ...

    else:
        base = property(itemgetter(0))
        traits = property(itemgetter(2))
        home = property(itemgetter(3))
        content = property(attrgetter("traits.content"))
        mode = property(attrgetter("traits.mode"))
        type = property(attrgetter("traits.type"))
        target = property(attrgetter("traits.target"))
        source = property(attrgetter("traits.source"))
        data = property(attrgetter("traits.data"))
        owner = property(attrgetter("traits.owner"))
        group = property(attrgetter("traits.group"))
        enforce = property(attrgetter("traits.enforce"))

    @property
    def declares_content(self) -> bool:
        """A file whose bytes the spec says (`content`, even empty, or `source`): its content can drift."""
        traits = self[2]
        return traits.type == "file" and (traits.content is not None or traits.data is not None)

    def payload(self) -> bytes | None:
        """The bytes a file is created with (from `content` or `source`), or None for an empty file."""
        traits = self[2]
        if traits.data is not None:
            return traits.data
        return traits.content.encode("utf-8") if traits.content else None

    def final_mode(self) -> int:
        """The mode the entry is created with: its own, else the built-in default for its type."""
        traits = self[2]
        if traits.mode is not None:
            return traits.mode
        return DIRECTORY_MODE if traits.type == "directory" else FILE_MODE

    @property
    def is_plain(self) -> bool:
        """An empty file with every default: the fast path (one O_EXCL create)."""
        return _plain_traits(self[2])


class Defaults(NamedTuple):
    """A spec's `defaults:`; `directory_mode`, `owner` and `group` also apply to directories created on the way."""

    owner: int | None = None
    group: int | None = None
    mode: int | None = None
    directory_mode: int | None = None
    enforce: frozenset[str] | None = None  # None: not given (an entry's own `enforce` wins either way)


_NO_DEFAULTS = Defaults()


@dataclass(frozen=True)
class LineMap:
    """Where snacks stand now when an O(changed) reload (patch.py) moved lines since they were parsed: moving
    the lines below an edit then costs one step, not a new Snack (and Entry) for each of 100,000 snacks."""

    steps: tuple[tuple[int, int], ...] = ()  # (a line as parsed, lines added from there on), in parse order
    born: tuple[tuple[str, int], ...] = ()  # snacks a patch parsed, and their line now

    def line_of(self, snack: Snack) -> int:
        if self.born:
            for name, line in self.born:
                if name == snack.name:
                    return line
        line = snack.line
        for start, added in self.steps:
            if snack.line >= start:
                line += added
        return line


_NO_MOVES = LineMap()


@dataclass(frozen=True)
class Spec:
    """A validated spec file: where the pantry is and which snacks it must hold."""

    path: Path
    pantry: Path
    snacks: tuple[Snack, ...]
    prune: bool = False  # delete files snackwatch created when they leave this spec (guarded)
    pantry_line: int = 0  # where `pantry:` is, for errors about the directory it names
    defaults: Defaults = _NO_DEFAULTS
    lines: LineMap = _NO_MOVES  # lines moved since the snacks were parsed (O(changed) reloads); see line_of

    def line_of(self, snack: Snack) -> int:
        """The line a snack of this spec is on now (`snack.line` is where it was parsed)."""
        return self.lines.line_of(snack) if self.lines is not _NO_MOVES else snack.line

    def sources(self) -> list[str]:
        """The `source:` files this spec's snacks were copied from (watched like the spec)."""
        return list(self.source_files)

    @functools.cached_property
    def source_files(self) -> tuple[str, ...]:
        """sources(), found once per spec (a reload asks for them; 100k snacks take ~8 ms to look through)."""
        return tuple(snack.source for snack in self.snacks if snack.source is not None)

    def with_snacks(self, snacks: tuple[Snack, ...], lines: LineMap, sources: tuple[str, ...]) -> Spec:
        """This spec holding other snacks, now on `lines` (an O(changed) reload, patch.py), whose `source:` files
        the caller knows: nothing is looked through again."""
        spec = dataclasses.replace(self, snacks=snacks, lines=lines)
        spec.__dict__["source_files"] = sources  # source_files' cache, filled with what is known
        return spec


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at `path`; raise SpecError naming `path:line` on any problem."""
    return parse_spec(read_spec_bytes(path), path)


def read_spec_bytes(path: Path, *, follow: bool = True, what: str = "spec") -> bytes:
    """Read at most MAX_SPEC_BYTES (+1 to detect excess) so a runaway file cannot exhaust memory.

    Opened non-blocking and refused unless a regular file, so a FIFO or device never hangs us. `follow=False`
    (a file found in a conf.d directory) refuses a symlink: only the path the user named may be one. A `source:`
    file is read the same way (`what`: "source").
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            raise SpecError(path, None, "is a symlink, not followed inside a conf.d directory") from None
        raise SpecError(path, None, f"cannot read {what}: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecError(path, None, f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')})")
        with _no_writer(fd, path), open(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecError(path, None, f"cannot read {what}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(path, 1, f"{what} is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB")
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


def read_source_bytes(path: Path) -> bytes:
    """A `source:` file's bytes, read like a spec (regular file, O_NONBLOCK, 16 MiB cap)."""
    return read_spec_bytes(path, what="source")


def parse_spec(data: bytes, path: Path, read_source: Callable[[Path], bytes] = read_source_bytes) -> Spec:
    """Validate spec bytes as read from `path` (used for the error location and relative pantry and sources);
    `read_source` reads each `source:` file."""
    path = Path(os.path.abspath(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SpecError(path, line, "spec is not valid UTF-8") from None
    last_line = max(1, text.count("\n") + (not text.endswith("\n")))  # an error at EOF is on the last line
    plain = _plain_list(text, path, last_line, read_source)
    if plain is not None:
        return plain
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
    validator = _Validator(path, last_line, read_source)
    validator.anchors = "&" in text
    return validator.spec(root)


def _plain_list(text: str, path: Path, last_line: int, read_source: Callable[[Path], bytes]) -> Spec | None:
    """The common big spec, read without a node tree: a header, then `snacks:` and nothing but `- name` lines of
    letters, digits and `_.+/-` (all at one indent) to the end. The header and first item are composed and
    checked as usual; YAML can only read the other lines as those very names, which get the same checks. None
    when the text is not of that form, or anything fails: the full parse then says why."""
    key = text.find("\nsnacks:\n") + 1 if not text.startswith("snacks:\n") else 0
    if (key == 0 and not text.startswith("snacks:\n")) or text.count("\n", key) < PLAIN_LIST_LINES:
        return None
    first_end = text.find("\n", key + 8)
    first = _FIRST_ITEM.fullmatch(text, key + 8, first_end) if first_end > 0 else None
    if first is None:
        return None
    indent = first.group(1)
    names = [first.group(2), *re.compile(rf"{indent}- ({_ITEM_NAME})\n").findall(text, first_end + 1)]
    covered = sum(map(len, names)) + (len(indent) + 3) * len(names) == len(text) - key - 8  # no gap between them
    head = _head_spec(text[: first_end + 1], path, last_line, read_source) if covered else None
    if head is None or head[0].snacks[0].name != names[0]:
        return None
    return _with_names(*head, names)


def _head_spec(
    head: str, path: Path, last_line: int, read_source: Callable[[Path], bytes]
) -> tuple[Spec, _Validator] | None:
    """A plain list's header and first item, composed and checked; None on any problem."""
    try:
        root = yaml.compose(head, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if root is None:
        return None
    validator = _Validator(path, last_line, read_source)
    validator.anchors = "&" in head
    try:
        spec = validator.spec(root)
    except SpecError:
        return None
    return (spec, validator) if len(spec.snacks) == 1 else None


def _with_names(spec: Spec, validator: _Validator, names: list[str]) -> Spec | None:
    """The header's spec holding every name of a plain list, each checked as snacks() checks a bare name."""
    traits = spec.snacks[0].traits  # a bare name's: every name here is one
    home, homes = validator.home, validator.homes
    made = Snack.made
    line = spec.snacks[0].line
    snacks, lines = list(spec.snacks), {names[0]: line}
    checked, pantry_bytes, parents = validator.checked, validator.pantry_bytes, validator.parents
    roomy = pantry_bytes <= _ROOMY_PANTRY
    for offset in range(1, len(names)):
        name = names[offset]
        if name in lines:
            return None  # a duplicate: the full parse names both lines
        # validator.quick_name(name), inlined for names of _ITEM_NAME's ASCII characters (one byte each, no "/"
        # in a base name, a first character that is never "."): _PLAIN_NAME then only asks for 1-63 characters
        # and, in a directory, a first character that is not ".".
        parent, slash, base = name.rpartition("/")
        if slash:
            room = parents.get(parent)
            quick = room is not None and 0 < len(base) <= 63 and base[0] != "." and (room >= 252 or len(base) <= room)
        else:
            quick = roomy and len(name) <= 63
        if not quick:
            if name_problem(name, pantry_bytes) is not None:
                return None
            checked(name)
        lines[name] = line + offset
        at = homes.get(parent)
        if at is None or line + offset - at.first >= LINES_PER_HOME:
            at = home(parent, line + offset)
        snacks.append(made(base, line + offset, traits, at))
    try:
        validator.check_directories(snacks, lines)
    except SpecError:
        return None
    return dataclasses.replace(spec, snacks=tuple(snacks))


def _own(text: str) -> str:
    """A copy of a string the composer made: kept apart from the node tree, whose memory is then given back whole
    (a name left among the freed nodes would keep its arena, ~25 MB per 100k snacks)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


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


def _fit(enforce: frozenset[str] | None, kind: str) -> frozenset[str]:
    """The defaults' `enforce` as it applies to one kind of entry (a file has no target to enforce)."""
    if not enforce:
        return frozenset()
    return frozenset(aspect for aspect in enforce if aspect == "type" or aspect in _ASPECTS_OF[kind])


class _Reader:
    """The parts of a spec's checking that read one value: scalars, mappings, modes, users and groups, sources,
    targets, names; every error located at its node's line, independent errors collected."""

    def __init__(self, path: Path, last_line: int, read_source: Callable[[Path], bytes]) -> None:
        self.path = path
        self.last_line = last_line
        self.seen: set[int] = set()
        self.pantry_bytes = 0  # the pantry path's length, for the PATH_MAX check of each name
        self.defaults = Defaults()
        self.uids: dict[str, int] = {}  # owner/group names looked up once per spec
        self.gids: dict[str, int] = {}
        self.read_source = read_source
        self.errors: list[SpecError] = []  # independent errors found so far: the first is raised, the rest `also`
        self.anchors = True  # whether the text may hold an anchor (an `&`): only then can a node be reached twice
        self.parents: dict[str, int] = {}  # nested directories whose path passed the full check -> bytes left
        self.ref, self.pantry_directory = _NO_SPEC, ""  # the spec and pantry snacks are placed in (place())
        self.homes: dict[str, Home] = {}  # a name's directory part -> its Home, one per directory
        self.shared: dict[Traits, Traits] = {}  # one Traits for the snacks that declare the same

    def place(self, pantry: str, ref: SpecRef) -> None:
        """Snacks made from here on live in `pantry`, declared by `ref`."""
        self.ref, self.pantry_directory, self.homes = ref, pantry, {}

    def home(self, parent: str, line: int) -> Home:
        """The Home of a snack on `line` whose name's directory part is `parent`: one per directory, a new one
        (with the same directory string) when the line is LINES_PER_HOME past the current one's first."""
        home = self.homes.get(parent)
        if home is None or not 0 <= line - home.first < LINES_PER_HOME:
            pantry = self.pantry_directory
            directory = home.directory if home is not None else os.path.join(pantry, parent) if parent else pantry
            home = self.homes[parent] = Home(self.ref, directory, parent, line)
        return home

    def made(self, name: str, line: int, traits: Traits) -> Snack:
        """A snack of this spec, its traits shared with the snacks that declare the same."""
        parent, _, base = name.rpartition("/")
        return Snack.made(base, line, self.shared.setdefault(traits, traits), self.home(parent, line))

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
                self.errors.append(self.fail(key_node, f"duplicate key {key!r}"))
            elif key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.errors.append(self.fail(key_node, f"unknown key {key!r} in {what}{suggestion}"))
            else:
                fields[key] = value_node
        return fields

    def collecting(self, check: Callable[[], T]) -> T | None:
        """Run one independent check; its error is kept (the others still run) and None returned."""
        try:
            return check()
        except SpecError as error:
            self.errors.append(error)
            return None

    def raise_collected(self) -> None:
        """Raise the first error found, carrying the rest: `check` reports every one of them."""
        if self.errors:
            self.errors[0].also = self.errors[1:]
            raise self.errors[0]

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(self.visit(node), yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a list or mapping")
        return _own(str(node.value))

    def mode(self, node: yaml.Node) -> int:
        mode = parse_mode(self.scalar(node, "mode"))
        if mode is None:
            raise self.fail(node, 'mode must be an octal string such as "0640"')
        return mode

    def user(self, node: yaml.Node) -> int:
        """A user name or numeric uid; an unknown name is an error here, not at creation."""
        text = self.scalar(node, "owner")
        if text not in self.uids:
            if text.isdigit() and len(text) <= 10:
                self.uids[text] = int(text)
            else:
                try:
                    self.uids[text] = pwd.getpwnam(text).pw_uid
                except (KeyError, UnicodeEncodeError):
                    raise self.fail(node, f"unknown user {text!r} (owner: a user name or a numeric uid)") from None
        return self.uids[text]

    def group(self, node: yaml.Node) -> int:
        """A group name or numeric gid; an unknown name is an error here, not at creation."""
        text = self.scalar(node, "group")
        if text not in self.gids:
            if text.isdigit() and len(text) <= 10:
                self.gids[text] = int(text)
            else:
                try:
                    self.gids[text] = grp.getgrnam(text).gr_gid
                except (KeyError, UnicodeEncodeError):
                    raise self.fail(node, f"unknown group {text!r} (group: a group name or a numeric gid)") from None
        return self.gids[text]

    def enforce(self, node: yaml.Node, kind: str | None) -> frozenset[str]:
        """`enforce: true | false | [aspects]`: the aspects of a `kind` of entry (None: any kind, for defaults)
        put back when they drift. An aspect unknown, or one the kind has not (`target` of a file), is an error."""
        if isinstance(self.visit(node), yaml.ScalarNode):
            text = str(node.value)
            if text not in ("true", "false"):
                raise self.fail(node, f"enforce must be true, false or a list of {', '.join(ENFORCEABLE)}")
            if text == "false":
                return frozenset()
            return _ASPECTS_OF[kind] if kind is not None else frozenset(ENFORCEABLE) - {"type"}
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"enforce must be true, false or a list of {', '.join(ENFORCEABLE)}")
        aspects: set[str] = set()
        for item in node.value:
            aspect = self.scalar(item, "an enforce aspect")
            if aspect not in ENFORCEABLE:
                hint = difflib.get_close_matches(aspect, ENFORCEABLE, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(ENFORCEABLE)})"
                raise self.fail(item, f"unknown enforce aspect {aspect!r}{suggestion}")
            if kind is not None and aspect != "type" and aspect not in _ASPECTS_OF[kind]:
                raise self.fail(item, f"enforce {aspect!r} is not an aspect of a {kind}")
            aspects.add(aspect)
        return frozenset(aspects)

    def source(self, node: yaml.Node) -> tuple[str, bytes]:
        """A `source:` file, relative to the spec's directory, read now with the spec's care (regular file, no FIFO,
        16 MiB): any problem is this line's error."""
        text = self.scalar(node, "source")
        problem = _text_problem(text, "source") if text else "source is empty (a file path)"
        if problem is not None:
            raise self.fail(node, problem)
        path = Path(os.path.abspath(self.path.parent / os.path.expanduser(text)))
        try:
            return str(path), self.read_source(path)
        except SpecError as error:
            raise self.fail(node, f"source {error}") from None

    def target(self, node: yaml.Node) -> str:
        text = self.scalar(node, "target")
        if not text:
            raise self.fail(node, "target is empty (the text the symlink holds)")
        problem = _text_problem(text, "target")
        if problem is not None:
            raise self.fail(node, problem)
        if len(text.encode("utf-8")) >= PATH_MAX:
            raise self.fail(node, f"target is longer than {PATH_MAX - 1} bytes")
        return text

    def name(self, node: yaml.Node) -> str:
        name = self.scalar(node, "a snack name")
        problem = name_problem(name, self.pantry_bytes)
        if problem is not None:
            raise self.fail(node, problem)
        return name


class _Validator(_Reader):
    """Walks the composed YAML nodes (they carry line marks) and builds a Spec or raises."""

    def spec(self, root: yaml.Node) -> Spec:
        """The whole spec; every independent problem is collected (a key, the pantry, each snack), then the first
        raised with the others."""
        fields = self.mapping(root, TOP_KEYS, "the spec")
        if "version" in fields and self.scalar(fields["version"], "version") != "1":
            self.errors.append(self.fail(fields["version"], "unsupported version (only version: 1 exists)"))
        for key, what in (("pantry", "the directory that holds the snacks"), ("snacks", "the list of files to keep")):
            if key not in fields:
                self.errors.append(self.fail(root, f"missing key {key!r} ({what})"))
        prune = self.collecting(lambda: self.prune(fields["prune"])) if "prune" in fields else False
        pantry = fields.get("pantry")
        where = self.collecting(lambda: self.pantry(pantry)) if pantry is not None else None
        self.place(str(where) if where is not None else "", SpecRef(self.path, bool(prune)))
        if "defaults" in fields:
            self.defaults = self.collecting(lambda: self.parse_defaults(fields["defaults"])) or Defaults()
        snacks = self.collecting(lambda: self.snacks(fields["snacks"])) if "snacks" in fields else None
        self.raise_collected()
        assert pantry is not None and where is not None and snacks is not None  # else an error was raised
        return Spec(self.path, where, snacks, bool(prune), pantry.start_mark.line + 1, self.defaults)

    def prune(self, node: yaml.Node) -> bool:
        text = self.scalar(node, "prune")
        if text not in ("true", "false"):
            raise self.fail(node, "prune must be true or false")
        return text == "true"

    def parse_defaults(self, node: yaml.Node) -> Defaults:
        fields = self.mapping(node, DEFAULT_KEYS, "defaults")
        owner = self.user(fields["owner"]) if "owner" in fields else None
        group = self.group(fields["group"]) if "group" in fields else None
        mode = self.mode(fields["mode"]) if "mode" in fields else None
        directory_mode = self.mode(fields["directory_mode"]) if "directory_mode" in fields else None
        enforce = self.enforce(fields["enforce"], None) if "enforce" in fields else None
        return Defaults(owner, group, mode, directory_mode, enforce)

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
        seen = self.seen if self.anchors else None  # no `&` in the text: no node can be reached twice
        quick = self.quick_name
        owner, group, mode, _, enforce = self.defaults
        bare = Traits(None, mode, "file", None, None, None, owner, group, _fit(enforce, "file"))
        made = self.made
        for item in node.value:
            # Fast path for the common case, a bare plain name, or one in a directory already checked (100k of
            # them parse in a fraction of a second); anything unusual takes the full route below. A snack's
            # error is kept; the next snack is checked.
            name = item.value if item.__class__ is yaml.ScalarNode else None
            if name and (seen is None or id(item) not in seen) and quick(name):
                if seen is not None:
                    seen.add(id(item))
                line = item.start_mark.line + 1
                snack = made(_own(name), line, bare)
            else:
                try:
                    snack = self.snack(item)
                except SpecError as error:
                    self.errors.append(error)
                    continue
                self.checked(snack.name)
            if snack.name in lines:
                first = lines[snack.name]
                self.errors.append(self.fail(item, f"duplicate snack {snack.name!r} (first declared on line {first})"))
                continue
            lines[snack.name] = snack.line
            snacks.append(snack)
        self.collecting(lambda: self.check_directories(snacks, lines))
        return tuple(snacks)

    def quick_name(self, name: str) -> bool:
        """A name that needs no further checks: a plain one (see _PLAIN_NAME) in a roomy pantry, or a plain file
        name in a directory a full check passed (one full check per nested directory, not per name)."""
        if "/" not in name:
            return self.pantry_bytes <= _ROOMY_PANTRY and _PLAIN_NAME.fullmatch(name) is not None
        parent, _, base = name.rpartition("/")
        room = self.parents.get(parent)
        if room is None or _PLAIN_NAME.fullmatch(base) is None:
            return False
        return room >= 4 * 63 or len(base.encode("utf-8")) <= room

    def checked(self, name: str) -> None:
        """A name passed the full check: names beside it need only their own (plain) file name checked."""
        parent = name.rpartition("/")[0]
        if parent and parent not in self.parents:
            self.parents[parent] = PATH_MAX - 1 - (self.pantry_bytes + 1 + len(parent.encode("utf-8")) + 1)

    def check_directories(self, snacks: list[Snack], lines: dict[str, int]) -> None:
        """A name such as "drinks" is a file or symlink, or a directory holding others (then declared with
        `type: directory`), not both; each directory is looked at once."""
        directories: set[str] = set()
        types = {snack.name: snack.type for snack in snacks if snack.type != "file"}
        for snack in snacks:
            parent = snack[3].parent  # the name's directory part
            while parent and parent not in directories:
                if parent in lines and types.get(parent) != "directory":
                    raise SpecError(
                        self.path,
                        snack.line,
                        f"snack {snack.name!r} needs {parent!r} to be a directory, "
                        f"but line {lines[parent]} declares it as a {types.get(parent, 'file')}",
                    )
                directories.add(parent)
                parent = parent.rpartition("/")[0]

    def snack(self, node: yaml.Node) -> Snack:
        line = node.start_mark.line + 1
        owner, group, file_mode, directory_mode, enforce = self.defaults
        if isinstance(node, yaml.ScalarNode):
            name = self.name(node)
            traits = Traits(None, file_mode, "file", None, None, None, owner, group, _fit(enforce, "file"))
            return self.made(name, line, traits)
        fields = self.mapping(node, SNACK_KEYS, "a snack")
        if "name" not in fields:
            raise self.fail(node, "snack is missing 'name'")
        name = self.name(fields["name"])
        kind = self.scalar(fields["type"], "type") if "type" in fields else "file"
        if kind not in TYPES:
            raise self.fail(fields["type"], f"unknown type {kind!r} (file, directory or symlink)")
        for key, allowed in (("content", "file"), ("source", "file"), ("target", "symlink")):
            if key in fields and kind != allowed:
                raise self.fail(fields[key], f"{key} is for a {allowed}, not a {kind}")
        if "content" in fields and "source" in fields:
            raise self.fail(fields["source"], "content and source together: give one of them")
        if kind == "symlink" and "target" not in fields:
            raise self.fail(node, f"symlink {name!r} needs a target (the link's text)")
        if kind == "symlink" and "mode" in fields:
            raise self.fail(fields["mode"], "a symlink has no mode of its own (Linux ignores it)")
        content = self.scalar(fields["content"], "content") if "content" in fields else None
        source, data = self.source(fields["source"]) if "source" in fields else (None, None)
        target = self.target(fields["target"]) if "target" in fields else None
        mode = self.mode(fields["mode"]) if "mode" in fields else None
        if mode is None and kind != "symlink":
            mode = directory_mode if kind == "directory" else file_mode
        owner = self.user(fields["owner"]) if "owner" in fields else owner
        group = self.group(fields["group"]) if "group" in fields else group
        enforced = self.enforce(fields["enforce"], kind) if "enforce" in fields else _fit(enforce, kind)
        return self.made(name, line, Traits(content, mode, kind, target, source, data, owner, group, enforced))
