"""What every watch source shares: the marks it records, diff-based arming, and the one resolver it watches through.

A snack directory is opened by the same safe walk that creation uses (chase.open_directory: the pantry like
chase(CHASE_SAFE), nothing followed below it); the watch is added on what the walk opened, never on a path
the kernel would resolve again. So a watch cannot sit where the walk refused to go.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Collection, Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from snackwatch.chase import BlockedPath, WalkRules, open_directory
from snackwatch.dirty import Mark
from snackwatch.passwalk import PassWalk
from snackwatch.watch.roles import Roles

Sink = Callable[[Mark, str, str], None]
_FOLLOWING = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


class Marks(Protocol):
    """Where watch sources record what they saw: one mark at a time, or a batch of removed snack names."""

    def mark(self, mark: Mark, directory: str, name: str) -> None: ...

    def mark_snacks(self, names: set[tuple[str, str]]) -> None: ...


class WatchLimitError(OSError):
    """inotify cannot be had (instances or watches exhausted)."""


def is_limit(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


@dataclass
class Armed:
    """What an arm() did: directories it could not watch, and watches it re-created (directory replaced)."""

    failures: dict[str, OSError] = field(default_factory=dict)
    readded: set[str] = field(default_factory=set)


class Blocked(OSError):
    """The safe walk refused the way to a snack directory: it is not watched (nor anything it leads to)."""


def open_watched(
    directory: str,
    roles: Roles,
    roots: Mapping[str, str],
    rules: Mapping[str, WalkRules] | None = None,
    walk: PassWalk | None = None,
) -> int:
    """An fd for a directory about to be watched. A snack directory is reached by the safe walk from its pantry
    (`roots`), with that pantry's ownership rules (`rules`, per pantry: the same refusals as creation); a spec
    directory or a parent is the user's own path, followed as given."""
    if roles.snacks:
        pantry = roots.get(directory, directory)
        try:
            its_rules = (rules or {}).get(pantry)
            if walk is not None:
                return walk.open(directory, pantry, create=False, rules=its_rules)
            return open_directory(directory, pantry, create=False, rules=its_rules)
        except BlockedPath as blocked:
            raise Blocked(errno.ELOOP, f"a {blocked.kind.value} is in the way", directory) from None
    return os.open(directory, _FOLLOWING)


def resolved_path(fd: int, directory: str) -> str:
    """The path the walk arrived at (systemd's chaseat `ret_path`): what /proc says the fd is, else realpath."""
    if sys.platform.startswith("linux"):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(directory)


class Source:
    """Diff-based arming shared by both backends: a watch is kept while its directory is the same and alive.

    Inode numbers are reused, so a replaced directory can look the same to stat(): `dead` (filled when a watched
    directory goes away) is what tells a live watch from a stale one.
    """

    def __init__(self) -> None:
        self.armed: dict[str, tuple[tuple[int, int], Roles]] = {}
        self.dead: set[str] = set()
        self.roots: Mapping[str, str] = {}  # snack directory -> its pantry, for the safe walk
        self.rules: Mapping[str, WalkRules] = {}  # pantry -> the walk's ownership rules
        self.relevant: Mapping[str, Container[str]] = {}
        self.spec_names: Mapping[str, Container[str]] = {}  # per spec directory; absent: every name matters
        self.enforced: Mapping[str, Collection[str]] = {}  # per snack directory: names whose changes in place matter

    def is_spec_name(self, directory: str, name: str) -> bool:
        wanted = self.spec_names.get(directory)
        return wanted is None or name in wanted

    def track_enforced(self, enforced: Mapping[str, Collection[str]]) -> None:
        """The enforced names per snack directory (the inotify source widens those directories' masks)."""
        self.enforced = enforced

    def watch_attributes(self, on: bool) -> None:
        """Whether attribute changes in snack directories matter (the inotify source narrows its mask)."""

    def storm_scans(self, now: float) -> set[str]:
        return set()

    def next_due(self) -> float | None:
        return None

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None:
        """The names that matter in each spec directory (the inotify source watches those files' inodes)."""
        self.spec_names = spec_names

    def arm(self, wanted: dict[str, Roles]) -> Armed:
        """Failures and re-created watches are told only for primary directories (parents are best effort).
        The deepest directories first: a parent's link is steady only if the directory it names is watched."""
        result = Armed()
        for directory in [d for d in self.armed if d not in wanted]:
            self._unwatch(directory)
            del self.armed[directory]
        self._roles_changed(wanted)
        with PassWalk() as walk:
            for directory in sorted(wanted, key=lambda d: d.rstrip(os.sep).count(os.sep), reverse=True):
                roles = self._watched_steady(directory, wanted[directory])
                try:
                    fd = open_watched(directory, roles, self.roots, self.rules, walk)
                except OSError as error:
                    if directory in self.armed:  # it led somewhere else, or nowhere: not watched any more
                        self._unwatch(directory)
                        del self.armed[directory]
                    if roles.primary:
                        result.failures[directory] = error
                    continue
                try:
                    self._arm_one(directory, roles, fd, result)
                finally:
                    os.close(fd)
        return result

    def _watched_steady(self, directory: str, roles: Roles) -> Roles:
        """`roles` with only the steady links whose directory is watched now (else heard by name)."""
        steady = frozenset(
            name
            for name in roles.steady
            if (child := os.path.join(directory, name)) in self.armed and child not in self.dead
        )
        return roles if steady == roles.steady else replace(roles, steady=steady)

    def _arm_one(self, directory: str, roles: Roles, fd: int, result: Armed) -> None:
        info = os.fstat(fd)
        state = ((info.st_dev, info.st_ino), roles)
        if self.armed.get(directory) == state and directory not in self.dead:
            return
        if directory in self.armed:
            self._unwatch(directory)
            if roles.primary:
                result.readded.add(directory)
        self.dead.discard(directory)
        try:
            self._watch(directory, roles, fd)
        except WatchLimitError:
            raise
        except OSError as error:
            self.armed.pop(directory, None)
            if roles.primary:
                result.failures[directory] = error
            return
        self.armed[directory] = state

    def _roles_changed(self, wanted: dict[str, Roles]) -> None:
        """The directories and roles about to be watched (the Observer's handler reads them)."""

    def fileno(self) -> int | None:
        """An fd for the loop to poll and then call read_events(); None where watchdog's threads deliver."""
        return None

    def read_events(self, lone: list[tuple[str, str]] | None = None) -> bool:
        """Read what is pending on fileno() and mark it; never blocks. False if it was only noise. `lone`: see
        InotifySource.read_events (a source that cannot tell leaves it empty and marks everything)."""
        return False

    def noise_heard(self) -> int:
        """How many events read so far meant nothing (a running count: read pacing's input)."""
        return 0

    def _watch(self, directory: str, roles: Roles, fd: int) -> None:
        raise NotImplementedError

    def _unwatch(self, directory: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
