"""The lone-deletion gate: which snacks a read that brought only their removals may have restored before the turn
(create first, bookkeeping after), decided from the desired state and the fight/backoff book; pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from snackwatch.backoff import Health, restores_all_now, restores_now
from snackwatch.desired import Desired, Entry

KEPT = 4096  # names whose answer the gate remembers per desired state; past that it forgets them all and asks again


def plain_entry(desired: Desired, directory: str, name: str) -> Entry | None:
    """The entry of a declared plain snack (an empty file with every default, of a spec that does not prune: its
    repair is one create), or None. A nested snack directory is no plain snack: its removal is a directory gone."""
    entry = desired.entry(directory, name)
    if entry is None or entry.spec.prune or not entry.snack.is_plain:
        return None
    return entry


class LoneGate:
    """Decides lone deletions. What plain_entry() answers for a name cannot change while one desired state is in
    force, so it is remembered (per desired state, at most KEPT names): a repeated deletion then asks one dict
    instead of the entry's spec and snack, cold objects after a quiet spell, before its create."""

    def __init__(self) -> None:
        self.desired: Desired | None = None
        self.plain: dict[tuple[str, str], Entry | None] = {}

    def restores(
        self, removed: Sequence[tuple[str, str]], desired: Desired, health: Health, now: float
    ) -> dict[str, list[Entry]] | None:
        """The entries of `removed` (directory, name) by directory, if the turn would repair every one of them at
        once and nothing else: each a plain snack (plain_entry) that neither fails, nor fights, nor waits out a
        backoff, and one flap more would not start a fight (backoff.restores_now, the fight gate's own answer).
        None if any one is not provably so: then they all take the normal turn (the fight gate, then the repair)."""
        if desired is not self.desired or len(self.plain) > KEPT:
            self.desired, self.plain = desired, {}
        plain, every = self.plain, restores_all_now(health)
        todo: dict[str, list[Entry]] = {}
        for key in removed:
            if key in plain:
                entry = plain[key]
            else:
                entry = plain[key] = plain_entry(desired, *key)
            if entry is None or (not every and not restores_now(health, entry.path, now)):
                return None
            listed = todo.get(entry.directory)
            if listed is None:
                todo[entry.directory] = [entry]
            elif entry not in listed:  # removed, made, removed again in one read: one repair
                listed.append(entry)
        return todo
