"""Compacted replay: runs of text merged while pages are read, on every store.

The property: for any stream (a random mix of text, bytes, JSON, custom events under
several names) and any resume position, the compacted replay is exactly the full
replay with each run of text events merged (their data joined, as a client receives
it, under the id of the run's last event), its text equals the full replay's, and
every id it sends is a resume point that gives exactly the rest of the stream.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resumable_sse import Streamer, StreamStore
from resumable_sse._compact import Compactor
from resumable_sse.stores import StoredEvent

pytestmark = pytest.mark.anyio

Event = tuple[str, str, str]  # (id, event, data), as a client receives them

COMPACT_PROPERTIES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text with the line breaks that framing rewrites: CR, LF, CRLF split across items.
_piece = st.sampled_from(["a", "é", " ", "\n", "\r", "\r\n", "x😀"])
_text = st.lists(_piece, max_size=4).map("".join)
_json = st.one_of(
    st.integers(), st.lists(st.integers(), max_size=2), st.dictionaries(st.just("k"), _text)
)
_custom = st.fixed_dictionaries(
    {"data": st.one_of(_text, _json)},
    optional={"event": st.sampled_from(["message", "tool_call", "status"])},
)
_item = st.one_of(_text, _text.map(lambda text: text.encode()), _json, _custom, _text, _text)


def lf(data: str) -> str:
    """Data as an SSE client receives it: CRLF and CR arrive as LF."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


def is_text(item: object) -> bool:
    return isinstance(item, (str, bytes))


def model(events: Sequence[Event], text: Sequence[bool]) -> list[Event]:
    """The compacted replay, from the full one and which events came from text items."""
    out: list[Event] = []
    keyed = zip(events, text, strict=True)
    for (mergeable, name), run in itertools.groupby(keyed, lambda e: (e[1], e[0][1])):
        group = [event for event, _ in run]
        if mergeable and len(group) > 1:
            out.append((group[-1][0], name, "".join(lf(event[2]) for event in group)))
        else:
            out.extend(group)
    return out


async def read(streamer: Streamer, sid: str, last_id: str | None, compact: bool) -> list[Event]:
    subscription = await streamer.open(sid, last_id=last_id, compact=compact)
    async with subscription:
        return [(e["id"], e["event"], e["data"]) async for e in subscription]


def seq_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


@COMPACT_PROPERTIES
@given(items=st.lists(_item, max_size=24), at=st.integers(0, 30), data=st.data())
async def test_compacted_replay_matches_the_full_one(
    store: StreamStore, items: list[object], at: int, data: st.DataObject
) -> None:
    """Same text, non-text events in place, and every id an exact resume point."""
    async with Streamer(store, page_size=data.draw(st.sampled_from([1, 3, 512]))) as streamer:
        sid = f"c{id(items)}-{at}-{len(items)}"
        await streamer.start(sid, list(items))
        full = await read(streamer, sid, None, compact=False)
        assert len(full) == len(items) + 1  # one event per item, then the end
        position = min(at, len(full) - 1)
        last_id = full[position - 1][0] if position else None
        flags = [is_text(item) for item in items] + [False]
        compacted = await read(streamer, sid, last_id, compact=True)
        assert compacted == model(full[position:], flags[position:])
        text = "".join(lf(event[2]) for event in full[position:])
        assert "".join(lf(event[2]) for event in compacted) == text
        for event_id, _, _ in compacted[:-1]:
            rest = full[seq_of(event_id) :]
            assert await read(streamer, sid, event_id, compact=False) == rest
            again = await read(streamer, sid, event_id, compact=True)
            assert again == model(rest, flags[seq_of(event_id) :])


async def test_the_live_tail_is_not_compacted(streamer: Streamer) -> None:
    """Events stored after the subscription opened come one by one."""
    go = anyio.Event()

    async def tokens() -> AsyncIterator[str]:
        for token in ["a", "b", "c"]:
            yield token
        await go.wait()
        for token in ["d", "e"]:
            yield token

    await streamer.start("live", tokens)
    first = await streamer.open("live")
    async with first:
        seen = [await first.__anext__() for _ in range(3)]  # the first three are stored
    assert [event["data"] for event in seen] == ["a", "b", "c"]
    subscription = await streamer.open("live", compact=True)
    async with subscription:
        go.set()
        events = [(e["event"], e["data"]) async for e in subscription]
    assert events == [("message", "abc"), ("message", "d"), ("message", "e"), ("end", "")]


async def test_without_the_flag_nothing_is_merged(streamer: Streamer) -> None:
    """A client that does not ask gets every event, as stored."""
    await streamer.start("plain", ["a", "b", b"c", "d"])
    events = await read(streamer, "plain", None, compact=False)
    assert [data for _, _, data in events] == ["a", "b", "c", "d", ""]


def test_line_breaks_survive_a_merge() -> None:
    """A CR ending one event and a LF starting the next stay two line breaks."""
    run = [StoredEvent(1, "m", "a\r", True), StoredEvent(2, "m", "\nb\r\n", True)]
    compactor = Compactor()
    merged = compactor.feed(run) + compactor.flush()
    assert merged == [StoredEvent(2, "m", "a\n\nb\n", True)]


def test_json_custom_and_other_names_split_runs() -> None:
    """Only text under one name merges; everything else keeps its place."""
    events = [
        StoredEvent(1, "m", "a", True),
        StoredEvent(2, "m", "", True),
        StoredEvent(3, "m", "1", False),
        StoredEvent(4, "m", "b", True),
        StoredEvent(5, "x", "c", True),
        StoredEvent(6, "x", "d", True),
        StoredEvent(7, "end", "", False),
    ]
    compactor = Compactor()
    out = compactor.feed(events[:5]) + compactor.feed(events[5:]) + compactor.flush()
    assert out == [
        StoredEvent(2, "m", "a", True),
        StoredEvent(3, "m", "1", False),
        StoredEvent(4, "m", "b", True),
        StoredEvent(6, "x", "cd", True),
        StoredEvent(7, "end", "", False),
    ]
