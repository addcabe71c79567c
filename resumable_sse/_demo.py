"""The demo: a simulated LLM behind a small Starlette app and a page that streams it.

Run it with ``python -m resumable_sse demo`` (see ``_cli.py``). The app is plain
Starlette, so the library needs no FastAPI. Routes of the demo page:

- ``POST /api/sessions`` with ``{"prompt": ...}`` starts an answer in the background.
  With ``Accept: text/event-stream`` (the browser client, ``resumable-sse.js``) the
  answer streams back in the same response, whose ``Content-Location`` names the
  stream's GET url; otherwise the answer is 201 with JSON ``{"session_id",
  "stream_url", "cancel_url"}`` and a ``Location`` header.
- ``GET /api/sessions/{id}/stream`` only ever *resumes* that session, from the
  ``Last-Event-ID`` header or the ``last_event_id`` query parameter. The LLM is
  therefore called once per chat however often the page reloads or reconnects.
- ``POST /api/sessions/{id}/cancel`` stops it; ``GET /api/sessions/{id}`` tells its
  status.
- ``/resumable-sse/resumable-sse.js`` is the browser client (:func:`client_mount`).
- ``GET /status`` shows the live figures: running streams and the streamer's
  OpenTelemetry metrics (``GET /api/status`` as JSON; see ``_demo_status.py``).

Routes for a Vercel AI SDK frontend (``DefaultChatTransport`` pointed at ``/api/chat``
with ``resume: true``), over the same simulated LLM (:mod:`resumable_sse.aisdk`):
``POST /api/chat``, ``GET /api/chat/{chat id}/stream`` and ``POST /api/chat/{chat
id}/stop``. The prompt is the text of the last message.

The answer is deterministic for a given prompt (:func:`simulated_answer`), so tests can
compare the text a client assembled with the exact expected text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from typing_extensions import final

from ._assets import client_mount
from ._demo_status import DemoFigures, status_routes
from ._exceptions import ResumableSSEError
from ._http import error_response, sse_response
from ._ids import new_session_id
from ._streamer import Streamer
from .aisdk import ChatRequest, ChatStreams

__all__ = [
    "DEFAULT_DELAY",
    "MAX_PROMPT_LENGTH",
    "SimulatedLLM",
    "ai_sdk_answer",
    "create_app",
    "prompt_of",
    "simulated_answer",
    "tokenize",
]

#: Mean seconds between two tokens; each gap is drawn from 2/3 to 4/3 of it (30-60 ms).
DEFAULT_DELAY = 0.045
#: Longest prompt accepted, in characters.
MAX_PROMPT_LENGTH = 4000

_PARAGRAPHS = (
    "A streamed answer is fragile in a surprising number of ways. The browser holds one "
    "long HTTP response open while the model writes, and anything that interrupts that "
    "response — a reload, a laptop lid, a train tunnel, a proxy that times out idle "
    "connections — throws away the text the reader was halfway through. Most chat "
    "interfaces then start the whole answer again, paying for every token twice.",
    "This page does something different. The answer is produced once, in the background, "
    "by a producer that belongs to the server rather than to your request. Every token is "
    "stored as a numbered event before it is sent, so the stream is a log that any number "
    "of readers can follow, and a reader that went away can come back and ask for "
    "“everything after event N”.",
    "That question is exactly what Server-Sent Events were designed to carry. Each event "
    "has an id; when the browser's EventSource reconnects on its own, it sends the last id "
    "it saw in a Last-Event-ID header. A page that reloads has no such header, and "
    "EventSource cannot send a question in a POST, so this page reads the stream with "
    "fetch instead: it keeps the last id and the text it has already shown in "
    "sessionStorage, and sends the id itself whenever it reconnects.",
    "Ids are opaque strings of the form incarnation-sequence. The sequence grows by one "
    "per event, which makes duplicates easy to drop, and the incarnation changes whenever "
    "a session's stream is created anew, so an id left over from an older stream is "
    "rejected instead of being applied to the wrong text. A malformed id gets a plain 400 "
    "rather than a stream that silently starts from the beginning.",
    "Endings are events too. When the model finishes, an end event is stored; when it "
    "fails, an error event carries a short, safe message; when you press Stop, the "
    "generator is closed — which is what cancels the upstream model call — and a cancelled "
    "event is stored. A reader that arrives late still sees how the story ended, and "
    "nobody waits forever for tokens that will never come.",
    "Try it now: reload the page while this paragraph is still arriving, switch your "
    "network off and on again, or open the same session twice. The text should continue "
    "from where it stopped, never repeat a word and never lose one, and the little note "
    "above the answer tells you from which event it resumed. Press Stop to see the "
    "cancelled ending instead.",
)


def _seed(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big")


def simulated_answer(prompt: str) -> str:
    """The full answer the simulated LLM gives to ``prompt``: the same text every time.

    Several paragraphs (about 450 words) separated by blank lines, with no leading or
    trailing whitespace. The prompt is quoted in the first sentence and picks the order
    of the middle paragraphs.
    """
    quoted = " ".join(prompt.split())
    if len(quoted) > 120:
        quoted = quoted[:119] + "…"
    middle = list(_PARAGRAPHS[1:-1])
    shift = _seed(prompt) % len(middle)
    middle = middle[shift:] + middle[:shift]
    intro = (
        f"You asked: “{quoted}”. Here is a long, simulated answer, streamed word by word "
        "so that you have time to break it."
    )
    return "\n\n".join([intro, _PARAGRAPHS[0], *middle, _PARAGRAPHS[-1]])


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word tokens that carry their leading whitespace.

    ``"".join(tokenize(text)) == text`` for any text that does not end in whitespace.
    """
    return re.findall(r"\s*\S+", text)


