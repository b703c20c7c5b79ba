"""What the daemon's status shows: per-snack rows, counts and the one-line summary, read from its parts (no I/O)."""

from __future__ import annotations

import os

from snackwatch.desired import Entry
from snackwatch.drift import changes as drift_changes
from snackwatch.ledger import History, Ledger
from snackwatch.parts import Parts
from snackwatch.state import STATUS_VERSION

STATUS_LISTED = 1000  # status lists every snack up to this many; past it, the ones with something to say


def daemon_status(parts: Parts, started: float) -> dict[str, object]:
    """Everything `snackwatch status` and `why` show: every snack, or past STATUS_LISTED the ones with a story."""
    desired = parts.specs.desired
    snacks, everyone = snacks_status(parts.ledger, parts.clock(), STATUS_LISTED)
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


def snacks_status(ledger: Ledger, now: float, cap: int) -> tuple[dict[str, dict[str, object]], bool]:
    """Every snack's status when there are at most `cap`, else only those with a story; True if all."""
    if ledger.desired.count > cap:
        return snacks_with_a_story(ledger, now), False
    return {entry.path: snack_status(ledger, entry, now) for entry in ledger.desired.entries()}, True


def snacks_with_a_story(ledger: Ledger, now: float) -> dict[str, dict[str, object]]:
    """Per snack that was repaired, is failing, in conflict or missing: what status, why and metrics show."""
    paths = set(ledger.history) | set(ledger.conflicts) | set(ledger.health.failing()) | ledger.missing
    paths |= set(ledger.squatted) | set(ledger.drift)
    snacks = {}
    for path in sorted(paths):
        entry = ledger.desired.entry(*os.path.split(path))  # O(1): no table of every snack
        if entry is not None:
            snacks[path] = snack_status(ledger, entry, now)
    return snacks


def snack_status(ledger: Ledger, entry: Entry, now: float) -> dict[str, object]:
    path = entry.path
    history = ledger.history.get(path) or History()
    info: dict[str, object] = {
        "name": entry.snack.name,
        "type": entry.snack.type,
        "spec": str(entry.spec.path),
        "line": entry.snack.line,
        "state": "ok",
        "repairs": history.repairs,
        "last_repair": history.last_repair,
        "trigger": history.trigger,
    }
    view = ledger.health.describe(path, now)
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
    failing = len(ledger.health.failing())
    conflicts = len(ledger.conflicts)
    missing = len(ledger.missing - set(ledger.conflicts))
    other = set(ledger.conflicts) | ledger.missing | set(ledger.health.failing())
    drifting = sum(1 for path in ledger.drift if path not in other)
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
