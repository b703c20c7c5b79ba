"""Merge specs into one desired state: which file must exist in which directory, and which spec line says so."""

from __future__ import annotations

import functools
import os
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

__all__ = [
    "DeclaredIn",
    "Delta",
    "Desired",
    "Entry",
    "Names",
    "Paths",
    "SpecRef",
    "Table",
    "entries_of",
    "merge",
    "patch",
]

from snackwatch.chase import WalkRules, open_directory
from snackwatch.errors import SpecError
from snackwatch.lint import shown_name
from snackwatch.passwalk import PassWalk
from snackwatch.perms import Perms, trusted_owners
from snackwatch.spec import DIRECTORY_MODE, Home, Snack, Spec, SpecRef, all_plain


class Shape(NamedTuple):
    """What the snacks of one directory are (Desired.shape)."""

    plain: bool  # every one an empty file with every default (Snack.is_plain)
    pruning: bool  # one is a pruning spec's (recorded before it is published)
    enforcing: bool  # one has aspects put back when they drift


class Entry(tuple[Snack]):
    """One desired file: the snack, the spec that declares it, and where it lives. Made when asked from the snack
    (which knows its Home), never kept in the tables: 100,000 of them would hold ~8 MB."""

    __slots__ = ()

    def __new__(
        cls, snack: Snack, spec: SpecRef | None = None, directory: str | None = None, name: str | None = None
    ) -> Entry:
        """The entry of a snack; given a spec and directory (tools and tests), the snack placed there first."""
        if spec is not None and directory is not None:
            snack = snack.at(Home(spec, directory, snack.home.parent, snack.home.first), name)
        return tuple.__new__(cls, (snack,))

    def __repr__(self) -> str:
        return f"Entry({self[0]!r})"

    def __eq__(self, other: object) -> bool:
        """The same snack in the same place (spec and directory)."""
        if not isinstance(other, Entry):
            return NotImplemented
        mine, theirs = self[0], other[0]
        return mine == theirs and mine[3][:2] == theirs[3][:2]  # the Home's spec and directory too

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self[0], self[0][3][:2]))

    # Read in C (itemgetter, attrgetter through the snack's slots): a cold start's fold reads 100,000 of each.
    if TYPE_CHECKING:

        @property
        def snack(self) -> Snack: ...

        @property
        def spec(self) -> SpecRef:
            """The spec that declares it."""

        @property
        def directory(self) -> str:
            """The absolute path of the directory holding the file (one string per directory, shared)."""

        @property
        def name(self) -> str:
            """The file's name in that directory."""

    else:
        snack = property(itemgetter(0))
        spec = property(attrgetter("snack.home.spec"))
        directory = property(attrgetter("snack.home.directory"))
        name = property(attrgetter("snack.base"))

    @property
    def path(self) -> str:
        """directory/name: it keys every per-snack table. Made when asked, not kept: 100,000 of them would
        hold ~7 MB for the few that a repair, a status row or a log line needs at a time."""
        snack = self[0]  # read through its slots, not the properties: a cold start asks 100,000 times
        directory = snack[3].directory
        return f"{directory}/{snack[0]}" if directory != "/" else "/" + snack[0]


def entries_of(snacks: Iterable[Snack]) -> list[Entry]:
    """The entries of many snacks at once (a cold directory's), each made without a Python call."""
    new = tuple.__new__
    return [new(Entry, (snack,)) for snack in snacks]


