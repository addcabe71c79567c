"""Stores: where streams live. The contract, the in-memory store and the Redis store.

``RedisStore`` needs the ``redis`` extra; it is imported on first use, so the package
works without redis-py installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._contract import (
    FINISHED_LINGER,
    Claim,
    Entry,
    EventRun,
    FramePage,
    LocalLog,
    LogItem,
    Page,
    StoredEvent,
    StreamInfo,
    StreamState,
    StreamStore,
)
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = [
    "FINISHED_LINGER",
    "Claim",
    "Entry",
    "EventRun",
    "FramePage",
    "LocalLog",
    "LogItem",
    "MemoryStore",
    "Page",
    "RedisStore",
    "StoredEvent",
    "StreamInfo",
    "StreamState",
    "StreamStore",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        try:
            from ._redis import RedisStore
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "RedisStore needs redis-py: pip install 'resumable-sse[redis]'"
            ) from exc
        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
