"""``Streamer.streams()``: the running streams, with state, events, age and consumers."""

from __future__ import annotations

import pytest

from resumable_sse import RedisStore, Streamer, StreamState, StreamStore
from tests.helpers import Script, collect, take
from tests.stores import RedisHarness, StoreHarness

pytestmark = pytest.mark.anyio


async def test_lists_running_streams_newest_first_with_their_figures(
    store: StreamStore,
) -> None:
    """Two running streams listed (one per owner on demand); an ended one is not."""
    alice, bob = Script(["a1", "a2"], ["a3"]), Script(["b1"], ["b2"])
    async with Streamer(store) as streamer:
        await collect(streamer.stream("done", Script(["x"]), principal="alice"))
        reading = await streamer.open("alice-1", alice, principal="alice")
        await take(reading, 2)
        extra = await streamer.open("alice-1", principal="alice")
        bobs = await streamer.open("bob-1", bob, principal="bob")
        await take(bobs, 1)

        listed = await streamer.streams()
        assert [s.session_id for s in listed] == ["bob-1", "alice-1"]
        bob_view, alice_view = listed
        assert (alice_view.state, alice_view.events, alice_view.consumers) == (
            StreamState.RUNNING,
            2,
            2,
        )
        assert (bob_view.owner, bob_view.events, bob_view.consumers) == ("bob", 1, 1)
        assert alice_view.local
        assert bob_view.local
        assert alice_view.age >= 0
        assert not alice_view.cancel_requested
        assert [s.session_id for s in await streamer.streams("alice")] == ["alice-1"]
        assert await streamer.streams("carol") == []
        assert [s.session_id for s in await streamer.streams(limit=1)] == ["bob-1"]

        alice.release()
        bob.release()
        await collect(reading)
        await collect(bobs)
        await extra.aclose()
        assert await streamer.streams() == []
        assert await streamer.streams("alice") == []


async def test_cancelled_and_deleted_streams_leave_the_list(store: StreamStore) -> None:
    """A cancel request shows on the entry; the end and a delete remove it."""
    one, two = Script(["x"], ["y"]), Script(["x"], ["y"])
    async with Streamer(store) as streamer:
        first = await streamer.open("one", one)
        second = await streamer.open("two", two)
        await take(first, 1)
        await take(second, 1)
        assert await streamer.cancel("one")
        await collect(first)
        assert [s.session_id for s in await streamer.streams()] == ["two"]
        assert await streamer.delete("two")
        await second.aclose()
        assert await streamer.streams() == []


REDIS_KINDS = ["redis", "fakeredis", "cluster"]


@pytest.mark.parametrize("store_kind", REDIS_KINDS)
async def test_every_worker_sees_every_workers_streams(
    harness: StoreHarness, store: StreamStore
) -> None:
    """On Redis a second store (another worker) lists the first one's streams, not local."""
    assert isinstance(harness, RedisHarness)
    assert isinstance(store, RedisStore)
    client = harness.client()
    other = RedisStore(client, prefix=store.prefix)
    script = Script(["x"], ["y"])
    try:
        async with Streamer(store) as here, Streamer(other) as there:
            reading = await here.open("s", script, principal="alice")
            await take(reading, 1)
            (seen,) = await there.streams("alice")
            assert (seen.session_id, seen.events, seen.local, seen.consumers) == (
                "s",
                1,
                False,
                0,
            )
            assert (await here.streams())[0].local
            script.release()
            await collect(reading)
            assert await there.streams() == []
    finally:
        await client.aclose()


@pytest.mark.parametrize("store_kind", REDIS_KINDS)
async def test_the_redis_index_prunes_stale_and_ended_entries(
    harness: StoreHarness, store: StreamStore
) -> None:
    """Entries of dead workers (old scores) or of streams gone are dropped by a listing."""
    assert isinstance(harness, RedisHarness)
    assert isinstance(store, RedisStore)
    client = harness.client()
    try:
        live = f"{{{store.prefix}}}:live"
        # A worker that died long ago left an entry (score: its last renewal, in ms)...
        await client.zadd(live, {"ghost": 1})
        # ...and one whose stream is gone although its score is fresh.
        await client.zadd(live, {"gone": 10**13})
        async with Streamer(store) as streamer:
            assert await streamer.streams() == []
        assert await client.zcard(live) == 0
    finally:
        await client.aclose()
