"""The C library's own symbols through ctypes, loaded once, on first use (light commands never import ctypes)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The process's C library (no library search, no subprocess), errno kept for each call; None where ctypes
    cannot load it."""
    import ctypes  # noqa: PLC0415  (only for the few calls Python's os module lacks)

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def last_error() -> OSError:
    """The errno the last libc call left, as an OSError."""
    import ctypes  # noqa: PLC0415
    import os  # noqa: PLC0415

    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))
