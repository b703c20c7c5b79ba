"""A read-only look at the desired state on disk, by the daemon's own walk: what diff and why show."""

from __future__ import annotations

import os
from typing import NamedTuple

from snackwatch.chase import BlockedPath, kind_of
from snackwatch.desired import Desired, Entry
from snackwatch.drift import Aspect, changes, enforce_hint, split
from snackwatch.examine import drift_at
from snackwatch.plan import EXPECTED, Action, Kind, ownership, plan, target_detail
from snackwatch.reconcile import observe, observe_targets


class Survey(NamedTuple):
    """What a reconcile would do (`actions`), the present entries that drift (`drifting`: entry, its aspects out
    of line, an owner another user's included), and what blocks the way to directories (the BlockedPath line ->
    the snacks it keeps out), each said once."""

    actions: list[Action]
    drifting: list[tuple[Entry, list[Aspect]]]
    blocked: dict[str, list[Entry]]


def survey(desired: Desired) -> Survey:
    """Walk to every desired directory (never creating, never following what the daemon would not) and plan it."""
    result = Survey([], [], {})
    for directory in desired.directories:
        snacks = desired.files.get(directory, {})
        entries = desired.table(directory)
        try:
            fd = desired.open_directory(directory, create=False)
        except FileNotFoundError:
            result.actions.extend(plan(snacks, {}))
            continue
        except BlockedPath as blocked:
            if entries:
                result.blocked.setdefault(str(blocked), []).extend(entries.values())
            continue
        try:
            observed = observe(fd)
            actions = plan(snacks, observed, observe_targets(fd, snacks, observed))
            result.actions.extend(actions)
            acted = {action.name for action in actions}
            for name, entry in entries.items():
                if name not in acted and observed.get(name) is EXPECTED[entry.snack.type]:
                    aspects = _drift(fd, entry)
                    if aspects:
                        result.drifting.append((entry, aspects))
        finally:
            os.close(fd)
    return result


def _drift(directory_fd: int, entry: Entry) -> list[Aspect]:
    try:
        return drift_at(directory_fd, entry.name, entry.snack)
    except OSError:
        return []


def drift_line(shown: str, entry: Entry, aspects: list[Aspect]) -> str:
    """`~ app.conf: mode 0644 -> 0600, content differs (not enforced)`: one diff line per drifting entry."""
    enforced, reported = split(entry.snack, aspects)
    parts = [f"{changes(enforced)} (enforced: put back by the daemon)"] if enforced else []
    parts += [f"{changes(reported)} (not enforced)"] if reported else []
    return f"~ {shown}: {', '.join(parts)}"


class Look(NamedTuple):
    """One entry on disk: what stands in its place, its owner and link text, or what blocks the way to it."""

    kind: Kind
    owner: int | None = None
    target: str | None = None
    blocked: str = ""
    error: str = ""
    drift: tuple[Aspect, ...] = ()


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
        drift = tuple(_drift(fd, entry)) if kind is EXPECTED[entry.snack.type] else ()
        return Look(kind, info.st_uid, target, drift=drift)
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
    for aspect in seen.drift:
        enforced = aspect.enforced_by(snack)
        if aspect.name == "owner" and snack.owner is None and not enforced:
            squat = "not enforced: another user may have created it first"
            lines.append(f"  owner {aspect.found}, expected {aspect.wanted} ({squat})")
            continue
        said = "enforced: the daemon puts it back" if enforced else f"not enforced: {enforce_hint([aspect])} would"
        lines.append(f"  drift: {aspect.against()} ({said})")
    return lines
