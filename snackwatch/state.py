"""Where the daemon keeps its state and how it is written: the trusted state directory, its paths, atomic writes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

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
    UntrustedPath); elsewhere the caller vouches for the directory (--metrics-file goes through outputs.py).
    `durable`: the file and the rename are on disk (fsync of the file, then of the directory) when this returns."""
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


def reason(error: Exception) -> str:
    """Why a state file could not be read, in a few words."""
    if isinstance(error, OSError):
        return error_text(error)
    if isinstance(error, ValueError):
        return "it is not valid JSON"
    return str(error)
