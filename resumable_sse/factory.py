"""``get_streamer``: build a :class:`~resumable_sse.Streamer` on a chosen backend.

Kept at this path for compatibility: ``from resumable_sse.factory import get_streamer``.
"""

from __future__ import annotations

from typing import Any, Literal

from ._events import TerminalEvents
from ._streamer import Streamer
from .stores._contract import StreamStore
from .stores._memory import DEFAULT_MAX_STREAMS, DEFAULT_RETENTION, MemoryStore

__all__ = ["get_streamer"]


def get_streamer(
    backend: Literal["memory", "redis"] = "memory",
    *,
    redis_client: Any = None,
    redis_url: str | None = None,
    retention: float = DEFAULT_RETENTION,
    max_streams: int = DEFAULT_MAX_STREAMS,
    **options: Any,
) -> Streamer:
    """Create a streamer on the in-memory store or on Redis.

    Args:
        backend: ``"memory"`` (one process; the default) or ``"redis"`` (shared by
            every worker and machine using the same Redis).
        redis_client: A ``redis.asyncio`` client, for ``backend="redis"``.
        redis_url: A Redis URL, instead of ``redis_client``.
        retention: Seconds a finished stream stays readable (default 600).
        max_streams: For the memory store: streams held at once (default 10,000).
        **options: Passed on to :class:`~resumable_sse.Streamer` (limits, event names...).

    Raises:
        ValueError: an unknown backend, or missing Redis connection details.
    """
    store: StreamStore
    if backend == "memory":
        store = MemoryStore(retention=retention, max_streams=max_streams)
    elif backend == "redis":
        if redis_client is None and redis_url is None:
            raise ValueError('backend="redis" needs redis_client=... or redis_url=...')
        from .stores._redis import RedisStore

        # The store itself writes the "producer lost" event, so it needs the error name.
        terminal = options.get("terminal_events") or TerminalEvents()
        store = RedisStore(
            redis_client, url=redis_url, retention=retention, lost_event=terminal.error
        )
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'memory' or 'redis'")
    return Streamer(store, **options)
