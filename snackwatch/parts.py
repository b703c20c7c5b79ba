"""The daemon's parts, built in one place: the real ones for `run`, any of them replaced by a fake in tests."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from snackwatch.arming import DirectoryArmer
from snackwatch.backoff import BackoffPolicy, FightPolicy
from snackwatch.chase import WalkRules
from snackwatch.choices import POLL_INTERVAL
from snackwatch.dirty import DirtySet
from snackwatch.held import HeldDirectories
from snackwatch.ledger import Ledger
from snackwatch.mounts import MountTable
from snackwatch.narrator import Narrator
from snackwatch.notify import Notifier
from snackwatch.prune import Pruner
from snackwatch.reads import WatchReads
from snackwatch.reload import SpecReloader
from snackwatch.resync import Resync
from snackwatch.spec import RESERVED_PREFIX
from snackwatch.specset import SpecSet
from snackwatch.state import status_path
from snackwatch.state_writer import StateWriter
from snackwatch.watch import Armed, Watcher


@dataclass(frozen=True, kw_only=True)
class Options:
    """How `snackwatch run` behaves; grouped so tests and the CLI build it the same way."""

    dry_run: bool = False
    watcher: str = "auto"
    resync: float | None = None
    poll_interval: float = POLL_INTERVAL  # the polling watcher's looks and full passes (chosen or the fallback)
    metrics_file: Path | None = None
    metrics_mode: int = 0o644
    backoff: BackoffPolicy = BackoffPolicy()
    fight: FightPolicy = FightPolicy()
    last_good: bool = True  # start from the saved last good spec of a file that is invalid (--no-last-good: off)


class WatchSource(Protocol):
    """What the loop needs of a watcher (watch.Watcher, or a scripted fake in tests)."""

    backend: str

    @property
    def resync_interval(self) -> float | None: ...

    def track(self, relevant: Mapping[str, Container[str]]) -> None: ...

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None: ...

    def track_enforced(self, enforced: Mapping[str, Collection[str]]) -> None: ...

    def watch_attributes(self, on: bool) -> None: ...

    def storm_scans(self, now: float) -> set[str]: ...

    def next_due(self) -> float | None: ...

    def arm(
        self, snack_dirs: Iterable[str], spec_dirs: Iterable[str], rules: Mapping[str, WalkRules] | None = None
    ) -> Armed: ...

    def fileno(self) -> int | None: ...

    def read_events(self, lone: list[tuple[str, str]] | None = None) -> bool: ...

    def noise_heard(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class Parts:
    """Everything the loop drives; each part owns its state and answers `next_due()`."""

    options: Options
    dirty: DirtySet
    specs: SpecSet
    watcher: WatchSource
    poller: select.poll
    mounts: MountTable
    reads: WatchReads
    notifier: Notifier
    resync: Resync
    pruner: Pruner
    state: StateWriter
    ledger: Ledger
    narrator: Narrator
    reloader: SpecReloader
    armer: DirectoryArmer
    clock: Callable[[], float] = time.monotonic
    held_dirs: HeldDirectories = field(default_factory=HeldDirectories)  # snack directories kept open between repairs
    guard_polled: int | None = None  # the held set's guard fd, in the poll set while something is held (wait)

    @classmethod
    def real(
        cls,
        config: Path,
        options: Options = Options(),
        *,
        dirty: DirtySet | None = None,
        watcher: Callable[[DirtySet], WatchSource] | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Parts:
        """The parts `snackwatch run` uses; `watcher` builds a stand-in for the real one (tests)."""
        dirty = dirty or DirtySet()
        specs = SpecSet.load(config, strict=False, keep_last_good=options.last_good and not options.dry_run)
        poller = select.poll()
        poller.register(dirty.read_fd, select.POLLIN)
        mounts = MountTable()
        mounts.register(poller)
        source = (
            watcher(dirty)
            if watcher is not None
            else Watcher(dirty, options.watcher, ignore_prefix=RESERVED_PREFIX, poll_interval=options.poll_interval)
        )
        source.track(specs.desired.relevant_names())
        source.track_specs(specs.spec_names())
        source.track_enforced(specs.desired.enforced_names())
        reads = WatchReads(poller, source.fileno)
        pruner = Pruner(specs.config)
        state = StateWriter(
            status_path(specs.config), metrics=(options.metrics_file, options.metrics_mode), save_owned=pruner.save
        )
        return cls(
            options=options,
            dirty=dirty,
            specs=specs,
            watcher=source,
            poller=poller,
            mounts=mounts,
            reads=reads,
            notifier=notifier or Notifier(),
            resync=Resync(options.resync, options.backoff, lambda: source.resync_interval),
            pruner=pruner,
            state=state,
            ledger=Ledger(specs.desired, options.backoff, options.fight),
            narrator=Narrator(options.backoff, options.fight),
            reloader=SpecReloader(specs, on_change=state.changed),
            armer=DirectoryArmer(
                source, specs.watched_dirs, options.backoff, dry_run=options.dry_run, after_arm=reads.sync
            ),
            clock=clock,
        )

    def next_due(self) -> float | None:
        """The earliest moment any part needs the loop (None: nothing is due, so idle costs nothing)."""
        deadlines = [
            self.ledger.next_due(),
            self.armer.next_due(),
            self.reloader.next_due(),
            self.state.next_due(),
            self.notifier.next_due(),
            self.resync.next_due(),
            self.reads.next_due(),
            self.watcher.next_due(),
            self.held_dirs.next_due(),
        ]
        return min((deadline for deadline in deadlines if deadline is not None), default=None)

    def wait(self, deadline: float | None) -> dict[int, int]:
        """Sleep until an fd is ready or the deadline passes (None: no timeout, so idle costs nothing); the ready fds
        (with their poll events: a dict is built without a Python-level call, a set comprehension is one)."""
        guard = self.held_dirs.guard if self.held_dirs.entries else None
        if guard != self.guard_polled:
            self._poll_guard(guard)
        timeout = None if deadline is None else max(0, int((deadline - self.clock()) * 1000) + 1)
        return dict(self.poller.poll(timeout))

    def _poll_guard(self, guard: int | None) -> None:
        """While something is held its guard is polled too, so what it hears (an app's saves in the pantry's parent)
        is read as it comes, not on the next deletion's path; with nothing held (idle, a flood's pause) it is not:
        nothing wakes the loop."""
        if self.guard_polled is not None:
            self.poller.unregister(self.guard_polled)
        if guard is not None:
            self.poller.register(guard, select.POLLIN)
        self.guard_polled = guard

    def close(self) -> None:
        self.held_dirs.close()
        self.watcher.close()
        self.dirty.close()
        self.mounts.close()
        self.notifier.close()
