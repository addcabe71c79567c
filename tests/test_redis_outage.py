"""Redis outages seen by a producer, and a Sentinel-managed client.

A producer whose writes fail retries with backoff: a short outage loses and repeats
nothing, and so does a restart, ``DEBUG SLEEP`` or ``CLIENT PAUSE`` longer than the lease
(every lease expires on Redis's clock meanwhile; the two-step reap keeps the stream of
a producer that comes back); an outage longer than ``store_retry_deadline`` ends the
stream with an ``error`` event once Redis is back. Progress is observed through the
library's own log records (an event set by a logging handler) and the events readers
receive, never by sleeping; sleeps only make an outage last.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from resumable_sse import RedisStore, StoreUnavailableError, Streamer, get_streamer
from resumable_sse.stores import _redis
from tests.redis_server import RedisServer, require_redis, started_server
from tests.servers import free_port

pytestmark = pytest.mark.anyio

Event = dict[str, str]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own, free to be killed or have its stats reset."""
    with started_server() as server:
        yield server


class LogSignal(logging.Handler):
    """Sets an anyio event when the library logs a message containing ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@pytest.fixture
def log_signal() -> Iterator[type[LogSignal]]:
    logger = logging.getLogger("resumable_sse")
    added: list[LogSignal] = []

    class Bound(LogSignal):
        def __init__(self, needle: str) -> None:
            super().__init__(needle)
            logger.addHandler(self)
            added.append(self)

    try:
        yield Bound
    finally:
        for handler in added:
            logger.removeHandler(handler)


def client(url: str) -> Redis:
    # One quick retry: the first command on a connection that the restart broke
    # reconnects instead of failing.
    return Redis.from_url(url, retry=Retry(NoBackoff(), 1))


def gated(gate: anyio.Event) -> AsyncIterator[str]:
    async def source() -> AsyncIterator[str]:
        for i in range(20):
            yield str(i)
        await gate.wait()
        for i in range(20, 40):
            yield str(i)

    return source()


async def first_events(streamer: Streamer, source: AsyncIterator[str]) -> list[Event]:
    subscription = await streamer.open("s1", source)
    events = [await subscription.__anext__() for _ in range(20)]
    await subscription.aclose()
    return events


async def test_a_short_outage_loses_and_repeats_nothing(
    server: RedisServer, log_signal: type[LogSignal]
) -> None:
    """Writes made while Redis is down are retried and land once, in order."""
    redis = client(server.url)
    store = RedisStore(redis, prefix=f"o-{uuid.uuid4().hex[:8]}")
    retrying = log_signal("store unavailable, retrying")
    gate = anyio.Event()
    async with Streamer(store, store_retry_deadline=60) as streamer:
        first = await first_events(streamer, gated(gate))
        await anyio.to_thread.run_sync(server.kill)
        gate.set()
        await retrying.seen.wait()  # the producer hit the outage and is retrying
        await anyio.to_thread.run_sync(server.start)
        rest = [event async for event in streamer.resume("s1", first[-1]["id"])]
    await redis.aclose()
    assert [e["data"] for e in first + rest] == [str(i) for i in range(40)] + [""]
    assert rest[-1]["event"] == "end"
    seqs = [int(e["id"].rsplit("-", 1)[1]) for e in first + rest]
    assert seqs == list(range(1, 42))


async def test_an_outage_past_the_deadline_ends_the_stream_with_an_error(
    server: RedisServer, log_signal: type[LogSignal]
) -> None:
    """A producer that cannot write for longer than its deadline gives up; once Redis is
    back, readers get everything stored before the outage and then an error event."""
    redis = client(server.url)
    store = RedisStore(redis, prefix=f"o-{uuid.uuid4().hex[:8]}", lease=1.0)
    gave_up = log_signal("writing to the store failed")
    gate = anyio.Event()
    async with Streamer(store, store_retry_deadline=0.2) as streamer:
        first = await first_events(streamer, gated(gate))
        await anyio.to_thread.run_sync(server.kill)
        gate.set()
        await gave_up.seen.wait()
        await anyio.to_thread.run_sync(server.start)
        rest = [event async for event in streamer.resume("s1", first[-1]["id"])]
    await redis.aclose()
    assert [e["data"] for e in first] == [str(i) for i in range(20)]
    assert [e["event"] for e in rest] == ["error"]
    assert json.loads(rest[0]["data"])["code"] in {"store_unavailable", "producer_lost"}


LEASE = 2.0  # short, to keep the tests quick; the deadline (60 s) is far longer


async def redis_now(redis: Redis) -> float:
    seconds, micros = await redis.time()
    return float(seconds) + micros / 1e6


async def follow(streamer: Streamer, received: list[Event], has_20: anyio.Event) -> None:
    """A reader that stays through the fault: it resumes by id whenever Redis fails it
    (as a client reconnects), until the terminal event."""
    while not received or received[-1]["event"] == "message":
        last_id = received[-1]["id"] if received else None
        try:
            async for event in streamer.resume("s1", last_id):
                received.append(event)
                if len(received) == 20:
                    has_20.set()
        except StoreUnavailableError:
            await anyio.sleep(0.05)  # the client's reconnection delay, not a wait for a result


def every_event_once(received: list[Event]) -> None:
    assert [e["data"] for e in received] == [str(i) for i in range(40)] + [""]
    assert received[-1]["event"] == "end"
    assert [int(e["id"].rsplit("-", 1)[1]) for e in received] == list(range(1, 42))


async def test_a_restart_longer_than_the_lease_only_delays_the_stream(
    server: RedisServer, log_signal: type[LogSignal]
) -> None:
    """Redis (append-only) is down for over two leases, less than the deadline, while the
    producer has events to write and a reader keeps reconnecting: the producer keeps its
    stream, and the reader gets every event exactly once."""
    redis = client(server.url)
    store = RedisStore(redis, prefix=f"o-{uuid.uuid4().hex[:8]}", lease=LEASE)
    retrying = log_signal("store unavailable, retrying")
    gate, has_20 = anyio.Event(), anyio.Event()
    received: list[Event] = []
    async with Streamer(store, store_retry_deadline=60) as streamer:
        await streamer.start("s1", gated(gate))
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow, streamer, received, has_20)
            await has_20.wait()
            down_at = await redis_now(redis)
            await anyio.to_thread.run_sync(server.kill)
            gate.set()
            await retrying.seen.wait()  # the producer hit the outage and is retrying
            await anyio.sleep(2 * LEASE + 0.5)  # the outage under test
            await anyio.to_thread.run_sync(server.start)
            back_at = await redis_now(redis)
    await redis.aclose()
    assert back_at - down_at > 2 * LEASE  # the lease ran out on Redis's clock
    every_event_once(received)


@pytest.mark.parametrize("own_client", [False, True], ids=["given client", "from a URL"])
@pytest.mark.parametrize("stall", ["DEBUG SLEEP", "CLIENT PAUSE"])
async def test_a_stall_longer_than_the_lease_only_delays_the_stream(
    stall: str, own_client: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stops serving for longer than the lease (``DEBUG SLEEP``, or ``CLIENT PAUSE``
    of every client) while the generator waits and a reader follows: the stream goes on
    afterwards and the reader gets every event exactly once. A store made from a URL
    bounds its round trips itself (here to less than the stall, so they time out)."""
    monkeypatch.setattr(_redis, "_ROUND_TRIP_TIMEOUT", 0.5)
    with started_server(extra=("--enable-debug-command", "yes")) as server:
        redis, admin = client(server.url), client(server.url)
        prefix = f"o-{uuid.uuid4().hex[:8]}"
        store = (
            RedisStore(url=server.url, prefix=prefix, lease=LEASE)
            if own_client
            else RedisStore(redis, prefix=prefix, lease=LEASE)
        )
        gate, has_20 = anyio.Event(), anyio.Event()
        received: list[Event] = []
        async with Streamer(store, store_retry_deadline=60) as streamer:
            await streamer.start("s1", gated(gate))
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow, streamer, received, has_20)
                await has_20.wait()
                stalled = LEASE + 0.5
                command = (
                    ("DEBUG", "SLEEP", stalled)  # answered once the sleep is over
                    if stall == "DEBUG SLEEP"
                    else ("CLIENT", "PAUSE", int(stalled * 1000), "ALL")
                )
                before = await redis_now(admin)
                await admin.execute_command(*command)  # type: ignore[no-untyped-call]
                await redis.ping()  # answered once Redis serves again
                after = await redis_now(admin)
                gate.set()
        await redis.aclose()
        await admin.aclose()
        await store.aclose()
    assert after - before > LEASE
    every_event_once(received)


