"""SSE frames on their own: sse-starlette's encoding exactly, chunks bounded in bytes."""

from __future__ import annotations

import pytest
from sse_starlette.event import ensure_bytes

from resumable_sse._frames import (
    FrameBlock,
    concat_frames,
    encode_frame,
    encode_frames,
    encode_run,
    join_frames,
    with_retry,
)
from resumable_sse.stores import StoredEvent

DATAS = ["", "tokn", "a\nb", "a\r\nb\rc", "\n", "ends with\r", "é € 😀", ": not a comment"]


@pytest.mark.parametrize("data", DATAS)
def test_a_frame_is_what_sse_starlette_makes_of_the_dict(data: str) -> None:
    """Same bytes as the dict sent through EventSourceResponse, with and without id/retry."""
    event = {"id": "abc-7", "event": "message", "data": data}
    assert encode_frame("abc-7", "message", data) == ensure_bytes(event, "\r\n")
    assert encode_frame(None, "error", data) == ensure_bytes(
        {"event": "error", "data": data}, "\r\n"
    )
    assert with_retry(encode_frame("abc-7", "message", data), 1000) == ensure_bytes(
        {**event, "retry": 1000}, "\r\n"
    )
    [frame] = encode_frames("abc-", [StoredEvent(7, "message", data)])
    assert frame == encode_frame("abc-7", "message", data)


def test_retry_goes_into_the_first_frame_of_a_chunk_only() -> None:
    """The first event carries the advice; the events after it are untouched."""
    frames = encode_frames("x-", [StoredEvent(1, "message", "a\n\nb"), StoredEvent(2, "m", "c")])
    [chunk] = join_frames(frames, 1 << 20)
    assert with_retry(chunk, 5) == with_retry(frames[0], 5) + frames[1]


def test_chunks_stay_under_the_limit_and_keep_every_byte_in_order() -> None:
    """A page larger than the limit is split between frames; a frame over it goes alone."""
    frames = [bytes([65 + i]) * size for i, size in enumerate([10, 10, 10, 25, 5, 5])]
    chunks = list(join_frames(frames, 20))
    assert b"".join(chunks) == b"".join(frames)
    assert [len(c) for c in chunks] == [20, 10, 25, 10]
    assert join_frames(frames[:1], 1) == [frames[0]]
    assert join_frames([], 20) == []  # an empty read sends nothing, not an empty chunk
    assert join_frames(frames, 1000) == [b"".join(frames)]


@pytest.mark.parametrize(
    "datas",
    [
        ["tok", "en", ""],
        ["a\nb", "plain", "c\rd", "e\r\nf", "\r\n", ""],
        ["ünï 🦜", "\n\n\r"],
        [],
    ],
)
@pytest.mark.parametrize("event", ["message", "tool-call"])
def test_a_run_is_framed_as_its_events_are(datas: list[str], event: str) -> None:
    """encode_run gives the bytes encode_frames gives the same events, numbered on."""
    events = [StoredEvent(41 + i, event, data) for i, data in enumerate(datas)]
    frames = encode_frames("abc-", events)
    run = encode_run("abc-", 41, event, datas)
    assert len(run) == len(frames)
    assert list(run) == frames
    assert list(join_frames(run, 1 << 20)) == list(join_frames(frames, 1 << 20))


def test_a_block_of_frames_is_cut_between_frames_when_too_large() -> None:
    """A run of tokens encoded as one block: sent whole when it fits a chunk, else cut
    exactly where separate frames would be; blocks read one after another stay one."""
    datas = [f"token {i}" for i in range(100)]
    events = [StoredEvent(1 + i, "message", data) for i, data in enumerate(datas)]
    frames = encode_frames("x-", events)
    block = encode_run("x-", 1, "message", datas)
    assert isinstance(block, FrameBlock)
    assert join_frames(block, 1 << 20) == [b"".join(frames)]
    assert list(join_frames(block, 300)) == list(join_frames(frames, 300))
    assert block[5] == frames[5]
    assert list(block[-2:]) == frames[-2:]
    halves = [
        encode_run("x-", 1, "message", datas[:40]),
        encode_run("x-", 41, "message", datas[40:]),
    ]
    joined = concat_frames(halves)
    assert isinstance(joined, FrameBlock)
    assert list(joined) == frames
    mixed = concat_frames([halves[0], frames[40:]])
    assert list(mixed) == frames
