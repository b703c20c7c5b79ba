"""Raw inotify through ctypes: the bench's timestamping reader, and the minimal restorer that is the floor."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import struct
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
APPEARED = IN_CREATE | IN_MOVED_TO
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int


class Event(NamedTuple):
    """One inotify event; `at_ns` is perf_counter_ns() taken as soon as read() returned it."""

    wd: int
    mask: int
    name: str
    at_ns: int


def _checked(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def parse(data: bytes, at_ns: int) -> Iterator[Event]:
    """Split one read() buffer into events."""
    offset = 0
    while offset < len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        name = data[start : start + length].rstrip(b"\0")
        yield Event(wd, mask, os.fsdecode(name), at_ns)
        offset = start + length


class Inotify:
    """An inotify instance (inotify_init1) with watches (inotify_add_watch) and a timed read."""

    def __init__(self, *, blocking: bool = False) -> None:
        flags = IN_CLOEXEC | (0 if blocking else IN_NONBLOCK)
        self.fd = _checked(_libc.inotify_init1(flags), "inotify_init1")
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Add a watch; returns its descriptor."""
        return _checked(_libc.inotify_add_watch(self.fd, os.fsencode(path), mask), f"inotify_add_watch {path}")

    def read(self, timeout: float | None) -> list[Event]:
        """The events that arrive within `timeout` seconds (None: wait for some); [] on timeout."""
        millis = None if timeout is None else max(0, math.ceil(timeout * 1000))
        if not self._poll.poll(millis):
            return []
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        return list(parse(data, time.perf_counter_ns()))

    def close(self) -> None:
        os.close(self.fd)


def restore_forever(pantry: str) -> None:
    """The floor: block in read(); recreate every name deleted or moved away with one O_CREAT|O_EXCL open."""
    inotify = Inotify(blocking=True)
    inotify.watch(pantry, IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR)
    pantry_fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    print("ready", flush=True)
    while True:
        for event in parse(os.read(inotify.fd, 1 << 16), 0):
            if event.name:
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(event.name, _CREATE_FLAGS, 0o666, dir_fd=pantry_fd))


if __name__ == "__main__":
    restore_forever(sys.argv[1])
