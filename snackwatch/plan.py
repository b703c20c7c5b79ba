"""Pure planning: compare the spec with what was observed on disk and list the actions; render for `diff`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from snackwatch.spec import Snack


class Kind(Enum):
    """What occupies a snack's place in the pantry."""

    MISSING = "missing"
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "special file"


@dataclass(frozen=True)
class Create:
    """The snack is missing: create it."""

    snack: Snack


@dataclass(frozen=True)
class Conflict:
    """Something that is not a regular file stands in the snack's place: report, never touch."""

    snack: Snack
    kind: Kind


Action = Create | Conflict


def plan(snacks: Iterable[Snack], observed: Mapping[str, Kind]) -> list[Action]:
    """The actions that make the pantry match `snacks`; names absent from `observed` are missing."""
    actions: list[Action] = []
    for snack in snacks:
        kind = observed.get(snack.name, Kind.MISSING)
        if kind is Kind.MISSING:
            actions.append(Create(snack))
        elif kind is not Kind.FILE:
            actions.append(Conflict(snack, kind))
    return actions


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
