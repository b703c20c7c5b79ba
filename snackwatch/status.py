"""What `status` and `why` tell a user: the daemon's state file and the specs, rendered for people."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snackwatch.state import read_json, status_path

if TYPE_CHECKING:  # `status` renders the status file alone and never imports the spec parser (yaml)
    from snackwatch.desired import Desired, Entry

ROWS_SHOWN_IN_FULL = 50  # bigger specs list only the snacks with something to say


def read_status(config: Path) -> dict[str, Any] | None:
    data = read_json(status_path(config))
    return data if isinstance(data, dict) else None


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def render_status(status: dict[str, Any]) -> str:
    """A readable summary and one row per snack in the status file (for big specs, only those with a story)."""
    counts = status["counts"]
    spec = status["spec"]
    lines = [
        f"snackwatch running (pid {status['pid']}, up {_duration(time.time() - status['started'])}), "
        f"watcher {status['watcher']}",
        f"config {status['config']}: " + ("spec ok" if spec["ok"] else "; ".join(spec["problems"])),
        f"snacks: {counts['snacks']} ({counts['ok']} ok, {counts['failing']} failing, {counts['conflicts']} conflicts),"
        f" {counts['repairs']} repairs, last full reconcile {_when(status['last_reconcile'])}",
        "",
        f"{'SNACK':<28} {'STATE':<9} {'REPAIRS':>7}  {'LAST REPAIR':<19}  DETAIL",
    ]
    rows: dict[str, dict[str, Any]] = status["snacks"]
    if counts["snacks"] > ROWS_SHOWN_IN_FULL:
        rows = {path: info for path, info in rows.items() if info["state"] != "ok" or info.get("repairs")}
    for path in sorted(rows, key=lambda p: str(rows[p]["name"])):
        info = rows[path]
        detail = info.get("reason") or info.get("trigger") or ""
        if info.get("next_retry"):
            detail += f" (next retry {_when(info['next_retry'])})"
        lines.append(
            f"{info['name']:<28} {info['state']:<9} {info.get('repairs', 0):>7}  "
            f"{_when(info.get('last_repair')):<19}  {detail}".rstrip()
        )
    if len(rows) < counts["snacks"]:
        lines.append(f"... and {counts['snacks'] - len(rows)} more snacks, all ok")
    return "\n".join(lines)


def why(name: str, desired: Desired, status: dict[str, Any] | None) -> tuple[str, bool]:
    """Explain one snack (by name or path); False if no spec declares it."""
    matches = [e for e in desired.entries() if name in (e.snack.name, e.path, desired.display(e))]
    if not matches:
        specs = ", ".join(str(spec.path) for spec in desired.specs)
        return f"{name}: no spec declares it (specs: {specs})", False
    return "\n\n".join(_explain(entry, status) for entry in matches), True


def _explain(entry: Entry, status: dict[str, Any] | None) -> str:
    try:
        kind = "present" if os.path.isfile(entry.path) and not os.path.islink(entry.path) else None
        kind = kind or ("something else is in its place" if os.path.lexists(entry.path) else "missing")
    except OSError as error:
        kind = f"cannot tell: {error.strerror}"
    lines = [
        f"{entry.snack.name}: {entry.path}",
        f"  declared at {entry.spec.path}:{entry.snack.line}",
        f"  on disk: {kind}",
    ]
    if status is None:
        lines.append("  no daemon status (is `snackwatch run` running for this config?)")
        return "\n".join(lines)
    info = status["snacks"].get(entry.path)
    if info is None:
        lines.append("  never repaired since the daemon started; no failure, no conflict")
        return "\n".join(lines)
    if info.get("last_repair"):
        lines.append(f"  last repair: {_when(info['last_repair'])} ({info['trigger']}), {info['repairs']} in all")
    if info["state"] == "failing":
        lines.append(f"  failing: {info['reason']}; next retry {_when(info.get('next_retry'))}")
    elif info["state"] == "conflict":
        lines.append(f"  conflict: {info['reason']}; snackwatch leaves it alone")
    if info.get("fighting"):
        lines.append("  something else keeps deleting it: repairs are backed off")
    return "\n".join(lines)
