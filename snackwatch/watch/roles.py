"""Why each directory is watched: it holds snacks, specs, or names that lead to one that does (pure but one lstat)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from snackwatch.chase import may_hold_followed_links


@dataclass(frozen=True)
class Roles:
    """Why a directory is watched: it holds snacks, specs, or both; `links`: names in it that lead to a
    watched directory (a pantry or spec directory, maybe a symlink), so re-pointing or re-creating one is seen.

    `steady`: the links that are plain directories (not symlinks, not missing). Such a name can only change
    by that directory being moved away or removed, which its own watch hears (IN_MOVE_SELF, IN_DELETE_SELF),
    or removed while someone holds it open (IN_DELETE here): a parent whose links are all steady need not hear
    an app saving beside them. A link that is missing or a symlink is heard by name (created, re-pointed)."""

    snacks: bool
    specs: bool
    links: frozenset[str] = frozenset()
    steady: frozenset[str] = frozenset()

    @property
    def primary(self) -> bool:
        """Watched for its own sake (not only as the parent of one that is)."""
        return self.snacks or self.specs

    @property
    def named(self) -> frozenset[str]:
        """The links heard by name: those whose own watch cannot tell (missing, a symlink)."""
        return self.links - self.steady

    def __or__(self, other: Roles) -> Roles:
        return Roles(
            self.snacks or other.snacks,
            self.specs or other.specs,
            self.links | other.links,
            self.steady | other.steady,
        )


def roles_for(snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> dict[str, Roles]:
    """What to watch: every snack and spec directory, the parent of each top one (it sees it re-pointed or
    re-created), and the ancestors above that which could hold a symlink snackwatch follows (owned by root or
    by us, not writable by others: `/srv` in `/srv/app -> releases/v2`). World-writable ancestors such as /tmp
    are not watched: no symlink there is followed, and their churn would cost. A name that is a plain directory
    now is `steady`: its own watch hears it moved or removed (see Roles)."""
    snack_set, spec_set = set(snack_dirs), set(spec_dirs)
    wanted = {d: Roles(d in snack_set, d in spec_set) for d in snack_set | spec_set}
    for directory in list(wanted):
        child, (parent, name) = directory, os.path.split(directory)
        if parent in snack_set:
            continue
        while parent and parent != child:
            steady = frozenset({name}) if _is_plain_directory(child) else frozenset()
            wanted[parent] = wanted.get(parent, Roles(False, False)) | Roles(False, False, frozenset({name}), steady)
            child, (parent, name) = parent, os.path.split(parent)
            if not may_hold_followed_links(parent):  # no symlink followed there: nothing above to watch
                break
    return wanted


def _is_plain_directory(path: str) -> bool:
    """A directory itself, not a symlink to one (lstat: what the name is now)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
