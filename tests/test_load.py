"""Load: 500 clients on 50 sessions over a real uvicorn, dropping and resuming at random.

Both the memory store and the Redis store (a real ``redis-server``). Every client must end
with the byte-exact stream, each generator must have run once, and afterwards nothing may
be left behind: no consumer, no producer, no task, no open connection, no store entry
beyond what retention keeps (and, for memory, nothing once retention has passed). A
consumer that stops reading must not hold up the producer or the other consumers.

The disconnect points come from a seeded RNG, so every run does the same thing; the
generators yield at a simulated model's pace so that most drops happen mid-stream. No
assertion depends on timing; pytest-timeout only guards against hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from resumable_sse import MemoryStore, RedisStore, Streamer, StreamState, StreamStore, sse_response
from resumable_sse._consumer import Subscription
from resumable_sse._producer import Producer
from tests.redis_server import RedisServer, require_redis
from tests.servers import http_client, serve_in_task
from tests.sse import aconnect_sse
from tests.stores import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SEED = 20240607
SESSIONS = 50
CLIENTS = 500
TOKENS = 40
DROPS = 3
#: Longer than the test runs, even on a starved machine: a Redis stream is gone once the
#: retention after its end has passed on Redis's real clock, and a late resume gets 404.
RETENTION = 3600.0
#: Seconds between two tokens: the pace of a (fast) simulated model, so that clients
#: drop and resume while streams are still being produced. Nothing waits on it.
TOKEN_PACE = 0.005

Wire = tuple[str, str, str]


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


def token(session_id: str, index: int) -> str:
    """A token with non-ASCII text and a line break (which SSE sends as two data lines)."""
    return f"{session_id}:{index} ü€ 🙂\n" if index % 3 == 0 else f"{session_id}:{index} "


class Tracker:
    """ASGI middleware: knows when the server has no request in flight, and how many
    responses it has started (a stream's subscription is open by then)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.in_flight = 0
        self.responses = 0
        self._changed = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.responses += 1
                self._notify()
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, tracked)
        finally:
            self.in_flight -= 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_idle(self) -> None:
        """Return once the server has finished every request it received."""
        while self.in_flight:
            await self._changed.wait()

    async def wait_responses(self, count: int) -> None:
        """Return once the server has started ``count`` responses in all."""
        while self.responses < count:
            await self._changed.wait()


def chat_app(streamer: Streamer, source: Callable[[str], AsyncIterator[str]]) -> Tracker:
    async def chat(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        return await sse_response(streamer, request, session_id, lambda: source(session_id))

    async def warmup(request: Request) -> Response:
        return EventSourceResponse(iter([{"data": "ready"}]))

    return Tracker(Starlette(routes=[Route("/chat/{session_id}", chat), Route("/warmup", warmup)]))


async def warm_up(
    http: httpx.AsyncClient, app: Tracker, store: StreamStore
) -> set[asyncio.Task[object]]:
    """Serve one SSE request and wait once on the store, so that the long-lived tasks of
    the server (uvicorn's lifespan, sse-starlette's shutdown watcher) and of the store (the
    Redis store's notifier and pipelines) exist; return the tasks running then."""
    assert (await http.get("/warmup")).text.startswith("data: ready")
    await app.wait_idle()
    assert await store.read("warm-up", 0, limit=1, wait=True) is None
    return tasks()


@asynccontextmanager
async def make_store(kind: str) -> AsyncIterator[tuple[StreamStore, FakeClock | RedisServer]]:
    """A memory store on a clock the test moves, or a Redis store on a server of its own."""
    if kind == "memory":
        clock = FakeClock()
        store = MemoryStore(retention=RETENTION, clock=clock)
        try:
            yield store, clock
        finally:
            await store.aclose()
        return
    server = RedisServer()
    try:
        server.start()
    except Exception as exc:
        server.close()
        require_redis(exc)
    # The 500 clients share the server's event loop, so on a busy machine a reply can
    # wait a minute for the loop to read it; redis-py's default socket timeout (5 s)
    # turned that wait into "store unavailable" answers. pytest-timeout guards hangs.
    client = Redis.from_url(
        server.url, max_connections=2 * CLIENTS, socket_timeout=None, socket_connect_timeout=None
    )
    try:
        # No producer dies here, and a starved event loop can run a renewal many seconds
        # late: a lease far above that keeps the default (10 s) from reaping live ones.
        redis_store = RedisStore(client, prefix="load", retention=RETENTION, lease=120)
        yield redis_store, server
    finally:
        await redis_store.aclose()
        await client.aclose()
        server.close()


def open_fds() -> set[tuple[str, str]]:
    """This process's open file descriptors, each with what it refers to."""
    fds = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the one iterdir itself opened
            fds.add((fd.name, os.readlink(fd)))
    return fds


def live_connections(port: int) -> int:
    """TCP connections to or from ``port`` not yet fully closed (neither end forgot them).

    Only TIME_WAIT and CLOSE (both ends closed) and LISTEN are not counted.
    """
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        ports = {int(local.split(":")[1], 16), int(remote.split(":")[1], 16)}
        if port in ports and state not in {"06", "07", "0A"}:
            count += 1
    return count


def live_objects(*kinds: type) -> list[object]:
    """Every object of these kinds still alive in this process (after a full collection).

    Other tests that ran in this process may keep some alive: compare with a list taken
    before (which, holding them, also keeps their ids from being reused).
    """
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, kinds)]


