"""Events as the bytes an SSE response sends: one *frame* per event.

The encoding is exactly the one sse-starlette gives an event dict (its default ``\\r\\n``
line separator): ``id``, ``event``, one ``data`` line per line of the data (CR, LF and
CRLF all split lines), then ``retry`` if any, then a blank line. Building the bytes here
lets a response send every event that is ready as one chunk (one socket write) and lets
a store build each frame once for all its readers; sse-starlette passes ``bytes`` items
through unchanged, so what reaches the client is byte for byte what the dicts gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import count
from typing import TYPE_CHECKING, overload

from typing_extensions import final

if TYPE_CHECKING:  # the store contract imports this module
    from .stores._contract import LogItem, StoredEvent

__all__ = [
    "FrameBlock",
    "concat_frames",
    "encode_frame",
    "encode_frames",
    "encode_items",
    "encode_run",
    "frames_size",
    "join_frames",
    "with_retry",
]


def _data_lines(data: str) -> str:
    if "\n" in data or "\r" in data:
        return "\r\ndata: ".join(data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return data


def encode_frame(event_id: str | None, event: str, data: str) -> bytes:
    """One event as SSE bytes; ``event_id`` ``None`` leaves the ``id`` field out.

    Event names and ids never contain line breaks (they are validated), so only the
    data needs splitting into lines.
    """
    if "\n" in data or "\r" in data:
        data = _data_lines(data)
    if event_id is None:
        return f"event: {event}\r\ndata: {data}\r\n\r\n".encode()
    return f"id: {event_id}\r\nevent: {event}\r\ndata: {data}\r\n\r\n".encode()


def encode_frames(prefix: str, events: Sequence[StoredEvent]) -> list[bytes]:
    """Frames of stored events, with ids ``<prefix><seq>`` (the prefix ends with ``-``)."""
    return [
        f"id: {prefix}{seq}\r\nevent: {event}\r\ndata: {_data_lines(data)}\r\n\r\n".encode()
        for seq, event, data, _ in events
    ]


_END = b"\r\n\r\n"


@final
class FrameBlock(Sequence[bytes]):
    """The frames of consecutive events as one ``bytes`` object, sent as it is.

    Encoding a run as one string and that string once costs about half of one bytes
    object per frame. A frame's only blank line is its end (every data line starts with
    ``data:``), so the frames themselves, needed only to cut a block too large for one
    chunk, are found by splitting there.
    """

    __slots__ = ("_frames", "_len", "blob")

    def __init__(self, blob: bytes, frames: int) -> None:
        self.blob = blob
        self._len = frames
        self._frames: list[bytes] | None = None

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        return self._split()[index]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._split())

    def _split(self) -> list[bytes]:
        if self._frames is None:
            self._frames = [frame + _END for frame in self.blob.split(_END)[:-1]]
        return self._frames

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._split() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a list

    def __repr__(self) -> str:
        return f"FrameBlock({self._split()!r})"


def encode_run(prefix: str, seq: int, event: str, datas: Sequence[str]) -> Sequence[bytes]:
    """Frames of a run of events named ``event`` with ``datas``, numbered from ``seq``:
    several one-line tokens as a :class:`FrameBlock`."""
    return encode_items(prefix, count(seq), event, datas, block=True)


def encode_items(
    prefix: str,
    seqs: Iterable[int],
    event: str,
    items: Sequence[LogItem],
    *,
    block: bool = False,
) -> list[bytes] | FrameBlock:
    """Frames of the events numbered ``seqs``, given as log items (see ``LogItem``: a
    ``str`` is the data of a text event named ``event``), like :func:`encode_frames`.

    A run of one-line tokens, the usual case, is told by one join of all the items (it
    fails unless every one is a ``str``) and costs one f-string and one encode each; with
    ``block``, several of them are one :class:`FrameBlock`, encoded at once.
    """
    try:
        joined = "".join(items)  # type: ignore[arg-type]  # a TypeError says: not all str
    except TypeError:
        joined = "\n"
    if "\n" not in joined and "\r" not in joined:
        if len(items) == 1:  # a lone token, as at an LLM's pace
            return [encode_frame(f"{prefix}{next(iter(seqs))}", event, joined)]
        head, fields = "id: " + prefix, f"\r\nevent: {event}\r\ndata: "
        if block and items:
            texts = [
                f"{head}{seq}{fields}{data}\r\n\r\n"
                for seq, data in zip(seqs, items, strict=False)  # seqs may be endless
            ]
            return FrameBlock("".join(texts).encode(), len(texts))
        return [
            f"{head}{seq}{fields}{data}\r\n\r\n".encode()
            for seq, data in zip(seqs, items, strict=False)  # seqs may be endless
        ]
    return [
        encode_frame(f"{prefix}{seq}", event, item)
        if type(item) is str
        else encode_frame(f"{prefix}{seq}", item[0], item[1])
        for seq, item in zip(seqs, items, strict=False)
    ]


def concat_frames(parts: Sequence[Sequence[bytes]]) -> Sequence[bytes]:
    """The frames of ``parts`` one after the other (blocks stay one block)."""
    if not parts:
        return []
    if len(parts) == 1:
        return parts[0]
    blocks = [part for part in parts if isinstance(part, FrameBlock)]
    if len(blocks) == len(parts):
        return FrameBlock(b"".join([block.blob for block in blocks]), sum(map(len, blocks)))
    return [frame for part in parts for frame in part]


def frames_size(frames: Sequence[bytes]) -> int:
    """The bytes of ``frames``, all together."""
    return len(frames.blob) if type(frames) is FrameBlock else sum(map(len, frames))


def join_frames(frames: Sequence[bytes], limit: int) -> Iterable[bytes]:
    """Frames joined into chunks of at most ``limit`` bytes (a larger frame alone).

    The bound keeps what a slow client makes the server buffer small: a chunk is
    written whole, and the server waits for the client only between chunks. When there
    is more than one chunk, each is joined as it is taken, so frames larger in all than
    a chunk (large events) are never copied at once. A lone frame is returned as it
    is, not copied.
    """
    if type(frames) is FrameBlock and len(frames.blob) <= limit:
        return [frames.blob]
    if len(frames) <= 1:
        return list(frames)  # none (an empty read: nothing to send), or one as it is
    if sum(map(len, frames)) <= limit:
        return [b"".join(frames)]
    return _chunks(frames, limit)


def _chunks(frames: Sequence[bytes], limit: int) -> Iterator[bytes]:
    start, size = 0, 0
    for index, frame in enumerate(frames):
        if size and size + len(frame) > limit:
            yield b"".join(frames[start:index])
            start, size = index, 0
        size += len(frame)
    yield b"".join(frames[start:])


def with_retry(chunk: bytes, retry: int) -> bytes:
    """``chunk`` with a ``retry`` field added to its first frame, where sse-starlette puts it.

    A frame's only blank line is its end: every data line starts with ``data:``.
    """
    end = chunk.index(b"\r\n\r\n") + 2
    return b"%bretry: %d\r\n%b" % (chunk[:end], retry, chunk[end:])
