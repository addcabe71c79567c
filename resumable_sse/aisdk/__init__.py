"""Serve resumable streams to the Vercel AI SDK's chat client (``useChat``, ``Chat``).

Needs nothing beyond the core dependencies (Starlette and sse-starlette)::

    from resumable_sse import Streamer
    from resumable_sse.aisdk import ChatRequest, ChatStreams

    async def respond(chat: ChatRequest):
        async for token in my_llm(chat.messages):  # text, or UI message chunk dicts
            yield token

    chat = ChatStreams(Streamer(), respond)
    app.router.routes.extend(chat.routes("/api/chat"))

The frontend points ``DefaultChatTransport`` at ``/api/chat`` with ``resume: true``,
and calls ``POST /api/chat/{id}/stop`` on Stop. See the README's "Vercel AI SDK".
"""

from __future__ import annotations

from ._chunks import CHUNK_TYPES, sse_events, ui_message_chunks
from ._routes import HEADERS, ChatRequest, ChatStreams, PrincipalOf, Respond

__all__ = [
    "CHUNK_TYPES",
    "HEADERS",
    "ChatRequest",
    "ChatStreams",
    "PrincipalOf",
    "Respond",
    "sse_events",
    "ui_message_chunks",
]
