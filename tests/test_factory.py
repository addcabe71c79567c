"""``get_streamer``: typed options per backend, passed on or refused, never ignored.

The calls marked ``type: ignore[call-overload]`` are also checked statically: mypy runs
on the tests with ``warn_unused_ignores``, so each would fail the lint if the typed
signatures accepted it.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from resumable_sse import (
    Entry,
    MemoryStore,
    RedisStore,
    Streamer,
    StreamerOptions,
    TerminalEvents,
    get_streamer,
)
from tests.redis_server import shared_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(shared_server().url)
    yield client
    await client.aclose()


def test_streamer_options_are_exactly_the_streamers_keywords() -> None:
    """StreamerOptions lists every keyword argument of Streamer, and nothing else."""
    parameters = inspect.signature(Streamer).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(StreamerOptions.__optional_keys__) == keywords


async def test_memory_options_reach_the_store_and_the_streamer() -> None:
    streamer = get_streamer(retention=5, max_streams=3, event="token", max_events=2)
    assert isinstance(streamer.store, MemoryStore)
    assert (streamer.store.retention, streamer.store.max_streams) == (5, 3)
    async with streamer:
        events = [e async for e in streamer.stream("s1", ["a", "b", "c"])]
    assert [(e["event"], e["data"]) for e in events[:2]] == [("token", "a"), ("token", "b")]
    assert events[-1]["event"] == "error"  # max_events=2 reached


async def test_redis_options_reach_the_store(redis: Redis) -> None:
    """prefix, lease, retention and max_len configure the store the streamer uses."""
    prefix = f"fac-{uuid.uuid4().hex[:10]}"
    streamer = get_streamer(
        "redis",
        redis_client=redis,
        prefix=prefix,
        lease=4,
        retention=30,
        max_len=5,
        block_ms=1000,
        event="token",
    )
    store = streamer.store
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.lease, store.retention) == (prefix, 4, 30)
    async with streamer:
        events = [e async for e in streamer.stream("s1", ["a", "b"])]
    assert [e["event"] for e in events] == ["token", "token", "end"]
    assert await redis.exists(f"{{{prefix}|s1}}:log") == 1
    claim = await store.claim("s2")
    assert claim is not None
    for first in (1, 4, 7, 10):  # four batches of three: max_len=5 trims the oldest
        batch = [Entry("message", str(first + i)) for i in range(3)]
        await store.append("s2", claim, batch, first_seq=first)
    info = await store.info("s2")
    assert info is not None
    assert info.first_seq > 1


async def test_the_redis_store_defaults_are_the_stores_own(redis: Redis) -> None:
    streamer = get_streamer("redis", redis_client=redis)
    default = RedisStore(redis)
    assert isinstance(streamer.store, RedisStore)
    assert (streamer.store.prefix, streamer.store.lease, streamer.store.retention) == (
        default.prefix,
        default.lease,
        default.retention,
    )


async def test_the_lost_event_follows_the_streamers_error_name(redis: Redis) -> None:
    """The Redis store writes producer_lost under the streamer's error event name."""
    prefix = f"fac-{uuid.uuid4().hex[:10]}"
    terminal = TerminalEvents(error="failed")
    streamer = get_streamer("redis", redis_client=redis, prefix=prefix, terminal_events=terminal)
    store = streamer.store
    assert isinstance(store, RedisStore)
    claim = await store.claim("s1")
    assert claim is not None
    await redis.hset(store.keys("s1").meta, mapping={"le": 0, "sus": 0})  # long dead
    page = await store.read("s1", 0, limit=10, wait=False)
    assert page is not None
    assert [e.event for e in page.events] == ["failed"]


def test_options_of_the_other_backend_are_refused() -> None:
    """A store option that does not apply raises TypeError naming it, at once."""
    redis_only = {
        "prefix": "x",
        "lease": 5.0,
        "block_ms": 100,
        "max_len": 10,
        "redis_url": "redis://127.0.0.1:1/0",
    }
    for name, value in redis_only.items():
        with pytest.raises(TypeError, match=name):
            get_streamer("memory", **{name: value})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="prefix"):
        get_streamer("memory", prefix="x")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="max_streams"):
        get_streamer("redis", redis_url="redis://127.0.0.1:1/0", max_streams=5)  # type: ignore[call-overload]


def test_unknown_options_and_backends_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown options: max_tokens"):
        get_streamer(max_tokens=5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="store"):
        get_streamer(store=MemoryStore())  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="unknown backend"):
        get_streamer("postgres")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="redis_client"):
        get_streamer("redis")
    with pytest.raises(ValueError, match="lease"):
        get_streamer("redis", redis_url="redis://127.0.0.1:1/0", lease=0)
