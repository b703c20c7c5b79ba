"""When a full pass is due without an event: --resync, the watcher's own interval, and soon after an error."""

from __future__ import annotations

from collections.abc import Callable

from snackwatch.backoff import BackoffPolicy
from snackwatch.trigger import Trigger


class Resync:
    """The periodic full pass (off unless asked for, or the backend needs one) and the resync after an error."""

    def __init__(
        self, interval: float | None, backoff: BackoffPolicy, backend_interval: Callable[[], float | None]
    ) -> None:
        self.interval = interval
        self.backoff = backoff
        self.backend_interval = backend_interval  # polling may miss a change between snapshots
        self.next_periodic: float | None = None
        self.after_error: float | None = None
        self.errors_in_a_row = 0

    def next_due(self) -> float | None:
        due = [when for when in (self.next_periodic, self.after_error) if when is not None]
        return min(due) if due else None

    def due(self, now: float, trigger: Trigger | None) -> Trigger | None:
        """The full pass's trigger: a resync after an error wins; a periodic one runs only if nothing else does."""
        if self.after_error is not None and now >= self.after_error:
            self.after_error = None
            trigger = Trigger.AFTER_ERROR
        if self._periodic(now):
            trigger = trigger or Trigger.PERIODIC
        return trigger

    def _periodic(self, now: float) -> bool:
        intervals = [i for i in (self.interval, self.backend_interval()) if i is not None]
        if not intervals:
            self.next_periodic = None
        elif self.next_periodic is None:
            self.next_periodic = now + min(intervals)
        elif now >= self.next_periodic:
            self.next_periodic = now + min(intervals)
            return True
        return False

    def failed(self, now: float) -> float:
        """An unexpected error: resync after a delay that grows with the errors in a row."""
        self.errors_in_a_row += 1
        delay = self.backoff.delay(self.errors_in_a_row)
        self.after_error = now + delay
        return delay

    def succeeded(self) -> None:
        """A full pass got through: the error streak is over."""
        self.errors_in_a_row = 0
