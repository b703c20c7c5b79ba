"""Pure planning: compare the spec with what was observed on disk and list the actions; render for `diff`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import NamedTuple

from snackwatch.spec import Snack


class Kind(Enum):
    """What occupies a snack's place in the pantry."""

    MISSING = "missing"
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "special file"


class Create(NamedTuple):
    """The snack is missing: create it (`name`: its file name in the directory)."""

    name: str
    snack: Snack


class Conflict(NamedTuple):
    """Something that is not a regular file stands in the snack's place: report, never touch."""

    name: str
    snack: Snack
    kind: Kind


Action = Create | Conflict


def plan(wanted: Mapping[str, Snack], observed: Mapping[str, Kind]) -> list[Action]:
    """The actions that make one directory hold `wanted` (file name -> snack); absent names are missing."""
    actions: list[Action] = []
    for name, snack in wanted.items():
        kind = observed.get(name, Kind.MISSING)
        if kind is Kind.MISSING:
            actions.append(Create(name, snack))
        elif kind is not Kind.FILE:
            actions.append(Conflict(name, snack, kind))
    return actions


def prune_candidates(owners: Mapping[str, str], desired: set[str], prunable_specs: set[str]) -> dict[str, list[str]]:
    """Files we created (path -> declaring spec) that left the spec, for specs with prune: true, by spec."""
    candidates: dict[str, list[str]] = {}
    for path, spec in sorted(owners.items()):
        if path not in desired and spec in prunable_specs:
            candidates.setdefault(spec, []).append(path)
    return candidates


def breaker_allows(count: int, managed: int) -> bool:
    """The deletion circuit breaker: prune at most max(3, 25%) of the files a spec manages in one go."""
    return count <= max(3, managed // 4)


def render(actions: Iterable[Action]) -> list[str]:
    """One line per action, as `snackwatch diff` prints them."""
    lines = []
    for action in actions:
        if isinstance(action, Create):
            extra = f" (mode {action.snack.mode:04o})" if action.snack.mode is not None else ""
            lines.append(f"+ {action.snack.name}{extra}")
        else:
            lines.append(f"! {action.snack.name}: a {action.kind.value} is in its place (left alone)")
    return lines
