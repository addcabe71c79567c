"""Store harnesses: every StreamStore the test suite runs against, behind one interface.

A harness makes stores with a given retention and can move their clock forward, so
expiry is tested without sleeping where the store allows it. Redis expires keys on its
own clock, so the Redis harnesses really wait (the tests use retentions of a second).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import fakeredis
from redis.asyncio import Redis, RedisCluster

from resumable_sse import MemoryStore, RedisStore, StreamStore
from tests.redis_server import shared_cluster, shared_server

#: Store kinds the suites are parametrised over. Kinds whose client only runs on asyncio
#: are listed in ASYNCIO_ONLY; their trio variants are deselected (see conftest.py).
STORE_KINDS: list[str] = ["memory", "redis", "fakeredis", "cluster"]
ASYNCIO_ONLY: set[str] = {"redis", "fakeredis", "cluster"}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StoreHarness:
    """Makes stores of one kind for one test and cleans them up."""

    kind = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()

    @asynccontextmanager
    async def make(
        self, *, retention: float = 600.0, **options: object
    ) -> AsyncIterator[StreamStore]:
        """A fresh, empty store."""
        store = MemoryStore(retention=retention, clock=self.clock, **options)  # type: ignore[arg-type]
        try:
            yield store
        finally:
            await store.aclose()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the stores' expiry clocks."""
        self.clock.now += seconds


class RedisHarness(StoreHarness):
    """RedisStore on the shared real server; each store gets its own key prefix."""

    kind = "redis"
    decode_responses = False

    def client(self) -> Redis | RedisCluster:
        return Redis.from_url(shared_server().url, decode_responses=self.decode_responses)

    @asynccontextmanager
    async def make(self, *, retention: float = 600.0, **options: Any) -> AsyncIterator[StreamStore]:
        client = self.client()
        prefix = f"t-{uuid.uuid4().hex[:12]}"
        store = RedisStore(client, prefix=prefix, retention=retention, **options)
        try:
            yield store
        finally:
            await store.aclose()
            keys = [key async for key in client.scan_iter(match=f"{{{prefix}|*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    async def advance(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class FakeRedisHarness(RedisHarness):
    """RedisStore on fakeredis (a fast extra layer), with ``decode_responses=True``."""

    kind = "fakeredis"
    decode_responses = True

    def __init__(self) -> None:
        super().__init__()
        self.server = fakeredis.FakeServer()

    def client(self) -> Redis | RedisCluster:
        return fakeredis.FakeAsyncRedis(server=self.server, decode_responses=True)


class ClusterHarness(RedisHarness):
    """RedisStore on a real three-master Redis Cluster started by the tests."""

    kind = "cluster"

    def client(self) -> Redis | RedisCluster:
        return RedisCluster.from_url(shared_cluster().url)


HARNESSES: dict[str, type[StoreHarness]] = {
    "memory": StoreHarness,
    "redis": RedisHarness,
    "fakeredis": FakeRedisHarness,
    "cluster": ClusterHarness,
}
