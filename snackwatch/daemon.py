"""The loop: wait for dirty marks, spec changes, due retries or signals; triage them; reconcile; report.

The daemon is the composition root. Each part owns its state and says when it next needs the loop:
the ledger (outcomes, health, fights), the spec reloader, the directory armer, the state writer and the
notifier (sd_notify watchdog). The loop sleeps until the earliest of those, or until an fd is ready.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from loguru import logger

from snackwatch import __version__
from snackwatch.arming import DirectoryArmer
from snackwatch.backoff import BackoffPolicy, FightPolicy
from snackwatch.desired import Desired, Entry
from snackwatch.dirty import DirtySet, Mark
from snackwatch.ledger import Ledger
from snackwatch.lock import SpecLock
from snackwatch.mounts import MountTable
from snackwatch.neighbours import warn_about_neighbours
from snackwatch.notify import Notifier
from snackwatch.plan import name_list
from snackwatch.prune import Pruner
from snackwatch.reads import WatchReads
from snackwatch.reconcile import reconcile_all, reconcile_directory, reconcile_names
from snackwatch.reload import SPEC_SETTLE, SpecReloader
from snackwatch.resync import Resync
from snackwatch.spec import RESERVED_PREFIX
from snackwatch.specset import SpecSet
from snackwatch.state import STATUS_VERSION, status_path
from snackwatch.state_writer import StateWriter
from snackwatch.watcher import Watcher

__all__ = ["SPEC_SETTLE", "Daemon", "Options"]

OVERFLOW_LOG_INTERVAL = 10.0
STATUS_LISTED = 1000  # status lists every snack up to this many; past it, the ones with something to say


@dataclass(frozen=True, kw_only=True)
class Options:
    """How `snackwatch run` behaves; grouped so tests and the CLI build it the same way."""

    dry_run: bool = False
    watcher: str = "auto"
    resync: float | None = None
    metrics_file: Path | None = None
    metrics_mode: int = 0o644
    backoff: BackoffPolicy = BackoffPolicy()
    fight: FightPolicy = FightPolicy()


class Daemon:
    """Keeps every spec's files in their desired state until stopped."""

    def __init__(self, config: Path, options: Options = Options()) -> None:
        self.stopping = False
        self.reload_asked = False  # SIGHUP, for the reloader
        self.dirty = DirtySet()
        self._install_signals()  # first: a signal during a long load (100k snacks) is queued, not fatal
        self.specs = SpecSet.load(config, strict=False)
        self.config = self.specs.config
        self.options = options
        self.mounts = MountTable()
        self.poller = select.poll()
        self.poller.register(self.dirty.read_fd, select.POLLIN)
        self.mounts.register(self.poller)
        self.notifier = Notifier()
        self.watcher = Watcher(self.dirty, options.watcher, ignore_prefix=RESERVED_PREFIX)
        self.reads = WatchReads(self.poller, self.watcher.fileno)
        self.resync = Resync(options.resync, options.backoff, lambda: self.watcher.resync_interval)
        self.watcher.track(self.specs.desired.relevant_names())
        self.watcher.track_specs(self.specs.spec_names())
        self.pruner = Pruner(self.config)
        self.state = StateWriter(
            self.status,
            status_path(self.config),
            metrics=(options.metrics_file, options.metrics_mode),
            save_owned=self.pruner.save,
        )
        self.ledger = Ledger(
            self.specs.desired,
            options.backoff,
            options.fight,
            on_created=self._created,
            on_change=self.state.changed,
        )
        self.reloader = SpecReloader(self.specs, on_change=self.state.changed)
        self.armer = DirectoryArmer(
            self.watcher,
            self.specs.watched_dirs,
            options.backoff,
            dry_run=options.dry_run,
            after_arm=self.reads.sync,
        )
        self.reloading = False  # RELOADING=1 sent, READY=1 not yet
        self.overflow_logged_at: float | None = None
        self.sorted_directories: tuple[Desired | None, list[str]] = (None, [])
        self.only_held = False  # the last batch's removals were all of snacks held back (fight or backoff)
        self.started = time.time()

    @property
    def desired(self) -> Desired:
        return self.specs.desired

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        lock = SpecLock(self.config)
        try:
            now = time.monotonic()
            self._arm(now)  # watches before the first reconcile: no deletion is missed
            self.ledger.hold_lines()  # what the first pass did is told after the start line
            self._full_pass(now, "start")
            self._log_start()
            warn_about_neighbours(self.config, self.desired)
            self.ledger.release_lines()
            self.reloader.start(now)
            self._prune(confirmed=self.pruner.take_confirmation())
            self.resync.due(now, None)  # schedules the first periodic pass, if any
            self._sorted_directories()  # now, not on the first mount change (100k directories: ~50 ms)
            _settle_memory()
            self.state.write()
            self.notifier.ready(self._status_line())
            self.notifier.start_watchdog(time.monotonic())
            while not self.stopping:
                self._guarded_step(self._wait(self._next_deadline()))
        finally:
            self.notifier.stopping()
            self.watcher.close()
            self.dirty.close()
            self.mounts.close()
            self.state.write(stopped=True)
            lock.release()
            logger.bind(event="stop").info(
                "snackwatch stopped ({} repairs, {} created)", self.ledger.repairs, self.ledger.created
            )
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
            self.reload_asked = True
            self.dirty.wake()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _next_deadline(self) -> float | None:
        deadlines = [
            self.ledger.next_due(),
            self.armer.next_due(),
            self.reloader.next_due(),
            self.state.next_due(),
            self.notifier.next_due(),
            self.resync.next_due(),
            self.reads.next_due(),
            self.watcher.next_due(),
        ]
        pending = [deadline for deadline in deadlines if deadline is not None]
        return min(pending) if pending else None

    def _wait(self, deadline: float | None) -> set[int]:
        """Sleep until an fd is ready or the deadline passes (None: no timeout, so idle costs nothing)."""
        timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
        return {fd for fd, _ in self.poller.poll(timeout)}

    def _guarded_step(self, ready: set[int]) -> None:
        try:
            events = self.reads.ready(ready)
            meaningful = self.watcher.read_events() if events else True
            if self.mounts.fd is not None and self.mounts.fd in ready:
                self._mounts_changed()
            if self._step(time.monotonic()):
                self.resync.succeeded()
            if events and (not meaningful or self.only_held):
                self.reads.idle_read(time.monotonic())
        except Exception:  # no exception ever kills the daemon: log it, resync soon (with backoff)
            delay = self.resync.failed(time.monotonic())
            logger.opt(exception=True).bind(event="internal_error").error(
                "unexpected error while reconciling; continuing, full resync in {:.1f} s", delay
            )

    # --- one turn of the loop: triage ---------------------------------------------------------

    def _step(self, now: float) -> bool:
        """One turn; True if it ran a full pass."""
        batch = self.dirty.take()
        if self.stopping:
            return False
        batch.scan |= self.watcher.storm_scans(now)  # directories in a storm are scanned, not heard
        if batch.names or batch.gone or batch.scan or batch.marks:
            logger.bind(event="batch").opt(lazy=True).debug(
                "events: {} removed, {} directories gone or replaced, {} to scan whole, marks {}",
                lambda: ", ".join(f"{d}/{n}" for d, n in sorted(batch.names)[:10]) or "none",
                lambda: len(batch.gone),
                lambda: len(batch.scan),
                lambda: ", ".join(sorted(mark.value for mark in batch.marks)) or "none",
            )
        self.reads.resume_if_due(now)
        self.notifier.tick(now)
        if self.reload_asked:
            self.reload_asked = False
            self.reloader.request()
        if Mark.SPEC in batch.marks:
            self.reloader.changed(now, batch.spec_writes)
        full_pass = self._reload(now)
        gone = batch.gone | self._nested_directories(batch.names)
        full_pass = self.armer.check(self.desired, gone, now) or full_pass
        if Mark.OVERFLOW in batch.marks:
            self._overflowed(now)
            self.reloader.lost_track()
            self.reloader.changed(now)
            full_pass = "overflow resync"
        full_pass = self.resync.due(now, full_pass)
        if Mark.NUDGE in batch.marks:
            self.ledger.nudge(now)
        if full_pass:
            self._full_pass(now, full_pass)
            self.ledger.skip_due(now)
        else:
            held = self.ledger.health.held(now) if batch.scan else set()
            for directory in sorted(batch.scan):  # a burst: one scan of the directory beats per-name repairs
                logger.bind(event="burst", directory=directory).debug("a burst in {}: scanning it whole", directory)
                outcomes = reconcile_directory(
                    self.desired,
                    directory,
                    dry_run=self.options.dry_run,
                    recorder=self.pruner,
                    held=held,
                )
                self.ledger.fold(outcomes, now, "deleted or moved away")
            todo = self.ledger.deleted(batch.names, now)
            self.only_held = bool(batch.names) and not todo and not batch.scan  # a fight in its backoff
            self._repair(now, todo, "deleted or moved away")
            self._repair(now, self.ledger.due(now), "retry")
        self.watcher.watch_attributes(self.ledger.health.has_failing or self.armer.retry.has_failing)
        self.state.write_if_due(now)
        self.notifier.status(self._status_line())
        return full_pass is not None

    def _mounts_changed(self) -> None:
        """Retry failures (a remount may have fixed them); re-check only directories a (un)mount covers."""
        covered, specs, said = self.mounts.recheck(self._sorted_directories(), self.specs.watched_dirs())
        self.dirty.mark(Mark.NUDGE, "", "")
        for directory in covered | specs:
            self.dirty.mark(Mark.GONE, directory, "")
        for directory in specs:
            self.dirty.mark(Mark.SPEC, directory, "")
        logger.bind(event="mounts").debug(
            "mount table changed ({}): re-checking {} directories", said, len(covered | specs)
        )

    def _sorted_directories(self) -> list[str]:
        """The snack directories, sorted (for mount points), computed once per desired state."""
        if self.sorted_directories[0] is not self.desired:
            self.sorted_directories = (self.desired, sorted(self.desired.directories))
        return self.sorted_directories[1]

    def _nested_directories(self, names: Iterable[tuple[str, str]]) -> set[str]:
        """A removed or replaced entry that is one of our nested directories: treat the directory as gone."""
        children = self.desired.children
        return {os.path.join(d, n) for d, n in names if n in children.get(d, ())}

    def _overflowed(self, now: float) -> None:
        # A mass deletion can overflow the queue several times in a row: one line per burst, not per overflow.
        if self.overflow_logged_at is None or now - self.overflow_logged_at > OVERFLOW_LOG_INTERVAL:
            logger.bind(event="overflow").warning("inotify queue overflowed (events were lost): running a full resync")
        self.overflow_logged_at = now

    def _repair(self, now: float, todo: dict[str, list[Entry]], trigger: str) -> None:
        for directory, entries in todo.items():
            names = [entry.name for entry in entries]
            logger.bind(event="repair", directory=directory).debug(
                "targeted repair in {} ({}): {}", directory, trigger, name_list(names)
            )
            outcomes = reconcile_names(
                self.desired, directory, names, dry_run=self.options.dry_run, recorder=self.pruner
            )
            self.ledger.fold(outcomes, now, trigger)

    def _full_pass(self, now: float, trigger: str) -> None:
        logger.bind(event="full_pass").debug(
            "full pass over {} directories: {}", len(self.desired.directories), trigger
        )
        outcomes = reconcile_all(self.desired, dry_run=self.options.dry_run, recorder=self.pruner)
        self.ledger.fold(outcomes, now, trigger, everything=True)

    def _created(self, entry: Entry, info: os.stat_result) -> None:
        """A file created for a pruning spec: the pruner records it."""
        self.pruner.record_created(entry.path, info, entry.spec.path)

    # --- specs and directories ------------------------------------------------------------------

    def _reload(self, now: float) -> str | None:
        """Re-read the specs if due; the full pass's trigger if a new good state was taken."""
        if self.reloader.requested and not self.reloading:
            self.reloading = True
            self.notifier.reloading()
        reloaded = self.reloader.due(now)
        if reloaded is None:
            return None
        self.watcher.track_specs(self.specs.spec_names())  # a spec symlink may lead elsewhere now
        trigger = None
        if reloaded.desired is not None:
            self.ledger.spec_applied(reloaded.desired, now)
            self.watcher.track(reloaded.desired.relevant_names())
            self._arm(now)
            self._prune(confirmed=self.pruner.take_confirmation())
            _settle_memory()
            trigger = "spec reload"
        elif reloaded.forced and self.pruner.take_confirmation():
            self._prune(confirmed=True)
        if reloaded.forced:
            self.reloading = False
            self.notifier.ready(self._status_line())
        return trigger

    def _arm(self, now: float) -> None:
        self.armer.arm(self.desired, now)

    def _prune(self, *, confirmed: bool) -> None:
        if not self.options.dry_run:
            self.pruner.prune(self.desired, confirmed=confirmed)

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything `snackwatch status` and `why` show: every snack, or past STATUS_LISTED the ones with a story."""
        problems = self.reloader.problems
        snacks, everyone = self.ledger.snacks_status(time.monotonic(), STATUS_LISTED)
        return {
            "version": STATUS_VERSION,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "config": str(self.config),
            "pantries": [str(spec.pantry) for spec in self.desired.specs],
            "watcher": self.watcher.backend,
            "dry_run": self.options.dry_run,
            "spec": {"ok": not problems, "problems": sorted(problems.values())},
            "status_line": self._status_line(),
            "counts": self.ledger.counts(),
            "last_reconcile": self.ledger.last_reconcile,
            "snacks": snacks,
            "snacks_listed": "all" if everyone else f"with a story (more than {STATUS_LISTED} snacks)",
        }

    def _status_line(self) -> str:
        """The one-line summary (systemd's Status=): the ledger's counts, and the spec's state if it is not ok."""
        line = self.ledger.status_line()
        if self.options.dry_run:
            line += " (dry run)"
        problems = self.reloader.problems
        if problems:
            first = next(iter(problems.values())).split(": ", 1)[0]
            line += f"; spec invalid ({first}), last good spec in force"
        return line


def _settle_memory() -> None:
    """Move what the spec and the pass built to the collector's permanent generation: with 100k snacks, a full
    collection over those objects stalls the loop for tens of ms, and they live as long as the spec anyway."""
    gc.collect()
    gc.freeze()
