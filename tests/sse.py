"""The one SSE reader of the test suite: httpx requests, events parsed as the spec says.

httpx-sse 0.4 dispatches a block that has no ``data`` line, such as the server's
``: ping`` keep-alive comment and its blank line, as an event with empty data and the
previous event's id (florimondmanca/httpx-sse#35). A test that ran past the 15 s ping
interval on a busy machine then saw a phantom event. This reader follows the WHATWG
event-stream rules instead: comments are ignored and a block without data dispatches
nothing, while an event whose data is the empty string (``data:`` on its own) still
arrives.

It keeps httpx-sse's names and shapes (:func:`aconnect_sse`, :func:`connect_sse`,
``EventSource.aiter_sse()``, :class:`httpx_sse.ServerSentEvent`), so tests read the
same either way.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, SSEError

__all__ = ["EventSource", "ServerSentEvent", "SyncEventSource", "aconnect_sse", "connect_sse"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}


class EventParser:
    """Bytes in, events out: an incremental parser of a ``text/event-stream`` body."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._started = False
        self._last_id = ""
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk``."""
        text = self._pending + self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # one byte order mark may open the stream
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            if match.group() == "\r" and match.end() == len(text):
                break  # a lone CR at the end: an LF may follow in the next chunk
            event = self._line(text[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._pending = text[start:]
        return events

    def close(self) -> list[ServerSentEvent]:
        """The body has ended: a pending CR ends its line; an unfinished event is dropped."""
        rest = self._pending + self._text.decode(b"", final=True)
        self._pending = ""
        if rest.endswith("\r"):
            event = self._line(rest[:-1])
            return [] if event is None else [event]
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, such as a keep-alive ping
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None  # no data line: nothing is dispatched (the id stays set)
        retry, self._retry = self._retry, None
        return ServerSentEvent(event=event, data="\n".join(data), id=self._last_id, retry=retry)


def _check(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if content_type != "text/event-stream":
        raise SSEError(f"expected an event stream, got {response.status_code} {content_type!r}")


class EventSource:
    """A streaming response read as events (``async``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def aiter_sse(self) -> AsyncGenerator[ServerSentEvent, None]:
        """The events of the response, as they arrive, until it ends."""
        _check(self.response)
        parser = EventParser()
        async for chunk in self.response.aiter_bytes():
            for event in parser.feed(chunk):
                yield event
        for event in parser.close():
            yield event


class SyncEventSource:
    """A streaming response read as events (blocking)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def iter_sse(self) -> Iterator[ServerSentEvent]:
        """The events of the response, as they arrive, until it ends."""
        _check(self.response)
        parser = EventParser()
        for chunk in self.response.iter_bytes():
            yield from parser.feed(chunk)
        yield from parser.close()


@asynccontextmanager
async def aconnect_sse(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[EventSource]:
    """Send a request asking for an event stream; yield its response as an event source."""
    headers = {**_HEADERS, **(kwargs.pop("headers", None) or {})}
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        yield EventSource(response)


@contextmanager
def connect_sse(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> Iterator[SyncEventSource]:
    """The blocking twin of :func:`aconnect_sse`."""
    headers = {**_HEADERS, **(kwargs.pop("headers", None) or {})}
    with client.stream(method, url, headers=headers, **kwargs) as response:
        yield SyncEventSource(response)
