"""How lists of names read in one log or output line: the first few, then how many more."""

from __future__ import annotations


def name_list(names: list[str], shown: int = 10) -> str:
    """Names for one log line: the first few, then how many more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" (+{more} more)" if more > 0 else "")
