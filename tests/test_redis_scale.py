"""The Redis store at scale and when its history is lost.

Connections do not grow with sessions: a thousand concurrent sessions run on redis-py's
default pool (100 connections, which raises instead of waiting at its limit) through a
handful of connections, counted by the server itself. A log that Redis evicted or that
was deleted is reported (410 on open, a terminal error mid-stream), never read again
and again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import OutOfMemoryError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import (
    HistoryLostError,
    RedisStore,
    SessionNotFoundError,
    Streamer,
    sse_response,
)
from resumable_sse.stores._redis import DEFAULT_CONNECTIONS
from tests.helpers import Script
from tests.redis_server import RedisServer, shared_cluster, started_server
from tests.servers import serve_in_task

pytestmark = pytest.mark.anyio

TOKENS = 50


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own: its connection counters are this test's alone."""
    with started_server(appendonly=False) as server:
        yield server


async def connections(admin: Redis) -> tuple[int, int]:
    """Clients connected now (but ``admin``), and connections accepted since start."""
    clients = await admin.info("clients")
    stats = await admin.info("stats")
    return int(clients["connected_clients"]) - 1, int(stats["total_connections_received"])


async def run_sessions(store: RedisStore, sessions: int, at_half: Any) -> list[bool]:
    """``sessions`` concurrent streams of 50 tokens, one reader each; which were exact.

    Every generator pauses halfway until all have got there, then ``at_half()`` runs:
    at that moment every session is live at once, its reader waiting for more.
    """
    halfway = anyio.Event()
    arrived = 0
    exact = [False] * sessions

    def tokens(i: int) -> list[str]:
        return [f"s{i}-t{j} " for j in range(TOKENS)]

    async def source(i: int) -> AsyncIterator[str]:
        nonlocal arrived
        for token in tokens(i)[: TOKENS // 2]:
            yield token
        arrived += 1
        if arrived == sessions:
            halfway.set()
        await halfway.wait()
        for token in tokens(i)[TOKENS // 2 :]:
            yield token

    async def reader(i: int) -> None:
        data = [event["data"] async for event in streamer.stream(f"s{i}", source(i))]
        exact[i] = data == [*tokens(i), ""]

    async with Streamer(store) as streamer, anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(reader, i)
        await halfway.wait()
        await at_half()
    return exact


@pytest.mark.parametrize("sessions", [100, 1000])
async def test_sessions_share_a_few_connections_on_the_default_pool(
    server: RedisServer, sessions: int
) -> None:
    """1,000 concurrent sessions on redis-py's default pool: every one byte-exact, through
    at most ``connections`` pooled connections plus the notifier's one."""
    admin = Redis.from_url(server.url)
    client = Redis.from_url(server.url)  # the default pool: 100 connections, no waiting
    _, accepted_before = await connections(admin)
    live: list[int] = []

    async def at_half() -> None:
        live.append((await connections(admin))[0])

    store = RedisStore(client, prefix=f"scale-{uuid.uuid4().hex[:8]}")
    exact = await run_sessions(store, sessions, at_half)
    _, accepted_after = await connections(admin)
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    assert exact.count(True) == sessions
    bound = DEFAULT_CONNECTIONS + 1  # the pipelines' connections and the notifier's
    assert live[0] <= bound, live  # with every session live at once
    assert accepted_after - accepted_before <= bound  # ever opened, so the peak too


async def test_sessions_on_a_cluster_use_a_few_connections_per_node() -> None:
    """On a three-master Cluster each node sees a few connections, whatever the sessions."""
    cluster = shared_cluster()
    admins = [Redis.from_url(node.url) for node in cluster.nodes]
    before = [(await connections(admin))[1] for admin in admins]
    client = RedisCluster.from_url(cluster.url)
    store = RedisStore(client, prefix=f"scale-{uuid.uuid4().hex[:8]}")
    live: list[list[int]] = []

    async def at_half() -> None:
        live.append([(await connections(admin))[0] for admin in admins])

    exact = await run_sessions(store, 200, at_half)
    after = [(await connections(admin))[1] for admin in admins]
    await store.aclose()
    await client.aclose()
    for admin in admins:
        await admin.aclose()
    assert exact.count(True) == 200
    opened = [b - a for a, b in zip(before, after, strict=True)]
    # Per node: the pipelines' connections, the notifier's one, and the client's own
    # slot-map lookups; other tests' idle connections may be open too.
    assert all(count <= DEFAULT_CONNECTIONS + 3 for count in opened), opened
    assert all(count <= 64 for count in live[0]), live


async def test_a_reader_gets_every_event_when_the_notifier_connection_is_killed(
    server: RedisServer,
) -> None:
    """Notifications lost with a killed pub/sub connection never lose an event: the kill
    wakes every waiter to read again, and the next waits subscribe afresh (the bounded
    wait, ten minutes here, could not deliver within this test's time)."""
    admin = Redis.from_url(server.url)
    client = Redis.from_url(server.url)
    store = RedisStore(client, prefix="kill", block_ms=600_000)
    script = Script([], ["a"], ["b"], ["c"])
    with anyio.fail_after(30):
        async with Streamer(store) as streamer:
            subscription = await streamer.open("s1", script)
            script.release()
            # Read while waiting: the notifier is connected and subscribed from now on.
            got = [await subscription.__anext__()]
            assert await admin.client_kill_filter(_type="pubsub") >= 1
            script.release()  # "b": its notification may be lost with the connection
            got.append(await subscription.__anext__())
            script.release()  # "c": only a new subscription can tell the reader
            got += [event async for event in subscription]
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    assert [e["data"] for e in got] == ["a", "b", "c", ""]


async def test_cancel_reaches_a_producer_whose_notifier_connection_was_killed(
    server: RedisServer,
) -> None:
    """After its pub/sub connection is killed a producer's cancel watch subscribes afresh:
    a cancel still stops it at once (its bounded wait, ten minutes here, would not)."""
    admin = Redis.from_url(server.url)
    client = Redis.from_url(server.url)
    store = RedisStore(client, prefix="kill-cancel", block_ms=600_000)
    script = Script([], ["a"], ["never"])
    with anyio.fail_after(30):
        async with Streamer(store) as streamer:
            subscription = await streamer.open("s1", script)
            script.release()
            got = [await subscription.__anext__()]  # read while waiting: subscribed now
            assert await admin.client_kill_filter(_type="pubsub") >= 1
            assert await streamer.cancel("s1")
            got += [event async for event in subscription]
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    assert [e["event"] for e in got] == ["message", "cancelled"]
    assert script.closed


# -- lost history ----------------------------------------------------------------------


async def evalsha_calls(admin: Redis) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def evict_logs(admin: Redis, store: RedisStore, *session_ids: str) -> None:
    """Fill a server under ``maxmemory`` + ``volatile-lru`` until Redis evicts the logs.

    The meta hashes are made persistent first, so the logs are the only keys the policy
    may evict (the fill's own keys have no TTL): Redis picks them, deterministically.
    The fill is then deleted, so the server has room again.
    """
    logs = [store.keys(sid).log for sid in session_ids]
    for sid in session_ids:
        assert await admin.persist(store.keys(sid).meta)
    assert await admin.exists(*logs) == len(logs)
    filled = 0
    while await admin.exists(*logs):
        try:
            await admin.set(f"fill:{filled}", b"x" * 65_536)
        except OutOfMemoryError:  # the logs were evicted, yet not enough room was made
            break
        filled += 1
    assert await admin.exists(*logs) == 0
    await admin.delete(*(f"fill:{i}" for i in range(filled + 1)))


@pytest.fixture
def tiny_server() -> Iterator[RedisServer]:
    """A server with a 4 MB ``maxmemory`` that evicts keys with a TTL (volatile-lru)."""
    extra = ["--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"]
    with started_server(appendonly=False, extra=extra) as server:
        yield server


async def test_an_evicted_log_gives_410_on_open_and_ends_a_lagging_reader(
    tiny_server: RedisServer,
) -> None:
    """Under a real maxmemory the logs are evicted: opening over HTTP answers 410
    history_lost; a reader that had not read everything yet gets a terminal error; a
    reader that had read everything goes on (it lost nothing)."""
    admin = Redis.from_url(tiny_server.url)
    client = Redis.from_url(tiny_server.url)
    store = RedisStore(client, prefix="evict", lease=60)  # no renewal while filling
    streamer = Streamer(store, page_size=5)

    async def resume(request: Request) -> Response:
        return await sse_response(streamer, request, request.path_params["sid"])

    app = Starlette(routes=[Route("/s/{sid}", resume)])
    script = Script([f"live-{i}" for i in range(10)], ["more"])
    async with streamer:
        done = [event async for event in streamer.stream("done", [str(i) for i in range(20)])]
        caught_up = await streamer.open("live", script)
        seen = [await caught_up.__anext__() for _ in range(10)]  # all ten are stored
        lagging = await streamer.open("live")
        first = [await lagging.__anext__() for _ in range(5)]  # its first page of five
        await evict_logs(admin, store, "done", "live")
        async with serve_in_task(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/s/done")
        with pytest.raises(HistoryLostError):
            await lagging.__anext__()  # events 6-10 are gone: it ends, it does not spin
        script.release_all()
        seen += [event async for event in caught_up]
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    assert len(done) == 21
    assert [e["data"] for e in first] == [f"live-{i}" for i in range(5)]
    assert response.status_code == 410
    assert response.json()["error"] == "history_lost"
    assert [e["data"] for e in seen] == [*(f"live-{i}" for i in range(10)), "more", ""]


async def test_a_finished_stream_whose_log_was_deleted_is_not_spun_on(server: RedisServer) -> None:
    """The log deleted by hand: a reader opening it gets HistoryLostError at once, and one
    already reading it stops with it, each after a single read (counted by the server)."""
    admin = Redis.from_url(server.url)
    client = Redis.from_url(server.url)
    store = RedisStore(client, prefix="deleted")
    async with Streamer(store, page_size=5) as streamer:
        whole = [event async for event in streamer.stream("s1", [str(i) for i in range(20)])]
        reading = await streamer.open("s1")
        first = [await reading.__anext__() for _ in range(5)]
        assert await admin.delete(store.keys("s1").log) == 1
        before = await evalsha_calls(admin)
        with pytest.raises(HistoryLostError) as lost:
            await reading.__anext__()
        assert await evalsha_calls(admin) - before == 1
        with pytest.raises(HistoryLostError):
            await streamer.open("s1")
        assert await evalsha_calls(admin) - before == 2
        assert await admin.delete(store.keys("s1").meta) == 1
        with pytest.raises(SessionNotFoundError):  # the whole stream gone: 404
            await streamer.open("s1")
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    assert len(whole) == 21
    assert [e["data"] for e in first] == ["0", "1", "2", "3", "4"]
    assert (lost.value.status, lost.value.code) == (410, "history_lost")


async def test_a_reader_of_an_idle_stream_waits_between_reads(server: RedisServer) -> None:
    """Nothing happens on a running stream: a reader reads twice per bounded wait, not in
    a loop (commands counted by the server over a window of twenty waits)."""
    admin = Redis.from_url(server.url)
    client = Redis.from_url(server.url)
    store = RedisStore(client, prefix="idle", block_ms=50)
    script = Script(["a"], ["b"])
    async with Streamer(store) as streamer:
        subscription = await streamer.open("s1", script)
        await subscription.__anext__()
        before = await evalsha_calls(admin)
        with anyio.move_on_after(1.0):  # twenty waits of 50 ms
            await subscription.__anext__()
        calls = await evalsha_calls(admin) - before
        script.release_all()
        rest = [event async for event in subscription]
    await store.aclose()
    await client.aclose()
    await admin.aclose()
    # Two reads per wait, plus the producer's lease renewals and its cancel watch's
    # own bounded re-checks; a read loop without a wait would make thousands.
    assert calls <= 2 * (20 + 1) + 3 * (20 + 1), calls
    assert [e["data"] for e in rest] == ["b", ""]
