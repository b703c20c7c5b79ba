"""Observe -> plan -> apply, for the whole desired state (reconcile_all) or named files (reconcile_names)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from snackwatch.apply import PlainFixes, Staged, create_plain_snacks, create_snack, publish, stage
from snackwatch.chase import BlockedPath, kind_of
from snackwatch.correct import correct
from snackwatch.desired import Desired, Entry, Shape, Table, entries_of
from snackwatch.drift import Aspect, split
from snackwatch.examine import drift_at
from snackwatch.leftovers import log_removed, remove_stale
from snackwatch.passwalk import PassWalk
from snackwatch.perms import user_name
from snackwatch.plan import EXPECTED, Action, Conflict, Kind, plan, target_detail
from snackwatch.spec import RESERVED_PREFIX, Snack, Traits

if TYPE_CHECKING:
    from snackwatch.held import HeldDirectories

CREATE_TRIES = 3  # a place flipping under us: create, look, create again at most this often
ENTRY_BYTES = 20  # a directory's st_size per entry, at least (tmpfs: 20; ext4, xfs, btrfs: more)


class Status(Enum):
    """How one snack's reconcile ended."""

    PRESENT = "present"
    CREATED = "created"
    WOULD_CREATE = "would create"
    CONFLICT = "conflict"
    FAILED = "failed"
    CORRECTED = "corrected"  # present, and an enforced aspect that drifted was put back


class Outcome(NamedTuple):
    """The result for one snack; `kind` for a conflict, `error` for a failure."""

    entry: Entry
    status: Status
    kind: Kind | None = None
    error: OSError | None = None
    blocked: bool = False  # the conflict is on the way to the snack's directory, not in the snack's own place
    reason: str = ""  # a conflict's own words: what blocks the way (path, kind, owner), a symlink's other target;
    # present: who took the name before our create could (`created by nobody`), else ""; corrected: the name a
    # wrong kind was moved aside to, else ""
    drift: tuple[Aspect, ...] = ()  # present (or corrected, or failing to be): the aspects left as they are
    corrected: tuple[Aspect, ...] = ()  # corrected: the enforced aspects put back


class Recorder(Protocol):
    """The ownership record of pruning specs (the daemon's Pruner): told of a file before its name appears."""

    def record_before_publish(self, created: Sequence[tuple[str, os.stat_result, Path]]) -> None:
        """Record (path, identity, spec) of files about to be published, on disk before returning (or say why not:
        a record that cannot be written never stops a snack from being created)."""

    def forget(self, path: str) -> None:
        """A recorded file was not published after all (its name was taken, or the link failed)."""


def observe(directory_fd: int, wanted: Container[str] | None = None) -> dict[str, Kind]:
    """Entries of a directory with their kind: one scan, no stat on most filesystems. With `wanted`, only those
    names and our own temp names are kept: memory is bounded by the spec, not by what others put there."""
    observed: dict[str, Kind] = {}
    with os.scandir(directory_fd) as entries:
        for entry in entries:
            name = entry.name
            if wanted is not None and name not in wanted and not name.startswith(RESERVED_PREFIX):
                continue
            if entry.is_symlink():
                observed[name] = Kind.SYMLINK
            elif entry.is_file(follow_symlinks=False):
                observed[name] = Kind.FILE
            elif entry.is_dir(follow_symlinks=False):
                observed[name] = Kind.DIRECTORY
            else:
                observed[name] = Kind.OTHER
    return observed


def observe_names(directory_fd: int, names: Iterable[str]) -> dict[str, Kind]:
    """The kind of each named entry, looked up one by one (fstatat, never followed): O(snacks), whatever else the
    directory holds."""
    observed: dict[str, Kind] = {}
    for name in names:
        try:
            observed[name] = kind_of(os.lstat(name, dir_fd=directory_fd).st_mode)
        except FileNotFoundError:
            continue
    return observed


def crowded(directory_fd: int, snacks: int) -> bool:
    """Whether a directory seems to hold far more entries than its snacks (another user's junk in a shared pantry):
    its size, about 20 bytes an entry on tmpfs and more on disk filesystems, says so without listing it."""
    return os.fstat(directory_fd).st_size // ENTRY_BYTES > 2 * snacks + 64


