"""The watcher the loop talks to: picks a backend (inotify, the platform Observer, polling), falls back to polling
when inotify limits are hit, and passes on what matters in each directory.

Both sources keep one contract: record what was seen on a `Marks` object (which directory, which name) and do
nothing else; the daemon decides what it means.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping

from loguru import logger

from snackwatch.chase import WalkRules
from snackwatch.choices import BACKENDS, POLL_INTERVAL
from snackwatch.watch.inotify import HAVE_INOTIFY, InotifySource
from snackwatch.watch.observer import ObserverSource
from snackwatch.watch.roles import roles_for
from snackwatch.watch.source import Armed, Marks, Source, WatchLimitError

_SETTLE_TRIES = 3


class Watcher:
    """Watches snack directories and spec directories with the chosen backend, falling back to polling."""

    def __init__(
        self, marks: Marks, backend: str = "auto", *, ignore_prefix: str = "", poll_interval: float = POLL_INTERVAL
    ) -> None:
        """`ignore_prefix`: names starting with it are our own temp files and never marked; `poll_interval`: how
        often polling (chosen, or the fallback) looks, with a full pass."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown watcher backend {backend!r}")
        if backend == "auto":
            backend = "inotify" if HAVE_INOTIFY else "observer"
        self.marks = marks
        self.backend = backend
        self.ignore_prefix = ignore_prefix
        self.poll_interval = poll_interval
        self.relevant: Mapping[str, Container[str]] = {}
        self.spec_names: Mapping[str, Container[str]] = {}
        self.enforced: Mapping[str, Collection[str]] = {}
        self.attributes = False
        self.roots: Mapping[str, str] = {}  # snack directory -> its pantry, for the safe walk
        self.rules: Mapping[str, WalkRules] = {}  # pantry -> the walk's ownership rules (as for creation)
        self._source: Source | None = None

    def track(self, relevant: Mapping[str, Container[str]]) -> None:
        """The names that matter in each snack directory: removals of other names are noise (a nudge at most)."""
        self.relevant = relevant
        if self._source is not None:
            self._source.relevant = relevant

    def track_specs(self, spec_names: Mapping[str, Container[str]]) -> None:
        """The names that matter in each spec directory: changes to other files there are not spec changes."""
        self.spec_names = spec_names
        if self._source is not None:
            self._source.track_specs(spec_names)

    def track_enforced(self, enforced: Mapping[str, Collection[str]]) -> None:
        """The enforced names in each snack directory: their writes and attribute changes are heard (only there)."""
        self.enforced = enforced
        if self._source is not None:
            self._source.track_enforced(enforced)

    def watch_attributes(self, on: bool) -> None:
        """Hear permission changes in snack directories (only while something fails: a chmod storm costs nothing)."""
        if on != self.attributes:
            self.attributes = on
            if self._source is not None:
                self._source.watch_attributes(on)

    def storm_scans(self, now: float) -> set[str]:
        """Directories whose removals are not heard one by one during a storm: scan them now (see STORM_NOISE)."""
        return self._source.storm_scans(now) if self._source is not None else set()

    def next_due(self) -> float | None:
        """When a storm-muted directory is next due for its scan (None: no storm)."""
        return self._source.next_due() if self._source is not None else None

    @property
    def resync_interval(self) -> float | None:
        """How often the daemon must run a full pass on this backend: polling snapshots can miss a change."""
        return self.poll_interval if self.backend == "polling" else None

    def arm(
        self, snack_dirs: Iterable[str], spec_dirs: Iterable[str], rules: Mapping[str, WalkRules] | None = None
    ) -> Armed:
        """Watch exactly these directories, re-creating any watch whose directory was replaced or died. A mapping
        of snack directories gives each one's pantry: it is reached by the safe walk from there (else from "/"),
        with that pantry's `rules`, so a watch never sits where creation would refuse to go."""
        if not isinstance(snack_dirs, Mapping):
            snack_dirs = list(snack_dirs)  # looked at twice (see _arm_settled)
        spec_dirs = list(spec_dirs)
        self.roots = snack_dirs if isinstance(snack_dirs, Mapping) else {}
        self.rules = rules or {}
        try:
            return self._arm_settled(snack_dirs, spec_dirs)
        except WatchLimitError as error:
            if self.backend == "polling":
                raise
            logger.bind(event="watch_limit").warning(
                "inotify limit reached ({}); falling back to polling every {:g} s "
                "(raise fs.inotify.max_user_watches / max_user_instances to fix)",
                error.strerror,
                self.poll_interval,
            )
            self.close()
            self.backend = "polling"
            return self._ensure_source().arm(roles_for(snack_dirs, spec_dirs))

    def _arm_settled(self, snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> Armed:
        """Arm, then look again: a directory made, moved or re-pointed on the way while the watches were being
        added (before a parent heard it) changes the roles; armed again until they hold (a few times at most)."""
        wanted = roles_for(snack_dirs, spec_dirs)
        armed = self._ensure_source().arm(wanted)
        for _ in range(_SETTLE_TRIES):
            again = roles_for(snack_dirs, spec_dirs)
            if again == wanted:
                break
            wanted, more = again, self._ensure_source().arm(again)
            armed.failures = more.failures
            armed.readded |= more.readded
        return armed

    def _ensure_source(self) -> Source:
        if self._source is None:
            inotify = self.backend == "inotify"
            self._source = (
                InotifySource(self.marks, self.ignore_prefix)
                if inotify
                else ObserverSource(self.marks.mark, self.backend, self.ignore_prefix, self.poll_interval)
            )
            self._source.relevant = self.relevant
            self._source.spec_names = self.spec_names
            self._source.track_enforced(self.enforced)
            self._source.watch_attributes(self.attributes)
        self._source.roots = self.roots
        self._source.rules = self.rules
        return self._source

    def fileno(self) -> int | None:
        return self._source.fileno() if self._source is not None else None

    def read_events(self, lone: list[tuple[str, str]] | None = None) -> bool:
        """Read what the kernel queued (inotify backend); False if it was only noise (nothing to repair). `lone`
        (an empty list): a read of only removals of declared snack names puts them there instead of marking them."""
        return self._source.read_events(lone) if self._source is not None else False

    def noise_heard(self) -> int:
        """Events read so far that meant nothing (a running count; a new source starts again from 0)."""
        return self._source.noise_heard() if self._source is not None else 0

    def close(self) -> None:
        """Stop watching and join watchdog's threads."""
        if self._source is not None:
            self._source.close()
            self._source = None
