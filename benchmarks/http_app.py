"""The app the HTTP benchmarks serve (one uvicorn worker, a process of its own).

Our stream (memory store, and Redis when ``BENCH_REDIS_URL`` is set) beside its
baselines: raw ASGI sending one blob or one message per SSE frame, plain sse-starlette
over the generator (nothing stored), and a plain sse-starlette broadcast for fan-out.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resumable_sse import MemoryStore, RedisStore, Streamer, sse_response

streamer = Streamer(
    MemoryStore(max_streams=100_000), max_events=1_000_000, max_consumers_per_session=1_000
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL")
redis_streamer = (
    Streamer(RedisStore(url=REDIS_URL, prefix=f"http{time.time_ns()}"), max_events=1_000_000)
    if REDIS_URL
    else None
)
TOKEN = "tokn"
HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]


async def tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield TOKEN


def frames(n: int) -> list[bytes]:
    return [f"id: {i}\r\nevent: message\r\ndata: {TOKEN}\r\n\r\n".encode() for i in range(1, n + 1)]


# -- the ladder: raw ASGI, plain sse-starlette, ours ---------------------------------------


class RawASGI:
    """An ASGI endpoint as it is (Starlette would wrap a function as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def raw_blob(scope: Scope, receive: Receive, send: Send) -> None:
    """The physical floor: every frame in one body message."""
    n = int(Request(scope).query_params["n"])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"".join(frames(n))})


async def raw_frames(scope: Scope, receive: Receive, send: Send) -> None:
    """One ASGI send (one socket write) per frame, nothing else."""
    n = int(Request(scope).query_params["n"])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    for frame in frames(n):
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def plain(request: Request) -> Response:
    """sse-starlette streaming the generator's events as dicts, nothing stored."""
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


async def ours_redis(request: Request) -> Response:
    assert redis_streamer is not None, "BENCH_REDIS_URL is not set"
    n = int(request.query_params["n"])
    session_id = request.query_params["session_id"]
    return await sse_response(redis_streamer, request, session_id, tokens(n))


# -- an LLM's pace --------------------------------------------------------------------------


async def paced_tokens(n: int, rate: float) -> AsyncIterator[str]:
    """Each token carries the monotonic time it was yielded at."""
    for _ in range(n):
        await anyio.sleep(1 / rate)
        yield repr(time.monotonic())


async def paced(request: Request) -> Response:
    n, rate = int(request.query_params["n"]), float(request.query_params["rate"])
    session_id = request.query_params["session_id"]
    return await sse_response(streamer, request, session_id, lambda: paced_tokens(n, rate))


async def paced_plain(request: Request) -> Response:
    n, rate = int(request.query_params["n"]), float(request.query_params["rate"])

    async def events() -> AsyncIterator[dict[str, str]]:
        seq = 0
        async for token in paced_tokens(n, rate):
            seq += 1
            yield {"id": str(seq), "event": "message", "data": token}

    return EventSourceResponse(events())


# -- fan-out: one stream, many consumers ----------------------------------------------------


class Topic:
    """A plain broadcast: once ``consumers`` have subscribed, the last one publishes
    every event to each subscriber's queue."""

    def __init__(self, consumers: int) -> None:
        self.consumers = consumers
        self.queues: list[MemoryObjectSendStream[dict[str, str]]] = []


topics: dict[str, Topic] = {}
gates: dict[str, tuple[int, anyio.Event]] = {}


async def broadcast(request: Request) -> Response:
    n, consumers = int(request.query_params["n"]), int(request.query_params["consumers"])
    topic = topics.setdefault(request.query_params["topic"], Topic(consumers))
    send, receive = anyio.create_memory_object_stream[dict[str, str]](n)
    topic.queues.append(send)
    if len(topic.queues) == topic.consumers:
        for seq in range(1, n + 1):
            event = {"id": str(seq), "event": "message", "data": TOKEN}
            for queue in topic.queues:
                queue.send_nowait(event)
        for queue in topic.queues:
            queue.close()

    async def events() -> AsyncIterator[dict[str, str]]:
        async with receive:
            async for event in receive:
                yield event

    return EventSourceResponse(events())


async def fan_out(request: Request) -> Response:
    """Our stream of one session; the generator starts once ``consumers`` have opened."""
    n, consumers = int(request.query_params["n"]), int(request.query_params["consumers"])
    session_id = request.query_params["session_id"]
    count, gate = gates.get(session_id, (0, anyio.Event()))
    gates[session_id] = (count + 1, gate)

    async def gated() -> AsyncIterator[str]:
        await gate.wait()
        async for token in tokens(n):
            yield token

    response = await sse_response(streamer, request, session_id, gated)
    if count + 1 == consumers:
        gate.set()
    return response


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(streamer)
        if redis_streamer is not None:
            await stack.enter_async_context(redis_streamer)
        yield


app = Starlette(
    routes=[
        Route("/raw-blob", RawASGI(raw_blob)),
        Route("/raw-frames", RawASGI(raw_frames)),
        Route("/plain", plain),
        Route("/ours", ours),
        Route("/ours-redis", ours_redis),
        Route("/paced", paced),
        Route("/paced-plain", paced_plain),
        Route("/broadcast", broadcast),
        Route("/fan-out", fan_out),
    ],
    lifespan=lifespan,
)
