"""When and how the spec is re-read: settle after an editor's save, SIGHUP on request, each problem told once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from snackwatch.desired import Delta, Desired
from snackwatch.errors import SpecBeingWritten, SpecError
from snackwatch.lastgood import applied_text
from snackwatch.lint import shown_name, spec_warnings
from snackwatch.spec import Spec
from snackwatch.specset import SpecSet, is_spec_name
from snackwatch.text import name_list

SPEC_SETTLE = 0.02  # editors save in several steps (rename, create, write, close): read after a quiet moment
MAX_SETTLE = 0.2  # ...but a busy spec directory postpones the read by at most this much
WRITE_WAIT = 5.0  # a SIGHUP while a spec is open for writing waits this long for the close, then answers


@dataclass(frozen=True)
class Reloaded:
    """One reload: whether it was asked for (SIGHUP), and the new desired state if one was taken."""

    forced: bool
    desired: Desired | None
    delta: Delta | None = None  # built from the old desired state with these changes: only they need a look


class SpecReloader:
    """Owns the spec set's reload timing and the spec problems shown in status (one log line per problem)."""

    def __init__(self, specs: SpecSet, *, on_change: Callable[[float], None] | None = None) -> None:
        self.specs = specs
        self.on_change = on_change
        self.requested = False  # set from the SIGHUP handler
        self.settle_at: float | None = None
        self.first_change: float | None = None  # of the changes not read yet: bounds the settle time
        self.writing: dict[str, float] = {}  # spec files written to and not closed yet -> since when
        self.hup_deadline: float | None = None  # a SIGHUP waiting for a writer to close its spec
        self.problems: dict[Path, str] = {}  # per file: the error or warning logged, so it is logged once
        self.warned: set[Path] = set()  # spec files whose last lint found something to say

    def start(self, now: float) -> None:
        """Tell the problems found at load (a bad file in a conf.d directory is left out, not fatal; an invalid
        file with a saved last good spec runs on that copy), and the files removed while snackwatch was stopped."""
        for path, applied in self.specs.removed.items():
            logger.bind(event="spec_removed", spec=str(path)).warning(
                "{} was removed while snackwatch was stopped: starting without it (its last good spec of {} dropped)",
                path,
                applied_text(applied),
            )
        for path, error in self.specs.problems.items():
            if path in self.specs.from_saved:
                self.problems[path] = str(error)
                logger.bind(event="spec_last_good", spec=str(path), line=error.line).warning(
                    "{}; running on the last good spec of {} ({} snacks in all)",
                    error,
                    applied_text(self.specs.from_saved[path]),
                    self.specs.desired.count,
                )
            else:
                self._trouble(path, error, now)
        self.warned = _warn(self.specs.desired.specs)

    def status_note(self) -> str:
        """What the status line adds about the specs: nothing when every file is valid and read from disk."""
        running_on = self._running_on()
        if running_on:
            return f"; {running_on}"
        if self.problems:
            first = next(iter(self.problems.values())).split(": ", 1)[0]
            return f"; spec invalid ({first}), last good spec in force"
        return ""

    def spec_status(self) -> dict[str, object]:
        """The spec part of the status file: valid or not, the problems, and whether a saved copy is in force."""
        return {
            "ok": not self.problems,
            "problems": sorted(self.problems.values()),
            "last_good": self._running_on() or None,
        }

    def _running_on(self) -> str:
        """`running on the last good spec of <time>: snacks.yaml:12: <error>` while a file runs from a saved copy."""
        for path, applied in self.specs.from_saved.items():
            problem = self.problems.get(path)
            if problem is not None:
                where = f"{path.name}{problem[len(str(path)) :]}" if problem.startswith(str(path)) else problem
                return f"running on the last good spec of {applied_text(applied)}: {where}"
        return ""

    def request(self) -> None:
        """An explicit reload (SIGHUP): safe to call from a signal handler."""
        self.requested = True

    def changed(self, now: float, writes: Mapping[str, bool] | None = None) -> None:
        """Something changed in a spec directory: read after SPEC_SETTLE of quiet (MAX_SETTLE at most), and
        never while a spec file is still open for writing (`writes`: path -> still being written)."""
        for path, writing in (writes or {}).items():
            real = os.path.realpath(path)  # a spec reached through a symlink is written where it points
            if not writing:
                self.writing.pop(real, None)
            elif self._is_spec(real):
                self.writing.setdefault(real, now)
        if self.first_change is None:
            self.first_change = now
        self.settle_at = min(now + SPEC_SETTLE, self.first_change + MAX_SETTLE)

    def lost_track(self) -> None:
        """Events were lost (overflow): forget who was writing, re-read after the settle time."""
        self.writing.clear()

    def next_due(self) -> float | None:
        if self.writing:
            return self.hup_deadline  # the close will wake the loop
        return self.settle_at

    def is_due(self, now: float) -> bool:
        """Whether due() may reload now (asked to, or a change settled): else it would do nothing."""
        settle = self.next_due()
        return self.requested or (settle is not None and settle <= now)

    def due(self, now: float) -> Reloaded | None:
        """Reload if asked to or settled; None when it is not time yet (or a spec is half-written)."""
        if self.writing:
            return self._wait_for_writer(now)
        self.hup_deadline = None
        if self.requested:
            self.requested = False
            self.settle_at = self.first_change = None
            return self._reload(now, forced=True)
        if self.settle_at is not None and now >= self.settle_at:
            self.settle_at = self.first_change = None
            return self._reload(now, forced=False)
        return None

    def _wait_for_writer(self, now: float) -> Reloaded | None:
        """A spec is open for writing: reading it now could act on half a file. A SIGHUP waits (bounded)."""
        if not self.requested:
            return None
        files = ", ".join(sorted(self.writing))
        if self.hup_deadline is None:
            self.hup_deadline = now + WRITE_WAIT
            logger.bind(event="reload_wait").info("reload requested while {} is being written: waiting for it", files)
            return None
        if now < self.hup_deadline:
            return None
        self.requested = False
        self.hup_deadline = None
        logger.bind(event="reload_wait").warning(
            "{} still open for writing after {:g} s: keeping the last good spec; it is read once closed",
            files,
            WRITE_WAIT,
        )
        return Reloaded(True, None)

    def _is_spec(self, real: str) -> bool:
        if self.specs.is_directory:
            return is_spec_name(os.path.basename(real))
        return real == os.path.realpath(self.specs.config)

    def _reload(self, now: float, *, forced: bool) -> Reloaded | None:
        old = self.specs.desired
        result = self.specs.reload(forced=forced, broken=set(self.problems))
        for path in result.revived:
            logger.bind(event="spec_ok").info("{} is valid again, unchanged", path)
        for path in [path for path in self.problems if path not in result.problems]:
            del self.problems[path]  # fixed, or back: status must say so now, not at the next SIGHUP
            if self.on_change is not None:
                self.on_change(now)
        busy = False
        for path, error in result.problems.items():
            if isinstance(error, SpecBeingWritten):  # its writer's close will bring us back
                self.writing.setdefault(os.path.realpath(path), now)
                self.problems.pop(path, None)
                busy = True
                continue
            self._trouble(path, error, now, again=forced)  # a SIGHUP is answered with the error, not "no change"
        if busy and forced:  # a SIGHUP during a write: it is answered once the writer closes the file
            self.requested, forced = True, False
            self._wait_for_writer(now)  # told now, and bounded: the loop may hear nothing more before the close
        if result.desired is None:
            if not forced and not result.problems:
                logger.bind(event="reread").debug("spec re-read: unchanged")
            return None if busy else Reloaded(forced, None)
        told = forced and not result.problems
        changed = _log_changes(old, result.desired, result.dropped, told, result.delta)
        self._lint(old, result.desired, result.delta)
        if not changed and busy and result.delta is None:
            return None  # only the busy file's old spec again: nothing to apply yet (a patched one is taken: cheap)
        return Reloaded(forced, result.desired, result.delta)

    def _lint(self, old: Desired, new: Desired, delta: Delta | None) -> None:
        """Tell lint's warnings about each spec just taken, all of them once per change of its file. A spec patched
        in O(changed) that had none and whose new snacks have none has none: its 100k names are not looked at."""
        known = {id(spec) for spec in old.specs}
        taken = [spec for spec in new.specs if id(spec) not in known]
        if delta is not None and delta.spec_path not in self.warned:
            new_snacks = [entry.snack for entry in delta.to_look_at()]
            if not any(spec_warnings(spec, new_snacks) for spec in taken):
                return
        self.warned = (self.warned - {spec.path for spec in taken}) | _warn(taken)

    def _trouble(self, path: Path, error: SpecError, now: float, *, again: bool = False) -> None:
        """Log a spec problem once (`again`: an explicit reload asks, so say it again)."""
        message = str(error)
        if self.problems.get(path) == message and not again:
            return
        self.problems[path] = message
        if self.on_change is not None:
            self.on_change(now)
        kept = f"keeping the last good spec ({self.specs.desired.count} snacks)"
        if error.line is None:  # the file itself is missing or unreadable
            logger.bind(event="spec_missing", spec=str(path)).warning("{}; {} until it is back", message, kept)
        else:
            logger.bind(event="spec_invalid", spec=str(path), line=error.line).error("{}; {}", message, kept)


