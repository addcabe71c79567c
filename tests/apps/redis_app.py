"""A worker of a multi-process deployment on one Redis, for tests/test_redis_multiprocess.py.

Configured by environment variables: ``RSSE_REDIS_URL``, ``RSSE_PREFIX`` (key prefix
shared by the workers of one test) and ``RSSE_LEASE`` (seconds).

``GET /stream/{sid}?n=N&hold=K`` streams the tokens ``"0" .. "N-1"``; before token ``K``
the generator waits until the test pushes to the Redis list ``gate:<sid>`` (forever if
it never does). Each run of a generator increments ``runs:<sid>`` in Redis, so a test
can count runs across processes. ``POST /cancel/{sid}`` cancels the stream wherever it runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import anyio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resumable_sse import RedisStore, Streamer, sse_response

URL = os.environ["RSSE_REDIS_URL"]
PREFIX = os.environ.get("RSSE_PREFIX", "rsse")
LEASE = float(os.environ.get("RSSE_LEASE", "10"))
BLOCK_MS = int(os.environ.get("RSSE_BLOCK_MS", "5000"))

client = Redis.from_url(URL)
# The gate blocks without a timeout, so its client has no socket timeout.
gate_client = Redis.from_url(URL, socket_timeout=None)
streamer = Streamer(RedisStore(client, prefix=PREFIX, lease=LEASE, block_ms=BLOCK_MS))


def test_key(name: str, sid: str) -> str:
    return f"{PREFIX}-test:{name}:{sid}"


async def wait_gate(sid: str) -> None:
    while True:
        try:
            await gate_client.blpop([test_key("gate", sid)], timeout=0)
            return
        except RedisConnectionError:  # Redis restarted under the test: wait for it again
            await anyio.sleep(0.05)


async def tokens(sid: str, n: int, hold: int) -> AsyncIterator[str]:
    await client.incr(test_key("runs", sid))
    for i in range(n):
        if i == hold:
            await wait_gate(sid)
        yield str(i)


async def stream(request: Request) -> Response:
    sid = request.path_params["sid"]
    n = int(request.query_params.get("n", "10"))
    hold = int(request.query_params.get("hold", "-1"))
    return await sse_response(streamer, request, sid, lambda: tokens(sid, n, hold), ping=0)


async def cancel(request: Request) -> Response:
    return JSONResponse({"cancelled": await streamer.cancel(request.path_params["sid"])})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with streamer:
        yield
    await client.aclose()
    await gate_client.aclose()


app = Starlette(
    routes=[
        Route("/stream/{sid}", stream),
        Route("/cancel/{sid}", cancel, methods=["POST"]),
    ],
    lifespan=lifespan,
)
