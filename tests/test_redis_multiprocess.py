"""Several uvicorn worker processes sharing one Redis: resume, crashes, cancel, outages.

The workers run ``tests/apps/redis_app.py`` in child processes on their own ports, as
two pods behind a load balancer would; the tests talk to them over real HTTP.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from tests.helpers import TERMINAL, read_events
from tests.redis_server import shared_server, started_server
from tests.servers import ServerProcess, http_client, serve_in_process
from tests.sse import ServerSentEvent, aconnect_sse

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def runs(url: str, prefix: str, sid: str) -> int:
    client = Redis.from_url(url)
    try:
        return int(await client.get(f"{prefix}-test:runs:{sid}") or 0)
    finally:
        await client.aclose()


async def open_gate(url: str, prefix: str, sid: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.rpush(f"{prefix}-test:gate:{sid}", "go")
    finally:
        await client.aclose()


@contextmanager
def two_workers(
    url: str, prefix: str, *, lease: float | None = None
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two uvicorn worker processes of tests/apps/redis_app.py sharing one Redis."""
    env = {"RSSE_REDIS_URL": url, "RSSE_PREFIX": prefix}
    if lease is not None:
        env["RSSE_LEASE"] = str(lease)
    with (
        serve_in_process("tests.apps.redis_app:app", env=env) as a,
        serve_in_process("tests.apps.redis_app:app", env=env) as b,
    ):
        yield a, b


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(timeout=30) as client:
        yield client


async def test_start_on_one_worker_and_resume_exactly_the_rest_on_another(
    http: httpx.AsyncClient,
) -> None:
    """A client starts on A, drops after 20 events, resumes on B: exactly the rest."""
    url = shared_server().url
    prefix = f"mp-{uuid.uuid4().hex[:10]}"
    with two_workers(url, prefix) as (a, b):
        head = await read_events(http, f"{a.url}/stream/s1?n=40&hold=20", count=20)
        await open_gate(url, prefix, "s1")
        rest = await read_events(http, f"{b.url}/stream/s1?n=40", last_id=head[-1].id)
    assert [e.data for e in head] == [str(i) for i in range(20)]
    assert [e.data for e in rest[:-1]] == [str(i) for i in range(20, 40)]
    assert rest[-1].event == "end"
    assert await runs(url, prefix, "s1") == 1


async def test_twenty_clients_over_two_workers_share_one_generator_run(
    http: httpx.AsyncClient,
) -> None:
    """20 clients hitting both workers at once all get the same stream; it ran once."""
    url = shared_server().url
    prefix = f"mp-{uuid.uuid4().hex[:10]}"
    with two_workers(url, prefix) as (a, b):
        results: list[list[ServerSentEvent]] = []

        async def client(base: str) -> None:
            results.append(await read_events(http, f"{base}/stream/s1?n=30"))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(client, (a.url, b.url)[i % 2])
    expected = [str(i) for i in range(30)] + [""]
    assert len(results) == 20
    for events in results:
        assert [e.data for e in events] == expected
        assert len({e.id for e in events}) == 31
    assert len({tuple(e.id for e in events) for events in results}) == 1
    assert await runs(url, prefix, "s1") == 1


async def test_kill_9_of_the_producing_worker_ends_streams_with_an_error(
    http: httpx.AsyncClient,
) -> None:
    """The producing worker dies; a client waiting on B gets ``error: producer_lost``."""
    url = shared_server().url
    with two_workers(url, f"mp-{uuid.uuid4().hex[:10]}", lease=1) as (a, b):
        head = await read_events(http, f"{a.url}/stream/s1?n=10&hold=5", count=5)
        tail: list[ServerSentEvent] = []

        async def follow_on_b() -> None:
            tail.extend(await read_events(http, f"{b.url}/stream/s1", last_id=head[-1].id))

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_on_b)
            a.kill()
    assert [e.data for e in head] == ["0", "1", "2", "3", "4"]
    assert [e.event for e in tail] == ["error"]
    assert json.loads(tail[0].data)["code"] == "producer_lost"


async def test_cancel_on_one_worker_stops_the_generator_on_another(
    http: httpx.AsyncClient,
) -> None:
    """POST /cancel on B stops an idle generator running on A; A's client sees it."""
    url = shared_server().url
    with two_workers(url, f"mp-{uuid.uuid4().hex[:10]}") as (a, b):
        events: list[ServerSentEvent] = []
        started = anyio.Event()

        async def follow_on_a() -> None:
            async with aconnect_sse(http, "GET", f"{a.url}/stream/s1?n=10&hold=3") as source:
                async for event in source.aiter_sse():
                    events.append(event)
                    if len(events) == 3:
                        started.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_on_a)
            await started.wait()  # the generator now waits, idle, for a gate never opened
            response = await http.post(f"{b.url}/cancel/s1")
            assert response.json() == {"cancelled": True}
    assert [e.data for e in events[:3]] == ["0", "1", "2"]
    assert events[-1].event == "cancelled"
    assert json.loads(events[-1].data) == {"reason": "cancelled"}


async def read_to_end(
    http: httpx.AsyncClient, bases: list[str], path: str, last_id: str
) -> list[ServerSentEvent]:
    """What a browser does: reconnect with Last-Event-ID (round robin) until the end."""
    events: list[ServerSentEvent] = []
    for attempt in range(100):
        try:
            got = await read_events(http, bases[attempt % len(bases)] + path, last_id=last_id)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 503:
                raise
            await anyio.sleep(0.05)  # a client's reconnection delay, not a wait for a result
            continue
        events += got
        if events and events[-1].event in TERMINAL:
            return events
        if events:
            last_id = events[-1].id
    raise AssertionError("the stream did not end")


async def test_redis_restart_with_appendonly_loses_and_repeats_nothing(
    http: httpx.AsyncClient,
) -> None:
    """Redis is killed and restarted mid-stream; the resumed client gets exactly the rest."""
    with started_server() as server:
        prefix = f"mp-{uuid.uuid4().hex[:10]}"
        with two_workers(server.url, prefix) as (a, b):
            head = await read_events(http, f"{a.url}/stream/s1?n=60&hold=30", count=30)
            server.restart()  # kill -9, then start on the same port and files
            await open_gate(server.url, prefix, "s1")
            rest = await read_to_end(http, [b.url, a.url], "/stream/s1", head[-1].id)
    data = [e.data for e in head + rest]
    assert data == [str(i) for i in range(60)] + [""]
    assert rest[-1].event == "end"
    assert len({e.id for e in head + rest}) == 61