@dataclass(frozen=True)
class Desired:
    """Every spec's snacks, grouped by directory; `directories` lists parents before children."""

    specs: tuple[Spec, ...]
    files: dict[str, dict[str, Snack]]  # directory -> file name -> snack (entries are made from them when asked)
    directories: tuple[str, ...]
    roots: dict[str, str] = field(default_factory=dict)  # directory -> the pantry it is under
    children: dict[str, set[str]] = field(default_factory=dict)  # directory -> names of nested directories in it
    clashes: tuple[SpecError, ...] = ()  # names two specs claim: each stays with its first owner
    rules: dict[str, WalkRules] = field(default_factory=dict)  # pantry -> how the walk treats it

    def walk_rules(self, directory: str) -> WalkRules | None:
        """The ownership and creation rules for the walk to `directory` (a desired directory)."""
        return self.rules.get(self.roots.get(directory, directory))

    def open_directory(self, directory: str, *, create: bool, walk: PassWalk | None = None) -> int:
        """An fd for a desired directory by the safe walk, with this desired state's ownership and creation rules
        (within a pass's `walk`: from the nearest directory it holds)."""
        pantry, rules = self.roots[directory], self.walk_rules(directory)
        if walk is not None:
            return walk.open(directory, pantry, create=create, rules=rules)
        return open_directory(directory, pantry, create=create, rules=rules)

    def sources(self) -> list[str]:
        """Every `source:` file the specs copy from: a change in one is a change of the spec (watched like it)."""
        return sorted({source for spec in self.specs for source in spec.sources()})

    def entries(self) -> Iterator[Entry]:
        for snacks in self.files.values():
            for snack in snacks.values():
                yield Entry(snack)

    def entry(self, directory: str, name: str) -> Entry | None:
        snacks = self.files.get(directory)
        snack = snacks.get(name) if snacks is not None else None
        return Entry(snack) if snack is not None else None

    def table(self, directory: str) -> Table:
        """One directory's entries by name (none for a directory not desired)."""
        return Table(self.files.get(directory, _EMPTY))

    def by_path(self) -> dict[str, Entry]:
        return {entry.path: entry for entry in self.entries()}

    def paths(self) -> Paths:
        """Every desired path, as a container asked in O(1) (no set of 100k paths built)."""
        return Paths(self.files)

    @functools.cached_property
    def count(self) -> int:
        """How many snacks: counted once (the status line asks on every turn of the loop; 100k directories)."""
        return sum(len(entries) for entries in self.files.values())

    @functools.cached_property
    def _shapes(self) -> dict[str, Shape]:
        return {}

    def shape(self, directory: str) -> Shape:
        """What a directory's snacks are, as a burst's scan asks (all plain? one a pruning spec's? one enforced?):
        looked at once per directory and desired state."""
        known = self._shapes.get(directory)
        if known is None:
            snacks = self.files.get(directory, _EMPTY).values()
            known = Shape(all_plain(snacks), any(map(_PRUNES, snacks)), any(map(_ENFORCES, snacks)))
            self._shapes[directory] = known
        return known

    def relevant_names(self) -> dict[str, Names]:
        """Per snack directory, the names whose removal matters: its snacks and its nested snack directories
        (views of this desired state's tables, nothing copied)."""
        children = self.children
        return {d: Names(entries, children.get(d, _NONE)) for d, entries in self.files.items()}

    def enforced_names(self) -> dict[str, frozenset[str]]:
        """Per snack directory holding enforced entries, their names: only these directories hear changes in place
        (writes, attribute changes), so the others stay as cheap to watch as before."""
        enforced: dict[str, frozenset[str]] = {}
        for directory, snacks in self.files.items():
            names = frozenset(name for name, snack in snacks.items() if snack.enforce)
            if names:
                enforced[directory] = names
        return enforced

    def line_of(self, entry: Entry) -> int:
        """The line that declares an entry now (lines move under an O(changed) reload: Spec.line_of)."""
        for spec in self.specs:
            if spec.path == entry.spec.path:
                return spec.line_of(entry.snack)
        return entry.snack.line

    def display(self, entry: Entry) -> str:
        """How logs name a snack: its spec name, or its full path when several pantries are kept; quoted when
        its plain text would hide a difference (`'Goldfish '`, a name NFC normalisation changes)."""
        return shown_name(entry.snack.name if len(self.specs) <= 1 else entry.path)


_NONE: frozenset[str] = frozenset()
_EMPTY: dict[str, Snack] = {}
_PRUNES = attrgetter("home.spec.prune")
_ENFORCES = attrgetter("enforce")


