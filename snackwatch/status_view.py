"""What the daemon's status shows: per-snack rows, counts and the one-line summary, read from its parts (no I/O)."""

from __future__ import annotations

import json
import os

from snackwatch.backoff import HealthView
from snackwatch.desired import Entry
from snackwatch.drift import changes as drift_changes
from snackwatch.ledger import History, Ledger
from snackwatch.parts import Parts
from snackwatch.state import STATUS_VERSION

STATUS_LISTED = 1000  # status lists every snack up to this many; past it, the ones with something to say
# A row's JSON as json.dumps(..., separators=(",", ":")) gives it, without a new encoder per call (1,000 rows a write).
_JSON_ROW = json.JSONEncoder(separators=(",", ":")).encode
_JSON_TEXT = json.JSONEncoder().encode  # a path, as json.dumps(path)


class StatusRows:
    """Per-snack status rows and their JSON text, rebuilt only for snacks whose story changed since the last
    status (the ledger says which: take_touched); a row with a retry or a fight pending is rebuilt each time (its
    next retry moves). A status write costs O(changed) rows, not O(listed)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[bool, dict[str, object], str]] = {}  # path -> (kept, row, its JSON)
        self.listed: list[str] = []  # the paths of the last status, in its order
        self.last: dict[str, dict[str, object]] | None = None  # the last listing, while no story changed
        self.story: list[str] | None = None  # past the cap: the sorted paths listed, kept up to date by `touched`
        self.touched: set[str] | None = None  # what the last refresh() heard changed (None: everything)

    def refresh(self, ledger: Ledger) -> None:
        """Forget the rows of snacks whose story changed since the last status (all of them after a reload)."""
        touched = self.touched = ledger.take_touched()
        if touched is None:
            self.rows.clear()
        else:
            for path in touched:
                self.rows.pop(path, None)
        if touched is None or touched or not all(kept for kept, _, _ in self.rows.values()):
            self.last = None  # a story changed, or a retry time moves: list again

    def row(self, ledger: Ledger, entry: Entry, now: float) -> dict[str, object]:
        path = entry.path
        cached = self.rows.get(path)
        if cached is not None and cached[0]:  # its story has not changed: O(changed), not O(listed)
            return cached[1]
        view = ledger.health.describe(path, now)
        info = snack_status(ledger, entry, now, view)
        self.rows[path] = (view is None, info, f"{_JSON_TEXT(path)}:{_JSON_ROW(info)}")
        return info

    def keep(self, listed: dict[str, dict[str, object]]) -> None:
        """The rows of this status: the others leave the cache."""
        self.listed = list(listed)
        if len(self.rows) > len(listed):
            self.rows = {path: self.rows[path] for path in listed}

    def file(self, parts: Parts, started: float) -> tuple[dict[str, object], str]:
        """The status and its JSON text for the status file: only rows whose story changed are encoded again."""
        status = daemon_status(parts, started, self)
        return status, self.json(status)

    def json(self, status: dict[str, object]) -> str:
        """`status` as compact JSON, its rows spliced in from their cached text."""
        head = json.dumps({key: value for key, value in status.items() if key != "snacks"}, separators=(",", ":"))
        body = ",".join(self.rows[path][2] for path in self.listed)
        return f'{head[:-1]},"snacks":{{{body}}}}}'


def daemon_status(parts: Parts, started: float, rows: StatusRows | None = None) -> dict[str, object]:
    """Everything `snackwatch status` and `why` show: every snack, or past STATUS_LISTED the ones with a story.
    `rows`: the row cache the status file is written from (StatusRows.json)."""
    desired = parts.specs.desired
    if rows is not None:
        rows.refresh(parts.ledger)
    snacks, everyone = snacks_status(parts.ledger, parts.clock(), STATUS_LISTED, rows or StatusRows())
    return {
        "version": STATUS_VERSION,
        "pid": os.getpid(),
        "started": started,
        "updated": parts.ledger.wall(),
        "config": str(parts.specs.config),
        "pantries": [str(spec.pantry) for spec in desired.specs],
        "watcher": parts.watcher.backend,
        "dry_run": parts.options.dry_run,
        "spec": parts.reloader.spec_status(),
        "status_line": summary(parts),
        "counts": counts(parts.ledger),
        "last_reconcile": parts.ledger.last_reconcile,
        "snacks": snacks,
        "snacks_listed": "all" if everyone else f"with a story (more than {STATUS_LISTED} snacks)",
    }


def summary(parts: Parts) -> str:
    """The one-line summary (systemd's Status=): the ledger's counts, and the spec's state if it is not ok."""
    line = status_line(parts.ledger)
    if parts.options.dry_run:
        line += " (dry run)"
    return line + parts.reloader.status_note()


def snacks_status(
    ledger: Ledger, now: float, cap: int, rows: StatusRows | None = None
) -> tuple[dict[str, dict[str, object]], bool]:
    """Every snack's status when there are at most `cap`, else only those with a story; True if all."""
    rows = rows or StatusRows()
    if rows.last is not None:  # nothing changed since the last status (StatusRows.refresh)
        return rows.last, ledger.desired.count <= cap
    if ledger.desired.count > cap:
        listed = snacks_with_a_story(ledger, now, cap, rows)
    else:
        listed = {entry.path: rows.row(ledger, entry, now) for entry in ledger.desired.entries()}
    rows.keep(listed)
    rows.last = listed
    return listed, ledger.desired.count <= cap


def snacks_with_a_story(
    ledger: Ledger, now: float, cap: int = STATUS_LISTED, rows: StatusRows | None = None
) -> dict[str, dict[str, object]]:
    """Per snack that is failing, in conflict, missing or was repaired: what status, why and metrics show. At most
    `cap` of them (failing first, the most recently repaired last): the counts say how many there are."""
    rows = rows or StatusRows()
    kept = _story_kept(ledger, now, cap, rows)
    if kept is not None:
        return kept
    chosen: dict[str, None] = {}
    groups = (
        ledger.health.failing(),
        ledger.conflicts,
        ledger.squatted,
        ledger.drift,
        ledger.missing,
        reversed(ledger.history),
    )
    for group in groups:
        for path in group:
            if len(chosen) >= cap:
                break
            chosen[path] = None
    snacks = {}
    for path in sorted(chosen):
        entry = ledger.desired.entry(*os.path.split(path))  # O(1): no table of every snack
        if entry is not None:
            snacks[path] = rows.row(ledger, entry, now)
    rows.story = list(snacks) if _stories(ledger) <= cap else None  # a truncated listing is chosen again
    return snacks


def _story_kept(ledger: Ledger, now: float, cap: int, rows: StatusRows) -> dict[str, dict[str, object]] | None:
    """The last story listing with only the changed snacks looked at again: O(changed) rows. None when the
    listing must be chosen again (a new desired state, or more stories than `cap`: then priorities decide)."""
    story, touched = rows.story, rows.touched
    if story is None or touched is None or _stories(ledger) > cap:
        return None
    if touched:  # a mass restore touches 100k paths, a story is kept for 1,000: sets, not a look each
        told = touched & ledger.history.keys() | touched & ledger.conflicts.keys() | touched & ledger.missing
        told |= touched.intersection(ledger.health.failing())
        listed = set(story)
        gone, new = (touched & listed) - told, told - listed
        if gone or new:
            story[:] = sorted((listed - gone) | new)
    snacks = {}
    for path in story:
        cached = rows.rows.get(path)
        if cached is not None and cached[0]:
            snacks[path] = cached[1]
        elif (entry := ledger.desired.entry(*os.path.split(path))) is not None:
            snacks[path] = rows.row(ledger, entry, now)
    return snacks


def _stories(ledger: Ledger) -> int:
    """How many snacks have a story, at most (one may be failing and repaired: counted twice)."""
    return ledger.health.failing_count + len(ledger.conflicts) + len(ledger.missing) + len(ledger.history)


def snack_status(ledger: Ledger, entry: Entry, now: float, view: HealthView | None = None) -> dict[str, object]:
    """One snack's row; `view`: its health view, when the caller has it already."""
    path = entry.path
    history = ledger.history.get(path) or History()
    info: dict[str, object] = {
        "name": entry.snack.name,
        "type": entry.snack.type,
        "spec": str(entry.spec.path),
        "line": ledger.desired.line_of(entry),
        "state": "ok",
        "repairs": history.repairs,
        "last_repair": history.last_repair,
        "trigger": history.trigger,
    }
    view = view or ledger.health.describe(path, now)
    if path in ledger.conflicts:
        info.update(state="conflict", reason=ledger.conflicts[path])
    elif path in ledger.missing:
        info.update(state="missing", reason="not on disk (dry run: not created)")
    elif view is not None and view.error:
        info.update(state="failing", reason=view.error, next_retry=ledger.wall() + (view.retry_in or 0.0))
    elif path in ledger.drift:
        info.update(state="drift", reason=drift_changes(ledger.drift[path]) + " (not enforced)")
    if path in ledger.drift:
        info["drift"] = [
            {"aspect": a.name, "on_disk": a.found, "declared": a.wanted, "enforced": a.enforced_by(entry.snack)}
            for a in ledger.drift[path]
        ]
    if view is not None and view.fighting:
        info["fighting"] = True
    if path in ledger.squatted:
        info["owner"] = f"{ledger.squatted[path]} before snackwatch could"
    return info


def counts(ledger: Ledger) -> dict[str, int]:
    failing = ledger.health.failing_count
    conflicts = len(ledger.conflicts)
    missing = len(ledger.missing) - sum(path in ledger.missing for path in ledger.conflicts) if ledger.missing else 0
    other = (set(ledger.conflicts) | ledger.missing | set(ledger.health.failing())) if ledger.drift else set()
    drifting = sum(1 for path in ledger.drift if path not in other)  # counted once, in its worse state
    count = ledger.desired.count
    return {
        "snacks": count,
        "ok": count - failing - conflicts - missing - drifting,
        "failing": failing,
        "conflicts": conflicts,
        "missing": missing,
        "drift": drifting,
        "repairs": ledger.repairs,
        "created": ledger.created,
    }


def status_line(ledger: Ledger) -> str:
    """The one-line summary of the ledger (systemd's Status=, the status table's head)."""
    numbers = counts(ledger)
    missing = f", {numbers['missing']} missing" if numbers["missing"] else ""
    missing += f", {numbers['drift']} drifting" if numbers["drift"] else ""
    repairs = f"{numbers['repairs']} repair{'' if numbers['repairs'] == 1 else 's'}"
    return (
        f"{numbers['ok']}/{numbers['snacks']} snacks ok, {repairs}, "
        f"{numbers['failing']} failing, {numbers['conflicts']} conflicts{missing}"
    )
