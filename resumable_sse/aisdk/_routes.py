"""The AI SDK chat routes for Starlette and FastAPI: send, resume, stop.

What ``DefaultChatTransport`` (npm ``ai``) does, and how each route answers it:

* ``POST {api}`` with JSON ``{id, messages, trigger, messageId?, ...}``: the answer
  is read from this response. The chat id is the conversation; the stream's session
  id is derived from the request (chat id, trigger, messageId, last message id), so a
  repeated request joins the stream the first one started instead of running the model
  again. A different request supersedes the chat's running stream (or gets 409).
* ``GET {api}/{chatId}/stream``, no body, no ``Last-Event-ID``: 204 if the chat has
  no running stream (the client then does nothing), else the stream, replayed from
  its start (the client's default ``resumeStreamIsReplay``) or, with
  ``resume="tail"``, from the request's ``Last-Event-ID`` or else from now. A replay
  from the start is compacted (``compact=True``, the default): each run of text deltas
  stored so far comes as one ``text-delta`` chunk, then the live chunks one by one.
* ``POST {api}/{chatId}/stop``: the client's ``stop()`` only disconnects, so the
  frontend calls this route too; it cancels the generation wherever it runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from typing_extensions import final

from .._access import Principal
from .._consumer import Subscription
from .._events import TerminalEvents
from .._exceptions import ResumableSSEError, StoreUnavailableError
from .._http import EventStreamResponse, error_response, last_event_id
from .._ids import new_session_id
from .._sources import Items
from .._streamer import Streamer
from ._chunks import DONE, merge_deltas, sse_events, ui_message_chunks

__all__ = ["HEADERS", "ChatRequest", "ChatStreams", "PrincipalOf", "Respond"]

#: The response headers of a UI message stream.
HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}

logger = logging.getLogger("resumable_sse")

#: Largest request body accepted (the client sends the whole conversation each time).
_MAX_BODY = 16 * 1024 * 1024


@final
@dataclass(frozen=True)
class ChatRequest:
    """One ``POST {api}`` of the AI SDK's chat client, as the app's ``respond`` gets it.

    ``body`` is the whole JSON body (with any extra fields the frontend sent);
    ``session_id`` names the stream the answer is stored under; ``request`` is the HTTP
    request (its headers; the body has been read, and the answer may outlive it).
    """

    id: str
    messages: list[Any]
    trigger: str
    message_id: str | None
    session_id: str
    body: dict[str, Any]
    request: Request = field(repr=False)


#: The app's model call: a chat request in, the answer's items out (text and chunks).
Respond: TypeAlias = Callable[[ChatRequest], "Items | Awaitable[Items]"]
#: Who is asking, for the streamer's authorize policy (sync or async).
PrincipalOf: TypeAlias = Callable[[Request], "Principal | Awaitable[Principal | None] | None"]


class _BadRequest(Exception):
    pass


def _session_id(chat_id: str, trigger: str, message_id: str | None, messages: list[Any]) -> str:
    """The same id for the same request, so a repeat joins; a fresh one without ids."""
    last = messages[-1] if messages else None
    last_id = last.get("id") if isinstance(last, dict) else None
    if not isinstance(last_id, str):
        return new_session_id()
    key = json.dumps([chat_id, trigger, message_id, last_id], ensure_ascii=True)
    return "ui-" + hashlib.sha256(key.encode()).hexdigest()[:40]


async def _read_body(request: Request) -> bytes:
    """The request body, refused as soon as it grows past ``_MAX_BODY`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise _BadRequest(f"the body exceeds {_MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(request: Request) -> ChatRequest:
    raw = await _read_body(request)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("the body must be JSON: {id, messages, trigger}") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object: {id, messages, trigger}")
    chat_id, messages = body.get("id"), body.get("messages")
    trigger, message_id = body.get("trigger", "submit-message"), body.get("messageId")
    if not isinstance(chat_id, str):
        raise _BadRequest("id (the chat id) must be a string")
    if not isinstance(messages, list) or not isinstance(trigger, str):
        raise _BadRequest("messages must be a list and trigger a string")
    if message_id is not None and not isinstance(message_id, str):
        raise _BadRequest("messageId must be a string")
    session_id = _session_id(chat_id, trigger, message_id, messages)
    return ChatRequest(chat_id, messages, trigger, message_id, session_id, body, request)


@final
class ChatStreams:
    """Serves a :class:`~resumable_sse.Streamer`'s streams to the AI SDK's chat client.

    Args:
        streamer: Where the answers run and are stored (any store; with Redis, every
            worker serves every chat).
        respond: The app's model call: gets a :class:`ChatRequest`, returns the
            answer's items (an async or sync iterable, or an awaitable of one): text,
            and UI message chunks as dicts (``tool-*``, ``reasoning-*``, ``data-*``,
            ...). Called only when a request starts a new stream.
        resume: ``"replay"`` (the default, what ``DefaultChatTransport`` expects) sends
            a resumed stream from its start; ``"tail"`` from the request's
            ``Last-Event-ID``, else from now (for ``resumeStreamIsReplay: false``).
        supersede: A new message while the chat's previous answer still runs cancels
            that answer (the default); if false, the request gets 409.
        principal: Gives the requesting user's id, for the streamer's authorize policy.
        ping: Seconds between keep-alive comments (0 disables them).
        compact: A replay from the start (a reload, another device) sends each run of
            ``text-delta`` (and ``reasoning-delta``) chunks stored so far as one chunk
            (the default); false replays chunk by chunk. The live tail is never merged.
    """

    def __init__(
        self,
        streamer: Streamer,
        respond: Respond,
        *,
        resume: Literal["replay", "tail"] = "replay",
        supersede: bool = True,
        principal: PrincipalOf | None = None,
        ping: float = 15.0,
        compact: bool = True,
    ) -> None:
        if resume not in ("replay", "tail"):
            raise ValueError('resume must be "replay" or "tail"')
        self.streamer = streamer
        self._respond = respond
        self._tail = resume == "tail"
        self._supersede = supersede
        self._principal = principal
        self._ping = ping
        self._compact = compact

    def routes(self, api: str = "/api/chat") -> list[BaseRoute]:
        """The send, resume and stop routes under ``api``, for a Starlette or FastAPI app.

        ``POST {api}``, ``GET {api}/{chat_id}/stream`` and ``POST {api}/{chat_id}/stop``:
        ``app.router.routes.extend(chat.routes("/api/chat"))``.
        """
        api = api.rstrip("/")
        return [
            Route(api, self.send, methods=["POST"]),
            Route(api + "/{chat_id}/stream", self.reconnect, methods=["GET"]),
            Route(api + "/{chat_id}/stop", self.stop, methods=["POST"]),
        ]

    async def _who(self, request: Request) -> Principal | None:
        if self._principal is None:
            return None
        who = self._principal(request)
        return await who if inspect.isawaitable(who) else who

    async def send(self, request: Request) -> Response:
        """``POST {api}``: start (or join) the chat's answer and stream it."""
        try:
            chat = await _parse(request)
        except _BadRequest as exc:
            return JSONResponse({"error": "invalid_request", "message": str(exc)}, 400)
        message_id = "msg-" + chat.session_id

        def answer() -> AsyncIterator[str]:
            return ui_message_chunks(lambda: self._respond(chat), message_id=message_id)

        try:
            principal = await self._who(request)
            active = await self.streamer.start_active(
                chat.id,
                answer,
                session_id=chat.session_id,
                supersede=self._supersede,
                principal=principal,
            )
            subscription = await self.streamer.open(active.session_id, principal=principal)
        except ResumableSSEError as exc:
            return error_response(exc)
        return self._response(subscription)

    async def reconnect(self, request: Request) -> Response:
        """``GET {api}/{chat_id}/stream``: the chat's running answer, or 204."""
        chat_id = request.path_params["chat_id"]
        try:
            principal = await self._who(request)
            session_id = await self.streamer.active(chat_id, principal=principal)
            if session_id is None:
                return Response(status_code=204)
            position = None
            if self._tail:
                position = last_event_id(request)
                if position is None:
                    status = await self.streamer.status(session_id, principal=principal)
                    position = status.last_event_id
            subscription = await self.streamer.open(
                session_id, last_id=position, principal=principal
            )
        except ResumableSSEError as exc:
            return error_response(exc)
        if subscription.finished:
            await subscription.aclose()
            return Response(status_code=204)
        return self._response(subscription, compact=self._compact and position is None)

    async def stop(self, request: Request) -> Response:
        """``POST {api}/{chat_id}/stop``: cancel the chat's running answer.

        Answers ``{"stopped": true}`` if an answer was running, else ``false``.
        """
        chat_id = request.path_params["chat_id"]
        try:
            principal = await self._who(request)
            session_id = await self.streamer.active(chat_id, principal=principal)
            stopped = session_id is not None and await self.streamer.cancel(
                session_id, principal=principal
            )
        except ResumableSSEError as exc:
            return error_response(exc)
        return JSONResponse({"stopped": stopped})

    def _response(self, subscription: Subscription, *, compact: bool = False) -> Response:
        return EventStreamResponse(
            _closing(subscription, self.streamer.terminal_events, compact=compact),
            ping=self._ping,
            headers=HEADERS,
        )


async def _closing(
    subscription: Subscription, terminal: TerminalEvents, *, compact: bool
) -> AsyncIterator[Mapping[str, str]]:
    merged = merge_deltas(subscription, subscription.replay_end) if compact else None
    events: AsyncIterator[Mapping[str, object]] = merged or subscription
    try:
        async for event in sse_events(events, terminal):
            yield event
    except StoreUnavailableError as exc:
        # Ending without [DONE]: the client sees a dropped connection and may resume.
        logger.warning("closing an AI SDK stream: %s", exc)
    except ResumableSSEError as exc:  # e.g. the stream was deleted while being read
        yield {"data": json.dumps({"type": "error", "errorText": str(exc)})}
        yield {"data": DONE}
    finally:
        if merged is not None:
            await merged.aclose()
        await subscription.aclose()