def observe_targets(directory_fd: int, wanted: Mapping[str, Snack], observed: dict[str, Kind]) -> dict[str, str]:
    """The text of each symlink found where a symlink is wanted (readlink, never followed)."""
    targets: dict[str, str] = {}
    for name, snack in wanted.items():
        if snack.type == "symlink" and observed.get(name) is Kind.SYMLINK:
            try:
                targets[name] = os.readlink(name, dir_fd=directory_fd)
            except OSError:
                continue  # gone or replaced meanwhile: the next look sees what is there
    return targets


def reconcile_all(
    desired: Desired, *, dry_run: bool = False, recorder: Recorder | None = None, owners: bool = True
) -> list[Outcome]:
    """Make every directory match; outcomes for every snack that was not simply present.

    With a `recorder`, a pruning spec's file is in the ownership record on disk before its name appears.
    Crash leftovers (stale temp files) the scans come across are removed, in one log line. `owners=False`
    leaves out the owner look of name-only snacks (report only): owners_drift() does it later.
    """
    outcomes: list[Outcome] = []
    removed: dict[str, int] = {}
    with PassWalk() as walk:
        for directory in desired.directories:
            outcomes.extend(
                _reconcile_directory(desired, directory, dry_run, recorder, removed, owners=owners, walk=walk)
            )
    log_removed(removed)
    return outcomes


def owners_drift(desired: Desired, *, dry_run: bool = False) -> list[Outcome]:
    """The owner look a pass without `owners` left out: each name-only snack that is a regular file owned by
    another user than the daemon's (a squatted name) drifts in owner; one lstat each, reported, never changed."""
    outcomes: list[Outcome] = []
    with PassWalk() as walk:
        for directory in desired.directories:
            snacks = desired.files.get(directory, {}).values()
            plain = [Entry(snack) for snack in snacks if snack.is_plain and not snack.enforce]
            if plain:
                outcomes.extend(_owners_drift(desired, directory, plain, walk, dry_run))
    return outcomes


def _owners_drift(desired: Desired, directory: str, plain: list[Entry], walk: PassWalk, dry_run: bool) -> list[Outcome]:
    euid = os.geteuid()
    outcomes: list[Outcome] = []
    try:
        fd = desired.open_directory(directory, create=False, walk=walk)
    except (OSError, BlockedPath):
        return outcomes  # the pass told what stands in the way
    try:
        for entry in plain:
            try:
                found = os.lstat(entry.name, dir_fd=fd)
            except OSError:
                continue
            if stat.S_ISREG(found.st_mode) and found.st_uid != euid:
                drifted = settle(fd, Outcome(entry, Status.PRESENT), dry_run)
                if drifted.status is not Status.PRESENT or drifted.drift:
                    outcomes.append(drifted)
    finally:
        os.close(fd)
    return outcomes


def reconcile_directory(
    desired: Desired,
    directory: str,
    *,
    dry_run: bool = False,
    recorder: Recorder | None = None,
    held: Container[str] = (),
    lookup: bool = False,
    owners: bool = True,
) -> list[Outcome]:
    """One directory's full pass: one scan, then creates; cheaper than per-name repairs for a burst.

    `held`: paths waiting out a backoff or a fight, left alone here (their schedule retries them). `lookup`: a
    burst or storm scan, which looks its snacks up by name when the directory holds far more than them.
    `owners`: compare the owner of name-only snacks too (one lstat each); a storm's scans, every 20 ms, do not."""
    removed: dict[str, int] = {}
    outcomes = _reconcile_directory(
        desired, directory, dry_run, recorder, removed, held=held, lookup=lookup, owners=owners
    )
    log_removed(removed)
    return outcomes


