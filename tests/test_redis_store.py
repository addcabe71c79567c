"""RedisStore behaviour beyond the contract: encodings, cost, expiry, faults, leases."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from resumable_sse import (
    Entry,
    HistoryLostError,
    HistoryTrimmedError,
    LeaseLostError,
    Page,
    RedisStore,
    StoreUnavailableError,
    Streamer,
    StreamState,
    get_streamer,
)
from resumable_sse._frames import encode_frame
from resumable_sse.stores._redis_scripts import ENTRY_BYTES, READ_BYTES
from tests.redis_server import RedisServer, shared_server, started_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture
def url() -> str:
    return shared_server().url


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, free to be killed or have its stats reset."""
    with started_server() as server:
        yield server


def fast_client(url: str, *, decode: bool = False, retries: int = 0) -> Redis:
    """A client that reports a dead server at once instead of retrying for seconds."""
    return Redis.from_url(url, decode_responses=decode, retry=Retry(NoBackoff(), retries))


@asynccontextmanager
async def redis_store(
    url: str,
    *,
    decode: bool = False,
    prefix: str | None = None,
    retries: int = 0,
    **options: Any,
) -> AsyncIterator[RedisStore]:
    client = fast_client(url, decode=decode, retries=retries)
    store = RedisStore(client, prefix=prefix or f"t-{uuid.uuid4().hex[:12]}", **options)
    try:
        yield store
    finally:
        await store.aclose()
        await client.aclose()


async def read_until(store: RedisStore, session_id: str, after: int) -> Page | None:
    while True:
        page = await store.read(session_id, after, limit=1000, wait=True)
        if page is None or page.events or page.info.state.finished:
            return page


async def collect(streamer: Streamer, session_id: str, source: Any) -> list[dict[str, str]]:
    return [event async for event in streamer.stream(session_id, source)]


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decoded"])
async def test_streams_round_trip_with_and_without_decode_responses(url: str, decode: bool) -> None:
    """A Streamer on Redis delivers the same events whatever the client's decoding."""
    items: list[object] = ["plain", "nul\x00 and 🦜", {"event": "tool", "data": {"a": 1}}, ""]
    async with redis_store(url, decode=decode) as store, Streamer(store) as streamer:
        events = await collect(streamer, "s1", items)
    assert [(e["event"], e["data"]) for e in events] == [
        ("message", "plain"),
        ("message", "nul\x00 and 🦜"),
        ("tool", '{"a":1}'),
        ("message", ""),
        ("end", ""),
    ]
    assert [e["id"].rsplit("-", 1)[1] for e in events] == ["1", "2", "3", "4", "5"]


