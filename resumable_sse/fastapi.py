"""Resumable streams on FastAPI's own SSE support (``fastapi.sse``, FastAPI 0.141 and later).

FastAPI streams a path operation that is an async generator declared with
``response_class=fastapi.sse.EventSourceResponse``. By the time that generator runs, the
200 status line is on its way, so a problem found there can no longer become a status code
(an ``HTTPException`` raised inside it ends a 200 with an empty body). This module therefore
opens and validates the subscription in a *dependency*, which FastAPI resolves before the
response starts: a client that is up to date gets 204, a bad or stale ``Last-Event-ID`` 400,
an unknown session 404, trimmed history 410, too many readers 429, a store outage 503, with
the same JSON bodies and ``Retry-After`` headers as :func:`~resumable_sse.sse_response`.
The path operation then only forwards the ``ServerSentEvent`` items::

    from typing import Annotated

    from fastapi import Depends, FastAPI
    from fastapi.sse import EventSourceResponse

    from resumable_sse.fastapi import ServerSentEvents, add_exception_handler, resume

    app = FastAPI()
    add_exception_handler(app)


    @app.get("/chat/{session_id}/stream", response_class=EventSourceResponse)
    async def chat_stream(events: Annotated[ServerSentEvents, Depends(resume(streamer))]):
        async for event in events:
            yield event

Early releases of ``fastapi.sse`` (0.135.0, for one) drop the ``data:`` line of an event
whose data is empty (the ``end`` event) and a trailing line break; the ``fastapi`` extra
asks for 0.141 or later, which the tests run against.
FastAPI sends its own keep-alive comment after 15 s without an event, and its own
``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` headers. The dependency closes the
subscription when the request ends, whichever way it ends (the stream's end, the client
leaving, an error).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, HTTPException
from fastapi.sse import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from typing_extensions import final

from ._access import Principal
from ._consumer import Subscription
from ._exceptions import ResumableSSEError, StoreUnavailableError
from ._http import error_response, open_for_request
from ._resource import AsyncResource
from ._sources import Source
from ._streamer import Streamer

__all__ = [
    "NoStream",
    "ServerSentEvents",
    "add_exception_handler",
    "no_stream_handler",
    "open_events",
    "resume",
]

logger = logging.getLogger("resumable_sse")


@final
class NoStream(HTTPException):
    """The request gets no stream; :attr:`response` is what it gets instead.

    Raised by :func:`open_events` before the response starts: 204 when the client already
    has every event, else the JSON error :func:`~resumable_sse.error_response` gives. With
    :func:`add_exception_handler` the client receives :attr:`response` exactly. Without
    it, FastAPI's own handler still answers with the same status and headers; the JSON
    body then sits under ``"detail"``.
    """

    def __init__(self, response: Response, detail: object = None) -> None:
        retry_after = response.headers.get("retry-after")
        headers = {"Retry-After": retry_after} if retry_after else None
        super().__init__(response.status_code, detail=detail, headers=headers)
        #: The response :func:`~resumable_sse.sse_response` would have given.
        self.response = response

    @classmethod
    def from_error(cls, exc: ResumableSSEError) -> NoStream:
        """The answer to a library error: its status and ``{"error": code, "message": ...}``."""
        return cls(error_response(exc), {"error": exc.code, "message": str(exc)})


async def no_stream_handler(request: Request, exc: Exception) -> Response:
    """The exception handler that sends a :class:`NoStream`'s response as it is."""
    if not isinstance(exc, NoStream):  # pragma: no cover - registered for NoStream only
        raise exc
    return exc.response


def add_exception_handler(app: FastAPI) -> None:
    """Make ``app`` answer a :class:`NoStream` with its response, exactly as ``sse_response``."""
    app.add_exception_handler(NoStream, no_stream_handler)