def _warn(specs: Iterable[Spec]) -> set[Path]:
    """Log what lint finds in specs just taken (each spec once per change: an unchanged file keeps its Spec);
    returns the spec files warned about."""
    warned = set()
    for spec in specs:
        for warning in spec_warnings(spec):
            logger.bind(event="spec_warning", spec=str(spec.path)).warning("{}", warning)
            warned.add(spec.path)
    return warned


def _log_changes(old: Desired, new: Desired, dropped: list[Path], forced: bool, delta: Delta | None = None) -> bool:
    """Log what a reload changed (a forced one says so even when nothing did); True if anything changed.

    Snacks are told apart by their spec and name, so a spec whose pantry moved says `pantry /a -> /b` once,
    not every one of its names as removed and added again. With a `delta` (one spec's snacks patched, its
    header as it was) only the entries it names are looked at."""
    if delta is not None:
        added = [new.display(entry) for entry in delta.added]
        removed = [old.display(entry) for entry in delta.removed]
        told = [f"+{shown_name(name)}" for name in added] + [f"-{shown_name(name)}" for name in removed]
        return _told(told + [f"~{shown_name(new.display(entry))}" for entry in delta.changed], added, removed, new)
    old_keys = {(entry.spec.path, entry.snack.name): entry for entry in old.entries()}
    new_keys = {(entry.spec.path, entry.snack.name): entry for entry in new.entries()}
    added = [new.display(entry) for key, entry in new_keys.items() if key not in old_keys]
    removed = [old.display(entry) for key, entry in old_keys.items() if key not in new_keys]
    changes = [f"+{shown_name(name)}" for name in added] + [f"-{shown_name(name)}" for name in removed]
    changes += [  # declared otherwise (a source's bytes, a mode, an owner): applies when it is next created
        f"~{shown_name(new.display(entry))}"
        for key, entry in new_keys.items()
        if key in old_keys and old_keys[key].snack.traits != entry.snack.traits  # all but name and line
    ]
    old_pantries = {spec.path: spec.pantry for spec in old.specs}
    for spec in new.specs:
        before = old_pantries.get(spec.path)
        if before is None and spec.pantry not in old_pantries.values():
            changes.append(f"pantry {spec.pantry}")
        elif before is not None and before != spec.pantry:
            changes.append(f"pantry {before} -> {spec.pantry}")
    changes += [f"dropped {path.name}" for path in dropped]
    return _told(changes, added, removed, new, forced=forced)


def _told(changes: list[str], added: list[str], removed: list[str], new: Desired, *, forced: bool = False) -> bool:
    if changes or forced:
        logger.bind(event="reload", added=added, removed=removed).info(
            "spec reloaded: {} ({} snacks)", name_list(changes, quote=False) if changes else "no change", new.count
        )
    return bool(changes)
