"""loguru's logger imported on first use: for modules the light commands import but that log only in the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["logger"]

if TYPE_CHECKING:
    from loguru import logger
else:

    class _OnFirstUse:
        def __getattr__(self, name: str) -> Any:
            from loguru import logger  # noqa: PLC0415  (the point: `snackwatch prune` never gets here)

            return getattr(logger, name)

    logger = _OnFirstUse()
