"""The daemon's loop in-process: real parts on real directories, a scripted watcher and an injected clock."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from snackwatch.chase import WalkRules
from snackwatch.daemon import Daemon, Signals
from snackwatch.dirty import DirtySet, Mark
from snackwatch.notify import Notifier
from snackwatch.parts import Options, Parts
from snackwatch.watch import Armed


class FakeWatcher:
    """A watcher that hears nothing by itself: tests mark what it would have seen (watchfiles' MockRustNotify)."""

    backend = "fake"

    def __init__(self, dirty: DirtySet) -> None:
        self.dirty = dirty
        self.armed: list[set[str]] = []
        self.attributes = False
        self.relevant: Mapping[str, Container[str]] = {}
        self.enforced: Mapping[str, Collection[str]] = {}
        self.scans: set[str] = set()
        self.fd: int | None = None  # a pipe's read end, for read pacing
        self.meaningful = True
        self.noise_per_read = 0  # events each read brings that mean nothing (read pacing counts them)
        self.noise = 0
        self.resync_interval: float | None = None
        self.queued: list[tuple[str, str]] = []  # removals the next read brings (read_brings)

    def track(self, relevant: Mapping[str, Container[str]]) -> None:
        self.relevant = relevant

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None:
        pass

    def track_enforced(self, enforced: Mapping[str, Collection[str]]) -> None:
        self.enforced = enforced

    def watch_attributes(self, on: bool) -> None:
        self.attributes = on

    def storm_scans(self, now: float) -> set[str]:
        scans, self.scans = self.scans, set()
        return scans

    def next_due(self) -> float | None:
        return None

    def arm(
        self, snack_dirs: Iterable[str], spec_dirs: Iterable[str], rules: Mapping[str, WalkRules] | None = None
    ) -> Armed:
        self.armed.append(set(snack_dirs))
        missing = [d for d in [*snack_dirs, *spec_dirs] if not os.path.isdir(d)]  # as a real watch would fail
        return Armed(failures={d: FileNotFoundError(2, "No such file or directory", d) for d in missing})

    def fileno(self) -> int | None:
        return self.fd

    def read_events(self, lone: list[tuple[str, str]] | None = None) -> bool:
        """As the inotify source: a read of removals alone goes to `lone` when the loop offers it, else is marked."""
        if self.fd is not None:
            os.read(self.fd, 4096)
        self.noise += self.noise_per_read
        queued, self.queued = self.queued, []
        if queued and lone is not None:
            lone.extend(queued)
            return True
        if queued:
            self.dirty.mark_snacks(set(queued))
        return self.meaningful or bool(queued)

    def noise_heard(self) -> int:
        return self.noise

    def close(self) -> None:
        pass

    # --- what a test says the kernel saw ---------------------------------------------------------

    def removed(self, directory: Path, *names: str) -> None:
        self.dirty.mark_snacks({(str(directory), name) for name in names})

    def read_brings(self, directory: Path, *names: str) -> None:
        """The next read of the watcher's fd brings these removals, and nothing else (a lone deletion)."""
        self.queued += [(str(directory), name) for name in names]

    def changed(self, directory: Path, *names: str) -> None:
        """Enforced names written or chmod'ed in place (IN_CLOSE_WRITE, IN_ATTRIB)."""
        for name in names:
            self.dirty.mark(Mark.CHANGED, str(directory), name)

    def mark(self, mark: Mark, directory: Path | str = "", name: str = "") -> None:
        self.dirty.mark(mark, str(directory), name)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Loop:
    """One daemon, started, driven turn by turn."""

    daemon: Daemon
    parts: Parts
    watcher: FakeWatcher
    clock: Clock
    pantry: Path
    sent: list[str] = field(default_factory=list)  # sd_notify datagrams, when a socket was asked for
    socket: socket.socket | None = None

    def turn(self, advance: float = 0.0, ready: set[int] | None = None) -> None:
        self.clock.now += advance
        self.daemon.turn(ready or set())

    def until_idle(self, limit: float = 600.0) -> None:
        """Turn at each moment a part asks for, until none does (or `limit` seconds of injected time pass)."""
        start = self.clock.now
        while (due := self.parts.next_due()) is not None and due - start < limit:
            self.clock.now = max(self.clock.now, due)
            self.daemon.turn(set())

    def notifications(self) -> list[str]:
        assert self.socket is not None
        self.socket.setblocking(False)
        while True:
            try:
                self.sent.append(self.socket.recv(4096).decode())
            except BlockingIOError:
                return self.sent

    def close(self) -> None:
        self.daemon.stop()
        if self.socket is not None:
            self.socket.close()


def start_loop(spec: Path, options: Options = Options(), *, notify: Path | None = None) -> Loop:
    """Build the real parts around a FakeWatcher and a Clock, and run the daemon's start (first pass, READY)."""
    clock = Clock()
    fake: list[FakeWatcher] = []

    def watcher(dirty: DirtySet) -> FakeWatcher:
        fake.append(FakeWatcher(dirty))
        return fake[0]

    receiver = None
    notifier = None
    if notify is not None:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(notify))
        notifier = Notifier({"NOTIFY_SOCKET": str(notify)})
    parts = Parts.real(spec, options, watcher=watcher, notifier=notifier, clock=clock)
    daemon = Daemon(parts, Signals(parts.dirty.wake))
    daemon.start()
    return Loop(daemon, parts, fake[0], clock, spec.parent / "pantry", socket=receiver)