async def command_calls(client: Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_fast_generator_costs_few_commands_per_event(own_server: RedisServer) -> None:
    """10,000 tokens through the Streamer, producer and one reader, cost few commands.

    Counted server-side (INFO commandstats), including the commands run inside scripts.
    """
    tokens = 10_000

    async def fast() -> AsyncIterator[str]:
        for i in range(tokens):
            yield f"t{i} "

    async with redis_store(own_server.url) as store:
        admin = fast_client(own_server.url)
        await admin.config_resetstat()
        async with Streamer(store) as streamer:
            events = await collect(streamer, "bench", fast())
        calls = await command_calls(admin)
        await admin.aclose()
    assert len(events) == tokens + 1
    calls.pop("info", None)
    round_trips = sum(calls.get(c, 0) for c in ("evalsha", "eval", "xread", "blpop", "script"))
    assert sum(calls.values()) / tokens < 0.2, calls
    assert round_trips / tokens < 0.05, calls


async def keys_and_ttls(client: Redis, prefix: str) -> dict[str, int]:
    return {key.decode(): await client.pttl(key) async for key in client.scan_iter(f"{{{prefix}|*")}


async def test_every_key_has_a_ttl_running_finished_and_deleted(url: str) -> None:
    """No key lives forever: sliding TTL while running, retention after; delete leaves none."""
    async with redis_store(url, prefix="ttl", retention=30, lease=5) as store:
        client = fast_client(url)
        claim = await store.claim("s1")
        assert claim is not None
        await store.append("s1", claim, [Entry("message", "a")], first_seq=1)
        assert await store.request_cancel("s1")
        running = await keys_and_ttls(client, "ttl")
        assert len(running) == 2
        assert all(0 < ttl <= 35_000 for ttl in running.values()), running
        await store.finish("s1", claim, StreamState.CANCELLED, Entry("cancelled", ""), seq=2)
        finished = await keys_and_ttls(client, "ttl")
        assert all(0 < ttl <= 30_000 for ttl in finished.values()), finished
        assert await store.delete("s1")
        assert await keys_and_ttls(client, "ttl") == {}
        assert await store.info("s1") is None
        await client.aclose()


async def test_redis_errors_become_store_unavailable(own_server: RedisServer) -> None:
    """With the server down every operation raises StoreUnavailableError from the cause."""
    async with redis_store(own_server.url) as store:
        claim = await store.claim("s1")
        assert claim is not None
        own_server.kill()
        calls = [
            store.claim("s2"),
            store.append("s1", claim, [Entry("message", "a")], first_seq=1),
            store.finish("s1", claim, StreamState.DONE, Entry("end", ""), seq=1),
            store.read("s1", 0, limit=10, wait=True),
            store.info("s1"),
            store.request_cancel("s1"),
            store.wait_cancel("s1", claim),
            store.renew("s1", claim),
            store.delete("s1"),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailableError) as caught:
                await call
            assert isinstance(caught.value.__cause__, RedisError)
        own_server.start()
        await store.append("s1", claim, [Entry("message", "a")], first_seq=1)  # AOF kept it
        info = await store.info("s1")
        assert info is not None
        assert info.last_seq == 1


async def test_a_dead_producer_is_reaped_when_its_lease_expires(url: str) -> None:
    """A reader waiting on a stream whose producer stopped renewing gets a terminal error."""
    async with redis_store(url, lease=0.3) as store:
        claim = await store.claim("s1")
        assert claim is not None
        await store.append("s1", claim, [Entry("message", "a")], first_seq=1)
        page = await read_until(store, "s1", 1)  # the producer never writes again
        assert page is not None
        assert page.info.state is StreamState.ERROR
        assert [(e.seq, e.event) for e in page.events] == [(2, "error")]
        assert json.loads(page.events[0].data)["code"] == "producer_lost"
        with pytest.raises(LeaseLostError):  # the late producer is fenced off
            await store.append("s1", claim, [Entry("message", "b")], first_seq=2)
        with pytest.raises(LeaseLostError):
            await store.renew("s1", claim)
        with pytest.raises(LeaseLostError):
            await store.finish("s1", claim, StreamState.ERROR, Entry("error", "{}"), seq=2)
        assert await store.claim("s1") is None  # retained like any finished stream


async def test_renewals_keep_an_idle_producer_alive(url: str) -> None:
    """A generator idle for several lease times is not mistaken for a dead one.

    Renewals come every lease / 3; a lease of a second leaves room for a busy machine
    to run one late (with 0.3 s, a stall of 0.2 s would lose it).
    """

    async def slow() -> AsyncIterator[str]:
        yield "before"
        await anyio.sleep(2.5)
        yield "after"

    async with redis_store(url, lease=1.0) as store, Streamer(store) as streamer:
        events = await collect(streamer, "s1", slow())
    assert [e["event"] for e in events] == ["message", "message", "end"]


async def test_fencing_between_two_clients(url: str) -> None:
    """A claim from one process is fenced off once another deletes and re-claims."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    async with redis_store(url, prefix=prefix) as a, redis_store(url, prefix=prefix) as b:
        old = await a.claim("s1")
        assert old is not None
        assert await b.claim("s1") is None
        assert await b.delete("s1")
        new = await b.claim("s1")
        assert new is not None
        assert new.token > old.token
        with pytest.raises(LeaseLostError):
            await a.append("s1", old, [Entry("message", "stale")], first_seq=1)
        with pytest.raises(LeaseLostError):
            await a.renew("s1", old)
        await b.append("s1", new, [Entry("message", "fresh")], first_seq=1)
        page = await a.read("s1", 0, limit=10, wait=False)
        assert page is not None
        assert [e.data for e in page.events] == ["fresh"]


async def test_claim_race_across_clients_has_one_winner(url: str) -> None:
    """Concurrent claims through several connections and clients: exactly one wins."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    async with redis_store(url, prefix=prefix) as a, redis_store(url, prefix=prefix) as b:
        wins: list[bool] = []

        async def claim(store: RedisStore) -> None:
            wins.append(await store.claim("race") is not None)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(claim, (a, b)[i % 2])
    assert sum(wins) == 1


async def test_cancel_reaches_a_producer_through_another_client(url: str) -> None:
    """request_cancel on one client releases wait_cancel blocked on another."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    async with redis_store(url, prefix=prefix) as a, redis_store(url, prefix=prefix) as b:
        claim = await a.claim("s1")
        assert claim is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.wait_cancel, "s1", claim)
            await anyio.wait_all_tasks_blocked()
            assert await b.request_cancel("s1")
        info = await a.info("s1")
        assert info is not None
        assert info.cancel_requested


async def test_max_len_trims_whole_old_batches(url: str) -> None:
    """With max_len the oldest batches go; first_seq says where history now starts."""
    async with redis_store(url, max_len=5) as store:
        claim = await store.claim("s1")
        assert claim is not None
        for first in (1, 4, 7, 10):
            batch = [Entry("message", str(first + i)) for i in range(3)]
            await store.append("s1", claim, batch, first_seq=first)
        page = await store.read("s1", 0, limit=100, wait=False)
        assert page is not None
        assert page.info.first_seq > 1
        assert [e.seq for e in page.events] == list(range(page.info.first_seq, 13))
        assert [e.data for e in page.events] == [str(e.seq) for e in page.events]
        assert len(page.events) >= 5


@pytest.mark.parametrize("frames", [False, True], ids=["read", "read_frames"])
async def test_large_events_are_read_about_a_megabyte_at_a_time(url: str, frames: bool) -> None:
    """A read stops at about a megabyte (an event larger than that comes alone), even
    within one batch, and reading on from the last event returned gets each once."""
    datas = [chr(97 + i) * 300_000 for i in range(12)] + ["x" * 1_500_000, "tail"]
    async with redis_store(url) as store:
        claim = await store.claim("s1")
        assert claim is not None
        # One batch as a producer queues it (a run of text), one as entries.
        await store.append_items("s1", claim, datas[:7], event="message", first_seq=1)
        await store.append("s1", claim, [Entry("big", d) for d in datas[7:]], first_seq=8)
        seen: list[bytes] = []
        while len(seen) < len(datas):
            if frames:
                page = await store.read_frames("s1", len(seen), limit=4096, wait=False)
                assert page is not None
                assert page.seq == len(seen) + 1
                got = list(page.frames)
            else:
                read = await store.read("s1", len(seen), limit=4096, wait=False)
                assert read is not None
                assert read.events[0].seq == len(seen) + 1
                got = [event.data.encode() for event in read.events]
            assert got
            assert len(got) == 1 or sum(map(len, got)) <= READ_BYTES + ENTRY_BYTES
            seen += got
    expected = [
        data.encode() if not frames else encode_frame(f"{claim.incarnation}-{seq}", event, data)
        for seq, (event, data) in enumerate(
            [("message", d) for d in datas[:7]] + [("big", d) for d in datas[7:]], 1
        )
    ]
    assert seen == expected


async def test_get_streamer_builds_a_redis_streamer(url: str) -> None:
    """The factory accepts a URL (and owns that client) or a client."""
    streamer = get_streamer("redis", redis_url=url, retention=5)
    async with streamer:
        assert [e["event"] for e in await collect(streamer, uuid.uuid4().hex, ["x"])] == [
            "message",
            "end",
        ]
    await streamer.store.aclose()
    client = fast_client(url, decode=True)
    async with get_streamer("redis", redis_client=client) as streamer:
        assert len(await collect(streamer, uuid.uuid4().hex, ["x", "y"])) == 3
    await client.aclose()


async def test_a_stream_survives_a_redis_crash_with_appendonly(own_server: RedisServer) -> None:
    """Redis killed and restarted mid-stream: once back, nothing is lost or repeated."""
    gate = anyio.Event()

    async def source() -> AsyncIterator[str]:
        for i in range(50):
            yield str(i)
        await gate.wait()
        for i in range(50, 100):
            yield str(i)

    # One retry: the first command on a pooled connection the restart broke reconnects.
    async with redis_store(own_server.url, retries=1) as store, Streamer(store) as streamer:
        subscription = streamer.stream("s1", source())
        first = [await subscription.__anext__() for _ in range(50)]
        own_server.restart()
        gate.set()
        rest = [event async for event in streamer.resume("s1", first[-1]["id"])]
    data = [e["data"] for e in first + rest]
    assert data == [str(i) for i in range(100)] + [""]
    assert rest[-1]["event"] == "end"


async def test_scripts_flushed_mid_stream_are_loaded_again(own_server: RedisServer) -> None:
    """SCRIPT FLUSH (what a restart without persistence does to scripts) between a
    stream's events: the next calls, alone and many in one pipeline, get NOSCRIPT, load
    the scripts again and are sent again; every reader gets every event once."""
    gate = anyio.Event()

    async def source() -> AsyncIterator[str]:
        yield "before"
        await gate.wait()
        for i in range(20):
            yield str(i)

    admin = fast_client(own_server.url)
    async with redis_store(own_server.url) as store, Streamer(store) as streamer:
        subscription = streamer.stream("s1", source())
        assert (await subscription.__anext__())["data"] == "before"
        await admin.script_flush()
        assert (await store.info("s1")) is not None  # a lone call
        await admin.script_flush()
        found: list[bool] = []

        async def info() -> None:
            found.append(await store.info("s1") is not None)

        async with anyio.create_task_group() as tg:  # calls that queue up together
            for _ in range(20):
                tg.start_soon(info)
        assert found == [True] * 20
        await admin.script_flush()
        gate.set()
        rest = [event["data"] async for event in subscription]
    await admin.aclose()
    assert rest == [str(i) for i in range(20)] + [""]


async def test_nested_prefixes_never_share_keys(url: str) -> None:
    """prefix "app" with session "staging:x" and prefix "app:staging" with session "x" are
    two streams: neither reads, nor deletes, the other's events."""
    base = f"t-{uuid.uuid4().hex[:12]}"
    async with (
        redis_store(url, prefix=base) as outer,
        redis_store(url, prefix=f"{base}:staging") as inner,
    ):
        for store, session_id, text in ((outer, "staging:x", "outer"), (inner, "x", "inner")):
            claim = await store.claim(session_id)
            assert claim is not None, "the other prefix's stream must not block the claim"
            await store.append(session_id, claim, [Entry("message", text)], first_seq=1)
        assert set(outer.keys("staging:x")).isdisjoint(inner.keys("x"))
        outer_page = await outer.read("staging:x", 0, limit=10, wait=False)
        inner_page = await inner.read("x", 0, limit=10, wait=False)
        assert outer_page is not None
        assert inner_page is not None
        assert [e.data for e in outer_page.events] == ["outer"]
        assert [e.data for e in inner_page.events] == ["inner"]
        assert await outer.delete("staging:x")
        assert await outer.info("staging:x") is None
        assert await inner.info("x") is not None


@pytest.mark.parametrize("prefix", ["", "a|b", "{a}", "a}"])
def test_prefixes_that_could_collide_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(url="redis://127.0.0.1:1", prefix=prefix)


async def test_frames_trimmed_or_lost_before_they_are_read_end_the_chunks(url: str) -> None:
    """A reader of SSE chunks (read_frames) whose next events were trimmed gets
    HistoryTrimmedError; one whose log was lost gets HistoryLostError: neither spins."""
    async with redis_store(url, max_len=3) as store, Streamer(store, page_size=2) as streamer:
        claims = {}
        for session_id in ("trimmed", "lost"):
            claim = await store.claim(session_id)
            assert claim is not None
            claims[session_id] = claim
            await store.append(session_id, claim, [Entry("message", "a", True)] * 2, first_seq=1)
            await store.append(session_id, claim, [Entry("message", "b", True)] * 2, first_seq=3)
        trimmed = (await streamer.open("trimmed")).chunks()
        lost = (await streamer.open("lost")).chunks()
        assert b"data: a" in await trimmed.__anext__()  # events 1 and 2 (the first page)
        assert b"data: a" in await lost.__anext__()
        # Events 3 and 4 go: the newest batch alone covers max_len.
        more = [Entry("message", "c", True)] * 4
        await store.append("trimmed", claims["trimmed"], more, first_seq=5)
        info = await store.info("trimmed")
        assert info is not None
        assert info.first_seq == 5
        with pytest.raises(HistoryTrimmedError):
            await trimmed.__anext__()
        await store._client.delete(store.keys("lost").log)
        with pytest.raises(HistoryLostError):
            await lost.__anext__()


async def test_callers_cancelled_mid_call_leave_the_others_their_replies(url: str) -> None:
    """Calls share pipelines: cancelling some callers while their calls are in flight
    gives every other caller its own reply, and the store keeps working."""
    async with redis_store(url) as store:
        for i in range(10):
            claim = await store.claim(f"s{i}")
            assert claim is not None
            await store.append(f"s{i}", claim, [Entry("message", f"data {i}")], first_seq=1)
        replies: dict[int, str] = {}

        async def read(i: int) -> None:
            page = await store.read(f"s{i}", 0, limit=10, wait=False)
            assert page is not None
            replies[i] = page.events[0].data

        doomed: list[anyio.CancelScope] = []

        async def read_doomed(i: int) -> None:
            with anyio.CancelScope() as scope:
                doomed.append(scope)
                await read(i)

        with anyio.fail_after(10):  # a sender broken by a cancelled call would hang them
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(read_doomed if i % 2 else read, i)
                await anyio.lowlevel.checkpoint()  # every call is queued or on its way
                for scope in doomed:
                    scope.cancel()
        assert {i: replies[i] for i in range(0, 10, 2)} == {i: f"data {i}" for i in range(0, 10, 2)}
        assert all(replies.get(i, f"data {i}") == f"data {i}" for i in range(1, 10, 2))
        page = await store.read("s1", 0, limit=10, wait=False)
        assert page is not None
        assert page.events[0].data == "data 1"
