"""A read-only look at the desired state on disk, by the daemon's own walk: what diff and why show."""

from __future__ import annotations

import os
from typing import NamedTuple

from snackwatch.chase import BlockedPath, kind_of
from snackwatch.desired import Desired, Entry
from snackwatch.perms import owner_mismatch
from snackwatch.plan import EXPECTED, Action, Kind, ownership, plan, target_detail
from snackwatch.reconcile import observe, observe_targets


class Survey(NamedTuple):
    """What a reconcile would do (`actions`), the present entries another user owns (`owners`: entry, why), and
    what blocks the way to directories (the BlockedPath line -> the snacks it keeps out), each said once."""

    actions: list[Action]
    owners: list[tuple[Entry, str]]
    blocked: dict[str, list[Entry]]


def survey(desired: Desired) -> Survey:
    """Walk to every desired directory (never creating, never following what the daemon would not) and plan it."""
    result = Survey([], [], {})
    for directory in desired.directories:
        entries = desired.files.get(directory, {})
        try:
            fd = desired.open_directory(directory, create=False)
        except FileNotFoundError:
            result.actions.extend(plan({name: entry.snack for name, entry in entries.items()}, {}))
            continue
        except BlockedPath as blocked:
            if entries:
                result.blocked.setdefault(str(blocked), []).extend(entries.values())
            continue
        try:
            snacks = {name: entry.snack for name, entry in entries.items()}
            observed = observe(fd)
            result.actions.extend(plan(snacks, observed, observe_targets(fd, snacks, observed)))
            for name, entry in entries.items():
                if observed.get(name) is EXPECTED[entry.snack.type]:
                    problem = _owner_problem(fd, entry)
                    if problem:
                        result.owners.append((entry, problem))
        finally:
            os.close(fd)
    return result


def _owner_problem(directory_fd: int, entry: Entry) -> str:
    try:
        return owner_mismatch(os.lstat(entry.name, dir_fd=directory_fd).st_uid, entry.snack.owner)
    except OSError:
        return ""


class Look(NamedTuple):
    """One entry on disk: what stands in its place, its owner and link text, or what blocks the way to it."""

    kind: Kind
    owner: int | None = None
    target: str | None = None
    blocked: str = ""
    error: str = ""


def look(desired: Desired, entry: Entry) -> Look:
    """What `why` says is on disk for `entry`: reached by the same walk as the daemon's, nothing followed."""
    try:
        fd = desired.open_directory(entry.directory, create=False)
    except FileNotFoundError:
        return Look(Kind.MISSING)
    except BlockedPath as blocked:
        return Look(Kind.MISSING, blocked=str(blocked))
    except OSError as error:
        return Look(Kind.MISSING, error=error.strerror or str(error))
    try:
        info = os.lstat(entry.name, dir_fd=fd)
        kind = kind_of(info.st_mode)
        target = os.readlink(entry.name, dir_fd=fd) if kind is Kind.SYMLINK else None
        return Look(kind, info.st_uid, target)
    except FileNotFoundError:
        return Look(Kind.MISSING)
    except OSError as error:
        return Look(Kind.MISSING, error=error.strerror or str(error))
    finally:
        os.close(fd)


def why_lines(entry: Entry, seen: Look) -> list[str]:
    """What `why` says of an entry: what it is declared as, what is on disk, and whose it is if not ours."""
    snack = entry.snack
    declared = f"  type: {snack.type}"
    if snack.type == "symlink":
        declared += f" -> {snack.target}"
    else:
        declared += f" {snack.final_mode():04o}"
    owner = ownership(snack)
    lines = [declared + (f", owner {owner}" if owner else "")]
    if seen.blocked:
        return [*lines, f"  on disk: not reachable: {seen.blocked}"]
    if seen.error:
        return [*lines, f"  on disk: cannot tell: {seen.error}"]
    if seen.kind is Kind.MISSING:
        return [*lines, "  on disk: missing"]
    if seen.kind is not EXPECTED[snack.type]:
        return [*lines, f"  on disk: a {seen.kind.value} is in its place"]
    if seen.target is not None and seen.target != snack.target:
        return [*lines, f"  on disk: {target_detail(seen.target, snack.target)}"]
    lines.append("  on disk: present")
    problem = owner_mismatch(seen.owner, snack.owner) if seen.owner is not None else ""
    if problem:
        lines.append(f"  {problem} (not enforced: another user may have created it first)")
    return lines
