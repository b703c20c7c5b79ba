"""Other running daemons (other specs) that keep the same files as this one: found from their status files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from snackwatch.desired import Desired
from snackwatch.errors import SnackwatchError
from snackwatch.lazylog import logger
from snackwatch.lock import instance_pid
from snackwatch.specset import SpecSet
from snackwatch.state import read_json, state_dir, status_path
from snackwatch.status import lists_every_snack
from snackwatch.text import name_list

STATUS_SUFFIX = ".status.json"


def kept_paths(status: dict[str, Any]) -> set[str]:
    """The files another daemon keeps: its status lists them all (a status with `pantries` and no cap); else
    (an older daemon listing only snacks with a story, or a capped list) its spec on disk says."""
    snacks = status.get("snacks")
    listed = set(snacks) if isinstance(snacks, dict) else set()
    if lists_every_snack(status):
        return listed
    try:
        return listed | set(SpecSet.load(Path(status["config"]), strict=False).desired.by_path())
    except (OSError, SnackwatchError):
        return listed


def shared_files(status: dict[str, Any], desired: Desired) -> list[str]:
    """The files of `desired` that the daemon whose status this is keeps too, as logs name them."""
    ours = desired.by_path()
    return sorted(desired.display(ours[path]) for path in kept_paths(status) if path in ours)


def other_daemons(config: Path) -> list[dict[str, Any]]:
    """The status of every other daemon proven running: its lock held by the pid its status file names.

    The lock is asked first, so the status files that daemons long gone left behind are never read."""
    own = status_path(config).name
    try:
        names = sorted(name for name in os.listdir(state_dir()) if name.endswith(STATUS_SUFFIX) and name != own)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            pid = instance_pid(name.removesuffix(STATUS_SUFFIX))
        except (OSError, SnackwatchError):
            continue
        data = read_json(state_dir() / name) if pid is not None and pid > 0 else None
        if isinstance(data, dict) and data.get("pid") == pid and isinstance(data.get("config"), str):
            found.append(data)
    return found


def warn_about_neighbours(config: Path, desired: Desired) -> None:
    """One warning per other running daemon that keeps files this one keeps too, naming its spec. Never raises:
    another daemon's files are only read, and nothing in them may stop this one."""
    try:
        _warn_about_neighbours(config, desired)
    except Exception as error:  # a warning's worth of help must never cost the start
        logger.bind(event="shared_files_unknown").warning("cannot compare with other daemons' files: {!r}", error)


def _warn_about_neighbours(config: Path, desired: Desired) -> None:
    for status in other_daemons(config):
        files = shared_files(status, desired)
        if not files:
            continue
        what = f"{len(files)} file(s) ({name_list(files, 5)})"
        logger.bind(event="shared_files", other=status["config"], pid=status["pid"]).warning(
            "{} of spec {} are also kept by another daemon, for spec {} (pid {}): two daemons fight over them",
            what,
            config,
            status["config"],
            status["pid"],
        )