class Table(Mapping[str, Entry]):
    """One directory's entries by file name, each made when asked from the directory's snacks."""

    __slots__ = ("snacks",)

    def __init__(self, snacks: Mapping[str, Snack]) -> None:
        self.snacks = snacks

    def __getitem__(self, name: str) -> Entry:
        return Entry(self.snacks[name])

    def __contains__(self, name: object) -> bool:
        return name in self.snacks

    def __iter__(self) -> Iterator[str]:
        return iter(self.snacks)

    def __len__(self) -> int:
        return len(self.snacks)


class Names:
    """The names that matter in one directory (its snacks and nested directories), asked by `in`."""

    __slots__ = ("children", "entries")

    def __init__(self, entries: Mapping[str, Snack], children: Container[str]) -> None:
        self.entries = entries
        self.children = children

    def __contains__(self, name: object) -> bool:
        return name in self.entries or name in self.children


class Paths:
    """Every desired path (directory/name), asked by `in`."""

    __slots__ = ("files",)

    def __init__(self, files: Mapping[str, Mapping[str, Snack]]) -> None:
        self.files = files

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        directory, _, name = path.rpartition(os.sep)
        entries = self.files.get(directory or os.sep)
        return entries is not None and name in entries


def spec_ref(spec: Spec) -> SpecRef:
    return SpecRef(spec.path, spec.prune)


def merge(specs: Iterable[Spec], previous: Desired | None = None) -> Desired:
    """Combine specs. Two specs claiming the same path is a clash: the path stays with its first owner (the spec
    that had it in `previous`, else the first file) and the clash is listed, so one bad file does not freeze
    the others. A file where another spec needs a directory is an error."""
    specs = tuple(specs)
    by_path = {spec.path: spec for spec in specs}
    clashes: list[SpecError] = []
    files: dict[str, dict[str, Snack]] = {}
    roots: dict[str, str] = {}
    needed_dirs: dict[str, Snack | None] = {}  # directory -> a snack that needs it (None: a pantry)
    children: dict[str, set[str]] = {}
    for spec in specs:
        pantry = str(spec.pantry)
        needed_dirs.setdefault(pantry, None)
        roots[pantry] = pantry
        files.setdefault(pantry, {})
        ref = spec_ref(spec)
        # A spec's snacks share one Home per directory: each is checked (and its table found) once, not per snack.
        placed: dict[int, tuple[Home, dict[str, Snack]]] = {}
        for declared in spec.snacks:
            home = declared[3]
            known = placed.get(id(home))
            if known is None:
                known = placed[id(home)] = _placed(declared, ref, pantry, files, (needed_dirs, roots, children))
            # a snack made on its own (tools, tests) or from another file is placed in this spec's Home
            snack = declared if known[0] is home else declared.at(known[0])
            table = known[1]
            other = table.setdefault(snack[0], snack)
            if other is not snack:  # another spec has the path (one spec cannot: its names are unique)
                clashes.append(_clash_of(snack, other, table, previous, by_path))
    for directory, needer in needed_dirs.items():
        held = _declared_at(files, directory) if needer is not None else None
        if held is not None and needer is not None and held.type != "directory":
            raise _clash(Entry(needer), Entry(held), f"needs a directory where a {held.type} is declared", by_path)
    ordered = tuple(sorted(needed_dirs, key=lambda path: (path.count(os.sep), path)))
    for directory in ordered:
        files.setdefault(directory, {})
    return Desired(specs, files, ordered, roots, children, tuple(clashes), _walk_rules(specs, files))


_Needs = tuple[dict[str, "Snack | None"], dict[str, str], dict[str, set[str]]]


def _placed(
    snack: Snack, ref: SpecRef, pantry: str, files: dict[str, dict[str, Snack]], needs: _Needs
) -> tuple[Home, dict[str, Snack]]:
    """The Home of `snack`'s directory in this merge (its own when it is right) and that directory's table; the
    directories above it recorded once."""
    home, parent = snack[3], snack[3].parent
    directory = os.path.join(pantry, parent) if parent else pantry
    if home.spec != ref or home.directory != directory:
        home = Home(ref, directory, parent, home.first)
    if parent:
        _need_parents(home.directory, snack, pantry, *needs)
    return home, files.setdefault(home.directory, {})


