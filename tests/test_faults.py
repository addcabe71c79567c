"""Faults with the Redis store and real servers, each with the outcome the README promises.

- Redis killed mid-stream and restarted (append-only): clients' responses end without a
  terminal event (or they get 503 while Redis is down); they resume by Last-Event-ID
  and end up with every event exactly once; the generator ran once.
- The producing process killed (kill -9): consumers on another process get the terminal
  ``error`` (code ``producer_lost``) within two leases; a late client replays it.
- Redis slow (``DEBUG SLEEP``): the stream completes, unchanged.
- Graceful shutdown (SIGTERM) of the server mid-stream: clients get a reconnectable
  ending; after a restart they resume everything stored, which ends with ``cancelled``
  (``{"reason": "shutdown"}``).

Nothing sleeps to synchronise: the tests wait for events the clients received, for
processes, or for Redis; timeouts only guard against hangs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import RedisStore, Streamer, sse_response
from tests.helpers import TERMINAL, read_events
from tests.redis_server import RedisServer, started_server
from tests.servers import free_port, serve_in_process, serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py and uvicorn run on asyncio


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A server of the test's own, with append-only persistence, free to be killed."""
    with started_server() as server:
        yield server


@pytest.fixture
def debug_redis_server() -> Iterator[RedisServer]:
    """Like ``redis_server``, with ``DEBUG`` enabled (Redis 7 disables it by default)."""
    with started_server(extra=("--enable-debug-command", "yes")) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        yield client


def wire(events: list[ServerSentEvent]) -> list[tuple[str, str, str]]:
    return [(e.id, e.event, e.data) for e in events]


class Gated:
    """An in-process generator: ``tokens`` items, pausing before item ``hold`` until the
    test opens the gate. Counts its runs."""

    def __init__(self, tokens: int, hold: int) -> None:
        self.tokens = tokens
        self.hold = hold
        self.gate = anyio.Event()
        self.runs = 0

    async def __call__(self) -> AsyncIterator[str]:
        self.runs += 1
        for index in range(self.tokens):
            if index == self.hold:
                await self.gate.wait()
            yield str(index)


def gated_app(streamer: Streamer, source: Gated) -> Starlette:
    async def stream(request: Request) -> Response:
        return await sse_response(streamer, request, request.path_params["sid"], source, ping=0)

    return Starlette(routes=[Route("/stream/{sid}", stream)])


async def follow_through_faults(
    http: httpx.AsyncClient, url: str, received: list[ServerSentEvent], first: anyio.Event
) -> None:
    """A client that reconnects with Last-Event-ID until the terminal event.

    ``first`` is set once the first response has ended (the fault reached the client).
    """
    while not received or received[-1].event not in TERMINAL:
        last_id = received[-1].id if received else None
        try:
            received += await read_events(http, url, last_id=last_id)
        except httpx.HTTPStatusError as exc:
            # Redis is down: the store is unavailable (503), so the client tries again.
            refusal = (exc.response.status_code, exc.response.json()["error"])
            if refusal != (503, "store_unavailable"):
                raise
            await anyio.sleep(0.05)  # the client's reconnection delay, not a wait for a result
        first.set()


