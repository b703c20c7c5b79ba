"""One pass's directory fds: each snack directory opened from the nearest ancestor the pass holds, not from "/"."""

from __future__ import annotations

import contextlib
import os
from types import TracebackType

from snackwatch.chase import WalkRules, open_below, open_pantry


class PassWalk:
    """The safe walk (chase.open_directory) shared by the directories of one pass (arming, a watcher's arm, a full
    pass): a directory below one the pass opened earlier with the same pantry and rules is reached from that fd
    by the same no-follow, owner-checked descent (chase.open_below), so a pantry of 1,000 directories is walked
    from "/" once, not 1,000 times. Only the chain of ancestors of the last directory opened is held (a few fds,
    whatever the pantry's size), and only for the pass: use it as a context manager. A directory replaced while
    the pass runs is seen as it was when the pass reached it, as a walk started then would; its events bring the
    next pass, which walks anew."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, str, WalkRules | None]] = {}  # directory -> fd, its pantry, its rules

    def open(self, directory: str, pantry: str, *, create: bool, rules: WalkRules | None = None) -> int:
        """An fd for `directory` under `pantry` (the caller closes it): the same fd, refusals and creations as
        chase.open_directory(directory, pantry, create=create, rules=rules)."""
        self._keep_ancestors_of(directory)
        nearest = self._nearest(pantry, rules)
        if nearest is None:
            fd = open_pantry(pantry, create=create, rules=rules)
            if directory == pantry:
                self._hold(directory, fd, pantry, rules)
                return fd
            self.held[pantry] = (fd, pantry, rules)
            nearest = pantry
        if nearest == directory:
            return os.dup(self.held[directory][0])
        fd = open_below(self.held[nearest][0], nearest, directory, create=create, rules=rules)
        self._hold(directory, fd, pantry, rules)
        return fd

    def _hold(self, directory: str, fd: int, pantry: str, rules: WalkRules | None) -> None:
        """Keep a copy of `fd` for the directories below it (the caller keeps `fd`)."""
        with contextlib.suppress(OSError):  # out of fds: the next directory walks from further up
            self.held[directory] = (os.dup(fd), pantry, rules)

    def _nearest(self, pantry: str, rules: WalkRules | None) -> str | None:
        """The deepest held directory (all are the last one's ancestors) from a walk to `pantry` with `rules`."""
        best: str | None = None
        for held, (_, its_pantry, its_rules) in self.held.items():
            if its_pantry == pantry and its_rules is rules and (best is None or len(held) > len(best)):
                best = held
        return best

    def _keep_ancestors_of(self, directory: str) -> None:
        for held in [d for d in self.held if not _at_or_above(d, directory)]:
            os.close(self.held.pop(held)[0])

    def close(self) -> None:
        for fd, _, _ in self.held.values():
            os.close(fd)
        self.held.clear()

    def __enter__(self) -> PassWalk:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _at_or_above(ancestor: str, directory: str) -> bool:
    return directory == ancestor or directory.startswith(os.path.join(ancestor, ""))
