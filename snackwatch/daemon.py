"""The loop: wait for dirty marks, spec changes, due retries or signals; coalesce; reconcile; report."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from loguru import logger

from snackwatch import __version__
from snackwatch.apply import ensure_pantry
from snackwatch.backoff import BackoffPolicy, Change, FightPolicy, Health
from snackwatch.errors import SpecError
from snackwatch.lock import SpecLock
from snackwatch.mounts import MountTable
from snackwatch.notify import Notifier
from snackwatch.reconcile import Outcome, Status, reconcile_all, reconcile_names
from snackwatch.spec import Spec, parse_spec, read_spec_bytes
from snackwatch.watcher import POLL_INTERVAL, Mark, Watcher

SPEC_SETTLE = 0.02  # editors save in several steps (rename, create, write, close): read after a quiet moment
NAMES_PER_LINE = 10
OVERFLOW_LOG_INTERVAL = 10.0  # a log line about many snacks names the first few and counts the rest


@dataclass(frozen=True)
class Options:
    """How `snackwatch run` behaves; grouped so tests and the CLI build it the same way."""

    dry_run: bool = False
    watcher: str = "auto"
    resync: float | None = None
    backoff: BackoffPolicy = BackoffPolicy()
    fight: FightPolicy = FightPolicy()


class DirtySet:
    """What watchdog's thread marked since the loop last looked, plus a pipe that wakes the loop.

    The observer thread only adds to sets here; all work happens on the loop's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._names: set[str] = set()
        self._marks: set[Mark] = set()
        self._woken = False

    def mark(self, mark: Mark, name: str) -> None:
        try:
            with self._lock:
                if mark is Mark.SNACK:
                    self._names.add(name)
                    self._marks.add(Mark.PANTRY)  # any removal may have freed space: failing repairs retry
                else:
                    self._marks.add(mark)
                if self._woken:
                    return
                self._woken = True
            self.wake()
        except Exception:  # never let anything escape into watchdog's thread
            logger.exception("could not record a filesystem event")

    def wake(self) -> None:
        """Wake the loop (safe from a signal handler: no lock)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe means the loop is awake anyway
            os.write(self._write_fd, b"!")

    def take(self) -> tuple[set[str], set[Mark]]:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            names, marks = self._names, self._marks
            self._names, self._marks = set(), set()
            self._woken = False
        return names, marks

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self._write_fd)


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_PER_LINE])
    more = len(names) - NAMES_PER_LINE
    return f"{shown} (+{more} more)" if more > 0 else shown


def _error_text(error: OSError | None) -> str:
    if error is None:
        return "unknown error"
    code = errno.errorcode.get(error.errno or 0, "")
    return f"{error.strerror or error} ({code})" if code else str(error)


@dataclass
class Counters:
    """What the daemon has done since start; feeds STATUS= and logs."""

    repairs: int = 0
    conflicts: set[str] = field(default_factory=set)


class Daemon:
    """Keeps one spec's pantry in its desired state until stopped."""

    def __init__(self, spec_path: Path, options: Options = Options()) -> None:
        self.spec_path = Path(os.path.abspath(spec_path))
        self.options = options
        self.spec_bytes = read_spec_bytes(self.spec_path)
        self.spec: Spec = parse_spec(self.spec_bytes, self.spec_path)
        self.health = Health(options.backoff, options.fight)
        self.counters = Counters()
        self.dirty = DirtySet()
        self.mounts = MountTable()
        self.poller = select.poll()
        self.poller.register(self.dirty.read_fd, select.POLLIN)
        self.mounts.register(self.poller)
        self.overflow_logged_at: float | None = None
        self.notifier = Notifier()
        self.watcher = Watcher(self.dirty.mark, options.watcher)
        self.stopping = False
        self.reload_requested = False
        self.spec_settle_at: float | None = None
        self.spec_problem = ""  # the last spec error or warning logged, so it is logged once
        self.armed_pantry: tuple[int, int] | None = None  # (dev, ino) of the watched pantry
        self.arm_retry = Health(options.backoff)  # backoff for re-arming an unwatchable pantry
        self.next_resync: float | None = None
        self.next_watchdog: float | None = None
        self.errors_in_a_row = 0
        self.error_resync_at: float | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        lock = SpecLock(self.spec_path)
        self._install_signals()
        try:
            self._arm(time.monotonic())  # watches before the first reconcile: no deletion is missed
            self._full_pass(time.monotonic())
            self._resync_due(time.monotonic())
            logger.bind(event="start", backend=self.watcher.backend).info(
                "snackwatch {} running: spec {}, pantry {}, {} snacks, watcher {}{}",
                __version__,
                self.spec_path,
                self.spec.pantry,
                len(self.spec.snacks),
                self.watcher.backend,
                " (dry run)" if self.options.dry_run else "",
            )
            self.notifier.ready(self._status_line())
            if self.notifier.watchdog_interval is not None:
                self.next_watchdog = time.monotonic()
            while not self.stopping:
                self._wait(self._next_deadline())
                self._guarded_step()
        finally:
            self.notifier.stopping()
            self.watcher.close()
            self.dirty.close()
            self.mounts.close()
            lock.release()
            logger.bind(event="stop").info("snackwatch stopped ({} repairs)", self.counters.repairs)
        return 0

    def _install_signals(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True
            self.dirty.wake()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.reload_requested = True
            self.dirty.wake()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _next_deadline(self) -> float | None:
        deadlines = [
            self.health.next_due(),
            self.arm_retry.next_due(),
            self.error_resync_at,
            self.spec_settle_at,
            self.next_resync,
            self.next_watchdog,
        ]
        pending = [deadline for deadline in deadlines if deadline is not None]
        return min(pending) if pending else None

    def _wait(self, deadline: float | None) -> None:
        timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
        for fd, _ in self.poller.poll(timeout):
            if fd == self.mounts.fd:  # the mount table changed: retry failures, check the pantry's identity
                self.dirty.mark(Mark.PANTRY, "")
                self.dirty.mark(Mark.PANTRY_GONE, "")

    def _guarded_step(self) -> None:
        try:
            if self._step(time.monotonic()):
                self.errors_in_a_row = 0  # a full pass got through: the error streak is over
        except Exception:  # no exception ever kills the daemon: log it, resync soon (with backoff)
            self.errors_in_a_row += 1
            delay = self.options.backoff.delay(self.errors_in_a_row)
            self.error_resync_at = time.monotonic() + delay
            logger.opt(exception=True).bind(event="internal_error").error(
                "unexpected error while reconciling; continuing, full resync in {:.1f} s", delay
            )

    # --- one turn of the loop ---------------------------------------------------------------

    def _step(self, now: float) -> bool:
        """One turn; True if it ran a full pass."""
        names, marks = self.dirty.take()
        if self.stopping:
            return False
        if self.next_watchdog is not None and now >= self.next_watchdog and self.notifier.watchdog_interval:
            self.notifier.watchdog()
            self.next_watchdog = now + self.notifier.watchdog_interval
        if Mark.SPEC in marks:
            self.spec_settle_at = now + SPEC_SETTLE
        full_pass = False
        if self.reload_requested:
            self.reload_requested = False
            self.spec_settle_at = None
            full_pass |= self._reload_spec(now, forced=True)
        elif self.spec_settle_at is not None and now >= self.spec_settle_at:
            self.spec_settle_at = None
            full_pass |= self._reload_spec(now, forced=False)
        if Mark.PANTRY_GONE in marks or self.arm_retry.pop_due(now):
            full_pass |= self._pantry_gone(now)
        if Mark.OVERFLOW in marks:
            self._overflowed(now)
            full_pass = True
        if self.error_resync_at is not None and now >= self.error_resync_at:
            self.error_resync_at = None
            full_pass = True
        full_pass |= self._resync_due(now)
        if Mark.PANTRY in marks:
            self.health.nudge(now)
        if full_pass:
            self._full_pass(now)
            self.health.pop_due(now)
        else:
            self._repair(now, self._deleted(names, now) + self.health.pop_due(now))
        self.notifier.status(self._status_line())
        return full_pass

    def _overflowed(self, now: float) -> None:
        # A mass deletion can overflow the queue several times in a row: one line per burst, not per overflow.
        if self.overflow_logged_at is None or now - self.overflow_logged_at > OVERFLOW_LOG_INTERVAL:
            logger.bind(event="overflow").warning("inotify queue overflowed (events were lost): running a full resync")
        self.overflow_logged_at = now

    def _resync_due(self, now: float) -> bool:
        """--resync, and always the poll interval when polling: a poll may miss a change between snapshots."""
        interval = self.options.resync
        if self.watcher.backend == "polling":
            interval = min(interval or POLL_INTERVAL, POLL_INTERVAL)
        if interval is None:
            self.next_resync = None
        elif self.next_resync is None:
            self.next_resync = now + interval
        elif now >= self.next_resync:
            self.next_resync = now + interval
            return True
        return False

    def _deleted(self, names: Iterable[str], now: float) -> list[str]:
        """Names to repair now; a snack in a fight or backoff waits for its scheduled time."""
        todo = []
        for name in names:
            if name not in self.spec.by_name:
                continue
            delay, change = self.health.deleted(name, now)
            if change is Change.FIGHT_STARTED:
                logger.bind(event="fight", snack=name).warning(
                    "{} is removed again right after each restore ({} times in a row): something else keeps "
                    "deleting it; backing off (retrying at most every {:g} s)",
                    name,
                    self.options.fight.threshold,
                    self.options.fight.backoff.cap,
                )
            elif change is Change.FIGHT_OVER:
                self._fight_over(name)
            if delay == 0:
                todo.append(name)
        return todo

    def _repair(self, now: float, names: list[str]) -> None:
        if names:
            self._handle(reconcile_names(self.spec, names, dry_run=self.options.dry_run), now)

    def _full_pass(self, now: float) -> None:
        self._handle(reconcile_all(self.spec, dry_run=self.options.dry_run), now, everything=True)

    # --- outcomes: the one place that decides what each result means ------------------------

    def _handle(self, outcomes: list[Outcome], now: float, *, everything: bool = False) -> None:
        restored: list[str] = []
        would: list[str] = []
        recovered: list[str] = []
        failing: dict[str, list[str]] = defaultdict(list)
        seen = set()
        for outcome in outcomes:
            name = outcome.snack.name
            seen.add(name)
            change: Change | None = None
            if outcome.status is Status.CREATED:
                if self.health.loggable_restore(name):
                    restored.append(name)
                self.counters.repairs += 1
                self.counters.conflicts.discard(name)
                change = self.health.repaired(name, now)
            elif outcome.status is Status.PRESENT:
                self.counters.conflicts.discard(name)
                change = self.health.present(name, now)
            elif outcome.status is Status.WOULD_CREATE:
                would.append(name)
            elif outcome.status is Status.CONFLICT:
                if name not in self.counters.conflicts:
                    self.counters.conflicts.add(name)
                    kind = outcome.kind.value if outcome.kind else "something"
                    logger.bind(event="conflict", snack=name).warning(
                        "conflict: a {} stands where snack {} should be; leaving it alone", kind, name
                    )
            else:
                _, change = self.health.failed(name, now, _error_text(outcome.error))
                if change is Change.STARTED_FAILING:
                    failing[_error_text(outcome.error)].append(name)
            if change is Change.RECOVERED:
                recovered.append(name)
            elif change is Change.FIGHT_OVER:
                self._fight_over(name)
        if everything:
            self._full_pass_present(seen, now, recovered)
        if restored:
            logger.bind(event="restored", snacks=restored).info("restored {}", _name_list(restored))
        if would:
            logger.bind(event="would_restore", snacks=would).info("dry run: would restore {}", _name_list(would))
        for error, names in failing.items():
            logger.bind(event="failing", snacks=names, error=error).error(
                "cannot restore {}: {}; retrying with backoff (up to every {:g} s)",
                _name_list(names),
                error,
                self.options.backoff.cap,
            )
        if recovered:
            logger.bind(event="recovered", snacks=recovered).info("recovered: {} restored again", _name_list(recovered))

    def _fight_over(self, name: str) -> None:
        logger.bind(event="fight_over", snack=name).info(
            "{} stays in place again: the fight is over ({} restores not logged one by one)",
            name,
            self.health.take_unlogged_restores(name),
        )

    def _full_pass_present(self, seen: set[str], now: float, recovered: list[str]) -> None:
        """After a full pass, every snack without an outcome is present: clear its failure/conflict state."""
        for name in list(self.health.snacks):
            if name not in seen and name in self.spec.by_name and self.health.present(name, now) is Change.RECOVERED:
                recovered.append(name)
        self.counters.conflicts &= seen

    # --- spec and pantry ---------------------------------------------------------------------

    def _reload_spec(self, now: float, *, forced: bool) -> bool:
        """Re-read the spec; True if a new good spec was taken (a full pass is due)."""
        if forced:
            self.notifier.reloading()
        try:
            data = read_spec_bytes(self.spec_path)
            if data == self.spec_bytes and not forced:
                if self.spec_problem:
                    logger.bind(event="spec_ok").info("{} is valid again, unchanged", self.spec_path)
                self._spec_ok()
                return False
            new = parse_spec(data, self.spec_path)
        except SpecError as error:
            self._spec_trouble(error)
            if forced:
                self.notifier.ready(self._status_line())
            return False
        old, self.spec, self.spec_bytes = self.spec, new, data
        self._spec_ok()
        added = [snack.name for snack in new.snacks if snack.name not in old.by_name]
        removed = [snack.name for snack in old.snacks if snack.name not in new.by_name]
        changes = [f"+{name}" for name in added] + [f"-{name}" for name in removed]
        if new.pantry != old.pantry:
            changes.append(f"pantry {old.pantry} -> {new.pantry}")
        logger.bind(event="reload", added=added, removed=removed).info(
            "spec reloaded: {} ({} snacks)", _name_list(changes) if changes else "no change", len(new.snacks)
        )
        self.health.forget(set(new.by_name))
        self.counters.conflicts &= set(new.by_name)
        if new.pantry != old.pantry:
            self._arm(now)
        if forced:
            self.notifier.ready(self._status_line())
        return True

    def _spec_trouble(self, error: SpecError) -> None:
        message = str(error)
        if message == self.spec_problem:
            return
        self.spec_problem = message
        if error.line is None:  # the file itself is missing or unreadable
            logger.bind(event="spec_missing").warning(
                "{}; keeping the last good spec ({} snacks) until it is back", message, len(self.spec.snacks)
            )
        else:
            logger.bind(event="spec_invalid").error(
                "{}; keeping the last good spec ({} snacks)", message, len(self.spec.snacks)
            )

    def _spec_ok(self) -> None:
        self.spec_problem = ""

    def _pantry_gone(self, now: float) -> bool:
        """The pantry vanished (or could not be watched): recreate, re-arm; True if a full pass is due."""
        try:
            stat = os.stat(self.spec.pantry)
            if (stat.st_dev, stat.st_ino) == self.armed_pantry:
                return False  # a late duplicate signal for a pantry we already re-armed
        except OSError:
            pass
        if self.armed_pantry is not None:
            logger.bind(event="pantry_gone").warning(
                "pantry {} was removed, moved or mounted over: recreating it if needed, re-arming watches",
                self.spec.pantry,
            )
        return self._arm(now)

    def _arm(self, now: float) -> bool:
        """Make sure the pantry exists and is watched; on failure, retry with backoff. True if armed."""
        self.armed_pantry = None
        try:
            if not self.options.dry_run:
                ensure_pantry(self.spec.pantry)
            self.watcher.arm(self.spec.pantry, self.spec_path.parent)
            stat = os.stat(self.spec.pantry)
        except OSError as error:
            _, change = self.arm_retry.failed("pantry", now, _error_text(error))
            if change is Change.STARTED_FAILING:
                logger.bind(event="pantry_unwatchable").error(
                    "cannot create or watch pantry {}: {}; retrying with backoff", self.spec.pantry, _error_text(error)
                )
            return True  # a full pass still runs: it reports each snack's failure
        self.armed_pantry = (stat.st_dev, stat.st_ino)
        if self.arm_retry.present("pantry", now) is Change.RECOVERED:
            logger.bind(event="pantry_recovered").info("pantry {} is watched again", self.spec.pantry)
        return True

    def _status_line(self) -> str:
        failing = len(self.health.failing())
        ok = len(self.spec.snacks) - failing - len(self.counters.conflicts)
        return (
            f"{ok}/{len(self.spec.snacks)} snacks ok, {self.counters.repairs} repairs, "
            f"{failing} failing, {len(self.counters.conflicts)} conflicts"
        )