async def test_redis_killed_mid_stream_and_restarted_loses_and_repeats_nothing(
    redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    """Redis dies (kill -9) under three live clients and the producer; once it is back
    (append-only), every client has each event exactly once, in order; one run."""
    client = Redis.from_url(redis_server.url)
    source = Gated(tokens=60, hold=30)
    try:
        async with (
            Streamer(RedisStore(client, prefix="faults")) as streamer,
            serve_in_task(gated_app(streamer, source)) as url,
        ):
            received: list[list[ServerSentEvent]] = [[] for _ in range(3)]
            cut = [anyio.Event() for _ in range(3)]
            heads = [await read_events(http, f"{url}/stream/s1", count=30) for _ in range(3)]
            for events, head in zip(received, heads, strict=True):
                events += head
            async with anyio.create_task_group() as tg:
                for events, ended in zip(received, cut, strict=True):
                    tg.start_soon(follow_through_faults, http, f"{url}/stream/s1", events, ended)
                redis_server.kill()
                for ended in cut:  # every client has seen its response end
                    await ended.wait()
                source.gate.set()  # the producer goes on while Redis is down: it retries
                redis_server.start()
    finally:
        await client.aclose()
    for events in received:
        assert [e.data for e in events] == [str(i) for i in range(60)] + [""]
        assert events[-1].event == "end"
        assert len({e.id for e in events}) == 61
    assert source.runs == 1


async def test_a_slow_redis_only_delays_the_stream(
    debug_redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    """``DEBUG SLEEP`` blocks Redis mid-stream, beyond the client's socket timeout: the
    producer retries, clients reconnect, and the stream completes unchanged."""
    client = Redis.from_url(debug_redis_server.url, socket_timeout=0.5)
    slow = Redis.from_url(debug_redis_server.url)
    source = Gated(tokens=40, hold=20)
    try:
        async with (
            Streamer(RedisStore(client, prefix="slow")) as streamer,
            serve_in_task(gated_app(streamer, source)) as url,
        ):
            received = await read_events(http, f"{url}/stream/s1", count=20)
            ended = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow_through_faults, http, f"{url}/stream/s1", received, ended)
                tg.start_soon(slow.execute_command, "DEBUG", "SLEEP", "1.5")
                source.gate.set()
    finally:
        await client.aclose()
        await slow.aclose()
    assert [e.data for e in received] == [str(i) for i in range(40)] + [""]
    assert received[-1].event == "end"
    assert len({e.id for e in received}) == 41
    assert source.runs == 1


async def test_kill_9_of_the_producer_ends_the_stream_for_every_reader_in_two_leases(
    redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    """The producing process dies: two clients following on the other process get
    ``error`` / ``producer_lost`` after what was stored; a late client replays the same;
    starting the session again does not run the generator again.

    The readers' longest blocking read is ten minutes, so they can only be told in time
    by waking for the reap's two steps themselves: the first look after the lease ran
    out (which marks the stream) and the look one lease later (which reaps it), as the
    times Redis recorded in the stream show.
    """
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    lease = 1.0
    env = {
        "RSSE_REDIS_URL": redis_server.url,
        "RSSE_PREFIX": prefix,
        "RSSE_LEASE": str(lease),
        "RSSE_BLOCK_MS": "600000",
    }
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    with (
        serve_in_process("tests.apps.redis_app:app", env=env) as a,
        serve_in_process("tests.apps.redis_app:app", env=env) as b,
    ):
        head = await read_events(http, f"{a.url}/stream/s1?n=10&hold=5", count=5)
        tails: list[list[ServerSentEvent]] = [[], []]

        async def follow(tail: list[ServerSentEvent]) -> None:
            tail += await read_events(http, f"{b.url}/stream/s1", last_id=head[-1].id)

        with anyio.fail_after(60):  # a hang guard, far above the 2 s bound
            async with anyio.create_task_group() as tg:
                for tail in tails:
                    tg.start_soon(follow, tail)
                a.kill()
        late = await read_events(http, f"{b.url}/stream/s1?n=10")
        runs = int(await redis.get(f"{prefix}-test:runs:s1") or 0)
        meta = await redis.hgetall(f"{{{prefix}|s1}}:m")
    await redis.aclose()
    assert [e.data for e in head] == ["0", "1", "2", "3", "4"]
    for tail in tails:
        assert [e.event for e in tail] == ["error"]
        assert json.loads(tail[0].data)["code"] == "producer_lost"
        assert tail[0].id == f"{head[0].id.split('-')[0]}-6"
    assert [e.data for e in late[:5]] == ["0", "1", "2", "3", "4"]
    assert [(e.id, e.event) for e in late[5:]] == [(tails[0][0].id, "error")]
    assert runs == 1
    assert int(meta["sus"]) + lease * 1000 <= int(meta["u"])  # reaped a lease after the mark


async def test_graceful_shutdown_mid_stream_then_resume_after_restart(
    redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    """SIGTERM while three clients follow an idle stream: each response ends cleanly
    (no error status, at most a terminal event); after a restart on the same port each
    client resumes and gets exactly what was stored, ending with ``cancelled/shutdown``."""
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    env = {"RSSE_REDIS_URL": redis_server.url, "RSSE_PREFIX": prefix, "RSSE_LEASE": "2"}
    port = free_port()
    received: list[list[ServerSentEvent]] = [[] for _ in range(3)]
    with serve_in_process("tests.apps.redis_app:app", env=env, port=port) as server:
        url = f"{server.url}/stream/s1?n=10&hold=4"
        ready = [anyio.Event() for _ in range(3)]
        aborted: list[bool] = []

        async def follow(events: list[ServerSentEvent], has_four: anyio.Event) -> None:
            try:
                async with aconnect_sse(http, "GET", url) as source:
                    async for event in source.aiter_sse():
                        events.append(event)
                        if len(events) == 4:
                            has_four.set()
            except httpx.RemoteProtocolError:
                # uvicorn aborts the response at shutdown: a dropped connection, which
                # clients answer by reconnecting with Last-Event-ID.
                aborted.append(True)

        async with anyio.create_task_group() as tg:
            for events, has_four in zip(received, ready, strict=True):
                tg.start_soon(follow, events, has_four)
            for has_four in ready:
                await has_four.wait()
            await anyio.to_thread.run_sync(server.terminate)
        # uvicorn re-raises SIGTERM once its graceful shutdown has finished.
        assert server.proc.returncode in (0, -15)
    for events in received:
        assert [e.data for e in events[:4]] == ["0", "1", "2", "3"]
        assert [e.event for e in events[4:]] in ([], ["cancelled"])
    with serve_in_process("tests.apps.redis_app:app", env=env, port=port) as restarted:
        rests = [
            await read_events(http, f"{restarted.url}/stream/s1", last_id=events[-1].id)
            if events[-1].event not in TERMINAL
            else []
            for events in received
        ]
        everything = await read_events(http, f"{restarted.url}/stream/s1")
    for events, rest in zip(received, rests, strict=True):
        assert wire(events + rest) == wire(everything)
    assert [e.data for e in everything[:4]] == ["0", "1", "2", "3"]
    assert everything[-1].event == "cancelled"
    assert json.loads(everything[-1].data) == {"reason": "shutdown"}
    assert len(everything) == 5