def _clash_of(
    snack: Snack, other: Snack, table: dict[str, Snack], previous: Desired | None, specs: Mapping[Path, Spec]
) -> SpecError:
    """Two specs claim one path: it stays with the one that had it in `previous`, else with the first; the clash
    is the other one's."""
    before = previous.entry(snack.home.directory, snack.base) if previous is not None else None
    if before is not None and before.spec.path == snack.home.spec.path:  # it had the name first: the newcomer gives way
        table[snack.base] = snack
        snack, other = other, snack
    return _clash(Entry(snack), Entry(other), "is also declared", specs)


def _declared_at(files: Mapping[str, Mapping[str, Snack]], path: str) -> Snack | None:
    """The snack declared at a path (a directory some snack needs), if any."""
    parent, _, name = path.rpartition(os.sep)
    snacks = files.get(parent or os.sep)
    return snacks.get(name) if snacks is not None else None


class Delta(NamedTuple):
    """What a reload changed, entry by entry, when the new desired state was built from the old one."""

    spec_path: Path  # the one spec file it changed
    added: tuple[Entry, ...]  # names new to the spec
    removed: tuple[Entry, ...]  # names gone from it (the old entries)
    changed: tuple[Entry, ...]  # names declared otherwise (the new entries)
    lines_moved: bool = False  # lines below the edit moved: what shows a snack's line (status rows) is redone

    def to_look_at(self) -> tuple[Entry, ...]:
        """The entries a reload must look at on disk: new ones and those declared otherwise."""
        return self.added + self.changed


class DeclaredIn:
    """A spec's names in a desired state, for patch.patch_spec: its snack of a name, and the needed directories."""

    def __init__(self, desired: Desired, spec: Spec) -> None:
        self.files, self.roots = desired.files, desired.roots
        self.pantry, self.path = str(spec.pantry), spec.path

    def snack(self, name: str) -> Snack | None:
        directory, _, base = name.rpartition("/")
        snacks = self.files.get(os.path.join(self.pantry, directory) if directory else self.pantry)
        snack = snacks.get(base) if snacks is not None else None
        return snack if snack is not None and snack.home.spec.path == self.path else None

    def is_directory(self, name: str) -> bool:
        return os.path.join(self.pantry, name) in self.roots


def patch(old: Desired, spec: Spec, gone: Iterable[Snack], came: Iterable[Snack]) -> tuple[Desired, Delta] | None:
    """`old` with `spec` in place of the spec of its path, in O(changed): `gone` are the old spec's snacks replaced,
    `came` their replacements (patch.Patched). None, `old` untouched, when the change reaches further (a clash,
    a new or emptied directory): merge() then.

    The directories' tables are updated in place and shared with `old`, which is superseded: copying a pantry of
    100,000 names (and freeing the copy) would cost more than the whole edit. The watcher's `relevant_names()`
    views see the new names at once."""
    index = next((i for i, known in enumerate(old.specs) if known.path == spec.path), None)
    if (
        index is None
        or old.clashes
        or (old.specs[index].pantry, old.specs[index].defaults)
        != (
            spec.pantry,
            spec.defaults,
        )
    ):
        return None
    pantry = str(spec.pantry)
    leaving = {snack.name: _place(pantry, snack.name) for snack in gone}
    arriving = [(snack, *_place(pantry, snack.name)) for snack in came]
    sizes: dict[str, int] = {}
    for directory, name in leaving.values():
        if old.entry(directory, name) is None:
            return None
        sizes[directory] = sizes.get(directory, len(old.files[directory])) - 1
    for snack, directory, name in arriving:
        path = os.path.join(directory, name)
        taken = directory not in old.files or (name in old.files[directory] and snack.name not in leaving)
        if taken or path in old.roots:
            return None  # a new directory, a name another spec holds, or a file where a directory is needed
        sizes[directory] = sizes.get(directory, len(old.files[directory])) + 1
    if any(not size and directory != pantry for directory, size in sizes.items()):
        return None  # a directory left empty: whether it is still needed is merge()'s to say
    return _patched(old, spec, index, leaving, arriving)


