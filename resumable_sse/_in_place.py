"""Writing a stream into a local log in place: the exact side of the producer's hot path.

The producer appends an ASCII ``str`` that fits its *budget* itself, checking nothing
else and counting nothing: the budget is what the stream may still write, in bytes plus
one per event, before a limit could be crossed or other tasks must get a turn. Every
other item, and the first past the budget, goes to :meth:`InPlaceWriter.admit`, which
counts what the hot path wrote (events from the log's length, bytes from the budget
spent), checks the item exactly, appends it and grants the next budget.
"""

from __future__ import annotations

import time

import anyio.lowlevel
from typing_extensions import final

from ._events import encode_log_item
from ._settings import Settings, limit_error
from .stores._contract import LocalLog

__all__ = ["LOCAL_BURST", "InPlaceWriter"]

#: A producer writing in place lets other tasks run after this many bytes (plus one per
#: event) in a row from a generator that never waits: about 1,600 tokens of 4 bytes.
LOCAL_BURST = 8192


@final
class InPlaceWriter:
    """Counts, checks and paces one producer's events in a local log."""

    __slots__ = (
        "_base",
        "_burst",
        "_count",
        "_granted",
        "_log",
        "_reported",
        "_settings",
        "_started",
        "_total",
    )

    def __init__(self, log: LocalLog, settings: Settings, started: float) -> None:
        self._log = log
        self._settings = settings
        self._started = started  # when the producer started, for the first_event hook
        self._base = len(log.items)  # the log's length before the first event
        self._count = 0  # events written
        self._total = 0  # their bytes
        self._reported = 0  # events counted by the telemetry hooks
        self._granted = 0  # the budget last granted
        self._burst = 0  # bytes (plus one per event) written since other tasks ran

    def settle(self, budget: int) -> None:
        """Count the events the hot path wrote since the last grant, which left ``budget``."""
        written = len(self._log.items) - self._base - self._count
        spent = self._granted - budget
        self._count += written
        self._total += spent - written
        self._burst += spent
        self._granted = budget

    async def admit(self, item: object, budget: int) -> int:
        """Check and append ``item``, first letting other tasks run if a burst is spent;
        return the next budget.

        Raises:
            LimitExceededError: the item would pass a limit.
            InvalidItemError: the item cannot be sent.
        """
        self.settle(budget)
        log, settings, count = self._log, self._settings, self._count
        if count >= settings.max_events:
            raise limit_error(settings, 0, count + 1, 0)
        hooks = settings.telemetry
        if not count:
            hooks.first_event(time.perf_counter() - self._started)
        elif self._burst >= LOCAL_BURST:
            hooks.events_produced(count - self._reported)
            self._reported, self._burst = count, 0
            log.wake()
            await anyio.lowlevel.checkpoint()
        logged, size = encode_log_item(item, settings.event, settings.terminal)
        total = self._total + size
        if size > settings.max_event_bytes or total > settings.max_bytes:
            raise limit_error(settings, size, count + 1, total)
        log.items.append(logged)
        if type(logged) is not str:
            log.last_entry = len(log.items)
        self._count, self._total = count + 1, total
        self._burst += size + 1
        if log.waiting:
            log.wake()
        # Within this budget no event can pass max_event_bytes (an event costs its
        # bytes plus one), max_bytes or max_events (an event costs at least one).
        self._granted = max(
            0,
            min(
                settings.max_event_bytes + 1,
                settings.max_bytes - total,
                settings.max_events - count - 1,
                LOCAL_BURST - self._burst,
            ),
        )
        return self._granted

    def close(self, budget: int) -> int:
        """Count the last events (the hot path left ``budget``); return how many were written."""
        self.settle(budget)
        self._settings.telemetry.events_produced(self._count - self._reported)
        self._reported = self._count
        return self._count
