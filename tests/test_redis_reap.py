"""The Redis store's two-step reap, step by step, on a real server.

A running stream whose lease has expired is only *suspect* when someone else first
finds it so; it is reaped (``error`` / ``producer_lost``) by a look at least one lease
after that mark, if its owner has not written or renewed since. The owner's own writes
never reap it. Time is moved by rewriting the lease expiry and the mark in the stream's
hash (the server's clock is what the scripts read), so these tests neither sleep nor
depend on scheduling; the faults that make the lease really expire are in
tests/test_redis_outage.py and tests/test_faults.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from resumable_sse import Entry, LeaseLostError, RedisStore, StreamState
from resumable_sse.stores import Claim
from tests.redis_server import shared_server

pytestmark = pytest.mark.anyio

LEASE = 60.0  # never expires by itself during a test: only the test moves it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(shared_server().url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def store(raw: Redis) -> AsyncIterator[RedisStore]:
    prefix = f"reap-{uuid.uuid4().hex[:12]}"
    client = Redis.from_url(shared_server().url)
    store = RedisStore(client, prefix=prefix, lease=LEASE, block_ms=600_000)
    yield store
    await client.aclose()
    keys = [key async for key in raw.scan_iter(match=f"{{{prefix}|*")]
    if keys:
        await raw.delete(*keys)


async def server_ms(raw: Redis) -> int:
    seconds, micros = await raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def expire_lease(raw: Redis, store: RedisStore) -> None:
    """Make the lease of stream ``s`` run out now, on the server's clock."""
    await raw.hset(store.keys("s").meta, "le", await server_ms(raw) - 1)


async def age_mark(raw: Redis, store: RedisStore) -> None:
    """Make the suspect mark of stream ``s`` one full lease old."""
    old = await server_ms(raw) - int(LEASE * 1000) - 1
    assert await raw.hset(store.keys("s").meta, "sus", old) == 0  # it was marked


async def mark(raw: Redis, store: RedisStore) -> str | None:
    value = await raw.hget(store.keys("s").meta, "sus")
    return None if value is None else str(value)


async def running(store: RedisStore) -> Claim:
    claim = await store.claim("s")
    assert claim is not None
    await store.append("s", claim, [Entry("message", "a")], first_seq=1)
    return claim


async def state(store: RedisStore) -> StreamState:
    info = await store.info("s")
    assert info is not None
    return info.state


async def test_the_owner_never_reaps_its_own_stream(raw: Redis, store: RedisStore) -> None:
    """A producer back after its lease ran out (a stall, an outage) writes on, as long as
    nobody reaped it in between: append, renew, its cancel check and finish succeed."""
    claim = await running(store)
    await expire_lease(raw, store)
    await store.append("s", claim, [Entry("message", "b")], first_seq=2)
    await expire_lease(raw, store)
    await store.renew("s", claim)
    await expire_lease(raw, store)
    await store.finish("s", claim, StreamState.DONE, Entry("end", ""), seq=3)
    page = await store.read("s", 0, limit=10, wait=False)
    assert page is not None
    assert [(e.event, e.data) for e in page.events] == [
        ("message", "a"),
        ("message", "b"),
        ("end", ""),
    ]


async def test_a_first_look_at_an_expired_lease_only_marks_the_stream(
    raw: Redis, store: RedisStore
) -> None:
    """Readers, status and claims that find the lease expired leave the stream running."""
    await running(store)
    await expire_lease(raw, store)
    assert await state(store) is StreamState.RUNNING
    first = await mark(raw, store)
    assert first is not None
    assert await store.claim("s") is None
    page = await store.read("s", 0, limit=10, wait=False)
    assert page is not None
    assert page.info.state is StreamState.RUNNING
    assert [e.data for e in page.events] == ["a"]
    assert await mark(raw, store) == first  # later looks keep the first mark


async def test_the_owner_clears_the_mark_and_gets_a_new_lease(
    raw: Redis, store: RedisStore
) -> None:
    """After a mark, the owner's renewal (or write) makes the stream healthy again: an old
    mark cannot count against a later expiry."""
    claim = await running(store)
    await expire_lease(raw, store)
    assert await state(store) is StreamState.RUNNING
    await store.renew("s", claim)
    assert await mark(raw, store) is None
    assert await state(store) is StreamState.RUNNING
    await expire_lease(raw, store)
    assert await state(store) is StreamState.RUNNING  # marked afresh, not reaped
    await store.append("s", claim, [Entry("message", "b")], first_seq=2)
    assert await mark(raw, store) is None


async def test_a_look_one_lease_after_the_mark_reaps_the_stream(
    raw: Redis, store: RedisStore
) -> None:
    """Still expired a lease after the mark: the next look ends the stream with
    producer_lost after what was stored, and the old producer is fenced off."""
    claim = await running(store)
    await expire_lease(raw, store)
    assert await state(store) is StreamState.RUNNING
    await age_mark(raw, store)
    page = await store.read("s", 0, limit=10, wait=False)
    assert page is not None
    assert page.info.state is StreamState.ERROR
    assert [(e.seq, e.event) for e in page.events] == [(1, "message"), (2, "error")]
    assert json.loads(page.events[1].data)["code"] == "producer_lost"
    with pytest.raises(LeaseLostError):
        await store.append("s", claim, [Entry("message", "b")], first_seq=2)
    with pytest.raises(LeaseLostError):
        await store.renew("s", claim)
    with pytest.raises(LeaseLostError):
        await store.finish("s", claim, StreamState.DONE, Entry("end", ""), seq=2)


async def test_the_owners_cancel_watch_does_not_count_as_a_look(
    raw: Redis, store: RedisStore
) -> None:
    """The producer's own cancel check neither marks nor reaps its stream."""
    claim = await running(store)
    await expire_lease(raw, store)
    assert await store.request_cancel("s")  # marks: it is not the owner
    await age_mark(raw, store)
    await store.wait_cancel("s", claim)  # returns (cancel requested) without reaping
    assert await raw.hget(store.keys("s").meta, "st") == "running"
    await store.finish("s", claim, StreamState.CANCELLED, Entry("cancelled", ""), seq=2)
    assert await state(store) is StreamState.CANCELLED


async def test_a_waiting_reader_looks_again_when_the_next_step_is_due(
    raw: Redis, store: RedisStore
) -> None:
    """A reader blocked on a suspect stream wakes by itself for the second look, well
    before its longest blocking read (10 minutes here), and reaps the stream."""
    await running(store)
    await expire_lease(raw, store)
    assert await state(store) is StreamState.RUNNING
    due_soon = await server_ms(raw) - int(LEASE * 1000) + 300
    await raw.hset(store.keys("s").meta, "sus", due_soon)
    with anyio.fail_after(60):  # a hang guard: without the wake-up it blocks 10 minutes
        page = await store.read("s", 1, limit=10, wait=True)
    assert page is not None
    assert [e.event for e in page.events] == ["error"]
