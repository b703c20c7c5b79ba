"""Observe -> plan -> apply, for the whole desired state (reconcile_all) or named files (reconcile_names)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from enum import Enum
from typing import NamedTuple

from snackwatch.apply import create_plain_snacks, create_snack
from snackwatch.chase import BlockedPath, kind_of, open_directory
from snackwatch.desired import Desired, Entry
from snackwatch.plan import Conflict, Kind, plan


class Status(Enum):
    """How one snack's reconcile ended."""

    PRESENT = "present"
    CREATED = "created"
    WOULD_CREATE = "would create"
    CONFLICT = "conflict"
    FAILED = "failed"


class Outcome(NamedTuple):
    """The result for one snack; `kind` for a conflict, `error` for a failure."""

    entry: Entry
    status: Status
    kind: Kind | None = None
    error: OSError | None = None
    created: os.stat_result | None = None  # the file we created, as created: for the ownership record


def observe(directory_fd: int) -> dict[str, Kind]:
    """Every entry of a directory with its kind: one scan, no stat on most filesystems."""
    observed: dict[str, Kind] = {}
    with os.scandir(directory_fd) as entries:
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


def observe_desired(desired: Desired) -> dict[str, dict[str, Kind]]:
    """What is on disk in every desired directory (nothing for a missing one): the input of `diff`."""
    observed: dict[str, dict[str, Kind]] = {}
    for directory in desired.directories:
        try:
            fd = open_directory(directory, desired.roots[directory], create=False)
        except (FileNotFoundError, BlockedPath):
            observed[directory] = {}
            continue
        try:
            observed[directory] = observe(fd)
        finally:
            os.close(fd)
    return observed


def reconcile_all(desired: Desired, *, dry_run: bool = False) -> list[Outcome]:
    """Make every directory match; outcomes for every snack that was not simply present."""
    outcomes: list[Outcome] = []
    for directory in desired.directories:
        outcomes.extend(reconcile_directory(desired, directory, dry_run=dry_run))
    return outcomes


def reconcile_directory(desired: Desired, directory: str, *, dry_run: bool = False) -> list[Outcome]:
    """One directory's full pass: one scan, then creates; cheaper than per-name repairs for a burst."""
    wanted = desired.files.get(directory, {})
    if not wanted:
        return []
    fd = _open(desired, directory, list(wanted.values()), dry_run=dry_run)
    if isinstance(fd, list):
        return fd
    try:
        outcomes: list[Outcome | None] = []
        plain: list[tuple[int, Entry]] = []  # empty default-mode files of non-pruning specs: one tight loop
        for action in plan({name: entry.snack for name, entry in wanted.items()}, observe(fd)):
            entry = wanted[action.name]
            if isinstance(action, Conflict):
                outcomes.append(Outcome(entry, Status.CONFLICT, kind=action.kind))
            elif dry_run:
                outcomes.append(Outcome(entry, Status.WOULD_CREATE))
            elif entry.snack.content is None and entry.snack.mode is None and not entry.spec.prune:
                plain.append((len(outcomes), entry))
                outcomes.append(None)  # filled in below, keeping the spec's order
            else:
                outcomes.append(_create(fd, entry))
        results = create_plain_snacks(fd, [entry.name for _, entry in plain])
        for (index, entry), result in zip(plain, results, strict=True):
            if result is True:
                outcomes[index] = Outcome(entry, Status.CREATED)
            elif result is False:
                outcomes[index] = Outcome(entry, Status.PRESENT)
            else:
                outcomes[index] = Outcome(entry, Status.FAILED, error=result)
        return [outcome for outcome in outcomes if outcome is not None]
    finally:
        os.close(fd)


def reconcile_names(desired: Desired, directory: str, names: Iterable[str], *, dry_run: bool = False) -> list[Outcome]:
    """Targeted repair of named files in one directory (names not desired are ignored): O(1) per name."""
    wanted = desired.files.get(directory, {})
    entries = [wanted[name] for name in names if name in wanted]
    if not entries:
        return []
    fd = _open(desired, directory, entries, dry_run=dry_run)
    if isinstance(fd, list):
        return fd
    try:
        return [_ensure(fd, entry, dry_run) for entry in entries]
    finally:
        os.close(fd)


def _open(desired: Desired, directory: str, entries: list[Entry], *, dry_run: bool) -> int | list[Outcome]:
    """The directory's fd, or the outcome of every entry when it cannot be had: one decision for every pass.

    In a dry run a missing directory is one that would be created, with the snacks in it.
    """
    try:
        return open_directory(directory, desired.roots[directory], create=not dry_run)
    except FileNotFoundError as error:
        if dry_run:
            return [Outcome(entry, Status.WOULD_CREATE) for entry in entries]
        return [Outcome(entry, Status.FAILED, error=error) for entry in entries]
    except BlockedPath as blocked:
        return [Outcome(entry, Status.CONFLICT, kind=blocked.kind) for entry in entries]
    except OSError as error:
        return [Outcome(entry, Status.FAILED, error=error) for entry in entries]


def _ensure(fd: int, entry: Entry, dry_run: bool) -> Outcome:
    # Try to create first: the common case (a deleted snack) costs one syscall.
    if not dry_run:
        outcome = _create(fd, entry)
        if outcome.status is not Status.PRESENT:
            return outcome
    try:
        kind = kind_of(os.lstat(entry.name, dir_fd=fd).st_mode)
    except FileNotFoundError:
        return Outcome(entry, Status.WOULD_CREATE)
    except OSError as error:
        return Outcome(entry, Status.FAILED, error=error)
    if kind is Kind.FILE:
        return Outcome(entry, Status.PRESENT)
    return Outcome(entry, Status.CONFLICT, kind=kind)


def _create(fd: int, entry: Entry) -> Outcome:
    try:
        created = create_snack(fd, entry.name, entry.snack, identity=entry.spec.prune)
    except OSError as error:
        return Outcome(entry, Status.FAILED, error=error)
    if created is False:
        return Outcome(entry, Status.PRESENT)
    return Outcome(entry, Status.CREATED, created=None if created is True else created)
