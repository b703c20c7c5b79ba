"""The loop: wait until an fd is ready or a part is due; decide the turn (turn.py); act on it through the parts.

The daemon is handed its parts (parts.py): the ledger (outcomes, health, fights) and its narrator, the spec
reloader, the directory armer, the state writer and the notifier (sd_notify watchdog). The loop sleeps until the
earliest of their `next_due()`, or until an fd is ready.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path
from types import FrameType

from loguru import logger

from snackwatch import __version__
from snackwatch.desired import Desired, Entry
from snackwatch.dirty import DirtySet, Mark
from snackwatch.lock import SpecLock
from snackwatch.mounts import under
from snackwatch.neighbours import warn_about_neighbours
from snackwatch.parts import Options, Parts
from snackwatch.reconcile import Outcome, reconcile_all, reconcile_directory, reconcile_names
from snackwatch.reload import SPEC_SETTLE
from snackwatch.status_view import daemon_status, summary
from snackwatch.text import name_list
from snackwatch.trigger import Trigger
from snackwatch.turn import Turn, plan_turn

__all__ = ["SPEC_SETTLE", "Daemon", "Options", "Signals", "run_daemon"]

OVERFLOW_LOG_INTERVAL = 10.0


class Signals:
    """SIGTERM/SIGINT ask to stop, SIGHUP to reload: flags the loop reads, and a wake-up for its poll."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self.wake = wake
        self.stopping = False
        self.reload_asked = False

    def install(self) -> None:
        """Installed before anything slow (the lock, a 100k-snack spec): a signal meanwhile is queued, not fatal."""

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    def reload(self) -> None:
        self.reload_asked = True
        self.wake()

    def take_reload(self) -> bool:
        asked, self.reload_asked = self.reload_asked, False
        return asked


def run_daemon(config: Path, options: Options, *, after_signals: Callable[[], None] = lambda: None) -> int:
    """`snackwatch run`: signals first (`after_signals` then replays any that came earlier), then the one-daemon
    lock, then the specs and the loop."""
    dirty = DirtySet()
    signals = Signals(dirty.wake)
    signals.install()
    after_signals()
    lock = SpecLock(Path(os.path.abspath(config)))
    try:
        return Daemon(Parts.real(config, options, dirty=dirty), signals).run()
    finally:
        lock.release()


