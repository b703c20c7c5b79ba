"""Drift: which declared aspects of an existing entry differ from what is on disk. Pure: the caller read the disk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import NamedTuple

from snackwatch.perms import group_name, user_name
from snackwatch.spec import Snack

_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink"}


class Aspect(NamedTuple):
    """One aspect that drifted: its name, what is on disk and what the spec says, as a line shows them."""

    name: str  # type | content | mode | owner | group | target
    found: str
    wanted: str

    def change(self) -> str:
        """`mode 0644 -> 0600`, `content differs`: what diff and a correction line say."""
        return "content differs" if self.name == "content" else f"{self.name} {self.found} -> {self.wanted}"

    def put_back(self) -> str:
        """`mode 0644 -> 0600`, `content put back (8 bytes)`: what a correction line says."""
        return f"content put back ({self.wanted})" if self.name == "content" else self.change()

    def against(self) -> str:
        """`mode 0644, spec says 0600`, `content differs from the spec`: what a reload line and why say."""
        if self.name == "content":
            return "content differs from the spec"
        return f"{self.name} {self.found}, spec says {self.wanted}"

    def enforced_by(self, snack: Snack) -> bool:
        """Whether the entry's `enforce` covers this aspect (`owner` covers owner and group)."""
        return (self.name if self.name != "group" else "owner") in snack.enforce


def kind_name(mode: int) -> str:
    """`file`, `directory`, `symlink`, or `special file`: the kind of an lstat mode, in the spec's words."""
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def drift_of(
    snack: Snack, info: os.stat_result, link_target: str | None, content: bytes | None, euid: int
) -> list[Aspect]:
    """The declared aspects of `snack` that the entry on disk (its lstat `info`, its link text, its first bytes,
    at most one more than the declared content) does not have; [] when it is in line.

    A wrong kind is only a `type` drift (nothing else is compared). Mode is compared when declared (`mode:` or
    `defaults:`) or enforced; content when the file declares it (`content` or `source`); group when declared;
    owner always: an entry owned by someone other than its declared owner (or, with none declared, than the
    daemon's `euid`) was made or taken by another user (a squatted name)."""
    found_kind = kind_name(info.st_mode)
    if found_kind != snack.type:
        return [Aspect("type", found_kind, snack.type)]
    aspects: list[Aspect] = []
    if snack.declares_content:
        wanted = snack.payload() or b""
        if content is None or content != wanted or info.st_size != len(wanted):
            aspects.append(Aspect("content", f"{info.st_size} bytes", f"{len(wanted)} bytes"))
    if snack.type != "symlink" and (snack.mode is not None or "mode" in snack.enforce):
        mode = stat.S_IMODE(info.st_mode)
        if mode != snack.final_mode():
            aspects.append(Aspect("mode", f"{mode:04o}", f"{snack.final_mode():04o}"))
    owner = snack.owner if snack.owner is not None else euid
    if info.st_uid != owner:
        aspects.append(Aspect("owner", user_name(info.st_uid), user_name(owner)))
    if snack.group is not None and info.st_gid != snack.group:
        aspects.append(Aspect("group", group_name(info.st_gid), group_name(snack.group)))
    if snack.type == "symlink" and link_target != snack.target:
        aspects.append(Aspect("target", link_target or "?", snack.target or "?"))
    return aspects


def split(snack: Snack, aspects: Iterable[Aspect]) -> tuple[list[Aspect], list[Aspect]]:
    """The aspects `enforce` covers (to put back) and the others (to report)."""
    enforced: list[Aspect] = []
    reported: list[Aspect] = []
    for aspect in aspects:
        (enforced if aspect.enforced_by(snack) else reported).append(aspect)
    return enforced, reported


def changes(aspects: Iterable[Aspect]) -> str:
    """`mode 0644 -> 0600, content differs`."""
    return ", ".join(aspect.change() for aspect in aspects)


def put_back(aspects: Iterable[Aspect]) -> str:
    """`mode 0644 -> 0600, content put back (8 bytes)`."""
    return ", ".join(aspect.put_back() for aspect in aspects)


def enforce_hint(aspects: Iterable[Aspect]) -> str:
    """`enforce: [mode, content]`: what would keep these aspects in line."""
    names = dict.fromkeys("owner" if aspect.name == "group" else aspect.name for aspect in aspects)
    return f"enforce: [{', '.join(names)}]"
