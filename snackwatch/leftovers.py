"""Crash leftovers: our own stale temp files (`.snackwatch-PID-HEX.tmp`), told apart by name, owner and age, removed."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterable

from snackwatch.lazylog import logger  # loguru itself only when something is removed
from snackwatch.spec import RESERVED_PREFIX
from snackwatch.text import name_list

STALE_AFTER = 60.0  # seconds: a temp file this old is nobody's write in flight, whatever its pid
_TEMP_NAME = re.compile(re.escape(RESERVED_PREFIX) + r"([1-9][0-9]{0,9})-[0-9a-f]{12}\.tmp")


def in_flight(pid: int, mtime: float, now: float, live: dict[int, bool]) -> bool:
    """Whether a temp file named with `pid`, last written at `mtime`, may be a write still in flight: its pid is a
    live snackwatch process (this one included) and it is younger than STALE_AFTER. `live` caches the pid checks."""
    if now - mtime >= STALE_AFTER:
        return False
    if pid not in live:
        live[pid] = pid == os.getpid() or _is_snackwatch(pid)
    return live[pid]


def _is_snackwatch(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return b"snackwatch" in stream.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc/self") and _alive(pid)  # no /proc (macOS): any live process counts
    except OSError:  # hidden from us (hidepid): assume it is one, so only age removes its temp files
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's, alive
        return True
    return True


def remove_stale(directory_fd: int, names: Iterable[str]) -> int:
    """Remove the stale temp files among `names` (entries of the directory seen by a scan): how many went.

    Only an exact `.snackwatch-PID-HEX.tmp` name, only a regular file with one link owned by our euid (fstatat,
    never following a symlink), only when not in flight; unlinked relative to `directory_fd`. Anything else is left
    alone.
    """
    removed, now, euid = 0, time.time(), os.geteuid()
    live: dict[int, bool] = {}  # pid -> a live snackwatch, asked once per pass
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match is None:
            continue
        try:
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != euid or info.st_nlink != 1:
                continue  # a hard link planted under our name is another file's name: never ours to remove
            if in_flight(int(match.group(1)), info.st_mtime, now, live):
                continue
            os.unlink(name, dir_fd=directory_fd)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: a leftover is never worth a failure
        removed += 1
    return removed


def log_removed(removed: dict[str, int]) -> None:
    """One line for what a pass removed (count by directory); nothing if nothing."""
    if removed:
        directories = sorted(removed)
        logger.bind(event="leftovers_removed", count=sum(removed.values()), directories=directories).info(
            "removed {} stale temp file(s) left by a killed run, in {}",
            sum(removed.values()),
            name_list(directories),
        )
