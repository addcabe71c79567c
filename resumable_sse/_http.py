"""HTTP integration for Starlette and FastAPI, on top of sse-starlette.

``sse_response`` opens the subscription *before* the response starts, so every problem
becomes a proper status code with a short JSON body instead of a 200 that dies with a
traceback. Once streaming, trouble ends the response cleanly: a store outage just closes
it (the client reconnects with ``Last-Event-ID``), anything else sends a final ``error``
event first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Send

from ._access import Principal
from ._compact import COMPACT_HEADER, COMPACT_PARAM
from ._consumer import Subscription
from ._exceptions import (
    ResumableSSEError,
    StoreUnavailableError,
)
from ._frames import encode_frame, with_retry
from ._sources import Source
from ._streamer import Streamer

__all__ = [
    "EventStreamResponse",
    "compact_requested",
    "error_response",
    "last_event_id",
    "sse_response",
]

logger = logging.getLogger("resumable_sse")

_YES = frozenset({"1", "true", "yes", "on"})

#: Headers that keep proxies from buffering or transforming the stream.
STREAM_HEADERS = {"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"}


class EventStreamResponse(EventSourceResponse):
    """sse-starlette's response, minus a cancel scope around every send when it has no
    send timeout (the default).

    A scope with no deadline never fires, yet entering and leaving it (through anyio's
    backend lookup) cost about an eighth of the server's CPU per token at an LLM's pace.
    Cancellation from outside (a client that leaves, shutdown) reaches the send as
    before. With a ``send_timeout`` the send is sse-starlette's own.
    """

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


def error_response(exc: ResumableSSEError) -> JSONResponse:
    """Map a library error to a JSON response: ``{"error": code, "message": ...}``.

    400 bad event or session id, 403 access denied, 404 unknown session, 410 history
    trimmed, 413 limit exceeded, 429 too many consumers, 503 store unavailable or full
    (429 and 503 with ``Retry-After``), else 500: each error class carries its ``status``.
    """
    status = exc.status
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse({"error": exc.code, "message": str(exc)}, status, headers=headers)


def last_event_id(request: Request) -> str | None:
    """The resume position a request asks for.

    The ``Last-Event-ID`` header wins (a browser's ``EventSource`` sends it on its own
    reconnects); else the ``last_event_id`` query parameter, which a reloaded page
    uses because it starts without the header.
    """
    return request.headers.get("last-event-id") or request.query_params.get("last_event_id")


def compact_requested(request: Request) -> bool:
    """Whether the request asks for a compacted replay.

    The ``Compact-Replay`` header or the ``compact`` query parameter (which a browser's
    ``EventSource`` can send), with a value of ``1``, ``true``, ``yes`` or ``on``; the
    header wins when both are present.
    """
    value = request.headers.get(COMPACT_HEADER)
    if value is None:
        value = request.query_params.get(COMPACT_PARAM)
    return value is not None and value.strip().lower() in _YES


async def open_for_request(
    streamer: Streamer,
    request: Request,
    session_id: str,
    generator: Source | None = None,
    *,
    principal: Principal | None = None,
    compact: bool | None = None,
) -> Subscription:
    """Open the session's subscription at the position the request asks for.

    The position comes from :func:`last_event_id`; ``compact=None`` follows
    :func:`compact_requested`. Raises what :meth:`Streamer.open` raises.
    """
    return await streamer.open(
        session_id,
        generator,
        last_event_id(request),
        principal=principal,
        compact=compact_requested(request) if compact is None else compact,
    )


async def sse_response(
    streamer: Streamer,
    request: Request,
    session_id: str,
    generator: Source | None = None,
    *,
    principal: Principal | None = None,
    ping: float = 15.0,
    retry: int | None = 1000,
    headers: Mapping[str, str] | None = None,
    compact: bool | None = None,
) -> Response:
    """Answer a request with the session's stream, resuming where the client left off.

    Args:
        streamer: The streamer that owns the session.
        request: The incoming request; its ``Last-Event-ID`` header or ``last_event_id``
            query parameter is the resume position.
        session_id: The stream to serve.
        generator: The content, if this request may start the stream; ``None`` to only
            resume (404 for an unknown session).
        principal: The requesting user, for the streamer's authorize policy (403).
        ping: Seconds between keep-alive comments (0 disables them).
        retry: Reconnection delay, in milliseconds, advised to the client.
        headers: Extra response headers.
        compact: Send the replay compacted (runs of text events merged, see
            :meth:`Streamer.open`): ``None`` (the default) as the request asks (see
            :func:`compact_requested`), ``True`` always, ``False`` never.

    Returns:
        An ``EventSourceResponse``; 204 if the client already has every event (which
        also tells a browser's ``EventSource`` to stop reconnecting); or a JSON error
        (see :func:`error_response`).
    """
    try:
        subscription = await open_for_request(
            streamer, request, session_id, generator, principal=principal, compact=compact
        )
    except ResumableSSEError as exc:
        return error_response(exc)
    if subscription.finished:
        await subscription.aclose()
        return Response(status_code=204)
    return EventStreamResponse(
        _events(subscription, retry, streamer.terminal_events.error),
        ping=ping,
        headers={**STREAM_HEADERS, **(headers or {})},
    )


async def _events(
    subscription: Subscription, retry: int | None, error_event: str
) -> AsyncIterator[bytes]:
    # Bytes, which sse-starlette sends as they are: every event already available goes
    # out in one write, encoded once (see _frames), exactly as the dicts would be.
    chunks = subscription.chunks()
    try:
        if retry is not None:  # advised once, with the first event
            async for chunk in chunks:
                yield with_retry(chunk, retry)
                break
        async for chunk in chunks:
            yield chunk
    except StoreUnavailableError as exc:
        # Closing without a terminal event makes the client reconnect and resume.
        logger.warning("closing a stream: %s", exc)
    except ResumableSSEError as exc:
        data = json.dumps({"code": exc.code, "message": str(exc)}, separators=(",", ":"))
        yield encode_frame(None, error_event, data)
    finally:
        await chunks.aclose()
        await subscription.aclose()
