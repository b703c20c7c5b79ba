"""The lone-deletion gate: which snacks a read that brought only their removals may have restored before the turn
(create first, bookkeeping after), decided from the desired state and the fight/backoff book; pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from snackwatch.backoff import Health, restores_all_now, restores_now
from snackwatch.desired import Desired, Entry


def lone_restores(
    removed: Sequence[tuple[str, str]], desired: Desired, health: Health, now: float
) -> dict[str, list[Entry]] | None:
    """The entries of `removed` (directory, name) by directory, if the turn would repair every one of them at once
    and nothing else: each is a declared plain snack (an empty file of a spec that does not prune: its repair is
    one create) that neither fails, nor fights, nor waits out a backoff, and one flap more would not start a
    fight. None if any one is not provably so: then they all take the normal turn (the fight gate first, then the
    repair). A nested snack directory is no plain snack: its removal is a directory gone."""
    todo: dict[str, list[Entry]] = {}
    files, every = desired.files, restores_all_now(health)
    for directory, name in removed:
        entries = files.get(directory)
        entry = entries.get(name) if entries is not None else None
        if entry is None or entry.spec.prune or not entry.snack.is_plain:
            return None
        if not every and not restores_now(health, entry.path, now):
            return None
        listed = todo.get(directory)
        if listed is None:
            todo[directory] = [entry]
        elif all(other.name != name for other in listed):  # removed, made, removed again in one read: one repair
            listed.append(entry)
    return todo
