"""Wakes the loop when the mount table changes, and says which mount points changed (a remount, or a mount over us)."""

from __future__ import annotations

import bisect
import os
import re
import select
from collections.abc import Iterable, Sequence

_OCTAL = re.compile(r"\\([0-7]{3})")


def parse_mountinfo(text: str) -> dict[str, tuple[str, str]]:
    """Mount id -> (mount point, options) for each line of /proc/self/mountinfo (escapes such as \\040 undone)."""
    mounts = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        tail = fields[fields.index("-") + 1 :] if "-" in fields else []
        point = _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), fields[4])
        mounts[fields[0]] = (point, fields[5] + " " + " ".join(tail[2:3]))
    return mounts


def under(points: Iterable[str], directories: Sequence[str]) -> set[str]:
    """The directories at or below any of these mount points (mounted over, or over one of their parents).

    `directories` is sorted: each mount point costs a binary search plus the directories it covers, so an
    unrelated mount costs next to nothing even with 100,000 directories."""
    found: set[str] = set()
    for point in points:
        index = bisect.bisect_left(directories, point)
        if index < len(directories) and directories[index] == point:
            found.add(point)
        prefix = point.rstrip("/") + "/"  # everything below it is one run of the sorted list
        index = bisect.bisect_left(directories, prefix)
        while index < len(directories) and directories[index].startswith(prefix):
            found.add(directories[index])
            index += 1
    return found


class MountTable:
    """/proc/self/mountinfo signals POLLPRI when mounts change; absent (None fd) where there is no such file."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = None
        self.mounts = self._read()

    def _read(self) -> dict[str, tuple[str, str]]:
        if self.fd is None:
            return {}
        chunks = []
        offset = 0
        while chunk := os.pread(self.fd, 65536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return parse_mountinfo(b"".join(chunks).decode(errors="surrogateescape"))

    def recheck(self, directories: Sequence[str], spec_dirs: Iterable[str]) -> tuple[set[str], set[str], str]:
        """After a change: the snack and spec directories a mount or unmount covered, and what happened in words.

        `directories` is sorted once per desired state by the caller (see `under`)."""
        points, remounted = self.changes()
        covered, specs = under(points, directories), under(points, sorted(spec_dirs))
        said = f"{len(points)} mount points{', remounts' if remounted else ''}"
        return covered, specs, said

    def changes(self) -> tuple[set[str], bool]:
        """Since the last look: mount points mounted or unmounted, and whether anything was remounted."""
        old, self.mounts = self.mounts, self._read()
        moved = {old[i][0] for i in old.keys() - self.mounts.keys()} | {
            self.mounts[i][0] for i in self.mounts.keys() - old.keys()
        }
        remounted = any(old[i] != self.mounts[i] for i in old.keys() & self.mounts.keys())
        return moved, remounted

    def register(self, poller: select.poll) -> None:
        if self.fd is not None:
            poller.register(self.fd, select.POLLPRI)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
