"""Why each directory is watched: it holds snacks, specs, or names that lead to one that does (pure but one lstat)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from snackwatch.chase import may_hold_followed_links


@dataclass(frozen=True)
class Roles:
    """Why a directory is watched: it holds snacks, specs, or both; `links`: names in it that lead to a
    watched directory (a pantry or spec directory, maybe a symlink), so re-pointing or re-creating one is seen."""

    snacks: bool
    specs: bool
    links: frozenset[str] = frozenset()

    @property
    def primary(self) -> bool:
        """Watched for its own sake (not only as the parent of one that is)."""
        return self.snacks or self.specs

    def __or__(self, other: Roles) -> Roles:
        return Roles(self.snacks or other.snacks, self.specs or other.specs, self.links | other.links)


def roles_for(snack_dirs: Iterable[str], spec_dirs: Iterable[str]) -> dict[str, Roles]:
    """What to watch: every snack and spec directory, the parent of each top one (it sees it re-pointed or
    re-created), and the ancestors above that which could hold a symlink snackwatch follows (owned by root or
    by us, not writable by others: `/srv` in `/srv/app -> releases/v2`). World-writable ancestors such as /tmp
    are not watched: no symlink there is followed, and their churn would cost."""
    snack_set, spec_set = set(snack_dirs), set(spec_dirs)
    wanted = {d: Roles(d in snack_set, d in spec_set) for d in snack_set | spec_set}
    for directory in list(wanted):
        child, (parent, name) = directory, os.path.split(directory)
        if parent in snack_set:
            continue
        while parent and parent != child:
            wanted[parent] = wanted.get(parent, Roles(False, False)) | Roles(False, False, frozenset({name}))
            child, (parent, name) = parent, os.path.split(parent)
            if not may_hold_followed_links(parent):  # no symlink followed there: nothing above to watch
                break
    return wanted
