"""A running root daemon holds its pantry's fd between repairs (held.py): another user swapping a directory on the
way between two repairs must be refused at the next one, never written through the old directory or the link."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import AS_NOBODY, EXCHANGE_FOR_SYMLINK, NOBODY, Running, needs_root_linux, wait_until, write_spec

SNACK = "hotpath-Goldfish"  # no directory of the system holds this name (the way is pointed at /etc)


@needs_root_linux("a root daemon and another user in a 1777 directory")
def test_a_root_daemon_refuses_a_parent_swapped_for_a_symlink_to_etc_between_two_repairs(
    start_daemon: Callable[..., Running], sticky_dir: Path, spec_path: Path
) -> None:
    parent = sticky_dir / "parent"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)  # its owner is trusted: the spec declares it (defaults: owner)
    pantry = parent / "pantry"
    write_spec(spec_path, [SNACK], pantry=str(pantry), extra=f"defaults:\n  owner: {NOBODY}\n")
    running = start_daemon(spec_path)
    for _ in range(2):  # the first repair holds the pantry, the second is served by it
        (pantry / SNACK).unlink()
        wait_until((pantry / SNACK).exists, 3.0, "the snack restored")

    exchange = [*AS_NOBODY, "/usr/bin/python3", "-c", EXCHANGE_FOR_SYMLINK, "parent.old", "parent", "/etc"]
    swap = subprocess.run(exchange, cwd=sticky_dir)  # in one step: a root daemon would make a missing parent again
    assert swap.returncode == 0 and parent.is_symlink()  # the attacker really did it
    (sticky_dir / "parent.old" / "pantry" / SNACK).unlink()  # heard through the watch on the moved pantry

    running.wait_event("conflict", timeout=3.0)
    assert not Path("/etc/pantry").exists()
    assert not (sticky_dir / "parent.old" / "pantry" / SNACK).exists()  # not recreated in the old directory