def _reconcile_directory(
    desired: Desired,
    directory: str,
    dry_run: bool,
    recorder: Recorder | None,
    removed: dict[str, int],
    *,
    held: Container[str] = (),
    lookup: bool = False,
    owners: bool = True,
    walk: PassWalk | None = None,
) -> list[Outcome]:
    wanted: Mapping[str, Entry] = desired.table(directory)
    if held:
        wanted = {name: entry for name, entry in wanted.items() if entry.path not in held}
    if not wanted:
        return []
    opened = _open(desired, directory, wanted.values(), dry_run=dry_run, walk=walk)  # entries made on failure only
    if isinstance(opened, list):
        return opened
    fd, _ = opened
    try:
        if lookup and crowded(fd, len(wanted)):
            observed = observe_names(fd, wanted)
        else:
            observed = observe(fd, desired.files.get(directory, {}))  # its names, looked up in C
        shape = desired.shape(directory)
        missing, snacks = _missing_plain(shape, wanted, observed, dry_run=dry_run, recorder=recorder)
        actions = plan(snacks, observed, observe_targets(fd, snacks, observed))
        outcomes, plain, owned = _act(fd, wanted, actions, dry_run, recorder)
        acted = {a.name for a in actions}
        acted.update(entry.name for entry in missing)
        if owners or not shape.plain or shape.enforcing:  # else each is name-only, nothing enforced: no drift
            outcomes.extend(_drifting(fd, wanted, observed, acted, dry_run=dry_run, owners=owners, recorder=recorder))
        if plain:  # a warm pass has none: not even the directory's ACL and group looked at
            _create_plain(fd, outcomes, plain)
        if missing:
            outcomes.extend(_created_plain(fd, missing))
        if recorder is not None and owned:
            _create_recorded(fd, outcomes, owned, recorder)
        if not dry_run:
            _remove_leftovers(fd, directory, observed, removed)
        return [outcome for outcome in outcomes if outcome is not None]
    finally:
        os.close(fd)


Places = list[tuple[int, Entry]]  # entries whose outcome is filled in later, by their place in the outcomes


def _act(
    fd: int, wanted: Mapping[str, Entry], actions: list[Action], dry_run: bool, recorder: Recorder | None
) -> tuple[list[Outcome | None], Places, Places]:
    """Each planned action's outcome in the spec's order; the plain snacks (created in one tight loop) and the
    pruning specs' files (recorded together before they are published) are left as places to fill in."""
    outcomes: list[Outcome | None] = []
    plain: Places = []
    owned: Places = []
    for action in actions:
        entry = wanted[action.name]
        outcome: Outcome | None = None
        if isinstance(action, Conflict):
            conflict = Outcome(entry, Status.CONFLICT, kind=action.kind, reason=action.detail)
            outcome = settle(fd, conflict, dry_run, recorder)
        elif dry_run:
            outcome = Outcome(entry, Status.WOULD_CREATE)
        elif recorder is not None and entry.spec.prune and entry.snack.type == "file":
            owned.append((len(outcomes), entry))
        elif entry.snack.is_plain:
            plain.append((len(outcomes), entry))
        else:
            outcome = _create(fd, entry, recorder)
        outcomes.append(outcome)
    return outcomes, plain, owned


def _remove_leftovers(fd: int, directory: str, observed: Iterable[str], removed: dict[str, int]) -> None:
    """Our stale temp files the scan came across (crash leftovers), counted per directory for one log line."""
    reserved = [name for name in observed if name.startswith(RESERVED_PREFIX)]
    count = remove_stale(fd, reserved) if reserved else 0
    if count:
        removed[directory] = count


def _drifting(
    fd: int,
    wanted: Mapping[str, Entry],
    observed: dict[str, Kind],
    acted: set[str],
    *,
    dry_run: bool,
    owners: bool,
    recorder: Recorder | None,
) -> list[Outcome]:
    """The entries in place that drift (or were put back): a full pass compares every one. An entry that declares
    nothing but its name costs one lstat (its owner: a squatted name); the others are compared aspect by aspect."""
    outcomes: list[Outcome] = []
    euid, lstat, file = os.geteuid(), os.lstat, Kind.FILE
    name_only = _judged(lambda snack: snack.is_plain and not snack.enforce)
    for name, snack in _snacks_of(wanted).items():
        if name in acted:
            continue
        if name_only(snack):
            if not owners or observed.get(name) is not file:
                continue
            try:
                if lstat(name, dir_fd=fd).st_uid == euid:
                    continue
            except OSError:
                continue
        elif observed.get(name) is not EXPECTED[snack.type]:
            continue
        drifted = settle(fd, Outcome(Entry(snack), Status.PRESENT), dry_run, recorder)
        if drifted.status is not Status.PRESENT or drifted.drift:
            outcomes.append(drifted)
    return outcomes


