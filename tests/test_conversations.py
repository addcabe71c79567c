"""One active stream per conversation: the store methods (on every store) and the streamer API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from resumable_sse import (
    ActiveStream,
    ConversationBusyError,
    Entry,
    MemoryStore,
    Streamer,
    StreamState,
    StreamStore,
)
from tests.stores import StoreHarness

pytestmark = pytest.mark.anyio


# -- the store contract ------------------------------------------------------------------


async def test_set_active_maps_refuses_or_replaces(store: StreamStore) -> None:
    """The first mapping wins; another session replaces it only when asked to."""
    assert await store.get_active("chat") is None
    assert await store.set_active("chat", "s1", replace=False) is None
    assert await store.get_active("chat") == "s1"
    assert await store.set_active("chat", "s1", replace=False) == "s1"
    assert await store.set_active("chat", "s2", replace=False) == "s1"
    assert await store.get_active("chat") == "s1"
    assert await store.set_active("chat", "s2", replace=True) == "s1"
    assert await store.get_active("chat") == "s2"
    assert await store.get_active("other-chat") is None


async def test_clear_active_is_compare_and_delete(store: StreamStore) -> None:
    """Clearing with a session the mapping no longer names changes nothing."""
    await store.set_active("chat", "s1", replace=False)
    await store.set_active("chat", "s2", replace=True)
    assert await store.clear_active("chat", "s1") is False
    assert await store.get_active("chat") == "s2"
    assert await store.clear_active("chat", "s2") is True
    assert await store.get_active("chat") is None
    assert await store.clear_active("chat", "s2") is False


async def test_concurrent_set_active_has_one_winner(store: StreamStore) -> None:
    """Of many concurrent non-replacing mappings with different sessions, one wins."""
    results: dict[str, str | None] = {}

    async def attempt(session_id: str) -> None:
        results[session_id] = await store.set_active("race", session_id, replace=False)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(attempt, f"s{n}")
    winners = [sid for sid, previous in results.items() if previous is None]
    assert len(winners) == 1
    assert all(previous == winners[0] for sid, previous in results.items() if sid != winners[0])
    assert await store.get_active("race") == winners[0]


async def test_mapping_expires_with_retention(harness: StoreHarness) -> None:
    """A mapping that nobody clears is gone once its stream's retention has passed."""
    async with harness.make(retention=1.0, **_short_lease(harness)) as store:
        claim = await store.claim("s1")
        assert claim is not None
        assert await store.set_active("chat", "s1", replace=False) is None
        await store.finish("s1", claim, StreamState.DONE, Entry("end", "{}"), seq=1)
        await harness.advance(2.5)
        assert await store.info("s1") is None
        assert await store.get_active("chat") is None


def _short_lease(harness: StoreHarness) -> dict[str, float]:
    return {} if harness.kind == "memory" else {"lease": 0.5}


# -- the streamer ------------------------------------------------------------------------


class Model:
    """A generator that pauses until released, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = anyio.Event()

    async def answer(self, text: str = "hello world") -> AsyncIterator[str]:
        self.runs += 1
        yield text.split()[0]
        await self.release.wait()
        for word in text.split()[1:]:
            yield " " + word


async def text_of(streamer: Streamer, session_id: str) -> tuple[str, str]:
    """The stream's text and its terminal event's name, read from the start."""
    parts: list[str] = []
    async with await streamer.open(session_id) as subscription:
        async for event in subscription:
            if event["event"] in streamer.terminal_events:
                return "".join(parts), str(event["event"])
            parts.append(str(event["data"]))
    raise AssertionError("the stream ended without a terminal event")


async def test_same_session_started_twice_at_once_runs_once(streamer: Streamer) -> None:
    """Two concurrent starts of one request (same session id) share one generator run."""
    model = Model()
    results: list[ActiveStream] = []

    async def start() -> None:
        results.append(await streamer.start_active("chat", model.answer, session_id="req-1"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        tg.start_soon(start)
    assert sorted(r.started for r in results) == [False, True]
    assert {r.session_id for r in results} == {"req-1"}
    assert await streamer.active("chat") == "req-1"
    model.release.set()
    assert await text_of(streamer, "req-1") == ("hello world", "end")
    assert model.runs == 1


async def test_refusing_starts_at_once_run_one_generator(streamer: Streamer) -> None:
    """Of two refusing starts at once for one conversation, one runs and one is refused."""
    model = Model()
    outcomes: list[ActiveStream | ConversationBusyError] = []

    async def start(session_id: str) -> None:
        try:
            outcomes.append(
                await streamer.start_active(
                    "chat", model.answer, session_id=session_id, supersede=False
                )
            )
        except ConversationBusyError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start, "a")
        tg.start_soon(start, "b")
    [started] = [o for o in outcomes if isinstance(o, ActiveStream)]
    [refused] = [o for o in outcomes if isinstance(o, ConversationBusyError)]
    assert refused.session_id == started.session_id
    assert refused.status == 409
    loser = "b" if started.session_id == "a" else "a"
    assert await streamer.store.info(loser) is None  # claimed, never run, deleted
    model.release.set()
    assert (await text_of(streamer, started.session_id))[0] == "hello world"
    assert model.runs == 1


async def test_a_new_start_supersedes_the_running_stream(streamer: Streamer) -> None:
    """By default a new start cancels the conversation's running stream and takes over."""
    first, second = Model(), Model()
    one = await streamer.start_active("chat", first.answer, session_id="one")
    two = await streamer.start_active("chat", lambda: second.answer("bye now"), session_id="two")
    assert (one.started, two.started, two.superseded) == (True, True, "one")
    assert await text_of(streamer, "one") == ("hello", "cancelled")
    assert await streamer.active("chat") == "two"
    second.release.set()
    assert await text_of(streamer, "two") == ("bye now", "end")


async def test_mapping_is_cleared_when_the_stream_ends(store: StreamStore) -> None:
    """Once the stream has ended, the mapping is gone and a new stream can start."""
    async with Streamer(store) as streamer:
        model = Model()
        model.release.set()
        await streamer.start_active("chat", model.answer, session_id="one", supersede=False)
        assert await text_of(streamer, "one") == ("hello world", "end")
        assert await streamer.active("chat") is None
    # Leaving the block waited for the producer's task, clean-up included.
    assert await store.get_active("chat") is None
    async with Streamer(store) as streamer:
        again = await streamer.start_active("chat", Model().answer, supersede=False)
        assert again.started
        assert again.superseded is None
        await streamer.cancel(again.session_id)


async def test_a_stale_mapping_does_not_refuse_a_start() -> None:
    """A mapping left behind by an ended stream (e.g. a crashed worker) is ignored and replaced."""
    store = MemoryStore()
    async with Streamer(store) as streamer:
        model = Model()
        model.release.set()
        await streamer.start_active("chat", model.answer, session_id="old")
        await text_of(streamer, "old")
        await store.set_active("chat", "old", replace=True)  # as if never cleared
        assert await streamer.active("chat") is None
        new = await streamer.start_active("chat", Model().answer, session_id="new", supersede=False)
        assert new.started
        assert await streamer.active("chat") == "new"
        await streamer.cancel("new")


async def test_cancel_of_the_active_stream_ends_it(streamer: Streamer) -> None:
    """Cancelling the active stream ends it with ``cancelled`` and clears the mapping."""
    model = Model()
    active = await streamer.start_active("chat", model.answer)
    assert await streamer.active("chat") == active.session_id
    assert await streamer.cancel(active.session_id) is True
    assert await text_of(streamer, active.session_id) == ("hello", "cancelled")
    assert await streamer.active("chat") is None
