"""Every snack directory exists and is watched: create, watch, re-arm when replaced, back off when impossible."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from loguru import logger

from snackwatch.backoff import BackoffPolicy, Change, Health
from snackwatch.chase import BlockedPath, WalkRules
from snackwatch.desired import Desired
from snackwatch.errors import error_text
from snackwatch.passwalk import PassWalk
from snackwatch.text import name_list
from snackwatch.watch import Armed, Blocked


class Watches(Protocol):
    """What the armer needs of a watcher: watch exactly these directories."""

    def arm(
        self, snack_dirs: Iterable[str], spec_dirs: Iterable[str], rules: Mapping[str, WalkRules] | None = None
    ) -> Armed: ...


class DirectoryArmer:
    """Keeps every snack directory present and watched; directories that cannot be are retried with backoff."""

    def __init__(
        self,
        watcher: Watches,
        spec_dirs: Callable[[], Iterable[str]],
        backoff: BackoffPolicy = BackoffPolicy(),
        *,
        dry_run: bool = False,
        after_arm: Callable[[], None] | None = None,
    ) -> None:
        self.watcher = watcher
        self.spec_dirs = spec_dirs  # watched too (the same watcher hears spec edits)
        self.retry = Health(backoff)  # keyed by directory
        self.dry_run = dry_run
        self.after_arm = after_arm  # the watcher's fd may have changed (a fallback to polling)
        self.would_create: set[str] = set()  # dry run: missing directories already told
        self.told: set[str] = set()  # directories whose failure was logged: their recovery is told too
        self.blocked: set[str] = set()  # directories the safe walk refuses now (their conflict is told by a look)

    def next_due(self) -> float | None:
        return self.retry.next_due()

    @property
    def has_failing(self) -> bool:
        return self.retry.has_failing

    def arm(self, desired: Desired, now: float) -> set[str]:
        """Make sure every snack directory exists and is watched; returns the directories re-watched (replaced).

        A directory the safe walk refuses (a symlink it would not follow, a file, another user's directory) is
        retried with backoff but not logged here: the conflict line names what is in the way, once."""
        failures: dict[str, str] = {}
        blocked: set[str] = set()
        with PassWalk() as walk:
            for directory in desired.directories:
                try:
                    if not self.dry_run:
                        os.close(desired.open_directory(directory, create=True, walk=walk))
                except BlockedPath as error:
                    failures[directory] = str(error)
                    blocked.add(directory)
                except OSError as error:
                    failures[directory] = error_text(error)
        armed = self.watcher.arm(desired.roots, self.spec_dirs(), desired.rules)
        if self.after_arm is not None:
            self.after_arm()
        for directory, problem in armed.failures.items():
            if self.dry_run and isinstance(problem, FileNotFoundError):  # we would have made it: say so once
                if directory not in self.would_create:
                    self.would_create.add(directory)
                    logger.bind(event="would_create_directory", directory=directory).info(
                        "dry run: would create directory {}", directory
                    )
                continue
            if isinstance(problem, Blocked):
                blocked.add(directory)
            failures.setdefault(directory, error_text(problem))
        self.blocked = blocked
        for directory, reason in failures.items():
            _, change = self.retry.failed(directory, now, reason)
            if change is Change.STARTED_FAILING and directory not in blocked:
                self.told.add(directory)
                logger.bind(event="pantry_unwatchable", directory=directory).error(
                    "cannot create or watch {}: {}; retrying with backoff", directory, reason
                )
        wanted = set(desired.directories)
        for directory in [d for d in self.retry.snacks if d not in failures]:
            recovered = self.retry.present(directory, now) is Change.RECOVERED
            if recovered and directory in wanted and directory in self.told:
                logger.bind(event="pantry_recovered", directory=directory).info("{} is watched again", directory)
            self.told.discard(directory)
            self.retry.clear(directory)
        return armed.readded

    def check(self, desired: Desired, gone: set[str], now: float) -> set[str]:
        """Some directory vanished or was replaced, or a retry is due: re-arm. Returns the directories that need a
        look of their own (lost, replaced, watched again, or newly refused by the safe walk, whose conflict the look
        tells): not everything, and nothing for a retry that fails again (its conflict or failure was told when it
        began)."""
        if not gone and not self.retry.pop_due(now):
            return set()
        missing = {d for d in gone if d in desired.files and not os.path.isdir(d)}
        failing_before, blocked_before = set(self.retry.snacks), self.blocked
        readded = self.arm(desired, now)
        failing = set(self.retry.snacks)
        newly_blocked = self.blocked - blocked_before  # e.g. a parent swapped for a symlink: a look tells the conflict
        lost = sorted(missing | (readded & gone) | (gone & failing) - failing_before)
        if lost:
            logger.bind(event="pantry_gone", directories=lost).warning(
                "{} {} removed, moved or mounted over: recreating {} if needed, re-arming watches",
                name_list(lost),
                "was" if len(lost) == 1 else "were",
                "it" if len(lost) == 1 else "them",
            )
        return set(lost) | readded | (failing_before - failing) | newly_blocked
