"""The StreamStore contract, run against every store (see tests/stores.py)."""

from __future__ import annotations

import anyio
import pytest

from resumable_sse import Claim, Entry, LeaseLostError, Page, StreamState, StreamStore
from resumable_sse._frames import encode_frames
from resumable_sse.stores import LogItem
from tests.stores import StoreHarness

pytestmark = pytest.mark.anyio


def entries(*data: str, event: str = "message") -> list[Entry]:
    return [Entry(event, d) for d in data]


async def claimed(store: StreamStore, session_id: str = "s1") -> Claim:
    claim = await store.claim(session_id)
    assert claim is not None
    return claim


async def read_until(store: StreamStore, session_id: str, after: int) -> Page | None:
    """Read with wait=True, looping over the empty pages a store may return on timeout."""
    while True:
        page = await store.read(session_id, after, limit=1000, wait=True)
        if page is None or page.events or page.info.state.finished:
            return page


async def test_first_claim_wins_and_later_claims_get_none(store: StreamStore) -> None:
    """Exactly one caller becomes the producer of a new stream."""
    claim = await store.claim("s1")
    assert claim is not None
    assert await store.claim("s1") is None
    assert await store.claim("s2") is not None


async def test_concurrent_claims_yield_one_producer(store: StreamStore) -> None:
    """Of many concurrent claims for one session, exactly one succeeds."""
    results: list[Claim | None] = []

    async def claim() -> None:
        results.append(await store.claim("race"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claim)
    assert sum(r is not None for r in results) == 1


async def test_sequence_numbers_start_at_one_without_gaps(store: StreamStore) -> None:
    """Appended events are numbered 1, 2, 3, ... in order, across batches."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a", "b"), first_seq=1)
    await store.append("s1", claim, entries("c"), first_seq=3)
    page = await store.read("s1", 0, limit=100, wait=False)
    assert page is not None
    assert [(e.seq, e.data) for e in page.events] == [(1, "a"), (2, "b"), (3, "c")]
    assert page.info.last_seq == 3
    assert page.info.first_seq == 1
    assert page.info.state is StreamState.RUNNING


async def test_read_is_exclusive_of_after_and_respects_limit(store: StreamStore) -> None:
    """read(after=k) starts at k+1 and returns at most ``limit`` events."""
    claim = await claimed(store)
    await store.append("s1", claim, entries(*map(str, range(1, 11))), first_seq=1)
    page = await store.read("s1", 4, limit=3, wait=False)
    assert page is not None
    assert [e.seq for e in page.events] == [5, 6, 7]
    tail = await store.read("s1", 10, limit=3, wait=False)
    assert tail is not None
    assert list(tail.events) == []


async def test_data_round_trips_exactly(store: StreamStore) -> None:
    """Event names and data come back byte for byte: newlines, CR, NUL, unicode."""
    odd = ["line1\nline2", "cr\rlf\r\n", "nul\x00byte", "emoji 🦜 ünï", "", " lead", "x" * 70_000]
    claim = await claimed(store)
    await store.append("s1", claim, [Entry("tool_call", d) for d in odd], first_seq=1)
    page = await store.read("s1", 0, limit=100, wait=False)
    assert page is not None
    assert [e.data for e in page.events] == odd
    assert {e.event for e in page.events} == {"tool_call"}


async def test_append_items_stores_text_runs_and_entries_alike(store: StreamStore) -> None:
    """A batch of log items (a str is a text event with the given name) reads back as
    the events it stands for, in order, whatever mix of strs and entries it holds."""
    claim = await claimed(store)
    items: list[LogItem] = [
        "a",
        "b\nc",
        Entry("tool", '{"x":1}'),
        Entry("message", "d", True),
        "é",
        Entry("message", "json", False),
        "",
    ]
    await store.append_items("s1", claim, items, event="message", first_seq=1)
    await store.append_items("s1", claim, items, event="message", first_seq=1)  # a retry
    await store.append_items("s1", claim, ["z"], event="token", first_seq=8)
    page = await store.read("s1", 0, limit=100, wait=False)
    assert page is not None
    assert [tuple(e) for e in page.events] == [
        (1, "message", "a", True),
        (2, "message", "b\nc", True),
        (3, "tool", '{"x":1}', False),
        (4, "message", "d", True),
        (5, "message", "é", True),
        (6, "message", "json", False),
        (7, "message", "", True),
        (8, "token", "z", True),
    ]
    frames = await store.read_frames("s1", 2, limit=100, wait=False)
    assert frames is not None
    assert b"".join(frames.frames) == b"".join(
        encode_frames(f"{claim.incarnation}-", list(page.events)[2:])
    )


async def test_retried_append_is_not_applied_twice(store: StreamStore) -> None:
    """A batch re-sent with the same first_seq (its reply was lost) is stored once."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a", "b"), first_seq=1)
    await store.append("s1", claim, entries("a", "b"), first_seq=1)
    info = await store.info("s1")
    assert info is not None
    assert info.last_seq == 2


