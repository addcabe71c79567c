"""resumable-sse: Server-Sent Event streams that survive reloads and network drops.

A background producer drains each session's generator into a store once; any number of
clients read it from any ``Last-Event-ID`` and follow it live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._access import AccessRequest, Authorize, Principal, owner_only
from ._assets import client_assets, client_mount
from ._consumer import Subscription
from ._conversations import ActiveStream
from ._events import TerminalEvents
from ._exceptions import (
    AccessDeniedError,
    ConversationBusyError,
    EventIdAheadError,
    HistoryLostError,
    HistoryTrimmedError,
    InvalidEventIdError,
    InvalidItemError,
    InvalidSessionIdError,
    LeaseLostError,
    LimitExceededError,
    ResumableSSEError,
    SessionNotFoundError,
    StaleEventIdError,
    StoreFullError,
    StoreUnavailableError,
    StreamerClosedError,
    TooManyConsumersError,
)
from ._http import compact_requested, error_response, last_event_id, sse_response
from ._ids import new_session_id
from ._live import LiveStream
from ._sources import Source
from ._streamer import Streamer, StreamStatus
from ._version import __version__
from .factory import StreamerOptions, get_streamer
from .stores import (
    Claim,
    Entry,
    FramePage,
    MemoryStore,
    Page,
    StoredEvent,
    StreamInfo,
    StreamState,
    StreamStore,
)

if TYPE_CHECKING:
    from .stores import RedisStore

__all__ = [
    "AccessDeniedError",
    "AccessRequest",
    "ActiveStream",
    "Authorize",
    "Claim",
    "ConversationBusyError",
    "Entry",
    "EventIdAheadError",
    "FramePage",
    "HistoryLostError",
    "HistoryTrimmedError",
    "InvalidEventIdError",
    "InvalidItemError",
    "InvalidSessionIdError",
    "LeaseLostError",
    "LimitExceededError",
    "LiveStream",
    "MemoryStore",
    "Page",
    "Principal",
    "RedisStore",
    "ResumableSSEError",
    "SessionNotFoundError",
    "Source",
    "StaleEventIdError",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredEvent",
    "StreamInfo",
    "StreamState",
    "StreamStatus",
    "StreamStore",
    "Streamer",
    "StreamerClosedError",
    "StreamerOptions",
    "Subscription",
    "TerminalEvents",
    "TooManyConsumersError",
    "__version__",
    "client_assets",
    "client_mount",
    "compact_requested",
    "error_response",
    "get_streamer",
    "last_event_id",
    "new_session_id",
    "owner_only",
    "sse_response",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # needs the redis extra: imported on first use
        from . import stores

        return stores.RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