async def test_a_store_made_from_a_url_never_waits_on_redis_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its client has no socket timeout of redis-py's: while Redis does not answer, a
    call fails with StoreUnavailableError once the store's own bound has passed, and the
    store works again when Redis does."""
    monkeypatch.setattr(_redis, "_ROUND_TRIP_TIMEOUT", 0.5)
    with started_server() as server:
        admin = client(server.url)
        async with RedisStore(url=server.url, prefix=f"o-{uuid.uuid4().hex[:8]}") as store:
            assert await store.claim("s1") is not None
            await admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # type: ignore[no-untyped-call]
            with pytest.raises(StoreUnavailableError):
                await store.info("s1")
            await admin.ping()  # answered once Redis serves again
            info = await store.info("s1")
            assert info is not None
            assert info.state.value == "running"
        await admin.aclose()


class SentinelServer:
    """A ``redis-server --sentinel`` watching one master."""

    def __init__(self, master: RedisServer) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rsse-sentinel-"))
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor main 127.0.0.1 {master.port} 1\n"
        )
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            [binary, str(conf), "--sentinel"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        lines: list[str] = []
        for line in self.proc.stdout:  # blocks on the sentinel's own log
            lines.append(line)
            if "+monitor master" in line:
                break
        else:
            self.close()
            raise RuntimeError("sentinel exited before it monitored the master:\n" + "".join(lines))
        stdout = self.proc.stdout
        threading.Thread(target=lambda: list(stdout), daemon=True).start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


async def test_a_sentinel_managed_client_works(server: RedisServer) -> None:
    """get_streamer accepts a client from Sentinel.master_for and streams through it."""
    try:
        sentinel_server = SentinelServer(server)
    except Exception as exc:
        require_redis(exc)
        raise
    try:
        sentinel = Sentinel([("127.0.0.1", sentinel_server.port)])
        master = sentinel.master_for("main")
        async with get_streamer(backend="redis", redis_client=master) as streamer:

            async def words() -> AsyncIterator[str]:
                for word in ("through", "sentinel"):
                    yield word

            events = [event async for event in streamer.stream("s1", words())]
            again = [event async for event in streamer.resume("s1", events[0]["id"])]
        await master.aclose()
        for sentinel_client in sentinel.sentinels:
            await sentinel_client.aclose()
    finally:
        sentinel_server.close()
    assert [e["data"] for e in events] == ["through", "sentinel", ""]
    assert again == events[1:]