def new_objects(before: list[object], *kinds: type) -> list[object]:
    """The objects of these kinds alive now that were not alive in ``before``."""
    old = {id(obj) for obj in before}
    return [obj for obj in live_objects(*kinds) if id(obj) not in old]


def tasks() -> set[asyncio.Task[object]]:
    return set(asyncio.all_tasks())


async def drained(baseline: set[asyncio.Task[object]]) -> None:
    """Wait until every task started since ``baseline`` has ended.

    A task that never ends (a leaked producer, consumer or connection) hangs here, and
    pytest-timeout reports it.
    """
    current = asyncio.current_task()
    while extra := tasks() - baseline - {current}:
        await asyncio.wait(extra)


@pytest.mark.timeout(600)  # a hang guard: on a busy 2-core machine this takes minutes
@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_500_clients_dropping_and_resuming_get_byte_exact_streams(kind: str) -> None:
    """500 clients on 50 sessions drop 3 times each at random points and resume (header or
    query): each gets the byte-exact stream; each generator ran once; nothing is left."""
    fds_before = open_fds()
    objects_before = live_objects(Subscription, Producer)
    runs: dict[str, int] = {}

    async def tokens(session_id: str) -> AsyncIterator[str]:
        runs[session_id] = runs.get(session_id, 0) + 1
        for index in range(TOKENS):
            await anyio.sleep(TOKEN_PACE)
            yield token(session_id, index)

    results: dict[int, list[Wire]] = {}
    async with AsyncExitStack() as stack:
        store, clock = await stack.enter_async_context(make_store(kind))
        streamer = await stack.enter_async_context(Streamer(store, max_consumers_per_session=50))
        app = chat_app(streamer, tokens)
        url = await stack.enter_async_context(serve_in_task(app))
        port = int(url.rsplit(":", 1)[1])
        # "Connection: close" makes the server close each connection as soon as its
        # response ends, rather than when an idle keep-alive connection times out.
        # No client timeout: at load 15 a response took over 60 s to start; pytest-timeout
        # is the hang guard.
        options: dict[str, Any] = {"timeout": None, "headers": {"Connection": "close"}}
        warm = await stack.enter_async_context(http_client(url, **options))
        baseline = await warm_up(warm, app, store)

        async def client(number: int) -> None:
            rng = random.Random(SEED + number)
            session_id = f"s{number % SESSIONS}"
            cuts: list[int | None] = [*sorted(rng.sample(range(1, TOKENS), DROPS)), None]
            received: list[Wire] = []
            # A client of its own, like a browser tab (one shared pool of 500 connections
            # costs httpx time quadratic in their number).
            async with http_client(url, **options) as http:
                for cut in cuts:
                    path, headers = f"/chat/{session_id}", {}
                    if received and rng.random() < 0.5:
                        headers = {"Last-Event-ID": received[-1][0]}
                    elif received:  # a reloaded page has no header, only the query
                        path += f"?last_event_id={received[-1][0]}"
                    async with aconnect_sse(http, "GET", path, headers=headers) as source:
                        assert source.response.status_code == 200, await source.response.aread()
                        async for sse in source.aiter_sse():
                            received.append((sse.id, sse.event, sse.data))
                            if len(received) == cut:
                                break  # drop the connection mid-stream
            results[number] = received

        async with anyio.create_task_group() as tg:
            for number in range(CLIENTS):
                tg.start_soon(client, number)

        for number, received in results.items():
            session_id = f"s{number % SESSIONS}"
            text = "".join(data for _, event, data in received if event == "message")
            assert text.encode() == "".join(token(session_id, i) for i in range(TOKENS)).encode()
            incarnation = received[0][0].split("-")[0]
            assert [event_id for event_id, _, _ in received] == [
                f"{incarnation}-{seq}" for seq in range(1, TOKENS + 2)
            ]
            assert received[-1][1:] == ("end", "")
        assert len(results) == CLIENTS
        assert runs == {f"s{n}": 1 for n in range(SESSIONS)}

        await app.wait_idle()
        await drained(baseline)  # no producer, consumer or connection task left
        assert streamer.consumers == 0
        for n in range(SESSIONS):
            assert (await streamer.status(f"s{n}")).state is StreamState.DONE
        assert new_objects(objects_before, Subscription, Producer) == []
        assert live_connections(port) == 0
        if isinstance(clock, FakeClock):  # memory: once retention passes, nothing is kept
            assert isinstance(store, MemoryStore)
            assert len(store) == SESSIONS
            clock.now += RETENTION + 1
            assert await store.info("s0") is None
            assert len(store) == 0
        else:  # Redis: only the sessions' own keys, each expiring within the retention
            assert isinstance(store, RedisStore)
            redis = Redis.from_url(clock.url)
            try:
                keys = [key async for key in redis.scan_iter(match="{load|*")]
                assert 0 < len(keys) <= 3 * SESSIONS
                for key in keys:
                    assert 0 < await redis.pttl(key) <= RETENTION * 1000
            finally:
                await redis.aclose()
    # Every socket, pipe or file this test opened is closed again. (The server, once
    # stopped, has seen every connection lost; the client closes its sockets in aclose.)
    assert open_fds() - fds_before == set()


