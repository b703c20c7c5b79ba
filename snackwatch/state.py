"""What the daemon remembers on disk: the status file, the ownership record, metrics; all written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snackwatch import __version__
from snackwatch.errors import SnackwatchError, error_text
from snackwatch.lock import instance_name
from snackwatch.trusted import choose_directory, open_trusted_directory, open_trusted_file

STATUS_VERSION = 1
STATE_PURPOSE = "state directory (status and ownership record)"
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def state_dir() -> Path:
    """Where status and ownership live: StateDirectory=; as root /var/lib/snackwatch; else $XDG_STATE_HOME."""
    return choose_directory("STATE_DIRECTORY", "XDG_STATE_HOME", "/var/lib/snackwatch", "~/.local/state/snackwatch")


def open_state_dir() -> int:
    """An fd for the state directory, made 0700 if missing; UntrustedPath if it is not safely ours."""
    return open_trusted_directory(state_dir(), STATE_PURPOSE, create=True)


def status_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.status.json"


def owned_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.owned.json"


def prune_confirm_path(config: Path) -> Path:
    return state_dir() / f"{instance_name(config)}.prune-confirm"


def write_atomically(path: Path, text: str, *, durable: bool = False) -> None:
    """Write a new temp file (O_EXCL, 0600) beside `path`, then rename it over: readers see the old or the new
    file, whole. A file in the state directory is written only if that directory is safely ours (else
    UntrustedPath); elsewhere (a --metrics-file) the directory is the user's choice. `durable`: the file and
    the rename are on disk (fsync of the file, then of the directory) when this returns."""
    if path.parent == state_dir():
        directory = open_trusted_directory(path.parent, STATE_PURPOSE, create=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    temp = f".{path.name}.{secrets.token_hex(6)}"
    try:
        fd = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                if durable:
                    stream.flush()
                    os.fsync(stream.fileno())
            os.replace(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
            if durable:
                os.fsync(directory)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=directory)
            if isinstance(error, OSError) and error.filename is None:
                error.filename = str(path)  # a failed write names no file: say which one
            raise
    finally:
        os.close(directory)


def read_trusted(path: Path) -> bytes:
    """The bytes of a file in the state directory, read without following symlinks or blocking on a FIFO.

    FileNotFoundError if it (or the directory) is missing; UntrustedPath if either is not safely ours.
    """
    directory = open_trusted_directory(path.parent, STATE_PURPOSE, create=False)
    try:
        fd = open_trusted_file(directory, path, os.O_RDONLY, "state file")
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as stream:
        return stream.read()


def read_json(path: Path) -> Any:
    """The JSON in the state file `path`, or None if it is missing, unreadable or not safely ours."""
    try:
        return json.loads(read_trusted(path))
    except (OSError, ValueError, SnackwatchError):
        return None


class OwnershipRecord:
    """Files snackwatch created, by path: identity (dev, ino), size and mtime as created, and the declaring spec.

    Pruning deletes only a file still matching its record: never one snackwatch did not create, nor one
    written to since. A record that cannot be read or fully validated is never pruned from: the entries of
    the specs it puts in doubt (all of them, if it cannot say which) are dropped, `problem` says why, and
    the next save() rewrites it from what is left and what the daemon creates from now on.

    A file about to be published is first appended to a journal beside the record (`X.owned.journal`, one JSON
    line per file, fsynced): cheap whatever the record's size, and read back after the record, so a kill -9
    between the publish and the next save() loses nothing. save() folds it into the record and removes it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_suffix(".journal")
        self.files: dict[str, dict[str, Any]] = {}
        self.problem = ""  # why the record on disk was not sound; "" if it was (or was missing)
        self.doubted: set[str] | None = set()  # specs whose entries were dropped; None: every spec's
        self.dirty = False
        self.journaled = False  # the journal may hold entries the record does not
        try:
            self._load(json.loads(read_trusted(path)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, SnackwatchError) as error:
            self._doubt(None, reason(error))
        self._replay()

    def _load(self, data: Any) -> None:
        files = data.get("files") if isinstance(data, dict) and data.get("version", 1) == 1 else None
        if not isinstance(files, dict):
            self._doubt(None, 'it is not {"version": 1, "files": {path: entry}}')
            return
        for file, entry in files.items():
            if not _valid_entry(file, entry):
                spec = entry.get("spec") if isinstance(entry, dict) else None
                self._doubt(spec if isinstance(spec, str) else None, f"malformed entry {str(file)[:100]!r}")
        if self.doubted is not None:
            self.files = {file: entry for file, entry in files.items() if entry["spec"] not in self.doubted}

    def _replay(self) -> None:
        """Take the journal's entries (files recorded before a kill -9 let save() fold them in). A torn or invalid
        line is skipped, and so is an unreadable journal: a file missing from the record is only never pruned."""
        try:
            lines = read_trusted(self.journal).splitlines()
        except FileNotFoundError:
            return
        except (OSError, SnackwatchError):
            lines = []
        self.journaled = self.dirty = True  # rewrite the record with them, then drop the journal
        for line in lines:
            try:
                entry = json.loads(line)
                file = entry.pop("path")
            except (ValueError, AttributeError, KeyError, TypeError):
                continue
            doubted = self.doubted is None or entry.get("spec") in self.doubted
            if _valid_entry(file, entry) and not doubted:
                self.files[file] = entry

    def _doubt(self, spec: str | None, problem: str) -> None:
        self.problem = self.problem or problem
        self.dirty = True
        if spec is None:
            self.doubted = None
        elif self.doubted is not None:
            self.doubted.add(spec)

    def record(self, file: str, info: os.stat_result, spec: Path) -> None:
        entry: dict[str, Any] = {
            "dev": info.st_dev,
            "ino": info.st_ino,
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "spec": str(spec),
        }
        if self.files.get(file) != entry:  # recorded before it was published: told again after, nothing new
            self.files[file] = entry
            self.dirty = True

    def forget(self, file: str) -> None:
        if self.files.pop(file, None) is not None:
            self.dirty = True

    def matches(self, file: str, info: os.stat_result) -> bool:
        entry = self.files.get(file)
        recorded = (entry["dev"], entry["ino"], entry["size"], entry["mtime_ns"]) if entry else None
        return recorded == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def same_inode(self, file: str, info: os.stat_result) -> bool:
        """The recorded entry is this inode (for a directory, whose size and mtime follow its contents)."""
        entry = self.files.get(file)
        return entry is not None and (entry["dev"], entry["ino"]) == (info.st_dev, info.st_ino)

    def append_to_journal(self, files: Sequence[str]) -> None:
        """Append the entries of `files` (recorded) to the journal, on disk (fsynced) when this returns: before the
        files are published. OSError or UntrustedPath if it cannot be; a torn line is skipped when read back."""
        data = "".join(json.dumps({"path": file, **self.files[file]}) + "\n" for file in files).encode()
        directory = open_trusted_directory(self.path.parent, STATE_PURPOSE, create=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            fd = open_trusted_file(directory, self.journal, flags, "ownership journal")
            self.journaled = True
            try:
                new = os.fstat(fd).st_size == 0
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                os.fsync(directory)  # its name too
        finally:
            os.close(directory)

    def save(self) -> None:
        """Write the record if it changed, then drop the journal it now holds: OSError or UntrustedPath if it
        cannot be. After a journal the record is fsynced first, so no crash loses both."""
        if self.dirty:
            text = json.dumps({"version": 1, "files": self.files}, sort_keys=True)
            write_atomically(self.path, text, durable=self.journaled)
            self.dirty = False
        if self.journaled:
            directory = open_trusted_directory(self.path.parent, STATE_PURPOSE, create=False)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.journal.name, dir_fd=directory)
            finally:
                os.close(directory)
            self.journaled = False


def _valid_entry(file: Any, entry: Any) -> bool:
    """An entry as record() writes it, for a normalized absolute path."""
    if not (isinstance(file, str) and file.startswith("/") and os.path.normpath(file) == file and "\0" not in file):
        return False
    if not isinstance(entry, dict) or set(entry) != {"dev", "ino", "size", "mtime_ns", "spec"}:
        return False
    numbers = (entry["dev"], entry["ino"], entry["size"], entry["mtime_ns"])
    whole = all(type(number) is int and number >= 0 for number in numbers)
    return whole and isinstance(entry["spec"], str) and bool(entry["spec"])


def reason(error: Exception) -> str:
    """Why a state file could not be read, in a few words."""
    if isinstance(error, OSError):
        return error_text(error)
    if isinstance(error, ValueError):
        return "it is not valid JSON"
    return str(error)


def metrics_text(status: dict[str, Any], *, up: bool = True) -> str:
    """The status in Prometheus textfile-collector format: one series per snack with a story (repaired, failing or
    in conflict), labelled with its spec, so two specs' `Apple` (or two daemons' files in one collector directory)
    are two series; the daemon-wide series carry the config. `up`: 0 once the daemon stopped (the file stays, so a
    collector tells a stopped daemon from a missing file)."""
    config = f"config={_label(str(status['config']))}"
    stories = sorted(
        (
            (f"spec={_label(str(info.get('spec', '')))},snack={_label(str(info['name']))}", info)
            for info in status["snacks"].values()
            if info.get("repairs") or info.get("state", "ok") != "ok"
        ),
        key=lambda story: story[0],
    )
    lines = [
        "# HELP snackwatch_up Whether the daemon runs (1) or stopped cleanly (0).",
        "# TYPE snackwatch_up gauge",
        f"snackwatch_up{{{config}}} {int(up)}",
        "# HELP snackwatch_build_info The snackwatch version that writes this file.",
        "# TYPE snackwatch_build_info gauge",
        f"snackwatch_build_info{{{config},version={_label(__version__)}}} 1",
        "# HELP snackwatch_repairs_total Snacks restored since the daemon started.",
        "# TYPE snackwatch_repairs_total counter",
        *(f"snackwatch_repairs_total{{{labels}}} {info.get('repairs', 0)}" for labels, info in stories),
        "# HELP snackwatch_snack_failing Whether a snack's repair is failing (1) or not (0).",
        "# TYPE snackwatch_snack_failing gauge",
        *(f"snackwatch_snack_failing{{{labels}}} {int(info['state'] == 'failing')}" for labels, info in stories),
        "# HELP snackwatch_snack_drift An aspect of a snack that differs from the spec (1), by aspect.",
        "# TYPE snackwatch_snack_drift gauge",
        *(
            f"snackwatch_snack_drift{{{labels},aspect={_label(str(aspect['aspect']))}}} 1"
            for labels, info in stories
            for aspect in info.get("drift", ())
        ),
        "# HELP snackwatch_snacks Snacks the daemon keeps, by state.",
        "# TYPE snackwatch_snacks gauge",
        *(
            f"snackwatch_snacks{{{config},state={_label(state)}}} {status['counts'][key]}"
            for state, key in (("ok", "ok"), ("failing", "failing"), ("conflict", "conflicts"), ("drift", "drift"))
            if key in status["counts"]
        ),
        "# HELP snackwatch_spec_valid Whether the spec on disk is valid (0: the last good one is in force).",
        "# TYPE snackwatch_spec_valid gauge",
        f"snackwatch_spec_valid{{{config}}} {int(status['spec']['ok'])}",
        "# HELP snackwatch_last_reconcile_timestamp_seconds When the last full reconcile ran.",
        "# TYPE snackwatch_last_reconcile_timestamp_seconds gauge",
        f"snackwatch_last_reconcile_timestamp_seconds{{{config}}} {status['last_reconcile']:.3f}",
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
