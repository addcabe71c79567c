"""The suite's own SSE reader (tests/sse.py) follows the event-stream rules other tests rely on."""

from __future__ import annotations

import pytest

from tests.sse import EventParser

Wire = tuple[str, str, str, int | None]


def parse(*chunks: bytes) -> list[Wire]:
    parser = EventParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.close()
    return [(e.id, e.event, e.data, e.retry) for e in events]


def test_a_keep_alive_comment_after_an_event_is_no_event() -> None:
    """``: ping`` between events dispatches nothing (httpx-sse 0.4 yields an empty event)."""
    body = b"id: a-1\r\ndata: x\r\n\r\n: ping - 2024-01-01\r\n\r\nid: a-2\r\ndata: y\r\n\r\n"
    assert parse(body) == [("a-1", "message", "x", None), ("a-2", "message", "y", None)]


def test_empty_data_is_an_event_and_a_block_without_data_is_not() -> None:
    """``data:`` alone is an event with empty data; an id or event name alone is not."""
    body = b"id: a-1\nevent: end\ndata:\n\nid: a-2\n\nevent: x\n\n"
    assert parse(body) == [("a-1", "end", "", None)]


def test_multi_line_data_fields_and_retry() -> None:
    """Data lines join with LF; one space after the colon is syntax; retry comes with its
    event; unknown fields and an id with NUL are ignored."""
    body = b"retry: 1000\nid: a-1\ndata:  two\ndata: lines\nfoo: bar\n\nid: b\x00\ndata: z\n\n"
    assert parse(body) == [("a-1", "message", " two\nlines", 1000), ("a-1", "message", "z", None)]


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_any_chunking_and_line_ending_gives_the_same_events(ending: bytes) -> None:
    """Byte by byte (CRLF and UTF-8 sequences split across chunks) equals all at once."""
    lines = [b"\xef\xbb\xbfid: a-1", "data: ü€ 🙂".encode(), b"", b": ping", b"", b"data: b", b""]
    body = ending.join(lines) + ending
    whole = parse(body)
    assert whole == [("a-1", "message", "ü€ 🙂", None), ("a-1", "message", "b", None)]
    assert parse(*(body[i : i + 1] for i in range(len(body)))) == whole


def test_an_unfinished_event_at_the_end_is_dropped() -> None:
    """A body cut before an event's blank line does not dispatch that event."""
    assert parse(b"data: a\n\ndata: b\n") == [("", "message", "a", None)]
    assert parse(b"data: a\r\r") == [("", "message", "a", None)]
