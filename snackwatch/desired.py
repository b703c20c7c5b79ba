"""Merge specs into one desired state: which file must exist in which directory, and which spec line says so."""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from snackwatch.chase import WalkRules, open_directory
from snackwatch.errors import SpecError
from snackwatch.lint import shown_name
from snackwatch.passwalk import PassWalk
from snackwatch.perms import Perms, trusted_owners
from snackwatch.spec import DIRECTORY_MODE, Snack, Spec, all_plain


class Shape(NamedTuple):
    """What the snacks of one directory are (Desired.shape)."""

    plain: bool  # every one an empty file with every default (Snack.is_plain)
    pruning: bool  # one is a pruning spec's (recorded before it is published)
    enforcing: bool  # one has aspects put back when they drift


class SpecRef(NamedTuple):
    """What an entry needs of the spec that declares it: its file and whether it prunes. A value, equal across
    reloads that change only snacks, so an unchanged entry is reused as it is (reload O(changed))."""

    path: Path
    prune: bool


class Entry(NamedTuple):
    """One desired file: the snack, the spec that declares it, and where it lives."""

    snack: Snack
    spec: SpecRef
    directory: str  # absolute path of the directory holding the file (one string per directory, shared)
    name: str  # the file's name in that directory

    @property
    def path(self) -> str:
        """directory/name: it keys every per-snack table. Made when asked, not kept: 100,000 of them would
        hold ~7 MB for the few that a repair, a status row or a log line needs at a time."""
        directory = self.directory
        return f"{directory}/{self.name}" if directory != "/" else "/" + self.name


@dataclass(frozen=True)
class Desired:
    """Every spec's snacks, grouped by directory; `directories` lists parents before children."""

    specs: tuple[Spec, ...]
    files: dict[str, dict[str, Entry]]
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
        for entries in self.files.values():
            yield from entries.values()

    def entry(self, directory: str, name: str) -> Entry | None:
        entries = self.files.get(directory)
        return entries.get(name) if entries is not None else None

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
            entries = self.files.get(directory, {}).values()
            known = Shape(all_plain(map(_SNACK, entries)), any(map(_PRUNES, entries)), any(map(_ENFORCES, entries)))
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
        for directory, entries in self.files.items():
            names = frozenset(name for name, entry in entries.items() if entry.snack.enforce)
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
_SNACK = operator.attrgetter("snack")
_PRUNES = operator.attrgetter("spec.prune")
_ENFORCES = operator.attrgetter("snack.enforce")


class Names:
    """The names that matter in one directory (its snacks and nested directories), asked by `in`."""

    __slots__ = ("children", "entries")

    def __init__(self, entries: Mapping[str, Entry], children: Container[str]) -> None:
        self.entries = entries
        self.children = children

    def __contains__(self, name: object) -> bool:
        return name in self.entries or name in self.children


class Paths:
    """Every desired path (directory/name), asked by `in`."""

    __slots__ = ("files",)

    def __init__(self, files: Mapping[str, Mapping[str, Entry]]) -> None:
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
    files: dict[str, dict[str, Entry]] = {}
    roots: dict[str, str] = {}
    needed_dirs: dict[str, Entry | None] = {}  # directory -> a snack that needs it (None: a pantry)
    children: dict[str, set[str]] = {}
    for spec in specs:
        pantry = str(spec.pantry)
        needed_dirs.setdefault(pantry, None)
        roots[pantry] = pantry
        in_pantry = files.setdefault(pantry, {})
        prefix = os.path.join(pantry, "")
        ref = spec_ref(spec)
        directories: dict[str, tuple[str, dict[str, Entry]]] = {}  # parent -> its path and table, for this spec
        for snack in spec.snacks:
            name = snack.name
            if "/" not in name:  # the common case, kept cheap: 100k snacks merge in a fraction of a second
                entry = Entry(snack, ref, pantry, name)
                table = in_pantry
            else:
                parent, _, name = name.rpartition("/")
                known = directories.get(parent)
                if known is None:  # one string per directory, shared by its entries; its parents recorded once
                    directory = prefix + parent
                    table = files.setdefault(directory, {})
                    directories[parent] = directory, table
                    entry = Entry(snack, ref, directory, name)
                    _need_parents(entry, pantry, needed_dirs, roots, children)
                else:
                    directory, table = known
                    entry = Entry(snack, ref, directory, name)
            other = table.setdefault(name, entry)
            if other is not entry:  # another spec has the path (one spec cannot: its names are unique)
                clashes.append(_clash_of(entry, other, table, previous, by_path))
    for directory, needer in needed_dirs.items():
        held = _declared_at(files, directory) if needer is not None else None
        if held is not None and needer is not None and held.snack.type != "directory":
            raise _clash(needer, held, f"needs a directory where a {held.snack.type} is declared", by_path)
    ordered = tuple(sorted(needed_dirs, key=lambda path: (path.count(os.sep), path)))
    for directory in ordered:
        files.setdefault(directory, {})
    return Desired(specs, files, ordered, roots, children, tuple(clashes), _walk_rules(specs, files))


