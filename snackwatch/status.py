"""What `status` and `why` tell a user: the daemon's state file and the specs, rendered for people."""

from __future__ import annotations

import os
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snackwatch.state import read_json, status_path

if TYPE_CHECKING:  # `status` renders the status file alone and never imports the spec parser (yaml)
    from collections.abc import Callable

    from snackwatch.desired import Desired, Entry

ROWS_SHOWN_IN_FULL = 50  # bigger specs list only the snacks with something to say


def read_status(config: Path) -> dict[str, Any] | None:
    data = read_json(status_path(config))
    return data if isinstance(data, dict) else None


def _width(text: str) -> int:
    """Terminal columns `text` takes: wide (CJK, most emoji) characters two, combining marks and format
    characters (a variation selector, a zero-width joiner) none, the rest one (wcwidth, from unicodedata)."""
    if text.isascii():
        return len(text)
    return sum(
        0
        if unicodedata.category(char) in ("Mn", "Me", "Cf")
        else 2
        if unicodedata.east_asian_width(char) in "WF"
        else 1
        for char in text
    )


def _padded(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def lists_every_snack(status: dict[str, Any]) -> bool:
    """Whether the status file lists every snack, not only those with a story (an older daemon, or a capped list)."""
    listed = status.get("snacks_listed")
    if isinstance(listed, int) and not isinstance(listed, bool):
        return listed == status.get("snacks_total")
    return listed == "all" or (listed is None and "pantries" in status)


def render_status(status: dict[str, Any]) -> str:
    """A readable summary and one row per snack in the status file (for big specs, only those with a story)."""
    counts = status["counts"]
    spec = status["spec"]
    pantries = status.get("pantries")
    lines = [
        f"snackwatch running (pid {status['pid']}, up {_duration(time.time() - status['started'])}), "
        f"watcher {status['watcher']}" + (", dry run: changes nothing" if status.get("dry_run") else ""),
        f"config {status['config']}: " + _spec_state(spec),
    ]
    if isinstance(pantries, list) and pantries:
        pantries = list(dict.fromkeys(map(str, pantries)))  # two specs of a conf.d may share one
        lines.append(("pantry " if len(pantries) == 1 else "pantries ") + ", ".join(pantries))
    extra = "".join(f", {counts[key]} {key}" for key in ("missing", "created") if counts.get(key))
    extra += f", {counts['drift']} drifting" if counts.get("drift") else ""
    repairs = f"{counts['repairs']} repair" + ("" if counts["repairs"] == 1 else "s")
    lines += [
        f"snacks: {counts['snacks']} ({counts['ok']} ok, {counts['failing']} failing, {counts['conflicts']} conflicts"
        f"{extra}), {repairs}, last full reconcile {_when(status['last_reconcile'])}",
        "",
        f"{'SNACK':<28} {'STATE':<9} {'REPAIRS':>7}  {'LAST REPAIR':<19}  DETAIL",
    ]
    rows: dict[str, dict[str, Any]] = status["snacks"]
    if len(rows) > ROWS_SHOWN_IN_FULL:
        rows = {path: info for path, info in rows.items() if info["state"] != "ok" or info.get("repairs")}
    for path in sorted(rows, key=lambda p: str(rows[p]["name"])):
        info = rows[path]
        detail = info.get("reason") or info.get("owner") or info.get("trigger") or ""
        if info.get("next_retry"):
            detail += f" (next retry {_when(info['next_retry'])})"
        shown = str(info["name"]) + ("/" if info.get("type") == "directory" else "")
        lines.append(
            f"{_padded(shown, 28)} {info['state']:<9} {info.get('repairs', 0):>7}  "
            f"{_when(info.get('last_repair')):<19}  {detail}".rstrip()
        )
    rest = counts["snacks"] - len(rows)
    if rest > 0:
        not_ok = sum(1 for info in rows.values() if info["state"] != "ok")
        all_ok = not_ok == counts["snacks"] - counts["ok"]
        lines.append(f"... and {rest} more snacks" + (", all ok" if all_ok else " (status --json lists them)"))
    return "\n".join(lines)


def _spec_state(spec: dict[str, Any]) -> str:
    if spec.get("last_good"):
        others = len(spec["problems"]) - 1
        return str(spec["last_good"]) + (f" (and {others} more spec problems)" if others > 0 else "")
    return "spec ok" if spec["ok"] else "; ".join(spec["problems"]) + " (the last good spec is in force)"


def _names(name: str) -> set[str]:
    """What a NAME on the command line may mean: a snack name, or a path (relative to the current directory)."""
    return {name, os.path.abspath(name), os.path.realpath(name)}


def _same_file(name: str, path: str) -> bool:
    """Whether the path NAME and a snack's path name one file, through symlinked directories (a pantry reached
    by another spelling): its name alike, its directory the same once resolved."""
    given = os.path.abspath(name)
    if os.path.basename(given) != os.path.basename(path):
        return False
    return os.path.realpath(os.path.dirname(given)) == os.path.realpath(os.path.dirname(path))


def why(
    name: str,
    desired: Desired,
    status: dict[str, Any] | None,
    on_disk: Callable[[Entry], list[str]] | None = None,
) -> tuple[str, bool]:
    """Explain one snack (by name or path) from the spec on disk and, if a daemon runs, its status; False if no
    spec declares it. `on_disk`: the lines for what the entry is declared as and what is on disk (survey.py:
    by the daemon's own walk); without it, a plain look at the path."""
    names = _names(name)
    matches = [e for e in desired.entries() if e.snack.name in names or e.path in names]
    matches = matches or [e for e in desired.entries() if _same_file(name, e.path)]
    if not matches:
        specs = ", ".join(str(spec.path) for spec in desired.specs)
        return f"{name}: no spec declares it (specs: {specs})", False
    snacks = status.get("snacks", {}) if status is not None else None
    explained = [
        _explain(
            e.snack.name,
            e.path,
            f"{e.spec.path}:{desired.line_of(e)}",
            _info(e.path, snacks),
            running=snacks is not None,
            disk=on_disk(e) if on_disk is not None else None,
        )
        for e in matches
    ]
    if status is None:
        explained.append("no daemon is running for this config: no repair history to show")
    return "\n\n".join(explained), True


def _info(path: str, snacks: dict[str, dict[str, Any]] | None) -> dict[str, Any] | None:
    """What the daemon's status says of the snack at `path` (its config may be spelled another way)."""
    if not snacks:
        return None
    return snacks.get(path) or next((info for known, info in snacks.items() if _same_file(path, known)), None)


def why_from_status(name: str, status: dict[str, Any], problem: str) -> tuple[str, bool]:
    """Explain one snack from the running daemon's status alone (the spec on disk cannot be read: `problem`)."""
    names = _names(name)
    snacks: dict[str, dict[str, Any]] = status.get("snacks", {})
    matches = [(path, info) for path, info in snacks.items() if path in names or info.get("name") in names]
    matches = matches or [(path, info) for path, info in snacks.items() if _same_file(name, path)]
    note = f"spec on disk: {problem}; the daemon (pid {status['pid']}) runs on its last good spec, which says:"
    if not matches:
        if lists_every_snack(status):
            return f"{note}\n{name}: not declared by it", False
        return f"{note}\n{name}: not among the snacks its status lists (only those with a story)", False
    explained = [
        _explain(str(info["name"]), path, f"{info['spec']}:{info['line']}" if "line" in info else "?", info)
        for path, info in matches
    ]
    return note + "\n" + "\n\n".join(explained), True


def _explain(
    name: str,
    path: str,
    declared: str,
    info: dict[str, Any] | None,
    *,
    running: bool = True,
    disk: list[str] | None = None,
) -> str:
    surveyed = disk is not None  # the lines for what is on disk came from the daemon's walk (each aspect said)
    if disk is None:
        disk = [f"  type: {info['type']}"] if info and info.get("type") else []
        try:
            kind = "present" if os.path.isfile(path) and not os.path.islink(path) else None
            kind = kind or ("something else is in its place" if os.path.lexists(path) else "missing")
        except OSError as error:
            kind = f"cannot tell: {error.strerror}"
        disk.append(f"  on disk: {kind}")
    lines = [f"{name}: {path}", f"  declared at {declared}", *disk]
    if not running:
        return "\n".join(lines)
    if info is None or (not info.get("repairs") and info.get("state", "ok") == "ok"):
        lines.append("  never repaired since the daemon started; no failure, no conflict")
        return "\n".join(lines)
    if info.get("last_repair"):
        lines.append(f"  last repair: {_when(info['last_repair'])} ({info['trigger']}), {info['repairs']} in all")
    if info["state"] == "failing":
        lines.append(f"  failing: {info['reason']}; next retry {_when(info.get('next_retry'))}")
    elif info["state"] == "conflict":
        lines.append(f"  conflict: {info['reason']}; snackwatch leaves it alone")
    elif info["state"] == "drift" and not surveyed:
        lines.append(f"  drift: {info['reason']}")
    elif info["state"] != "ok":
        lines.append(f"  {info['state']}" + (f": {info['reason']}" if info.get("reason") else ""))
    if info.get("fighting"):
        lines.append("  something else keeps deleting it: repairs are backed off")
    return "\n".join(lines)
