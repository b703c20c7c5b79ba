"""The loop: wait until an fd is ready or a part is due; decide the turn (turn.py); act on it through the parts.

The daemon is handed its parts (parts.py): the ledger (outcomes, health, fights) and its narrator, the spec
reloader, the directory armer, the state writer and the notifier (sd_notify watchdog). The loop sleeps until the
earliest of their `next_due()`, or until an fd is ready.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path
from types import FrameType

from loguru import logger

from snackwatch import __version__
from snackwatch.desired import Delta, Desired, Entry
from snackwatch.dirty import DirtySet, Mark
from snackwatch.hands import Hands
from snackwatch.lock import SpecLock
from snackwatch.memory import Collector, give_back
from snackwatch.neighbours import warn_about_neighbours
from snackwatch.parts import Options, Parts
from snackwatch.reload import SPEC_SETTLE
from snackwatch.status_view import StatusRows, daemon_status, summary
from snackwatch.trigger import Trigger
from snackwatch.turn import Turn, plan_turn

__all__ = ["SPEC_SETTLE", "Daemon", "Options", "Signals", "run_daemon"]

OVERFLOW_LOG_INTERVAL = 10.0
# The hot path's debug lines, bound once: a filtered-out line then costs a level check, not two new loggers.
_BATCH_LOG = logger.bind(event="batch")


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
    collector = Collector()
    collector.pause()  # parse, merge and first pass without the collector: start() collects and freezes once
    try:
        parts = Parts.real(config, options, dirty=dirty)
    except BaseException:
        collector.resume()
        lock.release()
        raise
    try:
        return Daemon(parts, signals, collector).run()
    finally:
        lock.release()


class Daemon:
    """Keeps every spec's files in their desired state until stopped."""

    def __init__(self, parts: Parts, signals: Signals | None = None, collector: Collector | None = None) -> None:
        self.parts = parts
        self.options = parts.options
        self.signals = signals or Signals(parts.dirty.wake)
        self.reloading = False  # RELOADING=1 sent, READY=1 not yet
        self.overflow_logged_at: float | None = None
        self.hands = Hands(parts)  # what a turn decided, done: reconcile, then fold
        self.started = parts.ledger.wall()
        self.rows = StatusRows()  # the status file's per-snack rows, encoded once per change
        self.collector = collector or Collector()  # paused while a spec loads and is first applied
        self.deadline: float | None = None  # what the loop waits for (run): the earliest part's next_due()

    @property
    def desired(self) -> Desired:
        return self.parts.specs.desired

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        try:
            self.start()
            self.deadline = self.parts.next_due()
            while not self.signals.stopping:
                if self.turn(self.parts.wait(self.deadline)):  # else it was noise alone: no deadline moved
                    self.deadline = self.parts.next_due()
        finally:
            self.stop()
        return 0

    def start(self) -> None:
        """Watches first (no deletion after start is missed), the first pass, then READY=1."""
        p = self.parts
        now = p.clock()
        p.armer.arm(self.desired, now)
        p.narrator.hold_lines()  # what the first pass did is told after the start line
        self.hands.full_pass(now, Trigger.START, owners=False)  # squatted names are looked for once ready
        give_back()  # what loading freed, to the system (the RSS a big spec's daemon keeps), and again once ready
        _log_start(p, self.options.dry_run)
        warn_about_neighbours(p.specs.config, self.desired)
        p.narrator.release_lines()
        p.reloader.start(now)
        self._prune(confirmed=p.pruner.take_confirmation())
        p.resync.due(now, None)  # schedules the first periodic pass, if any
        self.hands.sorted_directories()  # now, not on the first mount change (100k directories: ~50 ms)
        self.collector.settle(collect=False)
        p.state.write(*self.rows.file(p, self.started))
        p.notifier.ready(self.status_line())
        p.notifier.start_watchdog(p.clock())
        self.hands.owners_look(p.clock(), Trigger.START)  # a report only: after READY, before the first event
        give_back()

    def stop(self) -> None:
        p = self.parts
        p.notifier.stopping()
        self.collector.resume()  # a start that failed half-way may have left it paused
        p.close()
        status, text = self.rows.file(p, self.started)
        p.state.write(status, text, stopped=True)
        logger.bind(event="stop").info(
            "snackwatch stopped ({} repairs, {} created)", p.ledger.repairs, p.ledger.created
        )

    def turn(self, ready: Collection[int]) -> bool:
        """One turn, guarded: no exception kills the daemon (a backed-off full resync follows). Noise costs a read:
        False then, unless it started pacing or a storm (the deadlines to wait for are the same). A read of only
        snack removals in a turn with nothing else in it is restored first (Hands.restore_lone), then the step."""
        p = self.parts
        try:
            others, meaningful = len(ready), True
            if p.guard_polled is not None and p.guard_polled in ready:  # saves beside a held path: read as they come
                dropped, others = p.held_dirs.catch_up(), others - 1
                if not others and not _past(self.deadline, p.clock()):
                    return dropped  # a turn of its own: not noise, not a storm; the release moves only if dropped
            if p.reads.fd in ready:
                signals, deadline = self.signals, self.deadline
                lone: list[tuple[str, str]] | None = (
                    None  # anything else in this turn (a mark, a signal, a due part, paced reads: a storm, a dry run)
                    if others > 1
                    or p.dirty.pending
                    or signals.stopping
                    or signals.reload_asked
                    or self.options.dry_run
                    or p.reads.resume_at is not None
                    or (deadline is not None and deadline <= p.clock())
                    else []  # else a read of only snack removals is restored before the turn (Hands.restore_lone)
                )
                meaningful = p.watcher.read_events(lone)
                if lone and not self.hands.restore_lone(lone, p.clock()):
                    p.dirty.mark_snacks(set(lone))  # not provably lone (a fight, a backoff...): the normal turn
                p.reads.after_read(p.clock(), p.watcher.noise_heard())
                if not meaningful and others == 1 and not p.dirty.pending and not _past(self.deadline, p.clock()):
                    return p.reads.pacing() or p.watcher.next_due() is not None
            if p.mounts.fd is not None and p.mounts.fd in ready:
                _mounts_changed(p, self.hands.sorted_directories())
            if self.step(p.clock(), drain=p.dirty.read_fd in ready or not ready):
                p.resync.succeeded()
        except Exception:
            if self.collector.paused:
                self.collector.settle()
            delay = p.resync.failed(p.clock())
            logger.opt(exception=True).bind(event="internal_error").error(
                "unexpected error while reconciling; continuing, full resync in {:.1f} s", delay
            )
        return True

    # --- one turn: decide, then act -------------------------------------------------------------

    def step(self, now: float, *, drain: bool = True) -> bool:
        """Decide a turn from what was marked, then act on it (deletions first when they can); True: a full pass."""
        p = self.parts
        batch = p.dirty.take(drain=drain)
        if self.signals.stopping:
            return False
        turn = plan_turn(
            batch,
            reload_asked=self.signals.take_reload(),
            storm_scans=p.watcher.storm_scans(now),
            children=self.desired.children,
        )
        _log_turn(turn)
        removed: Collection[tuple[str, str]] = turn.removed
        if removed and turn.repairs_first(reload_due=p.reloader.is_due(now)):
            self.hands.deleted(removed, now)
            removed = ()
        self._tick(now)
        if turn.reload_asked:
            p.reloader.request()
        if turn.spec_changed:
            p.reloader.changed(now, turn.spec_writes)
        reloaded, looks = self._reload(now)
        affected = p.armer.check(self.desired, set(turn.rearm), now)
        if turn.rearm or affected:
            p.held_dirs.drop_all()  # a directory gone, replaced or watched again: every held one is walked to again
        if turn.overflow:
            self._overflowed(now)
        trigger = p.resync.due(now, turn.full_pass(reloaded))
        if turn.nudge:
            p.ledger.nudge(now)
        if trigger is not None:
            self.hands.full_pass(now, trigger)
            p.ledger.skip_due(now)
        else:
            swept = self.hands.sweep(now, affected, turn.scan)
            self.hands.looked(now, looks)  # what a reload patched in: new entries and those declared otherwise
            self.hands.deleted([(d, n) for d, n in removed if d not in swept], now)
            self.hands.changed([(d, n) for d, n in turn.changed if d not in swept], now)
            self.hands.repair(now, p.ledger.due(now), Trigger.RETRY)
        p.watcher.watch_attributes(p.ledger.has_failing or p.armer.has_failing)
        if p.specs.unsaved:
            p.specs.save_last_good()  # after the repairs: an edit is applied first
        p.state.write_if_due(now, lambda: self.rows.file(p, self.started), hold=p.dirty.pending)  # repairs first
        if p.notifier.wanted:
            p.notifier.status(self.status_line())
        if self.collector.paused:  # a reload and its full pass are done: collect once
            self.collector.settle()
        return trigger is not None

    def _tick(self, now: float) -> None:
        """Timers of parts that act on their own: paced reads resumed, idle held fds released, watchdog pings."""
        p = self.parts
        p.reads.resume_if_due(now)
        p.held_dirs.release_if_idle(now)  # held fds pin their mounts: not kept while nothing uses them
        p.notifier.tick(now)

    def _overflowed(self, now: float) -> None:
        self.parts.held_dirs.drop_all()  # events were lost: nothing held can be vouched for
        self.parts.reloader.lost_track()
        self.parts.reloader.changed(now)
        # A mass deletion can overflow the queue several times in a row: one line per burst, not per overflow.
        if self.overflow_logged_at is None or now - self.overflow_logged_at > OVERFLOW_LOG_INTERVAL:
            logger.bind(event="overflow").warning("inotify queue overflowed (events were lost): running a full resync")
        self.overflow_logged_at = now

    # --- specs ------------------------------------------------------------------------------------

    def _reload(self, now: float) -> tuple[bool, tuple[Entry, ...]]:
        """Re-read the specs if due. (True, ()) if a new desired state was merged: a full pass follows; (False,
        entries) if it was built from the old one (O(changed)): only those entries need a look."""
        p = self.parts
        if p.reloader.requested and not self.reloading:
            self.reloading = True
            p.notifier.reloading()
        if not p.reloader.is_due(now):
            return False, ()
        self.collector.pause()  # a big spec's parse, merge and full pass without it; collected once after
        reloaded = p.reloader.due(now)
        if reloaded is None:
            self.collector.resume()
            return False, ()
        p.watcher.track_specs(p.specs.spec_names())  # a spec symlink may lead elsewhere now
        if reloaded.desired is not None:
            self._take(reloaded.desired, reloaded.delta, now)
        elif reloaded.forced and p.pruner.take_confirmation():
            self._prune(confirmed=True)
        if reloaded.forced:
            self.reloading = False
            p.notifier.ready(self.status_line())
        if reloaded.delta is not None:
            return False, reloaded.delta.to_look_at()
        return reloaded.desired is not None, ()

    def _take(self, desired: Desired, delta: Delta | None, now: float) -> None:
        """A new desired state is in force: the ledger, the watches, the directories, pruning. With a `delta` the
        directories are those of the old state and only the enforced names it touches may change."""
        p = self.parts
        p.narrator.forget(p.ledger.spec_applied(desired, delta))
        p.state.changed(now)
        p.watcher.track(desired.relevant_names())
        if delta is None or any(entry.snack.enforce for entry in delta.removed + delta.to_look_at()):
            p.watcher.track_enforced(desired.enforced_names())
        if delta is None:
            p.armer.arm(desired, now)
        self._prune(confirmed=p.pruner.take_confirmation())

    def _prune(self, *, confirmed: bool) -> None:
        if not self.options.dry_run:
            self.parts.pruner.prune(self.desired, confirmed=confirmed)

    def status(self) -> dict[str, object]:
        """Everything `snackwatch status` and `why` show."""
        return daemon_status(self.parts, self.started, self.rows)

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
        _BATCH_LOG.debug("events: {}", _TurnText(turn))


class _TurnText:
    """A turn as the debug line tells it, formatted only if that line is written (the hot path pays nothing)."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    def __str__(self) -> str:
        turn = self.turn
        removed = ", ".join(f"{d}/{n}" for d, n in sorted(turn.removed)[:10]) or "none"
        return (
            f"{removed} removed, {len(turn.rearm)} directories gone or replaced, {len(turn.scan)} to scan whole, "
            f"overflow {turn.overflow}, spec {turn.spec_changed}"
        )


def _past(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now


def _mounts_changed(p: Parts, sorted_directories: list[str]) -> None:
    """Retry failures (a remount may have fixed them); re-check only directories a (un)mount covers."""
    covered, specs, said = p.mounts.recheck(sorted_directories, p.specs.watched_dirs())
    p.held_dirs.drop_all()  # the held directories watch mounts themselves; this is belt and braces
    p.dirty.mark(Mark.NUDGE, "", "")
    for directory in covered | specs:
        p.dirty.mark(Mark.GONE, directory, "")
    for directory in specs:
        p.dirty.mark(Mark.SPEC, directory, "")
    logger.bind(event="mounts").debug(
        "mount table changed ({}): re-checking {} directories", said, len(covered | specs)
    )
