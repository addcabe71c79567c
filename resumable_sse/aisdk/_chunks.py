"""The AI SDK's UI message chunks: what a stream stores, and how its events are sent.

The AI SDK's chat client (``DefaultChatTransport``) reads an SSE body whose every
``data:`` line is one JSON *UI message chunk* (``{"type": "text-delta", ...}``) and
skips ``data: [DONE]``; ``event:`` and ``id:`` lines and comments are ignored. A chunk
whose type it does not know fails its validation and ends the client's stream.

So the adapter stores chunks, not raw items: :func:`ui_message_chunks` wraps the app's
generator and yields each chunk as JSON text, which the streamer stores as an ordinary
event. A replay from the start is then exactly what the first client read. The
streamer's terminal events are not chunks; :func:`sse_events` turns them into
``finish``, ``error`` or ``abort`` when they are sent, followed by ``[DONE]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from .._events import TerminalEvents
from .._exceptions import InvalidItemError
from .._sources import Source, open_source

__all__ = ["CHUNK_TYPES", "DONE", "merge_deltas", "sse_events", "ui_message_chunks"]

#: Every chunk type the AI SDK's ``uiMessageChunkSchema`` accepts, besides ``data-*``.
CHUNK_TYPES = frozenset(
    {
        "start",
        "finish",
        "abort",
        "error",
        "message-metadata",
        "start-step",
        "finish-step",
        "reset-step",
        "text-start",
        "text-delta",
        "text-end",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-error",
        "tool-approval-request",
        "tool-approval-response",
        "tool-output-available",
        "tool-output-error",
        "tool-output-denied",
        "source-url",
        "source-document",
        "file",
        "reasoning-file",
        "custom",
        "steering-message",
    }
)

#: The line that ends a UI message stream.
DONE = "[DONE]"

_FINISH_PREFIX = '{"type":"finish"'
# Encoders made once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_encode_string = json.JSONEncoder(ensure_ascii=False).encode  # a str's JSON literal


def _dump(chunk: Mapping[str, Any]) -> str:
    # "type" first, so a stored finish chunk is recognised without parsing it.
    ordered = {"type": chunk["type"], **chunk}
    try:
        return _encode(ordered)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidItemError(f"chunk is not JSON-serialisable: {exc}") from None


def _chunk_type(item: object) -> str | None:
    """The item's chunk type if it is shaped like a UI message chunk, else ``None``."""
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    if isinstance(kind, str) and (kind in CHUNK_TYPES or kind.startswith("data-")):
        return kind
    return None


class _Encoder:
    """Turns items into chunks: text becomes text parts, chunks pass through."""

    def __init__(self, message_id: str) -> None:
        self._message_id = message_id
        self._started = False
        self._text_id: str | None = None
        self._delta_prefix = ""  # '{"type":"text-delta","id":"text-N"' of the open part
        self._parts = 0

    def feed(self, item: object) -> list[str]:
        if type(item) is str and item and self._text_id is not None:
            # The hot path, once per token: only the delta itself is encoded.
            return [f'{self._delta_prefix},"delta":{_encode_string(item)}}}']
        out: list[str] = []
        kind = _chunk_type(item)
        if not self._started:
            self._started = True
            if kind == "start":
                assert isinstance(item, Mapping)
                return [_dump({"messageId": self._message_id, **item})]
            out.append(_dump({"type": "start", "messageId": self._message_id}))
        if isinstance(item, str):
            if item:
                if self._text_id is None:
                    self._open_text(out)
                out.append(_dump({"type": "text-delta", "id": self._text_id, "delta": item}))
            return out
        if kind is None:
            raise InvalidItemError(
                "an AI SDK stream takes text or UI message chunks (dicts with a known "
                f"'type'); got {type(item).__name__}"
            )
        assert isinstance(item, Mapping)
        if not kind.startswith("text-"):
            out.extend(self._end_text())
        out.append(_dump(item))
        return out

    def _open_text(self, out: list[str]) -> None:
        self._parts += 1
        self._text_id = f"text-{self._parts}"
        out.append(_dump({"type": "text-start", "id": self._text_id}))
        self._delta_prefix = _dump({"type": "text-delta", "id": self._text_id})[:-1]

    def close(self) -> list[str]:
        out = [] if self._started else [_dump({"type": "start", "messageId": self._message_id})]
        self._started = True
        return out + self._end_text()

    def _end_text(self) -> list[str]:
        if self._text_id is None:
            return []
        text_id, self._text_id = self._text_id, None
        return [_dump({"type": "text-end", "id": text_id})]