def stalled_socket(url: str, path: str) -> socket.socket:
    """A client that sends its request and then never reads, with a tiny receive window."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    return sock


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_consumer_that_stops_reading_holds_up_nobody(kind: str) -> None:
    """A client that never reads (10 MiB stream, 8 KiB window) stays stuck while the
    producer finishes and five other clients get everything; closing it frees its slot."""
    chunk = "x" * (64 * 1024 - 8)
    count = 160  # 10 MiB: more than the kernel's socket buffers can swallow

    async def big(session_id: str) -> AsyncIterator[str]:
        for index in range(count):
            yield f"{index:07d} {chunk}"

    async with AsyncExitStack() as stack:
        store, _ = await stack.enter_async_context(make_store(kind))
        streamer = await stack.enter_async_context(Streamer(store))
        app = chat_app(streamer, big)
        url = await stack.enter_async_context(serve_in_task(app))
        http = await stack.enter_async_context(http_client(url, timeout=60))
        baseline = await warm_up(http, app, store)
        stalled = stalled_socket(url, "/chat/s1")
        try:
            await app.wait_responses(2)  # the warm-up's and the stalled client's
            got: list[list[str]] = []

            async def reader() -> None:
                async with aconnect_sse(http, "GET", "/chat/s1") as source:
                    got.append([sse.data async for sse in source.aiter_sse()])

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(reader)
            expected = [f"{index:07d} {chunk}" for index in range(count)] + [""]
            assert got == [expected] * 5
            assert (await streamer.status("s1")).state is StreamState.DONE
            assert streamer.consumers == 1  # the stalled one: still stuck in its response
        finally:
            # An abortive close, as a vanished client looks to the server.
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stalled.close()
        await app.wait_idle()
        await drained(baseline)
        assert streamer.consumers == 0
