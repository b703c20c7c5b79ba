"""The loop: wait for dirty marks, spec changes, due retries or signals; coalesce; reconcile; report."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from loguru import logger

from snackwatch import __version__
from snackwatch.backoff import BackoffPolicy, Change, FightPolicy, Health
from snackwatch.desired import Desired, Entry
from snackwatch.dirty import DirtySet
from snackwatch.errors import SpecError
from snackwatch.lock import SpecLock
from snackwatch.mounts import MountTable
from snackwatch.notify import Notifier
from snackwatch.plan import name_list
from snackwatch.prune import Pruner
from snackwatch.reconcile import (
    BlockedPath,
    Outcome,
    Status,
    open_directory,
    reconcile_all,
    reconcile_directory,
    reconcile_names,
)
from snackwatch.specset import SpecSet
from snackwatch.state import metrics_text, status_path, write_atomically
from snackwatch.watcher import BURST, POLL_INTERVAL, Mark, Watcher

SPEC_SETTLE = 0.02  # editors save in several steps (rename, create, write, close): read after a quiet moment
STATE_SETTLE = 0.2  # status/metrics files are rewritten at most this often, and only after a change
OVERFLOW_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class Options:
    """How `snackwatch run` behaves; grouped so tests and the CLI build it the same way."""

    dry_run: bool = False
    watcher: str = "auto"
    resync: float | None = None
    metrics_file: Path | None = None
    backoff: BackoffPolicy = BackoffPolicy()
    fight: FightPolicy = FightPolicy()


def _error_text(error: OSError | None) -> str:
    if error is None:
        return "unknown error"
    code = errno.errorcode.get(error.errno or 0, "")
    return f"{error.strerror or error} ({code})" if code else str(error)


@dataclass(slots=True)
class History:
    """What happened to one snack since start: for status, why and metrics."""

    repairs: int = 0
    last_repair: float | None = None
    trigger: str = ""


@dataclass
class Counters:
    """What the daemon has done since start."""

    repairs: int = 0
    conflicts: dict[str, str] = field(default_factory=dict)  # path -> what stands there
    history: dict[str, History] = field(default_factory=dict)
    last_reconcile: float = 0.0


class Daemon:
    """Keeps every spec's files in their desired state until stopped."""

    def __init__(self, config: Path, options: Options = Options()) -> None:
        self.specs = SpecSet.load(config)
        self.config = self.specs.config
        self.options = options
        self.health = Health(options.backoff, options.fight)
        self.counters = Counters()
        self.dirty = DirtySet()
        self.mounts = MountTable()
        self.poller = select.poll()
        self.poller.register(self.dirty.read_fd, select.POLLIN)
        self.mounts.register(self.poller)
        self.watch_fd: int | None = None
        self.notifier = Notifier()
        self.watcher = Watcher(self.dirty, options.watcher)
        self.pruner = Pruner(self.config)
        self.stopping = False
        self.reload_requested = False
        self.spec_settle_at: float | None = None
        self.spec_problems: dict[Path, str] = {}  # per file: the error or warning logged, so it is logged once
        self.arm_retry = Health(options.backoff)  # backoff for directories that cannot be made or watched
        self.next_resync: float | None = None
        self.next_watchdog: float | None = None
        self.errors_in_a_row = 0
        self.error_resync_at: float | None = None
        self.overflow_logged_at: float | None = None
        self.state_write_at: float | None = None
        self.state_problem = ""
        self.started = time.time()

    @property
    def desired(self) -> Desired:
        return self.specs.desired

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        lock = SpecLock(self.config)
        self._install_signals()
        try:
            now = time.monotonic()
            self._arm(now)  # watches before the first reconcile: no deletion is missed
            self._full_pass(now, "start")
            self._prune(confirmed=self.pruner.take_confirmation())
            self._resync_due(now)
            self._log_start()
            self._write_state()
            self.notifier.ready(self._status_line())
            if self.notifier.watchdog_interval is not None:
                self.next_watchdog = time.monotonic()
            while not self.stopping:
                self._guarded_step(self._wait(self._next_deadline()))
        finally:
            self.notifier.stopping()
            self.watcher.close()
            self.dirty.close()
            self.mounts.close()
            self._write_state()
            lock.release()
            logger.bind(event="stop").info("snackwatch stopped ({} repairs)", self.counters.repairs)
        return 0

    def _log_start(self) -> None:
        pantries = ", ".join(str(spec.pantry) for spec in self.desired.specs)
        specs = str(self.config) if not self.specs.is_directory else f"{self.config} ({len(self.desired.specs)} files)"
        logger.bind(event="start", backend=self.watcher.backend).info(
            "snackwatch {} running: spec {}, pantry {}, {} snacks, watcher {}{}",
            __version__,
            specs,
            pantries,
            self.desired.count,
            self.watcher.backend,
            " (dry run)" if self.options.dry_run else "",
        )

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
            self.state_write_at,
        ]
        pending = [deadline for deadline in deadlines if deadline is not None]
        return min(pending) if pending else None

    def _wait(self, deadline: float | None) -> set[int]:
        """Sleep until an fd is ready or the deadline passes (None: no timeout, so idle costs nothing)."""
        timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
        return {fd for fd, _ in self.poller.poll(timeout)}

    def _guarded_step(self, ready: set[int]) -> None:
        try:
            if self.watch_fd is not None and self.watch_fd in ready:
                self.watcher.read_events()
            if self.mounts.fd is not None and self.mounts.fd in ready:
                self._mounts_changed()
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
        batch = self.dirty.take()
        names, gone, marks = batch.names, batch.gone, batch.marks
        if self.stopping:
            return False
        if self.next_watchdog is not None and now >= self.next_watchdog and self.notifier.watchdog_interval:
            self.notifier.watchdog()
            self.next_watchdog = now + self.notifier.watchdog_interval
        if Mark.SPEC in marks:
            self.spec_settle_at = now + SPEC_SETTLE
        full_pass: str | None = None
        if self.reload_requested:
            self.reload_requested = False
            self.spec_settle_at = None
            full_pass = self._reload(now, forced=True) or full_pass
        elif self.spec_settle_at is not None and now >= self.spec_settle_at:
            self.spec_settle_at = None
            full_pass = self._reload(now, forced=False) or full_pass
        gone |= self._nested_directories(names)
        if gone or self.arm_retry.pop_due(now):
            full_pass = self._directories_gone(now, gone) or full_pass
        if Mark.OVERFLOW in marks:
            self._overflowed(now)
            full_pass = "overflow resync"
        if self.error_resync_at is not None and now >= self.error_resync_at:
            self.error_resync_at = None
            full_pass = "resync after an error"
        if self._resync_due(now):
            full_pass = full_pass or "periodic resync"
        if Mark.NUDGE in marks:
            self.health.nudge(now)
        if full_pass:
            self._full_pass(now, full_pass)
            self.health.pop_due(now)
        else:
            names = self._without_bursts(names, batch.scan, now)
            self._repair(now, self._deleted(names, now), "deleted or moved away")
            self._repair(now, self._by_directory(self.health.pop_due(now)), "retry")
        if self.state_write_at is not None and now >= self.state_write_at:
            self._write_state()
        self.notifier.status(self._status_line())
        return full_pass is not None

    def _mounts_changed(self) -> None:
        """Retry failures (a remount may have fixed them) and check whether a directory was mounted over."""
        self.dirty.mark(Mark.NUDGE, "", "")
        for directory in self.desired.directories:
            self.dirty.mark(Mark.GONE, directory, "")

    def _nested_directories(self, names: set[tuple[str, str]]) -> set[str]:
        """A removed or replaced entry that is one of our nested directories: treat the directory as gone."""
        children = self.desired.children
        return {os.path.join(d, n) for d, n in names if n in children.get(d, ())}

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

    def _overflowed(self, now: float) -> None:
        # A mass deletion can overflow the queue several times in a row: one line per burst, not per overflow.
        if self.overflow_logged_at is None or now - self.overflow_logged_at > OVERFLOW_LOG_INTERVAL:
            logger.bind(event="overflow").warning("inotify queue overflowed (events were lost): running a full resync")
        self.overflow_logged_at = now

    def _without_bursts(self, names: set[tuple[str, str]], scan: set[str], now: float) -> set[tuple[str, str]]:
        """Repair directories hit by a burst (rm -rf of their contents) with one scan each; return the rest."""
        counts: dict[str, int] = defaultdict(int)
        for directory, _ in names:
            counts[directory] += 1
        bursts = scan | {directory for directory, count in counts.items() if count > BURST}
        for directory in sorted(bursts):
            outcomes = reconcile_directory(self.desired, directory, dry_run=self.options.dry_run)
            self._handle(outcomes, now, "deleted or moved away")
        return {(d, n) for d, n in names if d not in bursts} if bursts else names

    def _deleted(self, names: Iterable[tuple[str, str]], now: float) -> dict[str, list[Entry]]:
        """Entries to repair now, by directory; a snack in a fight or backoff waits for its scheduled time."""
        todo: dict[str, list[Entry]] = defaultdict(list)
        for directory, name in names:
            entry = self.desired.entry(directory, name)
            if entry is None:
                continue
            delay, change = self.health.deleted(entry.path, now)
            if change is Change.FIGHT_STARTED:
                logger.bind(event="fight", snack=self.desired.display(entry)).warning(
                    "{} is removed again right after each restore ({} times in a row): something else keeps "
                    "deleting it; backing off (retrying at most every {:g} s)",
                    self.desired.display(entry),
                    self.options.fight.threshold,
                    self.options.fight.backoff.cap,
                )
            elif change is Change.FIGHT_OVER:
                self._fight_over(entry)
            if delay == 0:
                todo[directory].append(entry)
        return todo

    def _by_directory(self, paths: Iterable[str]) -> dict[str, list[Entry]]:
        todo: dict[str, list[Entry]] = defaultdict(list)
        for path in dict.fromkeys(paths):
            directory, name = os.path.split(path)
            entry = self.desired.entry(directory, name)
            if entry is not None:
                todo[directory].append(entry)
        return todo

    def _repair(self, now: float, todo: dict[str, list[Entry]], trigger: str) -> None:
        for directory, entries in todo.items():
            names = [entry.name for entry in entries]
            self._handle(reconcile_names(self.desired, directory, names, dry_run=self.options.dry_run), now, trigger)

    def _full_pass(self, now: float, trigger: str) -> None:
        self._handle(reconcile_all(self.desired, dry_run=self.options.dry_run), now, trigger, everything=True)

    # --- outcomes: the one place that decides what each result means ------------------------

    def _handle(self, outcomes: list[Outcome], now: float, trigger: str, *, everything: bool = False) -> None:
        restored: list[str] = []
        would: list[str] = []
        recovered: list[str] = []
        failing: dict[str, list[str]] = defaultdict(list)
        seen = set()
        wall = time.time()
        single = len(self.desired.specs) <= 1  # Desired.display(), inlined: this loop is the burst path
        for outcome in outcomes:
            entry = outcome.entry
            path = entry.path
            shown = entry.snack.name if single else path
            if everything:
                seen.add(path)
            change: Change | None = None
            if outcome.status is Status.CREATED:
                if self.health.loggable_restore(path):
                    restored.append(shown)
                self._record_repair(outcome, wall, trigger)
                if trigger != "start":  # nothing to remember about a first creation (100k snacks: 100k states)
                    change = self.health.repaired(path, now)
            elif outcome.status is Status.PRESENT:
                self.counters.conflicts.pop(path, None)
                change = self.health.present(path, now)
            elif outcome.status is Status.WOULD_CREATE:
                would.append(shown)
            elif outcome.status is Status.CONFLICT:
                self._conflict(entry, outcome)
            else:
                _, change = self.health.failed(path, now, _error_text(outcome.error))
                if change is Change.STARTED_FAILING:
                    failing[_error_text(outcome.error)].append(shown)
            if change is Change.RECOVERED:
                recovered.append(shown)
            elif change is Change.FIGHT_OVER:
                self._fight_over(entry)
        if everything:
            self._full_pass_present(seen, now, recovered)
            self.counters.last_reconcile = wall
        if outcomes or everything:
            self._state_changed(now)
        if restored:
            logger.bind(event="restored", snacks=restored, trigger=trigger).info("restored {}", name_list(restored))
        if would:
            logger.bind(event="would_restore", snacks=would).info("dry run: would restore {}", name_list(would))
        for error, names in failing.items():
            logger.bind(event="failing", snacks=names, error=error).error(
                "cannot restore {}: {}; retrying with backoff (up to every {:g} s)",
                name_list(names),
                error,
                self.options.backoff.cap,
            )
        if recovered:
            logger.bind(event="recovered", snacks=recovered).info("recovered: {} restored again", name_list(recovered))

    def _record_repair(self, outcome: Outcome, wall: float, trigger: str) -> None:
        entry = outcome.entry
        self.counters.repairs += 1
        self.counters.conflicts.pop(entry.path, None)
        if entry.spec.prune and outcome.created is not None:
            self.pruner.owned.record(entry.path, outcome.created, entry.spec.path)
        if trigger == "start":
            return  # the first convergence is counted, not told snack by snack (100k snacks, 100k stories)
        history = self.counters.history.get(entry.path)
        if history is None:
            history = self.counters.history[entry.path] = History()
        history.repairs += 1
        history.last_repair = wall
        history.trigger = trigger

    def _conflict(self, entry: Entry, outcome: Outcome) -> None:
        kind = outcome.kind.value if outcome.kind else "something"
        if self.counters.conflicts.get(entry.path) == kind:
            return
        self.counters.conflicts[entry.path] = kind
        shown = self.desired.display(entry)
        logger.bind(event="conflict", snack=shown, path=entry.path).warning(
            "conflict: a {} stands where snack {} should be; leaving it alone", kind, shown
        )

    def _fight_over(self, entry: Entry) -> None:
        shown = self.desired.display(entry)
        logger.bind(event="fight_over", snack=shown).info(
            "{} stays in place again: the fight is over ({} restores not logged one by one)",
            shown,
            self.health.take_unlogged_restores(entry.path),
        )

    def _full_pass_present(self, seen: set[str], now: float, recovered: list[str]) -> None:
        """After a full pass, every snack without an outcome is present: clear its failure/conflict state."""
        by_path = None
        for path in list(self.health.snacks):
            if path in seen:
                continue
            if self.health.present(path, now) is Change.RECOVERED:
                by_path = by_path or self.desired.by_path()
                entry = by_path.get(path)
                recovered.append(self.desired.display(entry) if entry else path)
        for path in [path for path in self.counters.conflicts if path not in seen]:
            del self.counters.conflicts[path]

    # --- specs --------------------------------------------------------------------------------

    def _reload(self, now: float, *, forced: bool) -> str | None:
        """Re-read the specs; the full pass's trigger if a new good state was taken."""
        if forced:
            self.notifier.reloading()
        old = self.desired
        result = self.specs.reload(forced=forced, broken=set(self.spec_problems))
        for path in result.revived:
            logger.bind(event="spec_ok").info("{} is valid again, unchanged", path)
        for path in [path for path in self.spec_problems if path not in result.problems]:
            del self.spec_problems[path]
        for path, error in result.problems.items():
            self._spec_trouble(path, error)
        trigger = None
        if result.desired is not None:
            self._spec_applied(old, result.desired, result.dropped)
            self._arm(now)
            self._prune(confirmed=self.pruner.take_confirmation())
            trigger = "spec reload"
        elif forced and self.pruner.take_confirmation():
            self._prune(confirmed=True)
        if forced:
            self.notifier.ready(self._status_line())
        return trigger

    def _spec_applied(self, old: Desired, new: Desired, dropped: list[Path]) -> None:
        old_paths, new_paths = old.by_path(), new.by_path()
        added = [new.display(entry) for path, entry in new_paths.items() if path not in old_paths]
        removed = [old.display(entry) for path, entry in old_paths.items() if path not in new_paths]
        changes = [f"+{name}" for name in added] + [f"-{name}" for name in removed]
        changes += [f"pantry {spec.pantry}" for spec in new.specs if spec.pantry not in {s.pantry for s in old.specs}]
        changes += [f"dropped {path.name}" for path in dropped]
        logger.bind(event="reload", added=added, removed=removed).info(
            "spec reloaded: {} ({} snacks)", name_list(changes) if changes else "no change", new.count
        )
        self.health.forget(set(new_paths))
        for path in [path for path in self.counters.conflicts if path not in new_paths]:
            del self.counters.conflicts[path]
        self._state_changed(time.monotonic())

    def _spec_trouble(self, path: Path, error: SpecError) -> None:
        message = str(error)
        if self.spec_problems.get(path) == message:
            return
        self.spec_problems[path] = message
        self._state_changed(time.monotonic())
        kept = f"keeping the last good spec ({self.desired.count} snacks)"
        if error.line is None:  # the file itself is missing or unreadable
            logger.bind(event="spec_missing", spec=str(path)).warning("{}; {} until it is back", message, kept)
        else:
            logger.bind(event="spec_invalid", spec=str(path), line=error.line).error("{}; {}", message, kept)

    # --- directories ---------------------------------------------------------------------------

    def _directories_gone(self, now: float, gone: set[str]) -> str | None:
        """Some snack directory vanished, was replaced, or could not be made or watched: recreate, re-arm."""
        missing = {d for d in gone if d in self.desired.files and not os.path.isdir(d)}
        retrying = bool(self.arm_retry.snacks)
        readded = self._arm(now)
        lost = sorted(missing | (readded & gone))
        for directory in lost:
            logger.bind(event="pantry_gone", directory=directory).warning(
                "{} was removed, moved or mounted over: recreating it if needed, re-arming watches", directory
            )
        if lost or readded or retrying:
            return "directory recreated"
        return None  # a late duplicate signal, or a mount change that did not touch our directories

    def _arm(self, now: float) -> set[str]:
        """Make sure every snack directory exists and is watched; retry failures with backoff.

        Returns the directories whose watch had to be re-created (they were replaced).
        """
        failures: dict[str, str] = {}
        for directory in self.desired.directories:
            try:
                if not self.options.dry_run:
                    os.close(open_directory(directory, self.desired.roots[directory], create=True))
            except BlockedPath as blocked:
                failures[directory] = f"a {blocked.kind.value} is in the way"
            except OSError as error:
                failures[directory] = _error_text(error)
        armed = self.watcher.arm(self.desired.directories, self.specs.watched_dirs())
        self._poll_watcher()
        for directory, problem in armed.failures.items():
            failures.setdefault(directory, _error_text(problem))
        for directory, reason in failures.items():
            _, change = self.arm_retry.failed(directory, now, reason)
            if change is Change.STARTED_FAILING:
                logger.bind(event="pantry_unwatchable", directory=directory).error(
                    "cannot create or watch {}: {}; retrying with backoff", directory, reason
                )
        for directory in [d for d in self.arm_retry.snacks if d not in failures]:
            if self.arm_retry.present(directory, now) is Change.RECOVERED:
                logger.bind(event="pantry_recovered", directory=directory).info("{} is watched again", directory)
            del self.arm_retry.snacks[directory]
        return armed.readded

    def _poll_watcher(self) -> None:
        """Poll the watcher's fd on this thread (the inotify backend has one; a fallback may change it)."""
        fd = self.watcher.fileno()
        if fd != self.watch_fd:
            if self.watch_fd is not None:
                self.poller.unregister(self.watch_fd)
            if fd is not None:
                self.poller.register(fd, select.POLLIN)
            self.watch_fd = fd

    # --- status ---------------------------------------------------------------------------------

    def _prune(self, *, confirmed: bool) -> None:
        if not self.options.dry_run:
            self.pruner.prune(self.desired, confirmed=confirmed)

    def _state_changed(self, now: float) -> None:
        if self.state_write_at is None:
            self.state_write_at = now + STATE_SETTLE

    def _write_state(self) -> None:
        """Status, metrics and ownership files; a failure is logged once per cause and never stops the loop."""
        self.state_write_at = None
        status = self.status()
        try:
            write_atomically(status_path(self.config), _json(status))
            if self.options.metrics_file is not None:
                write_atomically(self.options.metrics_file, metrics_text(status))
            self.pruner.owned.save()
        except OSError as error:
            problem = f"{error.filename}: {_error_text(error)}"
            if problem != self.state_problem:
                self.state_problem = problem
                logger.bind(event="state_unwritable").warning("cannot write state file {}", problem)
        else:
            self.state_problem = ""

    def status(self) -> dict[str, object]:
        """Everything `snackwatch status` and `why` show: only snacks with a story are listed one by one."""
        paths = set(self.counters.history) | set(self.counters.conflicts) | set(self.health.failing())
        snacks = {}
        for path in sorted(paths):
            entry = self.desired.entry(*os.path.split(path))  # O(1): no table of every snack
            if entry is not None:
                snacks[path] = self._snack_status(entry)
        return {
            "version": 1,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "config": str(self.config),
            "watcher": self.watcher.backend,
            "spec": {"ok": not self.spec_problems, "problems": sorted(self.spec_problems.values())},
            "counts": self._counts(),
            "last_reconcile": self.counters.last_reconcile,
            "snacks": snacks,
        }

    def _snack_status(self, entry: Entry) -> dict[str, object]:
        path = entry.path
        history = self.counters.history.get(path) or History()
        state = self.health.snacks.get(path)
        info: dict[str, object] = {
            "name": entry.snack.name,
            "spec": str(entry.spec.path),
            "line": entry.snack.line,
            "state": "ok",
            "repairs": history.repairs,
            "last_repair": history.last_repair,
            "trigger": history.trigger,
        }
        if path in self.counters.conflicts:
            info.update(state="conflict", reason=f"a {self.counters.conflicts[path]} is in its place")
        elif state is not None and state.failures:
            retry = time.time() + max(0.0, (state.held_until or 0.0) - time.monotonic())
            info.update(state="failing", reason=state.error, next_retry=retry)
        if state is not None and state.fighting:
            info["fighting"] = True
        return info

    def _counts(self) -> dict[str, int]:
        failing = len(self.health.failing())
        conflicts = len(self.counters.conflicts)
        return {
            "snacks": self.desired.count,
            "ok": self.desired.count - failing - conflicts,
            "failing": failing,
            "conflicts": conflicts,
            "repairs": self.counters.repairs,
        }

    def _status_line(self) -> str:
        counts = self._counts()
        return (
            f"{counts['ok']}/{counts['snacks']} snacks ok, {counts['repairs']} repairs, "
            f"{counts['failing']} failing, {counts['conflicts']} conflicts"
        )


def _json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))  # compact: json's C encoder (indent= is pure Python)
