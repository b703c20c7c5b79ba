"""Opt-in, guarded pruning: delete files snackwatch created that left a `prune: true` spec, within a breaker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from snackwatch.apply import remove_owned_file
from snackwatch.desired import Desired
from snackwatch.lock import SpecLock, running_pid
from snackwatch.plan import breaker_allows, name_list, prune_candidates
from snackwatch.state import OwnershipRecord, owned_path, prune_confirm_path, write_atomically


class Pruner:
    """The daemon's side: records what it creates for pruning specs, and prunes after each good reload."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.owned = OwnershipRecord(owned_path(config))
        self.warned: frozenset[str] = frozenset()

    def record_created(self, path: str, info: os.stat_result, spec: Path) -> None:
        """A file the daemon just created for a pruning spec: remember its identity."""
        self.owned.record(path, info, spec)

    def save(self) -> None:
        """Write the ownership record if it changed."""
        self.owned.save()

    def take_confirmation(self) -> bool:
        """`snackwatch prune --yes` leaves a one-shot confirmation for the running daemon."""
        try:
            prune_confirm_path(self.config).unlink()
        except FileNotFoundError:
            return False
        return True

    def prune(self, desired: Desired, *, confirmed: bool) -> None:
        """Delete what left its spec, unless that is more than the breaker allows and not confirmed."""
        from loguru import logger  # noqa: PLC0415  (here: `snackwatch prune`, below, must not import loguru)

        if not any(spec.prune for spec in desired.specs):
            return
        owners, candidates = _candidates(self.owned, desired)
        for spec, files in candidates.items():
            managed = sum(1 for owner in owners.values() if owner == spec)
            if confirmed or breaker_allows(len(files), managed):
                self._remove(files)
            elif self.warned != frozenset(files):
                self.warned = frozenset(files)
                logger.bind(event="prune_blocked", count=len(files), spec=spec).warning(
                    "not pruning {} files that left {}: more than max(3, 25%) of the {} it created; "
                    "kept them all. If that is intended, run: snackwatch prune --yes -c {}",
                    len(files),
                    spec,
                    managed,
                    self.config,
                )
        self.owned.save()

    def _remove(self, files: list[str]) -> None:
        from loguru import logger  # noqa: PLC0415

        pruned: list[str] = []
        kept: list[str] = []
        for file in files:
            (pruned if remove_owned_file(file, self.owned) else kept).append(file)
            self.owned.forget(file)
        if pruned:
            logger.bind(event="pruned", files=pruned).info("pruned {} (left the spec)", name_list(pruned))
        if kept:
            logger.bind(event="prune_kept", files=kept).warning(
                "not pruning {}: changed or replaced since snackwatch created it", name_list(kept)
            )


def _candidates(owned: OwnershipRecord, desired: Desired) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Who declared each file we created, and the files that left a pruning spec, by spec."""
    owners = {path: str(info["spec"]) for path, info in owned.files.items()}
    prunable = {str(spec.path) for spec in desired.specs if spec.prune}
    return owners, prune_candidates(owners, set(desired.by_path()), prunable)


def prune_pending(config: Path, desired: Desired) -> dict[str, list[str]]:
    """Files snackwatch created that left a spec with prune: true (what `prune --yes` would delete)."""
    return _candidates(OwnershipRecord(owned_path(config)), desired)[1]


def confirm_prune(config: Path, desired: Desired) -> str:
    """Past the circuit breaker once: ask the running daemon, or prune here if none runs."""
    pid = running_pid(config)
    if pid is not None and pid > 0:
        write_atomically(prune_confirm_path(config), f"{time.time()}\n")
        os.kill(pid, signal.SIGHUP)
        return f"asked the running daemon (pid {pid}) to prune; see its log"
    lock = SpecLock(config)  # no daemon may start while we delete
    try:
        owned = OwnershipRecord(owned_path(config))
        pruned = []
        for files in _candidates(owned, desired)[1].values():
            for file in files:
                if remove_owned_file(file, owned):
                    pruned.append(file)
                owned.forget(file)
        owned.save()
    finally:
        lock.release()
    return "\n".join(f"pruned {file}" for file in pruned) or "nothing to prune"
