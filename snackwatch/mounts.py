"""Wakes the loop when the mount table changes: a filesystem remounted read-write, or one mounted over the pantry."""

from __future__ import annotations

import os
import select


class MountTable:
    """/proc/self/mountinfo signals POLLPRI when mounts change; absent (None fd) where there is no such file."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = None

    def register(self, poller: select.poll) -> None:
        if self.fd is not None:
            poller.register(self.fd, select.POLLPRI)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
