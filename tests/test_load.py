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
import gc
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse
from redis.asyncio import Redis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resumable_sse import MemoryStore, RedisStore, Streamer, StreamState, StreamStore, sse_response
from resumable_sse._consumer import Subscription
from resumable_sse._producer import Producer
from tests.redis_server import RedisServer, require_redis
from tests.servers import serve_in_task
from tests.stores import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SEED = 20240607
SESSIONS = 50
CLIENTS = 500
TOKENS = 40
DROPS = 3
RETENTION = 60.0
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
    """ASGI middleware: knows when the server has no request in flight."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.in_flight = 0
        self._idle = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
                self._idle = anyio.Event()

    async def wait_idle(self) -> None:
        """Return once the server has finished every request it received."""
        while self.in_flight:
            await self._idle.wait()


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
    client = Redis.from_url(server.url, max_connections=2 * CLIENTS)
    try:
        redis_store = RedisStore(client, prefix="load", retention=RETENTION)
        yield redis_store, server
    finally:
        await redis_store.aclose()
        await client.aclose()
        server.close()


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


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


def live_objects(*kinds: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kinds))


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


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_500_clients_dropping_and_resuming_get_byte_exact_streams(kind: str) -> None:
    """500 clients on 50 sessions drop 3 times each at random points and resume (header or
    query): each gets the byte-exact stream; each generator ran once; nothing is left."""
    fds_before = open_fds()
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
        limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
        # "Connection: close" makes the server close each connection as soon as its
        # response ends, rather than when an idle keep-alive connection times out.
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=url, timeout=60, limits=limits, headers={"Connection": "close"}
            )
        )
        baseline = await warm_up(http, app, store)

        async def client(number: int) -> None:
            rng = random.Random(SEED + number)
            session_id = f"s{number % SESSIONS}"
            cuts: list[int | None] = [*sorted(rng.sample(range(1, TOKENS), DROPS)), None]
            received: list[Wire] = []
            for cut in cuts:
                path, headers = f"/chat/{session_id}", {}
                if received and rng.random() < 0.5:
                    headers = {"Last-Event-ID": received[-1][0]}
                elif received:  # a reloaded page has no header, only the query
                    path += f"?last_event_id={received[-1][0]}"
                async with aconnect_sse(http, "GET", path, headers=headers) as source:
                    assert source.response.status_code == 200
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
        assert live_objects(Subscription, Producer) == 0
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
                keys = [key async for key in redis.scan_iter(match="{load:*")]
                assert 0 < len(keys) <= 3 * SESSIONS
                for key in keys:
                    assert 0 < await redis.pttl(key) <= RETENTION * 1000
            finally:
                await redis.aclose()
    assert open_fds() == fds_before


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
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        baseline = await warm_up(http, app, store)
        stalled = stalled_socket(url, "/chat/s1")
        try:
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
