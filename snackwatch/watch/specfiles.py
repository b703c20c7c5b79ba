"""Spec files watched on their own inodes: a write in place is heard, a write beside a spec is not."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Collection, Container, Mapping

_FOLLOWING = (
    getattr(os, "O_PATH", os.O_RDONLY) | os.O_CLOEXEC
)  # a spec reached through a symlink is watched where it is
_ABSENT = (errno.ENOENT, errno.ENOTDIR)  # not there (yet): its directory hears it made

Key = tuple[str, str]  # a spec directory, a name in it


class SpecFiles:
    """Which inode watch is which spec file. One inode may be reached by several names (a ConfigMap's
    `spec.yaml` and `..2024_x/spec.yaml`: one watch, both names told). A spec directory holding a spec file
    that could not be watched (inotify limits, no search permission) is `wide`: heard whole, as it was before
    spec files had watches of their own."""

    def __init__(self, add: Callable[[int], int], remove: Callable[[int], object]) -> None:
        self.add = add  # an fd of the file -> its watch descriptor (raises OSError)
        self.remove = remove  # a watch descriptor no longer wanted
        self.names: dict[int, set[Key]] = {}
        self.wd_of: dict[Key, int] = {}
        self.wide: set[str] = set()

    def refresh(self, spec_names: Mapping[str, Container[str]], only: str | None = None) -> set[str]:
        """Watch every spec file (or those of the directory `only`) as it is now: a file replaced, re-pointed
        or gone is watched anew or forgotten. Returns the directories that became wide or narrow again."""
        directories = [only] if only is not None else list(spec_names)
        before = set(self.wide)
        kept: set[Key] = set()
        for directory in directories:
            wanted = spec_names.get(directory)
            if wanted is None:
                continue
            failed = False
            for name in _names_in(directory, wanted):
                if self._watch((directory, name)):
                    kept.add((directory, name))
                else:
                    failed = True
            (self.wide.add if failed else self.wide.discard)(directory)
        looked = set(directories)
        for key in [key for key in self.wd_of if key not in kept and (only is None or key[0] in looked)]:
            self._forget(key)
        if only is None:
            self.wide &= set(spec_names)
        return before ^ self.wide

    def gone(self, wd: int, *, moved: bool) -> None:
        """The file was removed or moved away: forget its names (a moved file's watch is ours to drop)."""
        for key in self.names.pop(wd, set()):
            self.wd_of.pop(key, None)
        if moved:
            self.remove(wd)

    def _watch(self, key: Key) -> bool:
        """Watch the regular file a name leads to; False if it is there but could not be watched."""
        try:
            fd = os.open(os.path.join(*key), _FOLLOWING)
        except OSError as error:
            self._forget(key)
            return error.errno in _ABSENT
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory (`..data`), a FIFO: its name is heard
                self._forget(key)
                return True
            wd = self.add(fd)
        except OSError:
            self._forget(key)
            return False
        finally:
            os.close(fd)
        if self.wd_of.get(key) != wd:
            self._forget(key)
            self.wd_of[key] = wd
            self.names.setdefault(wd, set()).add(key)
        return True

    def _forget(self, key: Key) -> None:
        wd = self.wd_of.pop(key, None)
        if wd is None:
            return
        names = self.names.get(wd, set())
        names.discard(key)
        if not names:
            self.names.pop(wd, None)
            self.remove(wd)


def _names_in(directory: str, wanted: Container[str]) -> list[str]:
    """The spec names of a directory: listed if known, else (a conf.d pattern) the matching names in it now."""
    if isinstance(wanted, Collection):
        return [name for name in wanted if isinstance(name, str)]
    try:
        return [name for name in os.listdir(directory) if name in wanted]
    except OSError:
        return []
