"""Regression tests for every way the seed package broke (issue 2), through the Streamer API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest
from fastapi import FastAPI, Request
from sse_starlette.sse import EventSourceResponse

from resumable_sse import Streamer
from resumable_sse.factory import get_streamer
from tests.helpers import Event, Script, collect, datas, error_of, names, take
from tests.servers import http_client, serve_in_task
from tests.sse import aconnect_sse

pytestmark = pytest.mark.anyio


async def test_resuming_from_id_n_does_not_repeat_event_n(streamer: Streamer) -> None:
    """The seed replayed event N when resumed from N; Last-Event-ID is exclusive."""
    script = Script(["t1", "t2", "t3"], ["t4"])
    first = streamer.stream("s1", script)
    received = await take(first, 3)
    resumed = streamer.stream("s1", script, last_id=received[1]["id"])
    assert datas(await take(resumed, 1)) == ["t3"]
    script.release_all()
    assert datas(await collect(resumed)) == ["t4", ""]
    assert datas(await collect(first)) == ["t4", ""]


async def test_three_concurrent_clients_get_the_full_identical_stream(streamer: Streamer) -> None:
    """The seed gave three concurrent clients 0 events, all, and a truncated stream."""
    script = Script(["a", "b"], ["c", "d"])
    results: list[list[Event]] = []
    all_in = anyio.Event()

    async def client() -> None:
        subscription = streamer.stream("s1", script.generate())
        events = await take(subscription, 2)
        results.append(events)
        if len(results) == 3:
            all_in.set()
        events += await collect(subscription)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(client)
        await all_in.wait()  # every client is attached while the stream is live
        script.release_all()
    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    assert datas(results[0]) == ["a", "b", "c", "d", ""]
    assert script.runs == 1


async def test_late_client_does_not_rerun_the_generator(streamer: Streamer) -> None:
    """The seed re-ran the LLM for a client arriving after completion."""
    script = Script(["Hello,", "world"])
    first = await collect(streamer.stream("s1", script.generate()))
    late = await collect(streamer.stream("s1", script.generate()))
    assert late == first
    assert names(late) == ["message", "message", "end"]
    assert script.runs == 1


async def test_exception_ends_with_error_not_end(streamer: Streamer) -> None:
    """The seed made a crashed generator look like a normal end."""
    events = await collect(streamer.stream("s1", Script(["a"], fail=RuntimeError("boom"))))
    assert names(events) == ["message", "error"]
    assert "end" not in names(events)
    assert error_of(events[-1])["code"] == "generator_failed"


async def test_a_token_equal_to_the_seed_end_marker_is_just_data(streamer: Streamer) -> None:
    """The seed ended the stream on a real token "[END]"; it is ordinary data now."""
    events = await collect(streamer.stream("s1", ["before", "[END]", "after"]))
    assert datas(events) == ["before", "[END]", "after", ""]
    assert names(events) == ["message", "message", "message", "end"]


async def test_clients_do_not_hang_after_a_producer_crash(streamer: Streamer) -> None:
    """The seed left clients waiting forever once the generator crashed."""
    script = Script(["a"], [], fail=RuntimeError("boom"))
    waiting: list[list[Event]] = []

    async def follow() -> None:
        waiting.append(await collect(streamer.resume("s1", received[0]["id"])))

    live = streamer.stream("s1", script)
    received = await take(live, 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)  # a second client parked on the live tail
        script.release_all()  # now the generator raises
        received += await collect(live)
    assert names(received) == ["message", "error"]
    assert names(waiting[0]) == ["error"]
    assert names(await collect(streamer.resume("s1"))) == ["message", "error"]


async def test_first_event_is_delivered_without_a_fixed_delay(streamer: Streamer) -> None:
    """The seed waited 100 ms before every stream; the first event arrives as soon as it exists.

    The generator cannot finish until the client has the first event, so a library that
    held the first event back (until a delay, a batch, or the end) would deadlock here
    and hit the test timeout.
    """
    script = Script(["first"], ["second"])
    subscription = streamer.stream("s1", script)
    assert datas(await take(subscription, 1)) == ["first"]
    assert script.yielded == ["first"]
    script.release_all()
    assert datas(await collect(subscription)) == ["second", ""]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_seed_readme_example_over_real_http() -> None:
    """The seed README's FastAPI example works as written, over a real uvicorn."""
    app = FastAPI()
    streamer = get_streamer(backend="memory")

    async def fake_generator() -> AsyncIterator[str]:
        for word in ["Hello,", "I'm an AI.", "Nice to meet you."]:
            yield word
            await asyncio.sleep(0)  # the README sleeps 1 s here: a slow LLM; 0 keeps CI fast

    @app.get("/stream")
    async def stream(request: Request, session_id: str) -> EventSourceResponse:
        return EventSourceResponse(
            streamer.stream(session_id=session_id, generator=fake_generator())
        )

    try:
        async with serve_in_task(app) as url, http_client(url) as client:
            for _ in range(2):  # the second request replays; it does not re-generate
                async with aconnect_sse(client, "GET", "/stream?session_id=abc") as source:
                    events = [(sse.event, sse.data) async for sse in source.aiter_sse()]
                assert events == [
                    ("message", "Hello,"),
                    ("message", "I'm an AI."),
                    ("message", "Nice to meet you."),
                    ("end", ""),
                ]
    finally:
        await streamer.aclose()
