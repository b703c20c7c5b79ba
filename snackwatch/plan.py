"""Pure planning: compare the spec with what was observed on disk and list the actions; render for `diff`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import NamedTuple

from snackwatch.perms import group_name, user_name
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
    """Something else than the snack's kind stands in its place (or a symlink to another target): report, never
    touch. `detail`: what a line says of it beyond its kind."""

    name: str
    snack: Snack
    kind: Kind
    detail: str = ""


Action = Create | Conflict
EXPECTED = {"file": Kind.FILE, "directory": Kind.DIRECTORY, "symlink": Kind.SYMLINK}


def plan(
    wanted: Mapping[str, Snack], observed: Mapping[str, Kind], targets: Mapping[str, str] | None = None
) -> list[Action]:
    """The actions that make one directory hold `wanted` (entry name -> snack); absent names are missing.
    `targets`: the text of the symlinks found where symlinks are wanted (one with another text is a conflict)."""
    actions: list[Action] = []
    for name, snack in wanted.items():
        kind = observed.get(name, Kind.MISSING)
        if kind is Kind.MISSING:
            actions.append(Create(name, snack))
        elif kind is not EXPECTED[snack.type]:
            actions.append(Conflict(name, snack, kind))
        elif kind is Kind.SYMLINK and targets is not None and targets.get(name, snack.target) != snack.target:
            actions.append(Conflict(name, snack, kind, target_detail(targets[name], snack.target)))
    return actions


def target_detail(found: str, wanted: str | None) -> str:
    """A symlink with another text than declared: `a symlink to releases/v1, not releases/v2`."""
    return f"a symlink to {found}, not {wanted}"


def describe(snack: Snack) -> str:
    """What `diff` says an entry will be: ` (mode 0640)`, `/ (directory 0750 alice:alice)`, ` -> releases/v2`."""
    owner = ownership(snack)
    if snack.type == "directory":
        return f"/ (directory {snack.final_mode():04o}{' ' + owner if owner else ''})"
    if snack.type == "symlink":
        return f" -> {snack.target}" + (f" ({owner})" if owner else "")
    if owner:
        return f" (mode {snack.final_mode():04o} {owner})"
    return f" (mode {snack.mode:04o})" if snack.mode is not None else ""


def ownership(snack: Snack) -> str:
    """`alice:adm`, `alice`, `:adm` as declared, or "" (names looked up when shown, ids when they have none)."""
    user = user_name(snack.owner) if snack.owner is not None else ""
    group = ":" + group_name(snack.group) if snack.group is not None else ""
    return user + group


def render(actions: Iterable[Action]) -> list[str]:
    """One line per action, as `snackwatch diff` prints them."""
    lines = []
    for action in actions:
        if isinstance(action, Create):
            lines.append(f"+ {action.snack.name}{describe(action.snack)}")
        else:
            what = action.detail or f"a {action.kind.value}"
            lines.append(f"! {action.snack.name}: {what} is in its place (left alone)")
    return lines
