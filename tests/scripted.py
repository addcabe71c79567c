"""A scripted SSE server for client tests: exact bytes, duplicates, drops and refusals.

Served as ``tests.scripted:app`` (in a child process, so trio tests can use it too).
Every answer is decided by the request alone, except ``/busy``, which counts requests.

- ``/flaky``: without ``Last-Event-ID``, ``retry: 20`` and events ``x-1`` to ``x-3``,
  then the response ends without a terminal event. With ``Last-Event-ID: x-3`` it sends
  ``x-2`` and ``x-3`` again (duplicates), ``x-4``, a custom ``resumed`` event whose data
  is the ``Last-Event-ID`` it got, then ``end``. Tokens: ``a``, ``b``, ``c``, ``d``.
- ``/tricky``: one response in awkward but valid SSE: BOM, CR, LF and CRLF line endings,
  comments, multi-line data, a field without a value, an id with NUL (ignored), a bad
  ``retry``, a block without data, then an id-less terminal ``error``.
- ``/busy?key=K``: 503 with ``Retry-After: 0`` the first time for ``K``, then a stream.
- ``/gone``: 404 ``{"error": "session_not_found", ...}``; ``/empty``: 204.
- ``/start`` (POST): streams ``/flaky``'s first part, with ``Content-Location: /flaky``.

Hostile answers, each counting its requests per ``key`` (``/requests?key=K`` tells how
many arrived):

- ``/hostile/busy?key=K&retry_after=V&times=N``: 503 with ``Retry-After: V`` N times
  (default 2), then a stream: ``ok``, ``end``.
- ``/hostile/retry?key=K&times=N``: N responses (default 3) that each send
  ``retry: 86400000`` (a day) and one new event (``r-<n>``), then end without a terminal
  event; the next one sends ``end``.
- ``/hostile/empty?key=K&body=B``: always a 200 event stream without any event: ``garbage``
  (lines that are no SSE field), ``comments`` (only keep-alive comments), or ``close``
  (no body at all).
- ``/``: a blank page, so a browser has an origin; ``/resumable-sse/``: the client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from resumable_sse import client_mount

__all__ = ["EMPTY_BODIES", "FLAKY_TOKENS", "TRICKY_EVENTS", "TRICKY_STREAM", "app"]

FLAKY_TOKENS = ["a", "b", "c", "d"]

TRICKY_STREAM = (
    "\ufeff: a comment\r\n"
    "retry: 15\n"
    "id: t-1\r"
    "data: first\r\n"
    "data:  second, with a leading space kept\n"
    "data\n"
    "\n"
    "event: tool_call\r\n"
    'data: {"name": "lookup"}\r\n'
    "id: bad\0id\r\n"
    "\r\n"
    "id: t-2\n"
    "retry: soon\n"
    ": data: not a field\n"
    "\n"
    "id: t-3\r\n"
    "data:no space\r\n"
    "unknown: ignored\r\n"
    "\r"
    "event: error\n"
    'data: {"code": "boom", "message": "it broke"}\n'
    "\n"
)
#: (event, data, lastEventId) of each event the tricky stream dispatches.
TRICKY_EVENTS = [
    ("message", "first\n second, with a leading space kept\n", "t-1"),
    ("tool_call", '{"name": "lookup"}', "t-1"),
    ("message", "no space", "t-3"),
    ("error", '{"code": "boom", "message": "it broke"}', "t-3"),
]

_SSE_HEADERS = {"Cache-Control": "no-store"}
_busy: Counter[str] = Counter()
_hits: Counter[str] = Counter()

#: The bodies ``/hostile/empty`` can answer with: 200 event streams without an event.
EMPTY_BODIES = {
    "garbage": ("garbage without a colon\n", "\x00\x01 binary-ish\n", "{not: sse}\n\n"),
    "comments": (": ping\n\n", ": still here\n\n"),
    "close": (),
}


def _event(seq: int, data: str, event: str = "message") -> str:
    return f"id: x-{seq}\nevent: {event}\ndata: {data}\n\n"


async def _chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


def _stream(*parts: str, headers: dict[str, str] | None = None) -> Response:
    return StreamingResponse(
        _chunks(*parts), media_type="text/event-stream", headers={**_SSE_HEADERS, **(headers or {})}
    )


def _first_part(headers: dict[str, str] | None = None) -> Response:
    return _stream(
        "retry: 20\n\n",
        *(_event(i + 1, t) for i, t in enumerate(FLAKY_TOKENS[:3])),
        headers=headers,
    )


async def flaky(request: Request) -> Response:
    last = request.headers.get("last-event-id")
    if last is None:
        return _first_part()
    if last != "x-3":
        return JSONResponse({"error": "invalid_event_id", "message": f"unexpected {last}"}, 400)
    return _stream(
        _event(2, "b"),
        _event(3, "c"),
        _event(4, "d"),
        _event(5, last, "resumed"),
        "id: x-6\nevent: end\ndata: \n\n",
    )


async def start(request: Request) -> Response:
    await request.body()
    return _first_part({"Content-Location": "/flaky"})


async def tricky(request: Request) -> Response:
    # One character per chunk: every line ending is split from what follows it.
    return _stream(*TRICKY_STREAM)


async def busy(request: Request) -> Response:
    key = request.query_params.get("key", "")
    _busy[key] += 1
    if _busy[key] == 1:
        return JSONResponse(
            {"error": "store_unavailable", "message": "busy"}, 503, headers={"Retry-After": "0"}
        )
    return _stream("id: y-1\ndata: ok\n\n", "id: y-2\nevent: end\ndata: \n\n")


def _hit(request: Request) -> int:
    """Count a request for its ``key``; the count so far, this one included."""
    key = request.query_params.get("key", "")
    _hits[key] += 1
    return _hits[key]


async def hostile_busy(request: Request) -> Response:
    times = int(request.query_params.get("times", "2"))
    if _hit(request) <= times:
        after = request.query_params.get("retry_after", "")
        return JSONResponse(
            {"error": "store_unavailable", "message": "busy"}, 503, headers={"Retry-After": after}
        )
    return _stream("id: h-1\ndata: ok\n\n", "id: h-2\nevent: end\ndata: \n\n")


async def hostile_retry(request: Request) -> Response:
    times = int(request.query_params.get("times", "3"))
    n = _hit(request)
    if n <= times:
        return _stream("retry: 86400000\n\n", f"id: r-{n}\ndata: tok-{n}\n\n")
    return _stream(f"id: r-{n}\nevent: end\ndata: \n\n")


async def hostile_empty(request: Request) -> Response:
    _hit(request)
    return _stream(*EMPTY_BODIES[request.query_params["body"]])


async def requests(request: Request) -> Response:
    return JSONResponse(_hits[request.query_params.get("key", "")])


async def gone(request: Request) -> Response:
    return JSONResponse({"error": "session_not_found", "message": "no such stream"}, 404)


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def index(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>client tests</title>")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/flaky", flaky),
        Route("/start", start, methods=["POST"]),
        Route("/tricky", tricky),
        Route("/busy", busy),
        Route("/gone", gone),
        Route("/empty", empty),
        Route("/hostile/busy", hostile_busy),
        Route("/hostile/retry", hostile_retry),
        Route("/hostile/empty", hostile_empty),
        Route("/requests", requests),
        client_mount(),
    ]
)
