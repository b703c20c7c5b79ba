"""The last good spec of each spec file, saved in the state directory so a typo and a restart never stop enforcement."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from snackwatch.errors import SnackwatchError, error_text
from snackwatch.lazylog import logger
from snackwatch.lock import instance_name
from snackwatch.state import STATE_PURPOSE, read_trusted, state_dir, write_atomically
from snackwatch.trusted import open_trusted_directory

SAVED_SUFFIX = ".last-good.json"
SAVED_VERSION = 1
NAME_MAX = 255


@dataclass(frozen=True)
class Saved:
    """One spec file as it was when applied: its path, its bytes, when it was applied (epoch seconds)."""

    path: Path
    data: bytes
    applied: float


def applied_text(stamp: float) -> str:
    """When a saved spec was applied, as logs and status say it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


class LastGood:
    """The saved copies of one config's spec files: `<instance>.<file name>.last-good.json` in the state directory,
    one per spec file, written atomically (O_EXCL temp file, fsync, rename) and read without following symlinks.

    A copy that cannot be read or is not what save() writes counts as no copy. A save that fails is told once per
    cause and never stops the daemon."""

    def __init__(self, config: Path) -> None:
        self.instance = instance_name(config)
        self.written: dict[Path, bytes] = {}  # on disk now, by spec file: the same bytes again are not saved
        self.problem = ""

    def saved_path(self, spec_file: Path) -> Path:
        name = f"{self.instance}.{spec_file.name}{SAVED_SUFFIX}"
        if len(os.fsencode(name)) > NAME_MAX:  # a long conf.d file name: its hash instead
            digest = hashlib.sha256(os.fsencode(spec_file.name)).hexdigest()[:16]
            name = f"{self.instance}.{digest}{SAVED_SUFFIX}"
        return state_dir() / name

    def saved(self) -> dict[Path, Saved]:
        """Every saved copy of this config's spec files, by the spec file's path."""
        try:
            directory = open_trusted_directory(state_dir(), STATE_PURPOSE, create=False)
        except (OSError, SnackwatchError):
            return {}
        try:
            names = [name for name in os.listdir(directory) if _is_saved_name(name, self.instance)]
        except OSError:
            return {}
        finally:
            os.close(directory)
        found = {}
        for name in names:
            copy = self._read(state_dir() / name)
            if copy is not None and self.saved_path(copy.path).name == name:
                found[copy.path] = copy
                self.written[copy.path] = copy.data
        return found

    def _read(self, path: Path) -> Saved | None:
        try:
            data = json.loads(read_trusted(path))
        except (OSError, ValueError, SnackwatchError):
            return None
        if not (isinstance(data, dict) and data.get("version") == SAVED_VERSION):
            return None
        spec, applied, text = data.get("path"), data.get("applied"), data.get("text")
        if not (isinstance(spec, str) and os.path.isabs(spec) and isinstance(text, str)):
            return None
        if not isinstance(applied, (int, float)) or isinstance(applied, bool):
            return None
        try:
            return Saved(Path(spec), text.encode("utf-8"), float(applied))
        except UnicodeEncodeError:
            return None

    def save(self, spec_file: Path, data: bytes) -> None:
        """Keep `data` as the last good spec of `spec_file`, applied now (the same bytes again: nothing to do)."""
        if self.written.get(spec_file) == data:
            return
        copy = {"version": SAVED_VERSION, "path": str(spec_file), "applied": time.time(), "text": data.decode()}
        target = self.saved_path(spec_file)
        try:
            write_atomically(target, json.dumps(copy), durable=True)  # it must outlive a crash or a power cut
        except (OSError, SnackwatchError) as error:
            self._tell(target, error)
            return
        self.written[spec_file] = data
        self.problem = ""

    def forget(self, spec_file: Path) -> None:
        """Drop the saved copy of a spec file that is gone (removing a spec is a decision; a typo is not)."""
        self.written.pop(spec_file, None)
        target = self.saved_path(spec_file)
        try:
            directory = open_trusted_directory(target.parent, STATE_PURPOSE, create=False)
        except (OSError, SnackwatchError):
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target.name, dir_fd=directory)
        except OSError as error:
            self._tell(target, error)
        finally:
            os.close(directory)

    def _tell(self, target: Path, error: OSError | SnackwatchError) -> None:
        why = error_text(error) if isinstance(error, OSError) else str(error)
        if isinstance(error, OSError) and error.filename not in (None, str(target)):
            why += f" ({error.filename})"
        problem = f"{target}: {why}"
        if problem != self.problem:
            self.problem = problem
            logger.bind(event="last_good_unwritable").warning(
                "cannot save the last good spec {}: a restart with an invalid spec would not find it", problem
            )


def _is_saved_name(name: str, instance: str) -> bool:
    return name.startswith(f"{instance}.") and name.endswith(SAVED_SUFFIX)
