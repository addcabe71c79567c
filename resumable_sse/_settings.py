"""How producers behave, and the error a stream gets for passing one of its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from typing_extensions import final

from ._events import TerminalEvents
from ._exceptions import LimitExceededError
from ._telemetry import NO_HOOKS, Hooks

__all__ = ["BATCH", "DEFAULT_ERROR_MESSAGE", "Settings", "limit_error"]

DEFAULT_ERROR_MESSAGE = "The stream failed before it was complete."

#: The most events a producer queues for one write to a store with I/O (a burst's batch
#: size): one round trip per this many events. A consumer reads as many at a time by
#: default, so that one read takes a whole batch.
BATCH = 4096


def _default_error_message(exc: BaseException) -> str:
    return DEFAULT_ERROR_MESSAGE


@final
@dataclass(frozen=True, slots=True)
class Settings:
    """How producers behave; built by :class:`~resumable_sse.Streamer` from its arguments."""

    terminal: TerminalEvents = field(default_factory=TerminalEvents)
    event: str = "message"
    max_events: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_pending: int = BATCH
    store_retry_deadline: float = 30.0
    close_timeout: float = 5.0
    error_message: Callable[[BaseException], str] = _default_error_message
    #: The worker threads sync generators step in (``None``: anyio's default limiter).
    sync_threads: anyio.CapacityLimiter | None = None
    telemetry: Hooks = NO_HOOKS


def limit_error(settings: Settings, size: int, count: int, total: int) -> LimitExceededError:
    """The error for an event of ``size`` bytes that would be event ``count`` and bring
    the stream to ``total`` bytes, one of which passes a limit."""
    if size > settings.max_event_bytes:
        return LimitExceededError(
            f"an event of {size} bytes exceeds max_event_bytes ({settings.max_event_bytes})"
        )
    if count > settings.max_events:
        return LimitExceededError(f"the stream exceeds max_events ({settings.max_events})")
    return LimitExceededError(f"the stream exceeds max_bytes ({settings.max_bytes})")