async def test_append_that_would_leave_a_gap_is_refused(store: StreamStore) -> None:
    """An append not starting right after the log's end raises and writes nothing."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a"), first_seq=1)
    with pytest.raises(LeaseLostError):
        await store.append("s1", claim, entries("z"), first_seq=5)
    info = await store.info("s1")
    assert info is not None
    assert info.last_seq == 1


async def test_finish_stores_the_terminal_event_and_fences_writes(store: StreamStore) -> None:
    """finish appends the last event and sets the state; later appends are refused."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a"), first_seq=1)
    await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=2)
    await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=2)  # a retry
    with pytest.raises(LeaseLostError):
        await store.append("s1", claim, entries("late"), first_seq=3)
    page = await store.read("s1", 0, limit=10, wait=False)
    assert page is not None
    assert [(e.seq, e.event) for e in page.events] == [(1, "message"), (2, "end")]
    assert page.info.state is StreamState.DONE
    assert await store.claim("s1") is None  # finished streams are kept, not re-run


async def test_old_claim_cannot_write_to_a_new_stream(store: StreamStore) -> None:
    """After delete and a new claim, the first producer's claim is fenced off."""
    old = await claimed(store)
    await store.append("s1", old, entries("old"), first_seq=1)
    assert await store.delete("s1")
    new = await claimed(store)
    assert new.incarnation != old.incarnation
    with pytest.raises(LeaseLostError):
        await store.append("s1", old, entries("stale"), first_seq=1)
    with pytest.raises(LeaseLostError):
        await store.finish("s1", old, StreamState.DONE, Entry("end", ""), seq=1)
    page = await store.read("s1", 0, limit=10, wait=False)
    assert page is not None
    assert list(page.events) == []


async def test_waiting_read_wakes_on_append(store: StreamStore) -> None:
    """A blocked read returns the events appended after it started waiting."""
    claim = await claimed(store)
    got: list[Page | None] = []

    async def reader() -> None:
        got.append(await read_until(store, "s1", 0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await store.append("s1", claim, entries(*map(str, range(100))), first_seq=1)
    page = got[0]
    assert page is not None
    assert len(page.events) == 100  # the whole batch at once, never a part of it


async def test_waiting_read_wakes_on_finish_and_on_delete(store: StreamStore) -> None:
    """A blocked read returns when the stream ends, and returns None when it is deleted."""
    claim = await claimed(store, "ends")
    await claimed(store, "goes")
    got: dict[str, Page | None] = {}

    async def reader(session_id: str) -> None:
        got[session_id] = await read_until(store, session_id, 0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, "ends")
        tg.start_soon(reader, "goes")
        await anyio.wait_all_tasks_blocked()
        await store.finish("ends", claim, StreamState.ERROR, Entry("error", "{}"), seq=1)
        await store.delete("goes")
    ended = got["ends"]
    assert ended is not None
    assert ended.info.state is StreamState.ERROR
    assert [e.event for e in ended.events] == ["error"]
    assert got["goes"] is None


async def test_unknown_streams(store: StreamStore) -> None:
    """Reads, info, cancel and delete of a session that never existed."""
    assert await store.read("nope", 0, limit=10, wait=False) is None
    assert await store.info("nope") is None
    assert await store.request_cancel("nope") is False
    assert await store.delete("nope") is False


async def test_cancel_request_reaches_the_producer(store: StreamStore) -> None:
    """request_cancel on a running stream releases the producer's wait_cancel."""
    claim = await claimed(store)
    released = anyio.Event()

    async def producer_side() -> None:
        await store.wait_cancel("s1", claim)
        released.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer_side)
        await anyio.wait_all_tasks_blocked()
        assert not released.is_set()
        assert await store.request_cancel("s1") is True
    assert released.is_set()
    info = await store.info("s1")
    assert info is not None
    assert info.cancel_requested


async def test_cancel_of_a_finished_stream_is_refused(store: StreamStore) -> None:
    """A finished stream cannot be cancelled any more."""
    claim = await claimed(store)
    await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=1)
    assert await store.request_cancel("s1") is False


