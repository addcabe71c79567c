"""The app the HTTP benchmarks serve: our stream and plain sse-starlette, side by side."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import MemoryStore, Streamer, sse_response

streamer = Streamer(MemoryStore(max_streams=100_000), max_events=1_000_000)


async def tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield "tokn"


async def paced_tokens(n: int, rate: float) -> AsyncIterator[str]:
    """An LLM's pace: each token carries the monotonic time it was yielded at."""
    for _ in range(n):
        await anyio.sleep(1 / rate)
        yield repr(time.monotonic())


async def paced(request: Request) -> Response:
    n, rate = int(request.query_params["n"]), float(request.query_params["rate"])
    session_id = request.query_params["session_id"]
    return await sse_response(streamer, request, session_id, lambda: paced_tokens(n, rate))


async def plain(request: Request) -> Response:
    """The floor: sse-starlette streaming the generator, nothing stored."""
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[dict[str, str]]:
        seq = 0
        async for token in tokens(n):
            seq += 1
            yield {"id": str(seq), "event": "message", "data": token}

    return EventSourceResponse(events())


async def ours(request: Request) -> Response:
    n = int(request.query_params["n"])
    return await sse_response(streamer, request, request.query_params["session_id"], tokens(n))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with streamer:
        yield


app = Starlette(
    routes=[Route("/plain", plain), Route("/ours", ours), Route("/paced", paced)],
    lifespan=lifespan,
)
