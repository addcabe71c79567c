"""The app the HTTP benchmarks serve: our stream and plain sse-starlette, side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


app = Starlette(routes=[Route("/plain", plain), Route("/ours", ours)], lifespan=lifespan)
