"""``get_streamer``: build a :class:`~resumable_sse.Streamer` on a chosen backend.

Kept at this path for compatibility: ``from resumable_sse.factory import get_streamer``.
Every option is a typed keyword: the store's own (per backend, see the overloads) and
the :class:`~resumable_sse.Streamer`'s (:class:`StreamerOptions`). An option of the other
backend raises ``TypeError`` rather than being ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypedDict, overload

from typing_extensions import Unpack

from ._access import Authorize
from ._events import TerminalEvents
from ._streamer import Streamer
from .stores._contract import StreamStore
from .stores._memory import DEFAULT_MAX_STREAMS, DEFAULT_RETENTION, MemoryStore

if TYPE_CHECKING:
    from .stores._redis import RedisClient

__all__ = ["StreamerOptions", "get_streamer"]


class StreamerOptions(TypedDict, total=False):
    """The keyword arguments of :class:`~resumable_sse.Streamer`, for ``get_streamer``."""

    event: str
    terminal_events: TerminalEvents | None
    max_events: int
    max_bytes: int
    max_event_bytes: int
    error_message: Callable[[BaseException], str] | None
    page_size: int
    shutdown_timeout: float
    store_retry_deadline: float
    authorize: Authorize
    max_consumers_per_session: int
    max_consumers: int
    sync_generator_threads: int


@overload
def get_streamer(
    backend: Literal["memory"] = "memory",
    *,
    retention: float = DEFAULT_RETENTION,
    max_streams: int = DEFAULT_MAX_STREAMS,
    **options: Unpack[StreamerOptions],
) -> Streamer: ...


@overload
def get_streamer(
    backend: Literal["redis"],
    *,
    redis_client: RedisClient | None = None,
    redis_url: str | None = None,
    retention: float = DEFAULT_RETENTION,
    prefix: str = "rsse",
    lease: float = 10.0,
    block_ms: int = 5_000,
    max_len: int | None = None,
    **options: Unpack[StreamerOptions],
) -> Streamer: ...


def get_streamer(
    backend: Literal["memory", "redis"] = "memory",
    *,
    redis_client: RedisClient | None = None,
    redis_url: str | None = None,
    retention: float = DEFAULT_RETENTION,
    max_streams: int | None = None,
    prefix: str | None = None,
    lease: float | None = None,
    block_ms: int | None = None,
    max_len: int | None = None,
    **options: Unpack[StreamerOptions],
) -> Streamer:
    """Create a streamer on the in-memory store or on Redis.

    Args:
        backend: ``"memory"`` (one process; the default) or ``"redis"`` (shared by
            every worker and machine using the same Redis).
        redis_client: A ``redis.asyncio`` client (``Redis``, ``RedisCluster``, or one
            from ``Sentinel.master_for``), for ``backend="redis"``.
        redis_url: A Redis URL, instead of ``redis_client``; the store owns that client.
        retention: Seconds a finished stream stays readable (default 600).
        max_streams: Memory store only: streams held at once (default 10,000).
        prefix: Redis only: the key prefix (default ``"rsse"``).
        lease: Redis only: the producer's lease in seconds (default 10); a dead
            producer is detected within two leases.
        block_ms: Redis only: the longest blocking read, in ms (default 5000).
        max_len: Redis only: keep about this many newest events per stream (default:
            all).
        **options: The :class:`~resumable_sse.Streamer`'s keyword arguments (limits,
            event names, ``store_retry_deadline``, ``authorize``...).

    Raises:
        ValueError: an unknown backend, missing Redis connection details, or an
            option's value out of range.
        TypeError: an option that does not apply to the chosen backend, or an unknown
            option.
    """
    unknown = sorted(set(options) - StreamerOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"get_streamer() got unknown options: {', '.join(unknown)}")
    redis_options: dict[str, object] = {"redis_client": redis_client, "redis_url": redis_url}
    redis_options |= {"prefix": prefix, "lease": lease, "block_ms": block_ms, "max_len": max_len}
    store: StreamStore
    if backend == "memory":
        misplaced = [name for name, value in redis_options.items() if value is not None]
        if misplaced:
            raise TypeError(
                f"get_streamer(backend='memory') does not take {', '.join(misplaced)}"
                " (options of the Redis store)"
            )
        store = MemoryStore(
            retention=retention,
            max_streams=DEFAULT_MAX_STREAMS if max_streams is None else max_streams,
        )
    elif backend == "redis":
        if max_streams is not None:
            raise TypeError(
                "get_streamer(backend='redis') does not take max_streams (an option of the"
                " memory store)"
            )
        # The store itself writes the "producer lost" event, so it needs the error name.
        terminal = options.get("terminal_events") or TerminalEvents()
        store = _redis_store(
            redis_client, redis_url, retention, prefix, lease, block_ms, max_len, terminal.error
        )
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'memory' or 'redis'")
    return Streamer(store, **options)


def _redis_store(
    client: RedisClient | None,
    url: str | None,
    retention: float,
    prefix: str | None,
    lease: float | None,
    block_ms: int | None,
    max_len: int | None,
    lost_event: str,
) -> StreamStore:
    """A RedisStore; options left as ``None`` keep the store's defaults."""
    if client is None and url is None:
        raise ValueError('backend="redis" needs redis_client=... or redis_url=...')
    from .stores._redis import DEFAULT_BLOCK_MS, DEFAULT_LEASE, RedisStore

    return RedisStore(
        client,
        url=url,
        prefix="rsse" if prefix is None else prefix,
        retention=retention,
        lease=DEFAULT_LEASE if lease is None else lease,
        block_ms=DEFAULT_BLOCK_MS if block_ms is None else block_ms,
        max_len=max_len,
        lost_event=lost_event,
    )