@final
class SimulatedLLM:
    """A stand-in for a model: streams :func:`simulated_answer` one word at a time.

    It counts, per session, how often an answer was started and how often its
    generator was finalised (finished, failed or closed), so tests can check that each
    chat ran the model exactly once and that Stop closed it.

    Args:
        delay: Mean seconds between tokens; 0 streams as fast as the store takes them.
    """

    def __init__(self, delay: float = DEFAULT_DELAY) -> None:
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.delay = delay
        self.started: Counter[str] = Counter()
        self.finalized: Counter[str] = Counter()

    async def answer(self, session_id: str, prompt: str) -> AsyncIterator[str]:
        """Yield the answer's tokens, the first at once and each next one after a delay."""
        self.started[session_id] += 1
        rng = random.Random(_seed(prompt))  # a deterministic rhythm, not security
        try:
            for index, token in enumerate(tokenize(simulated_answer(prompt))):
                if index:
                    await anyio.sleep(self.delay * rng.uniform(2 / 3, 4 / 3))
                yield token
        finally:
            self.finalized[session_id] += 1


def prompt_of(messages: list[Any]) -> str:
    """The text of the last message of an AI SDK chat request (its ``text`` parts)."""
    last = messages[-1] if messages else None
    parts = last.get("parts") if isinstance(last, dict) else None
    texts = [
        p["text"]
        for p in parts or ()
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
    ]
    return "".join(texts)


def ai_sdk_answer(llm: SimulatedLLM) -> Callable[[ChatRequest], AsyncIterator[str]]:
    """The demo's model call for AI SDK requests: the simulated answer to the last message."""

    def respond(chat: ChatRequest) -> AsyncIterator[str]:
        prompt = prompt_of(chat.messages).strip() or "(an empty message)"
        return llm.answer(chat.session_id, prompt[:MAX_PROMPT_LENGTH])

    return respond


def _bad_request(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, 400)


def create_app(
    streamer: Streamer | None = None,
    *,
    delay: float = DEFAULT_DELAY,
    figures: DemoFigures | None = None,
) -> Starlette:
    """Build the demo app.

    The app owns ``streamer``: its lifespan runs ``async with streamer:``, so shutting
    the server down ends running answers with a ``cancelled`` event. ``app.state``
    holds ``streamer`` and ``llm`` (the :class:`SimulatedLLM`).

    Args:
        streamer: The streamer to use (not yet entered); a memory-store one by default.
        delay: Mean seconds between two tokens of the simulated answer.
        figures: What the status page reads: give the streamer its ``provider`` as
            ``meter_provider``. By default the metrics of a default streamer.
    """
    if streamer is None:
        figures = figures if figures is not None else DemoFigures()
        streamer = Streamer(meter_provider=figures.provider)
    elif figures is None:
        figures = DemoFigures(enabled=False)
    llm = SimulatedLLM(delay)
    static = resources.files("resumable_sse") / "_static"
    page = (static / "demo.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bad_request("invalid_json", 'the body must be JSON: {"prompt": "..."}')
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            return _bad_request("invalid_prompt", "prompt must be a non-empty string")
        if len(prompt) > MAX_PROMPT_LENGTH:
            return _bad_request("invalid_prompt", f"prompt exceeds {MAX_PROMPT_LENGTH} characters")
        session_id = new_session_id()
        try:
            # A factory: the model is only called if this call really starts the stream.
            await streamer.start(session_id, lambda: llm.answer(session_id, prompt))
        except ResumableSSEError as exc:
            return error_response(exc)
        stream_url = request.url_for("stream", session_id=session_id).path
        if "text/event-stream" in request.headers.get("accept", ""):
            # Stream the answer right away; Content-Location says where to resume it.
            return await sse_response(
                streamer, request, session_id, headers={"Content-Location": stream_url}
            )
        body = {
            "session_id": session_id,
            "stream_url": stream_url,
            "cancel_url": request.url_for("cancel", session_id=session_id).path,
        }
        return JSONResponse(body, 201, headers={"Location": stream_url})

    async def stream(request: Request) -> Response:
        return await sse_response(streamer, request, request.path_params["session_id"])

    async def cancel(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            was_running = await streamer.cancel(session_id)
        except ResumableSSEError as exc:
            return error_response(exc)
        return JSONResponse({"session_id": session_id, "cancelled": was_running})

    async def status(request: Request) -> Response:
        try:
            info = await streamer.status(request.path_params["session_id"])
        except ResumableSSEError as exc:
            return error_response(exc)
        return JSONResponse(
            {
                "session_id": info.session_id,
                "state": info.state.value,
                "events": info.events,
                "last_event_id": info.last_event_id,
                "cancel_requested": info.cancel_requested,
                "created_at": info.created_at,
                "updated_at": info.updated_at,
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamer:
            yield
        figures.shutdown()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/sessions", chat, methods=["POST"]),
            Route("/api/sessions/{session_id}", status, name="status"),
            Route("/api/sessions/{session_id}/stream", stream, name="stream"),
            Route("/api/sessions/{session_id}/cancel", cancel, methods=["POST"], name="cancel"),
            *ChatStreams(streamer, ai_sdk_answer(llm)).routes("/api/chat"),
            Mount("/static", StaticFiles(packages=[("resumable_sse", "_static")]), name="static"),
            client_mount("/resumable-sse"),
            *status_routes(streamer, figures),
        ],
        lifespan=lifespan,
    )
    app.state.streamer = streamer
    app.state.llm = llm
    return app