class Daemon:
    """Keeps every spec's files in their desired state until stopped."""

    def __init__(self, parts: Parts, signals: Signals | None = None) -> None:
        self.parts = parts
        self.options = parts.options
        self.signals = signals or Signals(parts.dirty.wake)
        self.reloading = False  # RELOADING=1 sent, READY=1 not yet
        self.overflow_logged_at: float | None = None
        self.sorted_directories: tuple[Desired | None, list[str]] = (None, [])
        self.only_held = False  # the last batch's removals were all of snacks held back (fight or backoff)
        self.started = parts.ledger.wall()

    @property
    def desired(self) -> Desired:
        return self.parts.specs.desired

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        try:
            self.start()
            while not self.signals.stopping:
                self.turn(self._wait(self.parts.next_due()))
        finally:
            self.stop()
        return 0

    def start(self) -> None:
        """Watches first (no deletion after start is missed), the first pass, then READY=1."""
        p = self.parts
        now = p.clock()
        p.armer.arm(self.desired, now)
        p.narrator.hold_lines()  # what the first pass did is told after the start line
        self._full_pass(now, Trigger.START)
        _log_start(p, self.options.dry_run)
        warn_about_neighbours(p.specs.config, self.desired)
        p.narrator.release_lines()
        p.reloader.start(now)
        self._prune(confirmed=p.pruner.take_confirmation())
        p.resync.due(now, None)  # schedules the first periodic pass, if any
        self._sorted_directories()  # now, not on the first mount change (100k directories: ~50 ms)
        _settle_memory()
        p.state.write(self.status())
        p.notifier.ready(self.status_line())
        p.notifier.start_watchdog(p.clock())

    def stop(self) -> None:
        p = self.parts
        p.notifier.stopping()
        p.close()
        p.state.write(self.status(), stopped=True)
        logger.bind(event="stop").info(
            "snackwatch stopped ({} repairs, {} created)", p.ledger.repairs, p.ledger.created
        )

    def _wait(self, deadline: float | None) -> set[int]:
        """Sleep until an fd is ready or the deadline passes (None: no timeout, so idle costs nothing)."""
        timeout = None if deadline is None else max(0, int((deadline - self.parts.clock()) * 1000) + 1)
        return {fd for fd, _ in self.parts.poller.poll(timeout)}

    def turn(self, ready: set[int]) -> None:
        """One turn of the loop, guarded: no exception ever kills the daemon (a full resync follows, backed off)."""
        p = self.parts
        try:
            events = p.reads.ready(ready)
            meaningful = p.watcher.read_events() if events else True
            if p.mounts.fd is not None and p.mounts.fd in ready:
                self._mounts_changed()
            if self.step(p.clock()):
                p.resync.succeeded()
            if events and (not meaningful or self.only_held):
                p.reads.idle_read(p.clock())
        except Exception:
            delay = p.resync.failed(p.clock())
            logger.opt(exception=True).bind(event="internal_error").error(
                "unexpected error while reconciling; continuing, full resync in {:.1f} s", delay
            )

    # --- one turn: decide, then act -------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Decide a turn from what was marked, then act on it; True if it ran a full pass."""
        p = self.parts
        batch = p.dirty.take()
        if self.signals.stopping:
            return False
        turn = plan_turn(
            batch,
            reload_asked=self.signals.take_reload(),
            storm_scans=p.watcher.storm_scans(now),
            children=self.desired.children,
        )
        _log_turn(turn)
        p.reads.resume_if_due(now)
        p.notifier.tick(now)
        if turn.reload_asked:
            p.reloader.request()
        if turn.spec_changed:
            p.reloader.changed(now, turn.spec_writes)
        reloaded = self._reload(now)
        affected = p.armer.check(self.desired, set(turn.rearm), now)
        if turn.overflow:
            self._overflowed(now)
        trigger = p.resync.due(now, turn.full_pass(reloaded))
        if turn.nudge:
            p.ledger.nudge(now)
        if trigger is not None:
            self._full_pass(now, trigger)
            p.ledger.skip_due(now)
        else:
            swept = self._sweep(now, affected, turn.scan)
            removed = [(d, n) for d, n in turn.removed if d not in swept]  # a sweep looked at those already
            todo, changes = p.ledger.deleted(removed, now)
            p.narrator.tell(changes, self.desired, now)
            changed = [(d, n) for d, n in turn.changed if d not in swept]
            to_check, changes = p.ledger.deleted(changed, now, changed=True)
            p.narrator.tell(changes, self.desired, now)
            held = bool(removed or changed) and not todo and not to_check
            self.only_held = held and not turn.scan  # a fight in its backoff
            self._repair(now, todo, Trigger.DELETED)
            self._repair(now, to_check, Trigger.CHANGED, changed=True)
            self._repair(now, p.ledger.due(now), Trigger.RETRY)
        p.watcher.watch_attributes(p.ledger.has_failing or p.armer.has_failing)
        p.state.write_if_due(now, self.status)
        p.notifier.status(self.status_line())
        return trigger is not None

    def _sweep(self, now: float, affected: set[str], scan: Collection[str]) -> set[str]:
        """Directories the armer re-armed (and every snack directory below them) are looked at whole; so are
        directories in a burst or a storm, leaving snacks held back by a backoff or a fight to their schedule.
        Returns the directories looked at."""
        swept = under(affected, self._sorted_directories()) if affected else set()
        if swept:  # one fold, so one line per kind of outcome for everything the loss took
            outcomes = [o for directory in sorted(swept) for o in self._reconcile_directory(directory)]
            self._fold(outcomes, now, Trigger.DIRECTORY, swept=swept)
        held = self.parts.ledger.held(now) if scan else set()
        for directory in sorted(set(scan) - swept):
            logger.bind(event="burst", directory=directory).debug("a burst in {}: scanning it whole", directory)
            self._fold(self._reconcile_directory(directory, held, owners=False), now, Trigger.DELETED)
        return swept | set(scan)

    def _reconcile_directory(self, directory: str, held: Collection[str] = (), *, owners: bool = True) -> list[Outcome]:
        p, dry_run = self.parts, self.options.dry_run
        return reconcile_directory(
            self.desired, directory, dry_run=dry_run, recorder=p.pruner, held=held, owners=owners
        )

    def _mounts_changed(self) -> None:
        """Retry failures (a remount may have fixed them); re-check only directories a (un)mount covers."""
        p = self.parts
        covered, specs, said = p.mounts.recheck(self._sorted_directories(), p.specs.watched_dirs())
        p.dirty.mark(Mark.NUDGE, "", "")
        for directory in covered | specs:
            p.dirty.mark(Mark.GONE, directory, "")
        for directory in specs:
            p.dirty.mark(Mark.SPEC, directory, "")
        logger.bind(event="mounts").debug(
            "mount table changed ({}): re-checking {} directories", said, len(covered | specs)
        )

    def _sorted_directories(self) -> list[str]:
        """The snack directories, sorted (for mount points), computed once per desired state."""
        if self.sorted_directories[0] is not self.desired:
            self.sorted_directories = (self.desired, sorted(self.desired.directories))
        return self.sorted_directories[1]

    def _overflowed(self, now: float) -> None:
        self.parts.reloader.lost_track()
        self.parts.reloader.changed(now)
        # A mass deletion can overflow the queue several times in a row: one line per burst, not per overflow.
        if self.overflow_logged_at is None or now - self.overflow_logged_at > OVERFLOW_LOG_INTERVAL:
            logger.bind(event="overflow").warning("inotify queue overflowed (events were lost): running a full resync")
        self.overflow_logged_at = now

    def _repair(self, now: float, todo: dict[str, list[Entry]], trigger: Trigger, *, changed: bool = False) -> None:
        for directory, entries in todo.items():
            names = [entry.name for entry in entries]
            logger.bind(event="repair", directory=directory).debug(
                "targeted repair in {} ({}): {}", directory, trigger.value, name_list(names)
            )
            outcomes = reconcile_names(
                self.desired,
                directory,
                names,
                dry_run=self.options.dry_run,
                recorder=self.parts.pruner,
                changed=changed,
            )
            self._fold(outcomes, now, trigger)

    def _full_pass(self, now: float, trigger: Trigger) -> None:
        logger.bind(event="full_pass").debug(
            "full pass over {} directories: {}", len(self.desired.directories), trigger.value
        )
        outcomes = reconcile_all(self.desired, dry_run=self.options.dry_run, recorder=self.parts.pruner)
        self._fold(outcomes, now, trigger, everything=True)

    def _fold(
        self,
        outcomes: list[Outcome],
        now: float,
        trigger: Trigger,
        *,
        everything: bool = False,
        swept: Collection[str] = (),
    ) -> None:
        p = self.parts
        changes = p.ledger.fold(outcomes, now, trigger, everything=everything, swept=swept)
        p.narrator.tell(changes, self.desired, now)
        if outcomes or everything:
            p.state.changed(now)

    # --- specs ------------------------------------------------------------------------------------

    def _reload(self, now: float) -> bool:
        """Re-read the specs if due; True if a new desired state was taken."""
        p = self.parts
        if p.reloader.requested and not self.reloading:
            self.reloading = True
            p.notifier.reloading()
        reloaded = p.reloader.due(now)
        if reloaded is None:
            return False
        p.watcher.track_specs(p.specs.spec_names())  # a spec symlink may lead elsewhere now
        if reloaded.desired is not None:
            kept = p.ledger.spec_applied(reloaded.desired)
            p.narrator.forget(kept)
            p.state.changed(now)
            p.watcher.track(reloaded.desired.relevant_names())
            p.watcher.track_enforced(reloaded.desired.enforced_names())
            p.armer.arm(self.desired, now)
            self._prune(confirmed=p.pruner.take_confirmation())
            _settle_memory()
        elif reloaded.forced and p.pruner.take_confirmation():
            self._prune(confirmed=True)
        if reloaded.forced:
            self.reloading = False
            p.notifier.ready(self.status_line())
        return reloaded.desired is not None

    def _prune(self, *, confirmed: bool) -> None:
        if not self.options.dry_run:
            self.parts.pruner.prune(self.desired, confirmed=confirmed)

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything `snackwatch status` and `why` show."""
        return daemon_status(self.parts, self.started)

    def status_line(self) -> str:
        """The one-line summary (systemd's Status=)."""
        return summary(self.parts)


def _log_start(parts: Parts, dry_run: bool) -> None:
    specs, desired = parts.specs, parts.specs.desired
    pantries = ", ".join(str(spec.pantry) for spec in desired.specs)
    named = str(specs.config) if not specs.is_directory else f"{specs.config} ({len(desired.specs)} files)"
    backend = parts.watcher.backend
    logger.bind(event="start", backend=backend).info(
        "snackwatch {} running: spec {}, pantry {}, {} snacks, watcher {}{}",
        __version__,
        named,
        pantries,
        desired.count,
        backend,
        " (dry run)" if dry_run else "",
    )


def _log_turn(turn: Turn) -> None:
    if turn.removed or turn.rearm or turn.scan or turn.overflow or turn.spec_changed:
        logger.bind(event="batch").opt(lazy=True).debug(
            "events: {} removed, {} directories gone or replaced, {} to scan whole, overflow {}, spec {}",
            lambda: ", ".join(f"{d}/{n}" for d, n in sorted(turn.removed)[:10]) or "none",
            lambda: len(turn.rearm),
            lambda: len(turn.scan),
            lambda: turn.overflow,
            lambda: turn.spec_changed,
        )


def _settle_memory() -> None:
    """Move what the spec and the pass built to the collector's permanent generation: with 100k snacks, a full
    collection over those objects stalls the loop for tens of ms, and they live as long as the spec anyway."""
    gc.collect()
    gc.freeze()
