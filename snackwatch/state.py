"""What the daemon remembers on disk: the status file, the ownership record, metrics; all written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from snackwatch.lock import directory_from_env, instance_name

STATUS_VERSION = 1


def state_dir() -> Path:
    """Where status and ownership live: StateDirectory=, $XDG_STATE_HOME, /var/lib/snackwatch (root), ~/.local/state."""
    return directory_from_env("STATE_DIRECTORY", "XDG_STATE_HOME", "/var/lib/snackwatch", "~/.local/state/snackwatch")


def status_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.status.json"


def owned_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.owned.json"


def prune_confirm_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.prune-confirm"


def write_atomically(path: Path, text: str) -> None:
    """Write a temp file beside `path`, then rename it over: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class OwnershipRecord:
    """Files snackwatch created, by path: identity (dev, ino), size and mtime as created, and the declaring spec.

    Pruning deletes only a file still matching its record: never one snackwatch did not create, nor one
    written to since.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        data = read_json(path)
        self.files: dict[str, dict[str, Any]] = data.get("files", {}) if isinstance(data, dict) else {}
        self.dirty = False

    def record(self, file: str, info: os.stat_result, spec: Path) -> None:
        self.files[file] = {
            "dev": info.st_dev,
            "ino": info.st_ino,
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "spec": str(spec),
        }
        self.dirty = True

    def forget(self, file: str) -> None:
        if self.files.pop(file, None) is not None:
            self.dirty = True

    def matches(self, file: str, info: os.stat_result) -> bool:
        entry = self.files.get(file)
        recorded = (entry["dev"], entry["ino"], entry["size"], entry["mtime_ns"]) if entry else None
        return recorded == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def save(self) -> None:
        if self.dirty:
            write_atomically(self.path, json.dumps({"version": 1, "files": self.files}, sort_keys=True))
            self.dirty = False


def metrics_text(status: dict[str, Any]) -> str:
    """The status in Prometheus textfile-collector format."""
    lines = [
        "# HELP snackwatch_repairs_total Snacks restored since the daemon started.",
        "# TYPE snackwatch_repairs_total counter",
    ]
    for info in status["snacks"].values():
        lines.append(f"snackwatch_repairs_total{{snack={_label(info['name'])}}} {info.get('repairs', 0)}")
    lines += [
        "# HELP snackwatch_snack_failing Whether a snack's repair is failing (1) or not (0).",
        "# TYPE snackwatch_snack_failing gauge",
    ]
    for info in status["snacks"].values():
        lines.append(f"snackwatch_snack_failing{{snack={_label(info['name'])}}} {int(info['state'] == 'failing')}")
    lines += [
        "# HELP snackwatch_spec_valid Whether the last spec load succeeded.",
        "# TYPE snackwatch_spec_valid gauge",
        f"snackwatch_spec_valid {int(status['spec']['ok'])}",
        "# HELP snackwatch_last_reconcile_timestamp_seconds When the last reconcile ran.",
        "# TYPE snackwatch_last_reconcile_timestamp_seconds gauge",
        f"snackwatch_last_reconcile_timestamp_seconds {status['last_reconcile']:.3f}",
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
