"""resumable-sse: Server-Sent Event streams that survive reloads and network drops.

A background producer drains each session's generator into a store once; any number of
clients read it from any ``Last-Event-ID`` and follow it live.
"""

from __future__ import annotations

from ._access import AccessRequest, Authorize, owner_only
from ._assets import client_assets, client_mount
from ._consumer import Subscription
from ._events import TerminalEvents
from ._exceptions import (
    AccessDeniedError,
    EventIdAheadError,
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
from ._http import error_response, last_event_id, sse_response
from ._ids import new_session_id
from ._memory import MemoryStore
from ._sources import Source
from ._store import Claim, Entry, Page, StoredEvent, StreamInfo, StreamState, StreamStore
from ._streamer import Streamer, StreamStatus
from .factory import get_streamer

__all__ = [
    "AccessDeniedError",
    "AccessRequest",
    "Authorize",
    "Claim",
    "Entry",
    "EventIdAheadError",
    "HistoryTrimmedError",
    "InvalidEventIdError",
    "InvalidItemError",
    "InvalidSessionIdError",
    "LeaseLostError",
    "LimitExceededError",
    "MemoryStore",
    "Page",
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
    "Subscription",
    "TerminalEvents",
    "TooManyConsumersError",
    "client_assets",
    "client_mount",
    "error_response",
    "get_streamer",
    "last_event_id",
    "new_session_id",
    "owner_only",
    "sse_response",
]