async def test_delete_removes_everything(store: StreamStore) -> None:
    """After delete the session is unknown and can start afresh."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a"), first_seq=1)
    assert await store.delete("s1") is True
    assert await store.info("s1") is None
    assert await store.read("s1", 0, limit=10, wait=False) is None
    assert await store.claim("s1") is not None


async def test_finished_streams_expire_after_retention(harness: StoreHarness) -> None:
    """A finished stream is readable during retention and gone after it."""
    async with harness.make(retention=1.0) as store:
        claim = await claimed(store)
        await store.append("s1", claim, entries("a"), first_seq=1)
        await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=2)
        assert await store.info("s1") is not None
        await harness.advance(1.5)
        assert await store.info("s1") is None
        assert await store.read("s1", 0, limit=10, wait=False) is None
        assert await store.claim("s1") is not None  # the session id is free again


async def test_running_streams_do_not_expire(harness: StoreHarness) -> None:
    """Retention counts from the end of a stream, not its start."""
    async with harness.make(retention=1.0) as store:
        claim = await claimed(store)
        await harness.advance(1.5)
        await store.append("s1", claim, entries("a"), first_seq=1)
        assert await store.info("s1") is not None


async def test_info_reports_times_and_state(store: StreamStore) -> None:
    """info carries the incarnation, state, bounds and timestamps."""
    claim = await claimed(store)
    await store.append("s1", claim, entries("a", "b"), first_seq=1)
    info = await store.info("s1")
    assert info is not None
    assert info.incarnation == claim.incarnation
    assert (info.first_seq, info.last_seq) == (1, 2)
    assert info.created_at <= info.updated_at
    assert not info.cancel_requested


async def test_a_reader_attached_at_the_end_gets_the_terminal_event_with_retention_0(
    harness: StoreHarness,
) -> None:
    """retention=0 frees the id at once, yet a reader waiting at the end still gets it."""
    async with harness.make(retention=0) as store:
        claim = await claimed(store)
        got: list[Page | None] = []

        async def reader() -> None:
            got.append(await store.read("s1", 0, limit=10, wait=True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=1)
        page = got[0]
        assert page is not None
        assert [(e.seq, e.event) for e in page.events] == [(1, "end")]
        assert page.info.state is StreamState.DONE
        assert await store.info("s1") is None  # gone for everyone else
        assert await store.claim("s1") is not None  # and the id is free again


async def test_a_reader_behind_the_end_reads_to_it_with_retention_0(harness: StoreHarness) -> None:
    """A reader naming the stream's incarnation reads its rest after the retention passed."""
    async with harness.make(retention=0) as store:
        claim = await store.claim("s1", owner="alice")
        assert claim is not None
        await store.append("s1", claim, entries("a", "b", "c"), first_seq=1)
        await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=4)
        assert await store.read("s1", 0, limit=10, wait=False) is None
        page = await store.read("s1", 1, limit=10, wait=True, incarnation=claim.incarnation)
        assert page is not None
        assert [e.data for e in page.events] == ["b", "c", ""]
        assert page.info.state is StreamState.DONE
        again = await claimed(store)  # a new stream replaces the finished one
        page = await store.read("s1", 1, limit=10, wait=False, incarnation=claim.incarnation)
        assert page is not None
        assert page.info.incarnation == again.incarnation
        # Nothing of the old stream carries over: not its owner, events or state.
        assert (page.info.owner, page.info.last_seq, list(page.events)) == (None, 0, [])
        assert page.info.state is StreamState.RUNNING


#: Batches of odd events: runs of one name and kind broken by names, kinds and data
#: (multi-line with LF, CR and CRLF, unicode, empty, a lone CR, trailing breaks).
ODD_BATCHES = [
    [Entry("message", "tok", True), Entry("message", "en", True), Entry("message", "", True)],
    [
        Entry("message", "a\nb", True),
        Entry("message", "c\rd\r\ne", True),
        Entry("message", '{"json":1}'),
        Entry("message", '{"json":2}'),
        Entry("tool-call", "ünï 🦜\n"),
        Entry("tool-call", "\r"),
        Entry("message", "back", True),
    ],
    [Entry("message", "x" * 5000, True)],
    [Entry("custom.name", "", True), Entry("message", "\r\n\r\n", True)],
]


async def odd_stream(store: StreamStore) -> Claim:
    claim = await claimed(store)
    seq = 1
    for batch in ODD_BATCHES:
        await store.append("s1", claim, batch, first_seq=seq)
        seq += len(batch)
    await store.finish("s1", claim, StreamState.ERROR, Entry("error", '{"code":"x"}'), seq=seq)
    return claim


async def test_read_frames_are_the_frames_of_the_events_read(store: StreamStore) -> None:
    """read_frames gives exactly the bytes of what read returns, from any position (in a
    batch, in a run of one name, at a batch's end) and for any limit."""
    claim = await odd_stream(store)
    last = sum(map(len, ODD_BATCHES)) + 1
    for after in range(last + 2):
        for limit in (1, 2, 3, 5, 100):
            page = await store.read("s1", after, limit=limit, wait=False)
            frames = await store.read_frames("s1", after, limit=limit, wait=False)
            assert page is not None
            assert frames is not None
            info = page.info
            assert frames.frames == encode_frames(claim.incarnation + "-", page.events)
            assert frames.seq == (page.events[0].seq if page.events else after + 1)
            assert frames.seq == after + 1
            assert len(frames.frames) == min(limit, max(last - after, 0))
            assert (frames.incarnation, frames.state) == (info.incarnation, info.state)
            assert (frames.first_seq, frames.last_seq) == (info.first_seq, info.last_seq)
    assert await store.read_frames("nope", 0, limit=10, wait=False) is None


async def test_read_keeps_every_event_its_name_and_kind(store: StreamStore) -> None:
    """Runs of one name and kind come back as the events appended, text flags included."""
    await odd_stream(store)
    page = await store.read("s1", 0, limit=100, wait=False)
    assert page is not None
    expected = [entry for batch in ODD_BATCHES for entry in batch]
    expected.append(Entry("error", '{"code":"x"}'))
    assert [(e.event, e.data, e.text) for e in page.events] == [tuple(e) for e in expected]
    assert [e.seq for e in page.events] == list(range(1, len(expected) + 1))


async def test_read_frames_waits_for_events_and_the_end(store: StreamStore) -> None:
    """read_frames with wait=True returns once an event or the end is there."""
    claim = await claimed(store)
    got: list[bytes] = []

    async def reader() -> None:
        after = 0
        while True:
            page = await store.read_frames("s1", after, limit=10, wait=True)
            assert page is not None
            got.extend(page.frames)
            after += len(page.frames)
            if page.state.finished and after >= page.last_seq:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await store.append("s1", claim, entries("a"), first_seq=1)
        await anyio.wait_all_tasks_blocked()
        await store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=2)
    prefix = f"id: {claim.incarnation}-"
    assert got == [
        f"{prefix}1\r\nevent: message\r\ndata: a\r\n\r\n".encode(),
        f"{prefix}2\r\nevent: end\r\ndata: \r\n\r\n".encode(),
    ]
