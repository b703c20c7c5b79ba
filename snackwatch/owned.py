"""The ownership record: which files snackwatch created for `prune: true` specs (dev, ino, size, mtime, spec),
journaled before each name appears, validated whole when read."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snackwatch.errors import SnackwatchError
from snackwatch.state import STATE_PURPOSE, read_trusted, reason, write_atomically
from snackwatch.trusted import open_trusted_directory, open_trusted_file


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
