"""What loading freed goes back to the system (memory.give_back), not only to the allocator's free lists."""

from __future__ import annotations

import sys

import pytest

from snackwatch.memory import give_back


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and glibc's malloc_trim are Linux's")
def test_memory_freed_below_a_live_block_is_given_back() -> None:
    blocks = [bytes(2000) + bytes([index % 256]) for index in range(20_000)]  # ~40 MB from malloc's heap
    pinned = blocks[-1]  # the heap's top stays in use: free() alone cannot shrink the heap
    del blocks
    before = _rss_kib()
    give_back()
    assert _rss_kib() < before - 20_000
    assert pinned[-1] == 19_999 % 256
