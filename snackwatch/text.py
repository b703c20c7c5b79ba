"""How names read in one log or output line: quoted when their text would hide a difference, lists cut short."""

from __future__ import annotations

from snackwatch.lint import shown_name


def name_list(names: list[str], shown: int = 10) -> str:
    """Names for one log line: the first few (quoted when their text would hide a difference), then how many more."""
    more = len(names) - shown
    return ", ".join(map(shown_name, names[:shown])) + (f" (+{more} more)" if more > 0 else "")