async def ui_message_chunks(source: Source, *, message_id: str) -> AsyncIterator[str]:
    """Wrap a generator so that it yields UI message chunks, as JSON text.

    A ``start`` chunk (with ``message_id``) comes first, unless the generator yields
    its own. ``str`` items become ``text-delta`` chunks inside ``text-start`` /
    ``text-end``; a dict whose ``"type"`` is a chunk type (``tool-*``, ``reasoning-*``,
    ``data-*``, ...) passes through as it is, closing an open text part first unless
    it is a ``text-*`` chunk itself. The closing ``finish``, ``error`` or ``abort`` is
    added by :func:`sse_events` from the stream's terminal event.

    Raises:
        InvalidItemError: an item is neither text nor a chunk (the stream then ends
            with ``error``).
    """
    encoder = _Encoder(message_id)
    items = await open_source(source)
    try:
        async for item in items:
            for chunk in encoder.feed(item):
                yield chunk
        for chunk in encoder.close():
            yield chunk
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


#: A text or reasoning delta exactly as the encoder writes it: its delta's JSON string can
#: be joined with the next one's without decoding (escapes never span the quotes).
_DELTA = re.compile(r'\{"type":"(?:text|reasoning)-delta","id":"(?:[^"\\]|\\.)*","delta":"')
_STRING_END = re.compile(r'(?:[^"\\]|\\.)*"\}')


def _delta(data: str) -> tuple[str, str] | None:
    """``(head, escaped delta)`` of a plain delta chunk, else ``None``."""
    head = _DELTA.match(data)
    if head is None or _STRING_END.fullmatch(data, head.end()) is None:
        return None
    return data[: head.end()], data[head.end() : -2]


def _seq(event_id: object) -> int:
    return int(str(event_id).rpartition("-")[2] or 0)


async def merge_deltas(
    events: AsyncIterator[Mapping[str, object]], replay_end: int
) -> AsyncGenerator[Mapping[str, object], None]:
    """A compacted replay of stored chunks: each run of ``text-delta`` (or
    ``reasoning-delta``) chunks of one part, up to event number ``replay_end``, becomes one
    delta chunk with the id of the last. The chunks are JSON text, so the core's merge of
    text events does not apply; this one joins the deltas' JSON strings as they are.
    Later events pass one by one; a run is sent as soon as it ends or reaches
    ``replay_end``, never held while waiting for the live tail.
    """
    run: list[Mapping[str, object]] = []
    head = ""
    pieces: list[str] = []

    def merged() -> Mapping[str, object]:
        last = run[-1]
        if len(run) == 1:
            return last
        return {**last, "data": head + "".join(pieces) + '"}'}

    async for event in events:
        parts = _delta(str(event["data"])) if _seq(event["id"]) <= replay_end else None
        if run and (parts is None or parts[0] != head):
            yield merged()
            run, pieces = [], []
        if parts is None:
            yield event
            continue
        head = parts[0]
        run.append(event)
        pieces.append(parts[1])
        if _seq(event["id"]) >= replay_end:
            yield merged()
            run, pieces = [], []
    if run:
        yield merged()


def _field(data: str, key: str, default: str) -> str:
    try:
        value = json.loads(data).get(key)
    except (ValueError, AttributeError):
        return default
    return value if isinstance(value, str) else default


async def sse_events(
    events: AsyncIterator[Mapping[str, object]], terminal: TerminalEvents
) -> AsyncIterator[dict[str, str]]:
    """Turn a subscription's events into the SSE events an AI SDK client reads.

    Stored chunks are sent as they are (with their event id, which the client
    ignores); the terminal event becomes ``finish`` (unless the generator sent its
    own), ``error{errorText}`` or ``abort{reason}``; then ``[DONE]`` ends the body.
    """
    finished = False
    async for event in events:
        name, data = event["event"], str(event["data"])
        if name == terminal.end:
            if not finished:
                yield {"data": _dump({"type": "finish"})}
        elif name == terminal.error:
            text = _field(data, "message", "The stream failed.")
            yield {"data": _dump({"type": "error", "errorText": text})}
        elif name == terminal.cancelled:
            reason = _field(data, "reason", "cancelled")
            yield {"data": _dump({"type": "abort", "reason": reason})}
        else:
            finished = data.startswith(_FINISH_PREFIX)
            yield {"id": str(event["id"]), "data": data}
            continue
        yield {"data": DONE}
        return