def _patched(
    old: Desired,
    spec: Spec,
    index: int,
    leaving: dict[str, tuple[str, str]],
    arriving: list[tuple[Snack, str, str]],
) -> tuple[Desired, Delta]:
    """patch(), once it is known to apply."""
    files, ref, was = old.files, spec_ref(spec), old.specs[index]
    removed = {name: files[directory].pop(place) for name, (directory, place) in leaving.items()}
    added: list[Entry] = []
    changed: list[Entry] = []
    moved = spec.lines != was.lines
    for parsed, directory, name in arriving:
        home = parsed.home
        placed = (home.spec, home.directory, parsed.base) == (ref, directory, name)
        snack = parsed if placed else parsed.at(Home(ref, directory, home.parent, home.first), name)
        files[directory][name] = snack
        entry = Entry(snack)
        before = removed.pop(snack.name, None)
        if before is None:
            added.append(entry)
        elif before.traits != snack.traits:  # declared otherwise (all but name and line)
            changed.append(entry)
        else:
            moved = moved or was.line_of(before) != spec.line_of(snack)  # parsed again, on another line
    specs = (*old.specs[:index], spec, *old.specs[index + 1 :])
    desired = Desired(specs, files, old.directories, old.roots, old.children, (), old.rules)
    gone = tuple(Entry(snack) for snack in removed.values())
    return desired, Delta(spec.path, tuple(added), gone, tuple(changed), moved)


def _place(pantry: str, name: str) -> tuple[str, str]:
    """The directory and file name of a snack name in a pantry."""
    if "/" not in name:
        return pantry, name
    parent, _, base = name.rpartition("/")
    return os.path.join(pantry, parent), base


def _walk_rules(specs: tuple[Spec, ...], files: Mapping[str, Mapping[str, Snack]]) -> dict[str, WalkRules]:
    """Per pantry: the owners its directories may have (root, the euid, each spec's `defaults.owner`), and what a
    directory created on the way gets: a declared directory's own perms, else `defaults.directory_mode` (0755)
    and the defaults' owner and group (the first spec of a shared pantry decides)."""
    # snack[2] is its Traits: read without a property call, as 100,000 snacks are looked through
    declared = [Entry(s) for snacks in files.values() for s in snacks.values() if s[2].type == "directory"]
    makers = {e.path: Perms(e.snack.final_mode(), e.snack.owner, e.snack.group) for e in declared}
    owners: dict[str, set[int]] = {}
    defaults: dict[str, Perms] = {}
    for spec in specs:
        pantry = str(spec.pantry)
        found = owners.setdefault(pantry, set())
        if spec.defaults.owner is not None:
            found.add(spec.defaults.owner)
        mode = spec.defaults.directory_mode
        defaults.setdefault(
            pantry, Perms(mode if mode is not None else DIRECTORY_MODE, spec.defaults.owner, spec.defaults.group)
        )
    return {
        pantry: WalkRules(tuple(trusted_owners(found)), makers, defaults[pantry]) for pantry, found in owners.items()
    }


def _need_parents(  # noqa: PLR0917 (merge's tables, as _Needs)
    directory: str,
    needer: Snack,
    pantry: str,
    needed: dict[str, Snack | None],
    roots: dict[str, str],
    children: dict[str, set[str]],
) -> None:
    """Record `directory` (where `needer` lives) and those above it, stopping at the first one already known: each
    directory is visited once, and its path string is stored once (the parent computed here becomes the next key)."""
    while directory != pantry and directory not in needed:
        needed[directory] = needer
        roots[directory] = pantry
        parent, _, name = directory.rpartition(os.sep)
        parent = parent or os.sep  # a snack directly under a pantry of "/"
        children.setdefault(parent, set()).add(name)
        directory = parent


def _clash(entry: Entry, other: Entry, what: str, specs: Mapping[Path, Spec]) -> SpecError:
    line, other_line = (specs[e.spec.path].line_of(e.snack) for e in (entry, other))
    return SpecError(
        entry.spec.path, line, f"snack {entry.snack.name!r} ({entry.path}) {what} at {other.spec.path}:{other_line}"
    )