def reconcile_names(
    desired: Desired,
    directory: str,
    names: Iterable[str],
    *,
    dry_run: bool = False,
    recorder: Recorder | None = None,
    changed: bool = False,
    held_dirs: HeldDirectories | None = None,
) -> list[Outcome]:
    """Targeted repair of named files in one directory (names not desired are ignored): O(1) per name.
    `changed`: an event says the entries changed (not went): look first, then put enforced aspects back.
    `held_dirs`: the directory's fd is taken from there (kept open between repairs while nothing could move it)."""
    wanted = desired.table(directory)
    entries = [wanted[name] for name in names if name in wanted]
    if not entries:
        return []
    opened = _open(desired, directory, entries, dry_run=dry_run, held_dirs=held_dirs)
    if isinstance(opened, list):
        return opened
    fd, kept = opened
    try:
        if changed:
            looked = [settle(fd, _look(fd, entry), dry_run, recorder) for entry in entries]
            gone = [o.entry for o in looked if o.status is Status.WOULD_CREATE]
            if not gone or dry_run:
                return looked
            return [o for o in looked if o.status is not Status.WOULD_CREATE] + [
                _ensure(fd, entry, dry_run, recorder) for entry in gone
            ]
        if recorder is None or dry_run or not any(_recorded(entry) for entry in entries):
            fixes = held_dirs.plain_fixes(directory) if held_dirs is not None and kept else None
            return [_ensure(fd, entry, dry_run, recorder, fixes) for entry in entries]
        outcomes: list[Outcome | None] = []
        owned: list[tuple[int, Entry]] = []  # missing files of pruning specs: recorded together, then published
        for entry in entries:
            outcome: Outcome | None = (
                settle(fd, _look(fd, entry), dry_run, recorder)
                if _recorded(entry)
                else _ensure(fd, entry, dry_run, recorder)
            )
            if _recorded(entry) and outcome is not None and outcome.status is Status.WOULD_CREATE:
                owned.append((len(outcomes), entry))
                outcome = None  # filled in below
            outcomes.append(outcome)
        _create_recorded(fd, outcomes, owned, recorder)
        return [outcome for outcome in outcomes if outcome is not None]
    finally:
        if not kept:
            os.close(fd)


def _open(
    desired: Desired,
    directory: str,
    entries: Iterable[Entry],
    *,
    dry_run: bool,
    held_dirs: HeldDirectories | None = None,
    walk: PassWalk | None = None,
) -> tuple[int, bool] | list[Outcome]:
    """The directory's fd and whether `held_dirs` keeps it (else the caller closes it), or the outcome of every entry
    when it cannot be had: one decision for every pass. `walk`: the pass's walk, reaching the directory from an
    ancestor it holds. In a dry run a missing directory is one that would be created, with the snacks in it (and
    nothing is held).
    """
    try:
        if held_dirs is not None and not dry_run:
            return held_dirs.open(desired, directory)
        return desired.open_directory(directory, create=not dry_run, walk=walk), False
    except FileNotFoundError as error:
        if dry_run:
            return [Outcome(entry, Status.WOULD_CREATE) for entry in entries]
        return [Outcome(entry, Status.FAILED, error=error) for entry in entries]
    except BlockedPath as blocked:
        reason = str(blocked)
        return [Outcome(entry, Status.CONFLICT, kind=blocked.kind, blocked=True, reason=reason) for entry in entries]
    except OSError as error:
        return [Outcome(entry, Status.FAILED, error=error) for entry in entries]


def _ensure(
    fd: int, entry: Entry, dry_run: bool, recorder: Recorder | None = None, fixes: PlainFixes | None = None
) -> Outcome:
    """Try to create first: the common case (a deleted snack) costs one syscall. A name taken when we created and
    gone when we looked (another process flipping the place) is created again, a few times: a real run never
    reports "would create"."""
    if dry_run:
        return settle(fd, _look(fd, entry), dry_run)
    for _ in range(CREATE_TRIES):
        outcome = _create(fd, entry, recorder, fixes)
        if outcome.status is not Status.PRESENT:
            return outcome
        looked = _look(fd, entry)
        if looked.status is not Status.WOULD_CREATE:  # keeps who took the name first
            return settle(fd, outcome if looked.status is Status.PRESENT else looked, dry_run, recorder)
    return Outcome(entry, Status.FAILED, error=FileExistsError(errno.EEXIST, "the name keeps appearing and vanishing"))