@final
class ServerSentEvents(AsyncResource):
    """An open subscription as FastAPI ``ServerSentEvent`` items; iterate it once.

    Each event keeps its id and name; its data is sent as it is (``raw_data``). The first
    event advises the client's reconnection delay (``retry``). Iteration ends after the
    terminal event. If the stream fails while it is being read, a store outage just ends
    the response (the client reconnects and resumes) and any other library error sends a
    final error event ``{"code": ..., "message": ...}``, as ``sse_response`` does.
    """

    __slots__ = ("_error_event", "_retry", "_subscription")

    def __init__(
        self, subscription: Subscription, *, error_event: str = "error", retry: int | None = 1000
    ) -> None:
        self._subscription = subscription
        self._error_event = error_event
        self._retry = retry

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ServerSentEvent]:
        retry = self._retry
        try:
            async for event in self._subscription:
                yield ServerSentEvent(
                    raw_data=event["data"], id=event["id"], event=event["event"], retry=retry
                )
                retry = None  # advised once, on the first event
        except StoreUnavailableError as exc:
            # Ending without a terminal event makes the client reconnect and resume.
            logger.warning("closing a stream: %s", exc)
        except ResumableSSEError as exc:
            data = json.dumps({"code": exc.code, "message": str(exc)}, separators=(",", ":"))
            yield ServerSentEvent(raw_data=data, event=self._error_event)
        finally:
            await self._subscription.aclose()

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event read (or of the position opened at), if any."""
        return self._subscription.last_event_id

    async def aclose(self) -> None:
        """Stop reading: frees the subscription's consumer slot. Idempotent."""
        await self._subscription.aclose()


async def open_events(
    streamer: Streamer,
    request: Request,
    session_id: str,
    generator: Source | None = None,
    *,
    principal: Principal | None = None,
    retry: int | None = 1000,
    compact: bool | None = None,
) -> ServerSentEvents:
    """Open the session's stream where the client left off, or raise the answer instead.

    Call it in a dependency (it must run before the response starts) and close the result
    when the request ends, e.g. ``async with await open_events(...) as events: yield events``.

    Args:
        streamer: The streamer that owns the session.
        request: The incoming request; its ``Last-Event-ID`` header or ``last_event_id``
            query parameter is the resume position.
        session_id: The stream to serve.
        generator: The content, if this request may start the stream; ``None`` to only
            resume (404 for an unknown session).
        principal: The requesting user, for the streamer's authorize policy (403).
        retry: Reconnection delay, in milliseconds, advised to the client.
        compact: Send the replay compacted: ``None`` as the request asks (the
            ``Compact-Replay`` header or ``compact`` query parameter), else always or never.

    Returns:
        The events to yield from a path operation with ``EventSourceResponse``.

    Raises:
        NoStream: 204 if the client already has every event, or the library error's
            JSON response (400, 403, 404, 410, 429, 503).
    """
    try:
        subscription = await open_for_request(
            streamer, request, session_id, generator, principal=principal, compact=compact
        )
    except ResumableSSEError as exc:
        raise NoStream.from_error(exc) from None
    if subscription.finished:
        await subscription.aclose()
        raise NoStream(Response(status_code=204))
    return ServerSentEvents(subscription, error_event=streamer.terminal_events.error, retry=retry)


def resume(
    streamer: Streamer, *, retry: int | None = 1000, compact: bool | None = None
) -> Callable[[Request, str], AsyncIterator[ServerSentEvents]]:
    """A dependency that resumes the stream named by the ``session_id`` parameter.

    The parameter comes from the path (``/chat/{session_id}/stream``) or else the query
    string. For a stream this request may start, or for a principal, write a dependency of
    your own around :func:`open_events`.

    Args:
        streamer: The streamer that owns the sessions.
        retry: Reconnection delay, in milliseconds, advised to the client.
        compact: Send the replay compacted: ``None`` as the request asks, else always
            or never (see :func:`open_events`).
    """

    async def resume_stream(request: Request, session_id: str) -> AsyncIterator[ServerSentEvents]:
        async with await open_events(
            streamer, request, session_id, retry=retry, compact=compact
        ) as events:
            yield events

    return resume_stream
