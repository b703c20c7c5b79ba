"""Observe -> plan -> apply, for the whole spec (reconcile_all) or for named snacks (reconcile_names)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from snackwatch.apply import create_snack, ensure_pantry, open_pantry
from snackwatch.plan import Conflict, Create, Kind, plan
from snackwatch.spec import Snack, Spec


class Status(Enum):
    """How one snack's reconcile ended."""

    PRESENT = "present"
    CREATED = "created"
    WOULD_CREATE = "would create"
    CONFLICT = "conflict"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """The result for one snack; `kind` for a conflict, `error` for a failure."""

    snack: Snack
    status: Status
    kind: Kind | None = None
    error: OSError | None = None


def kind_of(mode: int) -> Kind:
    """Classify an lstat() mode."""
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIRECTORY
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    return Kind.OTHER


def observe(pantry_fd: int) -> dict[str, Kind]:
    """Every entry of the pantry with its kind: one directory scan, no stat for most filesystems."""
    observed: dict[str, Kind] = {}
    with os.scandir(pantry_fd) as entries:
        for entry in entries:
            if entry.is_symlink():
                observed[entry.name] = Kind.SYMLINK
            elif entry.is_file(follow_symlinks=False):
                observed[entry.name] = Kind.FILE
            elif entry.is_dir(follow_symlinks=False):
                observed[entry.name] = Kind.DIRECTORY
            else:
                observed[entry.name] = Kind.OTHER
    return observed


def observe_spec(spec: Spec) -> dict[str, Kind]:
    """What is in the spec's pantry now (nothing if it does not exist): the input of `diff`."""
    try:
        pantry_fd = open_pantry(spec.pantry)
    except FileNotFoundError:
        return {}
    try:
        return observe(pantry_fd)
    finally:
        os.close(pantry_fd)


def reconcile_all(spec: Spec, *, dry_run: bool = False) -> list[Outcome]:
    """Make the whole pantry match the spec; outcomes for every snack that was not simply present."""
    if dry_run and not os.path.isdir(spec.pantry):
        return [Outcome(snack, Status.WOULD_CREATE) for snack in spec.snacks]
    try:
        if not dry_run:
            ensure_pantry(spec.pantry)
        pantry_fd = open_pantry(spec.pantry)
    except OSError as error:
        return [Outcome(snack, Status.FAILED, error=error) for snack in spec.snacks]
    try:
        actions = plan(spec.snacks, observe(pantry_fd))
        outcomes = []
        for action in actions:
            if isinstance(action, Conflict):
                outcomes.append(Outcome(action.snack, Status.CONFLICT, kind=action.kind))
            elif dry_run:
                outcomes.append(Outcome(action.snack, Status.WOULD_CREATE))
            else:
                outcomes.append(_create(pantry_fd, action))
        return outcomes
    finally:
        os.close(pantry_fd)


def reconcile_names(spec: Spec, names: Iterable[str], *, dry_run: bool = False) -> list[Outcome]:
    """Targeted repair of the named snacks (names not in the spec are ignored): O(1) per name."""
    snacks = [spec.by_name[name] for name in names if name in spec.by_name]
    if not snacks:
        return []
    try:
        pantry_fd = open_pantry(spec.pantry)
    except OSError as error:
        return [Outcome(snack, Status.FAILED, error=error) for snack in snacks]
    try:
        return [_ensure(pantry_fd, snack, dry_run) for snack in snacks]
    finally:
        os.close(pantry_fd)


def _ensure(pantry_fd: int, snack: Snack, dry_run: bool) -> Outcome:
    # Try to create first: the common case (a deleted snack) costs one syscall.
    if not dry_run:
        outcome = _create(pantry_fd, Create(snack))
        if outcome.status is not Status.PRESENT:
            return outcome
    try:
        kind = kind_of(os.lstat(snack.name, dir_fd=pantry_fd).st_mode)
    except FileNotFoundError:
        return Outcome(snack, Status.WOULD_CREATE)
    except OSError as error:
        return Outcome(snack, Status.FAILED, error=error)
    if kind is Kind.FILE:
        return Outcome(snack, Status.PRESENT)
    return Outcome(snack, Status.CONFLICT, kind=kind)


def _create(pantry_fd: int, action: Create) -> Outcome:
    try:
        created = create_snack(pantry_fd, action.snack)
    except OSError as error:
        return Outcome(action.snack, Status.FAILED, error=error)
    return Outcome(action.snack, Status.CREATED if created else Status.PRESENT)