def restore_plain(
    desired: Desired, directory: str, entries: list[Entry], held_dirs: HeldDirectories | None = None
) -> list[Outcome]:
    """Plain snacks (empty files, of specs that do not prune) of one directory restored after a deletion: the lone
    deletion's repair, as reconcile_names() would make it with fewer calls before the create. One create loop,
    what create_snack() does for them; a name found taken goes the long way (_ensure: looked at, made again if it
    went meanwhile)."""
    opened = _open(desired, directory, entries, dry_run=False, held_dirs=held_dirs)
    if isinstance(opened, list):
        return opened
    fd, kept = opened
    try:
        fixes = held_dirs.plain_fixes(directory) if held_dirs is not None and kept else None
        names = []
        for entry in entries:  # a loop, not a comprehension: one call less before the create
            names.append(entry.name)
        outcomes = []
        for entry, result in zip(entries, create_plain_snacks(fd, names, fixes), strict=True):
            if result is True:
                outcomes.append(Outcome(entry, Status.CREATED))
            elif result is False:
                outcomes.append(_ensure(fd, entry, False, None, fixes))
            else:
                outcomes.append(Outcome(entry, Status.FAILED, error=result))
        return outcomes
    finally:
        if not kept:
            os.close(fd)


def settle(fd: int, outcome: Outcome, dry_run: bool, recorder: Recorder | None = None) -> Outcome:
    """An entry found in place (PRESENT) or a wrong kind or target in its place (CONFLICT): compare its declared
    aspects with the disk and put back those `enforce` covers (not in a dry run); other outcomes as they are.
    With a `recorder`, a pruning spec's file rewritten whole is in the ownership record before it replaces the
    old one (it is ours, as the old one was)."""
    entry = outcome.entry
    snack = entry.snack
    if outcome.status is Status.CONFLICT:
        if outcome.blocked:
            return outcome
        aspect = "target" if outcome.kind is Kind.SYMLINK and snack.type == "symlink" else "type"
        if aspect not in snack.enforce or dry_run:
            return outcome
    elif outcome.status is not Status.PRESENT:
        return outcome
    try:
        aspects = drift_at(fd, entry.name, snack)
    except OSError:
        return outcome  # gone or unreadable meanwhile: the event that follows looks again
    enforced, reported = split(snack, aspects)
    if not enforced or dry_run:
        return outcome._replace(drift=tuple(aspects)) if outcome.status is Status.PRESENT else outcome
    record = None
    if recorder is not None and _recorded(entry):

        def record(identity: os.stat_result) -> None:
            recorder.record_before_publish([(entry.path, identity, entry.spec.path)])

    try:
        displaced = correct(fd, entry.name, snack, enforced, record)
    except OSError as error:
        return Outcome(entry, Status.FAILED, error=error, drift=tuple(aspects))
    with contextlib.suppress(OSError):
        reported = [a for a in drift_at(fd, entry.name, snack) if not a.enforced_by(snack)]
    return Outcome(entry, Status.CORRECTED, drift=tuple(reported), corrected=tuple(enforced), reason=displaced)


def squatter(directory_fd: int, entry: Entry) -> str:
    """Our create lost the race for the name (EEXIST): `created by nobody` if another user than us or the declared
    owner took it, else "". Only asked on that rare path (one lstat)."""
    try:
        uid = os.lstat(entry.name, dir_fd=directory_fd).st_uid
    except OSError:
        return ""
    return "" if uid in (os.geteuid(), entry.snack.owner) else f"created by {user_name(uid)}"


def _recorded(entry: Entry) -> bool:
    """A file of a pruning spec: recorded in the ownership record before its name appears."""
    return entry.spec.prune and entry.snack.type == "file"


def _look(fd: int, entry: Entry) -> Outcome:
    """What stands in the entry's place: present, a conflict, or nothing (WOULD_CREATE)."""
    snack = entry.snack
    try:
        kind = kind_of(os.lstat(entry.name, dir_fd=fd).st_mode)
        target = os.readlink(entry.name, dir_fd=fd) if kind is Kind.SYMLINK and snack.type == "symlink" else None
    except FileNotFoundError:
        return Outcome(entry, Status.WOULD_CREATE)
    except OSError as error:
        return Outcome(entry, Status.FAILED, error=error)
    if kind is not EXPECTED[snack.type]:
        return Outcome(entry, Status.CONFLICT, kind=kind)
    if target is not None and target != snack.target:
        return Outcome(entry, Status.CONFLICT, kind=kind, reason=target_detail(target, snack.target))
    return Outcome(entry, Status.PRESENT)


def _create(fd: int, entry: Entry, recorder: Recorder | None = None, fixes: PlainFixes | None = None) -> Outcome:
    try:
        created = create_snack(fd, entry.name, entry.snack, fixes)
    except OSError as error:
        return Outcome(entry, Status.FAILED, error=error)
    if not created:
        return Outcome(entry, Status.PRESENT, reason=squatter(fd, entry))
    if recorder is not None and entry.spec.prune and entry.snack.type != "file":  # made in one call: recorded now
        with contextlib.suppress(OSError):
            recorder.record_before_publish([(entry.path, os.lstat(entry.name, dir_fd=fd), entry.spec.path)])
    return Outcome(entry, Status.CREATED)


