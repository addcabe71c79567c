"""Turning what a generator yields into events, and events into what SSE responses send."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import final

from ._exceptions import InvalidItemError
from .stores._contract import Entry, LogItem, as_log_item

__all__ = ["TerminalEvents", "encode_item", "encode_log_item"]

_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_EVENT_KEYS = frozenset({"data", "event"})


@final
@dataclass(frozen=True, slots=True)
class TerminalEvents:
    """The SSE event names that end a stream. Each is stored as the stream's last event.

    ``end``: the generator finished. ``error``: it raised, or a limit or the store
    failed. ``cancelled``: :meth:`~resumable_sse.Streamer.cancel` or shutdown stopped it.
    """

    end: str = "end"
    error: str = "error"
    cancelled: str = "cancelled"

    def __post_init__(self) -> None:
        for name in (self.end, self.error, self.cancelled):
            check_event_name(name)
        if len({self.end, self.error, self.cancelled}) != 3:
            raise ValueError("terminal event names must differ")

    def __contains__(self, name: object) -> bool:
        return name in (self.end, self.error, self.cancelled)


def check_event_name(name: object) -> str:
    """Return ``name`` if it is a usable SSE event name, else raise ``InvalidItemError``."""
    if not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        raise InvalidItemError(
            f"event name must be 1-64 characters of A-Z a-z 0-9 _ . : -: {name!r}"
        )
    return name


def _utf8_size(text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidItemError("text item has a lone surrogate; it cannot be sent") from None


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidItemError(f"bytes item is not valid UTF-8: {exc}") from None
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidItemError(f"item is not JSON-serialisable: {exc}") from None


def encode_item(item: object, default_event: str, terminal: TerminalEvents) -> tuple[Entry, int]:
    """Turn one generator item into an event.

    * ``str``: the data as it is; ``bytes``: decoded as UTF-8;
    * a mapping with a ``"data"`` key and optionally an ``"event"`` name (and no other
      keys): a custom event; non-text data is encoded as JSON;
    * anything else JSON can encode: the JSON text.

    Only ``str`` and ``bytes`` items make *text* events (``Entry.text``), which a
    compacted replay may merge with their neighbours.

    Returns:
        The event and the size of its data in UTF-8 bytes.

    Raises:
        InvalidItemError: the item cannot be sent (bad UTF-8, lone surrogate, not
            JSON-serialisable, an event name that is malformed or reserved for the
            terminal events, unknown keys).
    """
    if type(item) is str:  # the hot path: one token of text
        return Entry(default_event, item, True), _utf8_size(item)
    if isinstance(item, Mapping) and "data" in item:
        extra = set(item) - _EVENT_KEYS
        if extra:
            raise InvalidItemError(f"event dict has unsupported keys {sorted(map(str, extra))}")
        event = check_event_name(item.get("event", default_event))
        if event in terminal:
            raise InvalidItemError(f"event name {event!r} is reserved for the end of the stream")
        data = _to_text(item["data"])
        return Entry(event, data), _utf8_size(data)
    data = _to_text(item)
    text = isinstance(item, (str, bytes, bytearray, memoryview))
    return Entry(default_event, data, text), _utf8_size(data)


def encode_log_item(
    item: object, default_event: str, terminal: TerminalEvents
) -> tuple[LogItem, int]:
    """:func:`encode_item`, as a local log or a commit queue keeps the event (see
    ``LogItem``: a text event named ``default_event`` is its data alone).

    Raises:
        InvalidItemError: as :func:`encode_item`.
    """
    if type(item) is str and item.isascii():  # a token: as it is
        return item, len(item)
    entry, size = encode_item(item, default_event, terminal)
    return as_log_item(entry, default_event), size