def _clash_of(
    entry: Entry, other: Entry, table: dict[str, Entry], previous: Desired | None, specs: Mapping[Path, Spec]
) -> SpecError:
    """Two specs claim one path: it stays with the one that had it in `previous`, else with the first; the clash
    is the other one's."""
    before = previous.entry(entry.directory, entry.name) if previous is not None else None
    if before is not None and before.spec.path == entry.spec.path:  # it had the name first: the newcomer gives way
        table[entry.name] = entry
        entry, other = other, entry
    return _clash(entry, other, "is also declared", specs)


def _declared_at(files: Mapping[str, Mapping[str, Entry]], path: str) -> Entry | None:
    """The entry declared at a path (a directory some snack needs), if any."""
    parent, _, name = path.rpartition(os.sep)
    entries = files.get(parent or os.sep)
    return entries.get(name) if entries is not None else None


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
        entries = self.files.get(os.path.join(self.pantry, directory) if directory else self.pantry)
        entry = entries.get(base) if entries is not None else None
        return entry.snack if entry is not None and entry.spec.path == self.path else None

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
    for snack, directory, name in arriving:
        entry = Entry(snack, ref, directory, name)
        files[directory][name] = entry
        before = removed.pop(snack.name, None)
        if before is None:
            added.append(entry)
        elif before.snack[2:] != snack[2:]:  # all but name and line
            changed.append(entry)
        else:
            moved = moved or was.line_of(before.snack) != spec.line_of(snack)  # parsed again, on another line
    specs = (*old.specs[:index], spec, *old.specs[index + 1 :])
    desired = Desired(specs, files, old.directories, old.roots, old.children, (), old.rules)
    return desired, Delta(spec.path, tuple(added), tuple(removed.values()), tuple(changed), moved)


def _place(pantry: str, name: str) -> tuple[str, str]:
    """The directory and file name of a snack name in a pantry."""
    if "/" not in name:
        return pantry, name
    parent, _, base = name.rpartition("/")
    return os.path.join(pantry, parent), base


def _walk_rules(specs: tuple[Spec, ...], files: Mapping[str, Mapping[str, Entry]]) -> dict[str, WalkRules]:
    """Per pantry: the owners its directories may have (root, the euid, each spec's `defaults.owner`), and what a
    directory created on the way gets: a declared directory's own perms, else `defaults.directory_mode` (0755)
    and the defaults' owner and group (the first spec of a shared pantry decides)."""
    declared = [e for entries in files.values() for e in entries.values() if e.snack.type == "directory"]
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


def _need_parents(
    entry: Entry, pantry: str, needed: dict[str, Entry | None], roots: dict[str, str], children: dict[str, set[str]]
) -> None:
    """Record the directories above a nested snack, stopping at the first one already known: each directory is
    visited once, and its path string is stored once (the parent computed here becomes the next key)."""
    directory = entry.directory
    while directory != pantry and directory not in needed:
        needed[directory] = entry
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