def _missing_plain(
    shape: Shape, wanted: Mapping[str, Entry], observed: Mapping[str, Kind], *, dry_run: bool, recorder: Recorder | None
) -> tuple[list[Entry], Mapping[str, Snack]]:
    """A directory whose snacks are all plain and all missing (a cold start, a mass deletion): their entries,
    created in one batch without a plan nor an action each. Any other directory: nothing, and the snacks to plan:
    all of them, or in a directory of plain snacks (`shape`: Desired.shape) those not found as a file (plan() has
    nothing to say of a plain snack that is there). A pruning spec's snacks are recorded first: planned."""
    snacks = _snacks_of(wanted)
    if not shape.plain:
        return [], snacks
    if not dry_run and not (shape.pruning and recorder is not None) and snacks.keys().isdisjoint(observed):
        return entries_of(snacks.values()), {}
    file = Kind.FILE
    return [], {name: snack for name, snack in snacks.items() if observed.get(name) is not file}


def _judged(judge: Callable[[Snack], bool]) -> Callable[[Snack], bool]:
    """`judge` asked again only when the Traits differ from the last snack's (100,000 plain snacks share one)."""
    last: list[Traits | bool | None] = [None, False]

    def judged(snack: Snack) -> bool:
        traits = snack.traits
        if traits is not last[0]:
            last[0], last[1] = traits, judge(snack)
        return last[1] is True

    return judged


def _snacks_of(wanted: Mapping[str, Entry]) -> Mapping[str, Snack]:
    """The snacks of a directory's entries: its own table's, nothing made (100,000 entries are made only when
    an outcome needs one)."""
    if isinstance(wanted, Table):
        return wanted.snacks
    return {name: entry.snack for name, entry in wanted.items()}


def _created_plain(fd: int, missing: list[Entry]) -> list[Outcome]:
    """Create the missing plain snacks in one tight loop; their outcomes in the spec's order."""
    results = create_plain_snacks(fd, [entry.name for entry in missing])
    created, present, failed = Status.CREATED, Status.PRESENT, Status.FAILED
    return [
        Outcome(entry, created)
        if result is True
        else Outcome(entry, present, reason=squatter(fd, entry))
        if result is False
        else Outcome(entry, failed, error=result)
        for entry, result in zip(missing, results, strict=True)
    ]


def _create_plain(fd: int, outcomes: list[Outcome | None], plain: list[tuple[int, Entry]]) -> None:
    """Create the plain snacks (`plain`: their places in `outcomes`) in one tight loop: the burst path."""
    made = _created_plain(fd, [entry for _, entry in plain])
    for (index, _), outcome in zip(plain, made, strict=True):
        outcomes[index] = outcome


def _create_recorded(
    fd: int, outcomes: list[Outcome | None], owned: list[tuple[int, Entry]], recorder: Recorder
) -> None:
    """Create files of pruning specs (`owned`: their places in `outcomes`) so that each is in the ownership record on
    disk before its name appears: every temp file first (its inode becomes the file's), then one record write for
    them all, then the links. A file whose name was taken meanwhile, or whose link failed, is forgotten again."""
    staged: list[Staged | Outcome] = []
    for _, entry in owned:
        try:
            staged.append(stage(fd, entry.snack))
        except OSError as error:
            staged.append(Outcome(entry, Status.FAILED, error=error))
    identities = [
        (e.path, item.identity, e.spec.path)
        for (_, e), item in zip(owned, staged, strict=True)
        if isinstance(item, Staged)
    ]
    if identities:
        recorder.record_before_publish(identities)
    for (index, entry), item in zip(owned, staged, strict=True):
        if isinstance(item, Outcome):
            outcomes[index] = item
            continue
        try:
            published = publish(fd, item, entry.name)
        except OSError as error:
            recorder.forget(entry.path)
            outcomes[index] = Outcome(entry, Status.FAILED, error=error)
            continue
        if published:
            outcomes[index] = Outcome(entry, Status.CREATED)
        else:
            recorder.forget(entry.path)
            outcomes[index] = Outcome(entry, Status.PRESENT, reason=squatter(fd, entry))
