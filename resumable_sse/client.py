"""A Python client for resumable streams, on httpx and httpx-sse.

Install it with ``pip install 'resumable-sse[client]'``.

It reads a stream as an async iterator of :class:`StreamEvent` and hides network trouble:
when the connection fails or the response ends before the terminal event, it reconnects
with ``Last-Event-ID`` (with exponential backoff from the server's ``retry``, never longer
than ``max_retry_delay`` whatever the server sends), drops the events it already has,
and stops after the terminal event (``end``, ``error`` or ``cancelled``), which it
yields like any other::

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5, read=60)) as http:
        async for event in stream_events(http, "/chat", method="POST", json={"prompt": p}):
            if event.event == "message":
                print(event.data, end="")

A stream started by a POST is resumed by GET from the response's ``Content-Location``
(or ``resume_url=``). A POST is never repeated: it could start the work twice.

A GET that starts with nothing (no ``last_event_id``) asks for a *compacted* replay
(``Compact-Replay: 1``): the text stored so far arrives as one event per run instead of
one per token, with the id of the last token it covers; a server that does not compact
sends every event, which reads the same. Reconnects resume after the last id, unmerged.

Errors, both :class:`~resumable_sse.ResumableSSEError`::

    ResumableSSEError
    ├── StreamRequestError       the server refused the stream (4xx): status, code, message
    └── ReconnectFailedError     the connection kept failing; raised from the last error

Give the httpx client a read timeout above the server's keep-alive interval (15 s by
default): a read timeout counts as a dropped connection and is retried.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing

import anyio
import httpx
from httpx_sse import EventSource, aconnect_sse
from typing_extensions import final

from ._backoff import backoff_delay, parse_retry_after
from ._client_models import ReconnectFailedError, Reconnecting, StreamEvent, StreamRequestError
from ._compact import COMPACT_HEADER
from ._events import TerminalEvents
from ._exceptions import ResumableSSEError, StaleEventIdError
from ._ids import EventId, parse_last_event_id
from ._resource import AsyncResource

__all__ = [
    "ReconnectFailedError",
    "Reconnecting",
    "ResumableEventSource",
    "StreamEvent",
    "StreamRequestError",
    "stream_events",
]

_RETRYABLE_STATUS = frozenset({408, 429})
_DEFAULT_RETRY = 1.0  # seconds, until the server sends `retry:`


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after  # the server's Retry-After, in seconds


@final
class ResumableEventSource(AsyncResource):
    """Read one stream to its terminal event, reconnecting as needed.

    Use it with ``async with`` (which closes the connection if you stop early) and
    iterate it once; :func:`stream_events` wraps both.

    Args:
        client: The httpx client to send requests with (its base url, auth, timeouts).
        url: The stream's url; for ``method="POST"``, the url that starts it.
        method: ``GET`` to read (or resume) a stream; ``POST`` to start one.
        json: The JSON body of a POST.
        headers: Extra request headers.
        last_event_id: Resume after this id (e.g. one saved earlier).
        resume_url: Where to resume a POSTed stream; else the response's
            ``Content-Location``.
        max_retries: Failed reconnection attempts in a row before
            :class:`ReconnectFailedError`. An attempt fails unless it brings a new event:
            a response that ends with nothing new (garbage, only comments, an immediate
            close) counts like a refused connection.
        max_retry_delay: Cap of the backoff, in seconds. The first delay is the server's
            ``retry`` (1 s unless it says otherwise), doubled on each failure, less up to
            25 % jitter; a ``Retry-After`` is waited out, but no server value lifts a
            delay past this cap. ``0`` retries at once.
        terminal_events: The terminal event names, if the server renamed them.
        compact: Ask for a compacted replay when a GET starts with nothing (the
            default); false reads every event as it was stored.
        on_reconnecting: Called with a :class:`Reconnecting` before each wait.

    Raises:
        ValueError: ``max_retries`` is negative, or ``max_retry_delay`` is not a finite
            number >= 0.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        method: str = "GET",
        json: object = None,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        resume_url: str | None = None,
        max_retries: int = 10,
        max_retry_delay: float = 30.0,
        terminal_events: TerminalEvents | None = None,
        compact: bool = True,
        on_reconnecting: Callable[[Reconnecting], object] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries!r}")
        if not math.isfinite(max_retry_delay) or max_retry_delay < 0:
            raise ValueError(
                f"max_retry_delay must be a finite number >= 0, not {max_retry_delay!r}"
            )
        self._client = client
        self._compact = compact
        self._method = method.upper()
        self._first_url = url
        self._json = json
        self._headers = dict(headers or {})
        self._max_retries = max_retries
        self._max_retry_delay = max_retry_delay
        self._terminal = terminal_events or TerminalEvents()
        self._on_reconnecting = on_reconnecting
        self._position: EventId | None = _parse_id(last_event_id)
        self._events: AsyncGenerator[StreamEvent, None] | None = None
        self._finished = False  # the current attempt saw the end (terminal event or 204)
        self._received = False  # the current attempt brought a new event
        #: The id of the last event received; sent as ``Last-Event-ID`` on reconnects.
        self.last_event_id: str | None = last_event_id or None
        #: The url the stream is resumed from (known after a POST has been answered).
        self.url: str | None = resume_url if self._method != "GET" else url
        #: Reconnection delay advised by the server (``retry:``), in seconds.
        self.retry: float = _DEFAULT_RETRY
        #: Connections made after the first one.
        self.reconnects: int = 0

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._events is None:
            self._events = self._run()
        return self._events

    async def aclose(self) -> None:
        """Close the connection, if one is open. Safe to call more than once."""
        if self._events is not None:
            await self._events.aclose()

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        failures = 0  # failed attempts in a row; only an attempt that got an event resets it
        first = self._method != "GET"
        while True:
            reason: BaseException
            try:
                async with aclosing(self._connect(first)) as events:
                    async for event in events:
                        yield event
                        if event.terminal:
                            return
                if self._finished:
                    return
                reason = _Retry(
                    "the stream ended before its terminal event"
                    if self._received
                    else "the response ended without any new event"
                )
            except httpx.TransportError as exc:
                if first and self.url is None:
                    # A POST that failed may or may not have started the work: never repeat it.
                    raise ReconnectFailedError(f"could not start the stream: {exc}") from exc
                reason = exc
            except _Retry as exc:
                reason = exc
            first = False
            # A 200 that brought no new event is a failure like any other, so a server
            # that answers nothing else cannot keep the client reconnecting forever.
            failures = 1 if self._received else failures + 1
            if self.url is None:
                raise ReconnectFailedError(
                    "the connection dropped and the server named no url to resume from"
                ) from reason
            if failures > self._max_retries:
                raise ReconnectFailedError(
                    f"could not reconnect after {self._max_retries} attempts: {reason}"
                ) from reason
            await self._back_off(failures, reason)
            self.reconnects += 1

    async def _back_off(self, failures: int, reason: BaseException) -> None:
        """Wait before the next attempt: see :func:`~resumable_sse._backoff.backoff_delay`."""
        delay = backoff_delay(
            failures,
            base=_DEFAULT_RETRY,
            cap=self._max_retry_delay,
            retry=self.retry,
            retry_after=reason.after if isinstance(reason, _Retry) else None,
        )
        if self._on_reconnecting is not None:
            self._on_reconnecting(Reconnecting(failures, delay, str(reason) or repr(reason)))
        await anyio.sleep(delay)

    async def _connect(self, first: bool) -> AsyncGenerator[StreamEvent, None]:
        """One request; yields its new events. Raises ``_Retry`` or transport errors."""
        self._finished = False
        self._received = False
        headers = dict(self._headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        elif self._compact and not first:  # a GET from nothing; a POST starts the stream
            headers[COMPACT_HEADER] = "1"
        if first:
            method, url, body = self._method, self._first_url, {"json": self._json}
        else:
            assert self.url is not None
            method, url, body = "GET", self.url, {}
        # aconnect_sse adds to the headers it is given (and fails on None): pass a new dict.
        async with aconnect_sse(self._client, method, url, headers=headers, **body) as source:
            response = source.response
            if first and self.url is None and "content-location" in response.headers:
                self.url = str(response.url.join(response.headers["content-location"]))
            await self._check(response, first)
            if response.status_code == 204:  # the client already has every event
                self._finished = True
                return
            async with aclosing(self._events_of(source)) as events:
                async for event in events:
                    yield event

    async def _check(self, response: httpx.Response, first: bool) -> None:
        status = response.status_code
        if status == 204 or (
            status == 200 and "text/event-stream" in response.headers.get("content-type", "")
        ):
            return
        await response.aread()
        if not first and (status >= 500 or status in _RETRYABLE_STATUS):
            raise _Retry(f"the server answered {status}", _retry_after(response))
        if 200 <= status < 300:
            raise StreamRequestError(
                status, "bad_response", "the server answered without an event stream"
            )
        raise StreamRequestError.from_response(response)

    async def _events_of(self, source: EventSource) -> AsyncGenerator[StreamEvent, None]:
        events = source.aiter_sse()
        # httpx-sse reports the spec's "last event id" buffer, which carries over to events
        # without an id field; an id equal to the previous one is taken as no id of its
        # own, so such events are never mistaken for duplicates.
        previous = ""
        try:
            async for sse in events:
                if sse.retry is not None and sse.retry >= 0:
                    # Any int, however large, without OverflowError; the cap applies later.
                    self.retry = min(sse.retry, 2**53) / 1000
                own_id = sse.id if sse.id and sse.id != previous else None
                previous = sse.id
                if sse.event == "message" and not sse.data:
                    # httpx-sse also dispatches blocks without data (keep-alives, a bare
                    # id or retry) as empty messages; empty tokens carry nothing anyway.
                    continue
                event = StreamEvent(sse.event, sse.data, own_id, sse.event in self._terminal)
                if not self._accept(event):
                    continue
                if event.terminal:
                    self._finished = True
                    await _drain(events)
                yield event
                if event.terminal:
                    return
        finally:
            await events.aclose()

    def _accept(self, event: StreamEvent) -> bool:
        """Whether ``event`` is new; records its position. Terminal events always are."""
        position = _parse_id(event.id)
        if position is not None and self._position is not None:
            if position.incarnation != self._position.incarnation:
                raise StaleEventIdError(
                    f"the server sent an event of another stream ({event.id}) after "
                    f"{self.last_event_id}"
                )
            if position.seq <= self._position.seq and not event.terminal:
                return False  # a duplicate
        if event.id is not None:
            self._position = position or self._position
            self.last_event_id = event.id
        self._received = True
        return True


async def _drain(events: AsyncIterator[object]) -> None:
    """Read the rest of a response that has sent its terminal event (the server ends it).

    Ending it by reading, not by closing, lets httpx-sse's inner generators finish: it
    does not close them itself, and on trio an abandoned generator is a ResourceWarning.
    """
    with anyio.move_on_after(1):
        async for _ in events:
            pass


def _parse_id(raw: str | None) -> EventId | None:
    try:
        return parse_last_event_id(raw)
    except ResumableSSEError:
        return None  # not one of ours: treated as opaque, never deduplicated


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


async def stream_events(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    json: object = None,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    resume_url: str | None = None,
    max_retries: int = 10,
    max_retry_delay: float = 30.0,
    terminal_events: TerminalEvents | None = None,
    compact: bool = True,
    on_reconnecting: Callable[[Reconnecting], object] | None = None,
) -> AsyncIterator[StreamEvent]:
    """Iterate over a stream's events, reconnecting transparently.

    The arguments are those of :class:`ResumableEventSource`. Wrap the loop in
    ``contextlib.aclosing()`` if you may leave it early and want the connection closed
    at once rather than when the generator is collected.

    Yields:
        Each event once, in order, the terminal one last.

    Raises:
        StreamRequestError: The server refused the stream (4xx, or any refusal of a POST).
        ReconnectFailedError: Reconnecting kept failing, or a POSTed stream cannot be resumed.
        StaleEventIdError: The server switched to another stream under this url.
    """
    source = ResumableEventSource(
        client,
        url,
        method=method,
        json=json,
        headers=headers,
        last_event_id=last_event_id,
        resume_url=resume_url,
        max_retries=max_retries,
        max_retry_delay=max_retry_delay,
        terminal_events=terminal_events,
        compact=compact,
        on_reconnecting=on_reconnecting,
    )
    async with source:
        async for event in source:
            yield event
