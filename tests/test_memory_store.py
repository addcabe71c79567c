"""The memory store releases what it no longer holds: nothing outlives a delete or a re-claim."""

from __future__ import annotations

import gc
import weakref

import pytest

from resumable_sse import Entry, MemoryStore, Streamer, StreamState
from tests.helpers import collect
from tests.stores import FakeClock

pytestmark = pytest.mark.anyio


class Tracked(str):
    """Event data whose lifetime a weak reference can watch."""


async def finished_stream(store: MemoryStore, session_id: str) -> weakref.ref[Tracked]:
    """Run a one-event stream to its end; return a weak reference to its event's data."""
    data = Tracked("x" * 50_000)
    claim = await store.claim(session_id)
    assert claim is not None
    await store.append(session_id, claim, [Entry("message", data)], first_seq=1)
    await store.finish(session_id, claim, StreamState.DONE, Entry("end", ""), seq=2)
    return weakref.ref(data)


async def test_deleted_finished_streams_are_released_at_once() -> None:
    """Deleting finished streams frees their events, though their retention runs on."""
    store = MemoryStore(retention=600, max_streams=100)
    refs = []
    for index in range(300):
        ref = await finished_stream(store, f"s{index}")
        assert await store.delete(f"s{index}")
        refs.append(ref)
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []
    assert len(store) == 0


async def test_a_reclaimed_stream_is_released_at_once() -> None:
    """Starting a session id anew frees the events of its previous, expired stream."""
    clock = FakeClock()
    store = MemoryStore(retention=0, clock=clock)
    ref = await finished_stream(store, "s1")
    assert await store.claim("s1") is not None  # retention 0: the id is free at once
    gc.collect()
    assert ref() is None
    clock.now += 601
    ref = await finished_stream(store, "s2")
    clock.now += 601
    assert await store.claim("s2") is not None
    gc.collect()
    assert ref() is None


async def test_streamer_delete_releases_the_stream() -> None:
    """Through the Streamer: a deleted stream's events are garbage once it is deleted."""
    refs = []
    async with Streamer(MemoryStore()) as streamer:
        for index in range(20):
            data = Tracked(f"token {index}")
            refs.append(weakref.ref(data))
            await collect(streamer.stream(f"s{index}", [data]))
            del data
            assert await streamer.delete(f"s{index}")
    # Outside the block every producer task has returned (the last may still have been
    # winding down inside it, holding its generator).
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []
