"""The memory store's in-place log: what its producer writes reads back exactly as appended
events do, limits hold to the event, and a generator that never waits starves no one."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resumable_sse import Entry, MemoryStore, Streamer
from resumable_sse.stores import EventRun, StoredEvent, StreamState
from tests.helpers import collect

pytestmark = pytest.mark.anyio


class Tagged(str):
    """A str subclass: its data must come back as text, not be taken for an Entry."""


ITEMS: list[object] = [
    "tok",
    "",
    "two\nlines\r\nand\rmore",
    "ünï 🦜",
    b"bytes",
    Tagged("tagged"),
    {"event": "tool", "data": {"x": 1}},
    {"data": "plain dict"},
    [1, "two"],
    "last",
]


async def items() -> AsyncIterator[object]:
    for item in ITEMS:
        yield item


def test_an_event_run_is_a_sequence_of_stored_events() -> None:
    run = EventRun(7, "message", ["a", Entry("tool", "{}"), "b"])
    expected = [
        StoredEvent(7, "message", "a", True),
        StoredEvent(8, "tool", "{}", False),
        StoredEvent(9, "message", "b", True),
    ]
    assert list(run) == expected
    assert run == expected
    assert expected == run
    assert (len(run), run[0], run[-1], run[1:]) == (3, expected[0], expected[2], expected[1:])
    with pytest.raises(IndexError):
        run[3]
    assert run != ["a", "b", "c"]


async def test_events_written_in_place_read_as_appended_ones() -> None:
    """Every kind of item, through the producer's in-place log and through append."""
    local, batched = MemoryStore(), MemoryStore()
    batched.local_log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    runs = []
    for store in (local, batched):
        async with Streamer(store) as streamer:
            dicts = await collect(streamer.stream("s", items()))
            page = await store.read("s", 0, limit=100, wait=False)
            frames = await store.read_frames("s", 0, limit=100, wait=False)
            assert page is not None
            assert frames is not None
            prefix = page.info.incarnation + "-"
            runs.append(
                (
                    [{**event, "id": event["id"].removeprefix(prefix)} for event in dicts],
                    list(page.events),
                    [frame.replace(prefix.encode(), b"") for frame in frames.frames],
                )
            )
    assert runs[0] == runs[1]
    dicts, events, _ = runs[0]
    assert [(e["event"], e["data"]) for e in dicts[:-1]] == [
        ("message", "tok"),
        ("message", ""),
        ("message", "two\nlines\r\nand\rmore"),
        ("message", "ünï 🦜"),
        ("message", "bytes"),
        ("message", "tagged"),
        ("tool", '{"x":1}'),
        ("message", "plain dict"),
        ("message", '[1,"two"]'),
        ("message", "last"),
    ]
    assert [e.text for e in events[:-1]] == [True] * 6 + [False] * 3 + [True]
    assert type(events[5].data) is Tagged  # kept as given, not copied


@pytest.mark.parametrize("limit", [1, 1023, 1024, 1025, 3000])
async def test_max_events_is_exact_on_the_in_place_log(limit: int) -> None:
    async def endless() -> AsyncIterator[str]:
        while True:
            yield "t"

    async with Streamer(MemoryStore(), max_events=limit) as streamer:
        events = await collect(streamer.stream("s", endless()))
    assert len(events) == limit + 1
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"])["code"] == "limit_exceeded"


async def test_a_generator_that_never_waits_lets_other_tasks_run() -> None:
    """A generator that yields forever without awaiting still leaves the loop to others:
    another task runs, and its cancel stops the stream."""
    ran = anyio.Event()

    async def busy() -> AsyncIterator[str]:
        while True:
            yield "t"

    async with Streamer(MemoryStore(), max_events=10**9, max_bytes=10**10) as streamer:
        await streamer.start("s", busy())
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _set(ran))
            await ran.wait()
        assert await streamer.cancel("s")
        events = await collect(streamer.resume("s", None))
    assert events[-1]["event"] == "cancelled"
    assert len(events) > 1


async def _set(event: anyio.Event) -> None:
    event.set()


async def test_a_finished_stream_keeps_nothing_of_its_producer() -> None:
    """A retained stream holds its events only: not the producer, nor its generator."""
    gate = anyio.Event()

    async def held() -> AsyncIterator[str]:
        await gate.wait()
        yield "t"

    generator = held()
    alive = weakref.ref(generator)
    async with Streamer(MemoryStore()) as streamer:
        await streamer.start("s", generator)
        del generator
        gate.set()
        events = await collect(streamer.resume("s", None))
        assert [event["event"] for event in events] == ["message", "end"]
        gc.collect()
        assert alive() is None
        assert await streamer.store.info("s") is not None  # still retained


# Items whose sizes straddle the limits: ASCII tokens of every length from empty to past
# a small max_event_bytes, text of 2- and 4-byte characters, and custom events.
_LIMIT_ITEMS = st.one_of(
    st.text(alphabet="ab\n", max_size=10),
    st.text(alphabet="aü🦜", max_size=4),
    st.builds(lambda data: {"event": "tool", "data": data}, st.text(alphabet="xé", max_size=8)),
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    items=st.lists(_LIMIT_ITEMS, max_size=40),
    max_events=st.integers(1, 45),
    max_bytes=st.integers(1, 120),
    max_event_bytes=st.integers(1, 10),
)
def test_limits_hold_to_the_byte_and_the_event_on_the_in_place_log(
    items: list[str | dict[str, str]], max_events: int, max_bytes: int, max_event_bytes: int
) -> None:
    """The in-place log keeps exactly the events an exact count of each event's UTF-8
    bytes allows, however the items' sizes fall against the limits."""
    kept: list[str] = []
    total = 0
    for item in items:
        data = item if isinstance(item, str) else item["data"]
        size = len(data.encode())
        total += size
        if size > max_event_bytes or total > max_bytes or len(kept) == max_events:
            break
        kept.append(data)

    async def run() -> list[dict[str, str]]:
        async with Streamer(
            MemoryStore(),
            max_events=max_events,
            max_bytes=max_bytes,
            max_event_bytes=max_event_bytes,
        ) as streamer:
            return await collect(streamer.stream("s", iter(items)))

    events = anyio.run(run)
    assert [event["data"] for event in events[:-1]] == kept
    if len(kept) < len(items):
        assert json.loads(events[-1]["data"])["code"] == "limit_exceeded"
    else:
        assert events[-1]["event"] == "end"


async def test_bytes_are_counted_across_tokens_and_checked_events() -> None:
    """ASCII tokens and events checked one by one (not ASCII) share one byte count:
    2 + 2 + 2 + 2 + 2 bytes fill max_bytes=10, and the next byte is one too many."""
    async with Streamer(MemoryStore(), max_bytes=10) as streamer:
        events = await collect(streamer.stream("s", iter(["aa", "aa", "ü", "aa", "aa", "a"])))
    assert [event["data"] for event in events[:-1]] == ["aa", "aa", "ü", "aa", "aa"]
    assert json.loads(events[-1]["data"])["code"] == "limit_exceeded"


@pytest.mark.parametrize("late", [{"event": "tool", "data": "x"}, "ünï", b"\xc3\xa9"])
async def test_an_event_kept_whole_after_text_is_read_as_itself(late: object) -> None:
    """A reader that has read a run of text and then reads an event the log keeps whole
    (a custom event) gets that event's name and data, not the text shortcut's."""
    read = {"a": anyio.Event(), "b": anyio.Event()}

    async def items() -> AsyncIterator[object]:
        yield "a"
        await read["a"].wait()
        yield late  # read with "b", before the stream's end is stored
        yield "b"
        await read["b"].wait()
        yield "c"

    async with Streamer(MemoryStore()) as streamer:
        got = []
        async for event in streamer.stream("s", items()):
            got.append((event["event"], event["data"]))
            if event["data"] in read:
                read[event["data"]].set()
    data = late["data"] if isinstance(late, dict) else late
    name = late["event"] if isinstance(late, dict) else "message"
    expected = (name, data.decode() if isinstance(data, bytes) else data)
    assert got == [("message", "a"), expected, ("message", "b"), ("message", "c"), ("end", "")]


async def test_a_run_says_it_holds_text_only_exactly_when_it_does() -> None:
    """A page promises text only (``EventRun.texts``) only if every event in it is a
    text event: it does for every page after the last custom event, but for the end."""
    store = MemoryStore()
    claim = await store.claim("s")
    assert claim is not None
    await store.append("s", claim, [Entry("message", "a", True)], first_seq=1)
    await store.append("s", claim, [Entry("tool", "{}"), Entry("message", "b", True)], first_seq=2)
    log = store.local_log("s", claim, "message")
    assert log is not None
    log.items.append("c")
    for finished in (False, True):
        if finished:
            await store.finish("s", claim, StreamState.DONE, Entry("end", ""), seq=5)
        for after in range(5):
            for limit in range(1, 6 - after):
                page = await store.read("s", after, limit=limit, wait=False)
                assert page is not None
                run = page.events
                assert isinstance(run, EventRun)
                if run.texts:  # the promise
                    assert all(event.text and event.event == "message" for event in run)
                # Kept after the last custom event, in every page without the end.
                expected = after >= 2 and (not finished or after + limit <= 4)
                assert run.texts == expected, (finished, after, limit)
