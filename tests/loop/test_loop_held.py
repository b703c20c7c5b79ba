"""The loop and its held snack directories (held.py): kept between targeted repairs, dropped by what the loop
itself learns (an overflow, a directory gone), closed when the daemon stops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write_spec
from fake_loop import Loop, start_loop

from snackwatch.dirty import Mark
from snackwatch.held import HOLD_IDLE

pytestmark = pytest.mark.usefixtures("own_state_dirs")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def restore(loop: Loop, name: str) -> None:
    (loop.pantry / name).unlink()
    loop.watcher.removed(loop.pantry, name)
    loop.turn()
    assert (loop.pantry / name).exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="counts fds in Linux's /proc")
def test_the_loop_holds_its_pantry_between_repairs_releases_it_when_unused_drops_it_on_an_overflow_or_a_loss(
    spec_path: Path,
) -> None:
    write_spec(spec_path, ["Goldfish", "Popcorn"])
    before = open_fds()
    loop = start_loop(spec_path)
    try:
        held = loop.parts.held_dirs
        served = []
        for name in ("Goldfish", "Popcorn") * 3:  # a mount change elsewhere (other tests) may drop one: again
            restore(loop, name)
            served.append(held.entries[str(loop.pantry)])
            if len(served) >= 3 and served[-1] is served[-2]:
                break
        assert served[-1] is served[-2]  # the second repair was served without a walk

        due = loop.parts.next_due()
        assert due is not None and due <= loop.clock.now + HOLD_IDLE
        loop.turn(advance=HOLD_IDLE)
        assert not held.entries and not held.watching  # unused for HOLD_IDLE: released (an fd pins its mount)
        assert loop.parts.next_due() is None  # and nothing more is due: idle costs nothing
        restore(loop, "Popcorn")
        assert str(loop.pantry) in held.entries

        loop.watcher.mark(Mark.OVERFLOW)
        loop.turn()
        assert not held.entries and not held.watching  # an overflow: nothing held is vouched for
        restore(loop, "Goldfish")
        assert str(loop.pantry) in held.entries

        loop.watcher.mark(Mark.GONE, loop.pantry)
        loop.turn()
        assert not held.entries  # a directory gone or replaced: every held one is walked to again
    finally:
        loop.close()
    assert open_fds() == before
