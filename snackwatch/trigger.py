"""Why a reconcile ran: one closed set of reasons, whose text is what status, metrics and logs show."""

from __future__ import annotations

from enum import Enum


class Trigger(Enum):
    """What made the daemon look: a full pass's reason, or a targeted repair's."""

    START = "start"
    SPEC_RELOAD = "spec reload"
    DIRECTORY = "directory recreated"
    OVERFLOW = "overflow resync"
    PERIODIC = "periodic resync"
    AFTER_ERROR = "resync after an error"
    DELETED = "deleted or moved away"
    CHANGED = "changed on disk"  # an enforced entry's content, mode or owner changed in place
    RETRY = "retry"
