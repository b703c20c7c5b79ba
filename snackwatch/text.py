"""How names read in one log or output line: quoted when their text would hide a difference, lists cut short."""

from __future__ import annotations

from snackwatch.lint import shown_name


def name_list(names: list[str], shown: int = 10, *, quote: bool = True) -> str:
    """Names for one log line: the first few (quoted when their text would hide a difference, unless the caller
    already did), then how many more."""
    more = len(names) - shown
    first = map(shown_name, names[:shown]) if quote else names[:shown]
    return ", ".join(first) + (f" (+{more} more)" if more > 0 else "")
