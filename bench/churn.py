"""The storm's attacker: one unprivileged process churning a pantry as fast as it can, for a bounded time.

Standard library only: it runs under the system python as another user (setpriv), not the bench's venv.
Prints "ready" once set up, then one JSON line {"ops", "seconds", "cpu_s"} when its time is up.
  churn.py churn DIR SECONDS        create and delete unrelated files
  churn.py attrib DIR SECONDS       touch and chmod unrelated files, and touch DIR itself (IN_ATTRIB)
  churn.py flip DIR NAME SECONDS    flip DIR/NAME between symlink, directory and missing (DIR is ours)
  churn.py rename DIR SECONDS       rename unrelated files back and forth (IN_MOVED_FROM + IN_MOVED_TO)
  churn.py mixed DIR SECONDS        create an unrelated file, rename it, unlink it
  churn.py junk DIR COUNT           create COUNT empty junk files once (mknod: one syscall each), then stop
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
UNRELATED = 64  # distinct unrelated names, reused: the pantry stays small


def churn(dir_fd: int, names: list[str]) -> Callable[[int], None]:
    def step(index: int) -> None:
        name = names[index % UNRELATED]
        os.close(os.open(name, FLAGS, 0o644, dir_fd=dir_fd))
        os.unlink(name, dir_fd=dir_fd)

    return step


def attrib(dir_fd: int, names: list[str]) -> Callable[[int], None]:
    for name in names:
        os.close(os.open(name, FLAGS, 0o644, dir_fd=dir_fd))

    def step(index: int) -> None:
        name = names[index % UNRELATED]
        os.utime(name, dir_fd=dir_fd)
        os.chmod(name, 0o600 if index & 1 else 0o644, dir_fd=dir_fd)
        os.utime(dir_fd)  # the pantry itself: writable by all, so any user may set its times to now

    return step


def flip(dir_fd: int, name: str) -> Callable[[int], None]:
    def step(index: int) -> None:
        try:
            os.symlink("/nonexistent", name, dir_fd=dir_fd)
            os.unlink(name, dir_fd=dir_fd)
            os.mkdir(name, dir_fd=dir_fd)
            os.rmdir(name, dir_fd=dir_fd)
        except FileExistsError:  # the daemon put a file back while the place was empty: remove it (our dir)
            os.unlink(name, dir_fd=dir_fd)

    return step


def rename(dir_fd: int, names: list[str]) -> Callable[[int], None]:
    for name in names:
        os.close(os.open(name, FLAGS, 0o644, dir_fd=dir_fd))
    moved = [f"{name}.moved" for name in names]

    def step(index: int) -> None:
        slot = index % UNRELATED
        pair = (names[slot], moved[slot]) if (index // UNRELATED) & 1 == 0 else (moved[slot], names[slot])
        os.rename(*pair, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    return step


def mixed(dir_fd: int, names: list[str]) -> Callable[[int], None]:
    def step(index: int) -> None:
        name = names[index % UNRELATED]
        os.close(os.open(name, FLAGS, 0o644, dir_fd=dir_fd))
        os.rename(name, f"{name}.moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.unlink(f"{name}.moved", dir_fd=dir_fd)

    return step


def junk(dir_fd: int, count: int) -> int:
    """COUNT empty files owned by us, as fast as one process makes them."""
    mode = stat.S_IFREG | 0o644
    for index in range(count):
        os.mknod(f"junk{index:07d}", mode, dir_fd=dir_fd)
    return count


def report(ops: int, started: float) -> None:
    times = os.times()
    print(json.dumps({"ops": ops, "seconds": time.perf_counter() - started, "cpu_s": times.user + times.system}))


def main(argv: list[str]) -> None:
    mode, directory = argv[0], argv[1]
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if mode == "junk":
        print("ready", flush=True)
        started = time.perf_counter()
        report(junk(dir_fd, int(argv[2])), started)
        return
    seconds = float(argv[-1])
    names = [f"unrelated-{os.getpid()}-{index}" for index in range(UNRELATED)]
    modes = {"churn": churn, "attrib": attrib, "rename": rename, "mixed": mixed}
    step = flip(dir_fd, argv[2]) if mode == "flip" else modes[mode](dir_fd, names)
    print("ready", flush=True)
    ops, started = 0, time.perf_counter()
    end = started + seconds
    while True:
        for _ in range(100):
            step(ops)
            ops += 1
        if time.perf_counter() >= end:
            break
    report(ops, started)


if __name__ == "__main__":
    main(sys.argv[1:])
