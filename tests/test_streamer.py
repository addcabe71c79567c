"""Unit tests of the Streamer API, run over every store kind on asyncio and trio."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from resumable_sse import (
    EventIdAheadError,
    InvalidEventIdError,
    InvalidSessionIdError,
    MemoryStore,
    SessionNotFoundError,
    Source,
    StaleEventIdError,
    StoreFullError,
    Streamer,
    StreamerClosedError,
    StreamState,
    StreamStore,
    TerminalEvents,
)
from tests.helpers import Script, collect, datas, error_of, names, take
from tests.stores import FakeClock

pytestmark = pytest.mark.anyio

ABC = ["a", "b", "c"]


async def finished(streamer: Streamer, session_id: str) -> list[dict[str, str]]:
    """Every event of a stream, read from the start until its terminal event."""
    return await collect(streamer.resume(session_id))


# -- generator kinds ----------------------------------------------------------------------


async def _agen() -> AsyncIterator[object]:
    for item in ABC:
        yield item


def _gen() -> Iterator[object]:
    yield from ABC


async def _awaitable_factory() -> AsyncIterator[object]:
    return _agen()


SOURCES: dict[str, Callable[[], Source]] = {
    "async generator": _agen,
    "sync generator": _gen,
    "list": lambda: list(ABC),
    "callable returning an async generator": lambda: _agen,
    "callable returning a sync generator": lambda: _gen,
    "callable returning a list": lambda: lambda: list(ABC),
    "callable returning an awaitable": lambda: _awaitable_factory,
}


@pytest.mark.parametrize("kind", SOURCES)
async def test_every_generator_kind_streams_its_items(streamer: Streamer, kind: str) -> None:
    """Async and sync iterables, and factories returning either, all stream the same items."""
    events = await collect(streamer.stream("s1", SOURCES[kind]()))
    assert datas(events) == [*ABC, ""]
    assert names(events) == ["message", "message", "message", "end"]


async def test_sync_generator_runs_in_a_worker_thread(streamer: Streamer) -> None:
    """A sync generator's blocking next() runs off the event loop thread."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def blocking() -> Iterator[str]:
        seen.append(threading.get_ident())
        yield "x"

    events = await collect(streamer.stream("s1", blocking()))
    assert datas(events) == ["x", ""]
    assert seen
    assert loop_thread not in seen


async def test_sync_generator_is_closed_after_it_ends(streamer: Streamer) -> None:
    """A sync generator stopped by a limit runs its finally block."""
    closed = threading.Event()

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "x"
        finally:
            closed.set()

    async with Streamer(streamer.store, max_events=2) as limited:
        events = await collect(limited.stream("s1", endless()))
    assert names(events) == ["message", "message", "error"]
    assert closed.is_set()


# -- item kinds ---------------------------------------------------------------------------


async def test_items_of_every_kind_become_events(streamer: Streamer) -> None:
    """str, UTF-8 bytes, event dicts and JSON values arrive as the documented data."""
    items: list[object] = [
        "text",
        "ünï 🦜".encode(),
        {"data": "call", "event": "tool_call"},
        {"data": {"k": [1, 2]}, "event": "tool_call"},
        {"data": "plain"},
        {"k": "ü"},
        [1, "two"],
        3,
        2.5,
        True,
        None,
    ]
    events = await collect(streamer.stream("s1", items))
    assert [(e["event"], e["data"]) for e in events] == [
        ("message", "text"),
        ("message", "ünï 🦜"),
        ("tool_call", "call"),
        ("tool_call", '{"k":[1,2]}'),
        ("message", "plain"),
        ("message", '{"k":"ü"}'),
        ("message", '[1,"two"]'),
        ("message", "3"),
        ("message", "2.5"),
        ("message", "true"),
        ("message", "null"),
        ("end", ""),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"\xff\xfe", id="invalid UTF-8"),
        pytest.param({"data": "x", "event": "end"}, id="terminal event name"),
        pytest.param({"data": "x", "event": "bad name"}, id="malformed event name"),
        pytest.param({"data": "x", "id": "7"}, id="unknown key"),
        pytest.param({1, 2}, id="not JSON"),
        pytest.param(float("nan"), id="NaN"),
    ],
)
async def test_an_item_that_cannot_be_sent_ends_the_stream_with_invalid_item(
    streamer: Streamer, bad: object
) -> None:
    """A bad item ends the stream with an invalid_item error; earlier events are kept."""
    script = Script(["ok", bad, "never"])
    events = await collect(streamer.stream("s1", script))
    assert names(events) == ["message", "error"]
    assert events[0]["data"] == "ok"
    assert error_of(events[1])["code"] == "invalid_item"
    assert "never" not in script.yielded
    assert script.closed
    assert (await streamer.status("s1")).state is StreamState.ERROR


# -- one producer per session -------------------------------------------------------------


async def test_start_returns_true_then_false(streamer: Streamer) -> None:
    """Only the first start() of a session starts it."""
    assert await streamer.start("s1", ["a"]) is True
    assert await streamer.start("s1", ["b"]) is False
    assert datas(await finished(streamer, "s1")) == ["a", ""]


async def test_unused_async_generator_is_closed_and_never_iterated(streamer: Streamer) -> None:
    """A generator passed to start()/stream() of an existing session never runs its body."""
    first = Script(["a"], ["b"])
    await streamer.start("s1", first)
    await take(streamer.resume("s1"), 1)
    spare = Script(["x"])
    unused_start = spare.generate()
    unused_stream = spare.generate()
    assert await streamer.start("s1", unused_start) is False
    subscription = streamer.stream("s1", unused_stream)
    assert datas(await take(subscription, 1)) == ["a"]
    first.release_all()
    assert datas(await collect(subscription)) == ["b", ""]
    assert spare.runs == 0
    for generator in (unused_start, unused_stream):
        with pytest.raises(StopAsyncIteration):
            await generator.__anext__()  # closed: it can never start now


async def test_unused_sync_generator_is_closed_and_never_iterated(streamer: Streamer) -> None:
    """A sync generator passed for an existing session is closed before its first step."""
    ran: list[str] = []

    def body() -> Iterator[str]:
        ran.append("started")
        yield "x"

    await collect(streamer.stream("s1", ["a"]))
    unused = body()
    assert await streamer.start("s1", unused) is False
    assert ran == []
    with pytest.raises(StopIteration):
        next(unused)


async def test_unused_callable_is_never_called(streamer: Streamer) -> None:
    """A factory passed for an existing session is not called, so no LLM call is made."""
    calls: list[str] = []

    def factory() -> list[str]:
        calls.append("called")
        return ["x"]

    await collect(streamer.stream("s1", ["a"]))
    assert await streamer.start("s1", factory) is False
    assert datas(await collect(streamer.stream("s1", factory))) == ["a", ""]
    assert calls == []


async def test_generator_passed_with_a_resume_position_is_closed(streamer: Streamer) -> None:
    """stream() with a last_id only resumes: its generator is closed, never run."""
    events = await collect(streamer.stream("s1", ["a", "b"]))
    spare = Script(["x"])
    rest = await collect(streamer.stream("s1", spare, last_id=events[0]["id"]))
    assert datas(rest) == ["b", ""]
    assert spare.runs == 0


# -- resume positions ---------------------------------------------------------------------


async def test_resume_of_unknown_session_raises_not_found(streamer: Streamer) -> None:
    """resume() never starts a stream: an unknown session is an error."""
    with pytest.raises(SessionNotFoundError):
        await collect(streamer.resume("nobody"))


async def test_resume_with_a_position_of_an_unknown_session_raises(streamer: Streamer) -> None:
    """stream() with a last_id for a session that does not exist does not start it."""
    with pytest.raises(SessionNotFoundError):
        await collect(streamer.stream("nobody", ["x"], last_id="abc-1"))
    with pytest.raises(SessionNotFoundError):
        await streamer.status("nobody")


@pytest.mark.parametrize("last_id", ["garbage", "1", "abc-", "-3", "ABC-1", "abc-1-2", "abc-x"])
async def test_malformed_event_id_raises(streamer: Streamer, last_id: str) -> None:
    """An id this library did not issue is rejected with InvalidEventIdError."""
    await collect(streamer.stream("s1", ["a"]))
    with pytest.raises(InvalidEventIdError):
        await collect(streamer.resume("s1", last_id))


@pytest.mark.parametrize("last_id", [None, "", "0"])
async def test_none_empty_and_zero_mean_from_the_start(
    streamer: Streamer, last_id: str | None
) -> None:
    """None, "" and "0" all replay the stream from its first event."""
    await collect(streamer.stream("s1", ABC))
    assert datas(await collect(streamer.resume("s1", last_id))) == [*ABC, ""]
    assert datas(await collect(streamer.stream("s1", ["x"], last_id))) == [*ABC, ""]


async def test_resume_is_exclusive_of_last_id(streamer: Streamer) -> None:
    """Resuming after each id yields exactly the events after it."""
    events = await collect(streamer.stream("s1", ABC))
    for index, event in enumerate(events[:-1]):
        assert await collect(streamer.resume("s1", event["id"])) == events[index + 1 :]


async def test_ids_are_strictly_increasing_strings(streamer: Streamer) -> None:
    """Event ids are distinct and resume in the order issued."""
    events = await collect(streamer.stream("s1", ABC))
    ids = [event["id"] for event in events]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i for i in ids)


async def test_id_of_an_earlier_incarnation_is_stale(streamer: Streamer) -> None:
    """After delete and restart, an id from the old stream is detected, not misapplied."""
    old = await collect(streamer.stream("s1", ["a", "b", "c"]))
    assert await streamer.delete("s1") is True
    new = await collect(streamer.stream("s1", ["x", "y", "z"]))
    assert datas(new) == ["x", "y", "z", ""]
    with pytest.raises(StaleEventIdError):
        await collect(streamer.resume("s1", old[0]["id"]))


async def test_id_ahead_of_the_stream_raises(streamer: Streamer) -> None:
    """An id past the last event is rejected instead of waiting for events that may never come."""
    events = await collect(streamer.stream("s1", ["a"]))
    prefix = events[-1]["id"].rsplit("-", 1)[0]
    with pytest.raises(EventIdAheadError):
        await collect(streamer.resume("s1", f"{prefix}-99"))


@pytest.mark.parametrize("session_id", ["", "has space", "x" * 129, "slash/no", "ünï"])
async def test_bad_session_id_raises(streamer: Streamer, session_id: str) -> None:
    """Session ids outside the allowed set are refused before touching the store."""
    with pytest.raises(InvalidSessionIdError):
        await streamer.start(session_id, ["x"])
    with pytest.raises(InvalidSessionIdError):
        await collect(streamer.stream(session_id, ["x"]))


# -- status, cancel, delete ---------------------------------------------------------------


async def test_status_of_a_running_then_done_stream(streamer: Streamer) -> None:
    """status() reports running with the events so far, then done with the terminal counted."""
    script = Script(["a", "b"], ["c"])
    await streamer.start("s1", script)
    seen = await take(streamer.resume("s1"), 2)
    running = await streamer.status("s1")
    assert running.session_id == "s1"
    assert running.state is StreamState.RUNNING
    assert running.events == 2
    assert running.last_event_id == seen[-1]["id"]
    assert not running.cancel_requested
    assert running.created_at <= running.updated_at
    script.release_all()
    events = await finished(streamer, "s1")
    done = await streamer.status("s1")
    assert done.state is StreamState.DONE
    assert done.events == 4
    assert done.last_event_id == events[-1]["id"]


async def test_status_of_error_and_cancelled_streams(streamer: Streamer) -> None:
    """A failed stream reports error; a cancelled one reports cancelled."""
    await collect(streamer.stream("bad", Script(["a"], fail=RuntimeError("boom"))))
    failed = await streamer.status("bad")
    assert (failed.state, failed.events) == (StreamState.ERROR, 2)

    script = Script(["a"], ["b"])
    await streamer.start("stop", script)
    await take(streamer.resume("stop"), 1)
    await streamer.cancel("stop")
    await finished(streamer, "stop")
    cancelled = await streamer.status("stop")
    assert (cancelled.state, cancelled.events) == (StreamState.CANCELLED, 2)


async def test_status_of_unknown_session_raises(streamer: Streamer) -> None:
    """status() of a session that never existed is SessionNotFoundError."""
    with pytest.raises(SessionNotFoundError):
        await streamer.status("nobody")


async def test_cancel_closes_generator_and_stores_cancelled(streamer: Streamer) -> None:
    """cancel() stops the generator mid-stream; clients get the cancelled event and stop."""
    script = Script(["a"], ["never"])
    await streamer.start("s1", script)
    subscription = streamer.resume("s1")
    assert datas(await take(subscription, 1)) == ["a"]
    assert await streamer.cancel("s1") is True
    await streamer.cancel("s1")  # idempotent: no error while the stream winds down
    rest = await collect(subscription)
    assert names(rest) == ["cancelled"]
    assert json.loads(rest[0]["data"]) == {"reason": "cancelled"}
    assert script.closed
    assert "never" not in script.yielded
    assert await streamer.cancel("s1") is False


async def test_cancel_of_a_finished_stream_returns_false(streamer: Streamer) -> None:
    """Cancelling a completed stream changes nothing: it still ends with end."""
    await collect(streamer.stream("s1", ["a"]))
    assert await streamer.cancel("s1") is False
    assert names(await finished(streamer, "s1")) == ["message", "end"]


async def test_cancel_of_unknown_session_raises(streamer: Streamer) -> None:
    """cancel() of a session that does not exist is SessionNotFoundError."""
    with pytest.raises(SessionNotFoundError):
        await streamer.cancel("nobody")


async def test_delete_removes_a_finished_stream(streamer: Streamer) -> None:
    """After delete() the session is unknown and can start afresh."""
    await collect(streamer.stream("s1", ["a"]))
    assert await streamer.delete("s1") is True
    assert await streamer.delete("s1") is False
    with pytest.raises(SessionNotFoundError):
        await streamer.status("s1")
    assert datas(await collect(streamer.stream("s1", ["b"]))) == ["b", ""]


async def test_delete_stops_a_running_stream_and_its_readers(streamer: Streamer) -> None:
    """Deleting a running stream closes its generator; a waiting reader is told it is gone."""
    script = Script(["a"], ["never"])
    await streamer.start("s1", script)
    subscription = streamer.resume("s1")
    await take(subscription, 1)
    assert await streamer.delete("s1") is True
    with pytest.raises(SessionNotFoundError):
        await collect(subscription)
    with pytest.raises(SessionNotFoundError):
        await streamer.status("s1")
    # The old producer winding down must not disturb a new stream under the same id.
    assert datas(await collect(streamer.stream("s1", ["b"]))) == ["b", ""]
    assert "never" not in script.yielded


# -- errors and hooks ---------------------------------------------------------------------


async def test_generator_exception_yields_error_with_a_safe_message(streamer: Streamer) -> None:
    """A raising generator ends the stream with error, and the exception text is not leaked."""
    events = await collect(streamer.stream("s1", Script(["a"], fail=RuntimeError("secret key"))))
    assert names(events) == ["message", "error"]
    body = error_of(events[-1])
    assert body["code"] == "generator_failed"
    assert body["message"]
    assert "secret" not in body["message"]


async def test_error_message_hook_formats_the_error(store: StreamStore) -> None:
    """The error_message hook decides what clients are told about a failure."""

    def describe(exc: BaseException) -> str:
        return f"failed: {type(exc).__name__}"

    async with Streamer(store, error_message=describe) as streamer:
        events = await collect(streamer.stream("s1", Script([], fail=KeyError("k"))))
    assert error_of(events[-1]) == {"code": "generator_failed", "message": "failed: KeyError"}


async def test_custom_terminal_event_names(store: StreamStore) -> None:
    """TerminalEvents renames end, error and cancelled; the old names become ordinary."""
    terminal = TerminalEvents(end="done", error="failed", cancelled="stopped")
    async with Streamer(store, event="token", terminal_events=terminal) as streamer:
        assert streamer.terminal_events == terminal
        ok = await collect(streamer.stream("ok", ["a", {"data": "x", "event": "end"}]))
        assert names(ok) == ["token", "end", "done"]
        bad = await collect(streamer.stream("bad", [{"data": "x", "event": "done"}]))
        assert names(bad) == ["failed"]
        assert json.loads(bad[0]["data"])["code"] == "invalid_item"
        script = Script(["a"], ["b"])
        await streamer.start("stop", script)
        subscription = streamer.resume("stop")
        await take(subscription, 1)
        await streamer.cancel("stop")
        assert names(await collect(subscription)) == ["stopped"]


def test_invalid_terminal_names_are_refused() -> None:
    """Terminal names must be distinct, well-formed, and differ from the content event."""
    with pytest.raises(ValueError, match="differ"):
        TerminalEvents(end="x", error="x")
    with pytest.raises(ValueError, match="event name"):
        TerminalEvents(end="has space")
    with pytest.raises(ValueError, match="reserved"):
        Streamer(event="end")


# -- limits and memory --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "items", "kept"),
    [
        pytest.param({"max_events": 3}, ["1", "2", "3", "4", "5"], ["1", "2", "3"], id="events"),
        pytest.param({"max_bytes": 10}, ["aaaa", "bbbb", "cccc"], ["aaaa", "bbbb"], id="bytes"),
        pytest.param({"max_event_bytes": 5}, ["üü", "üüü", "x"], ["üü"], id="event bytes"),
    ],
)
async def test_limits_end_the_stream_with_limit_exceeded(
    store: StreamStore, limit: dict[str, Any], items: list[str], kept: list[str]
) -> None:
    """Reaching a limit ends the stream with error/limit_exceeded, keeping what was stored."""
    script = Script(items)
    async with Streamer(store, **limit) as streamer:
        events = await collect(streamer.stream("s1", script))
        assert datas(events[:-1]) == kept
        assert error_of(events[-1])["code"] == "limit_exceeded"
        assert script.closed
        assert await collect(streamer.resume("s1")) == events
        assert (await streamer.status("s1")).state is StreamState.ERROR


async def test_memory_store_evicts_the_oldest_finished_stream_when_full() -> None:
    """With max_streams reached, the stream that finished first makes room for a new one."""
    async with Streamer(MemoryStore(max_streams=2)) as streamer:
        await collect(streamer.stream("old", ["a"]))
        await collect(streamer.stream("newer", ["b"]))
        assert datas(await collect(streamer.stream("new", ["c"]))) == ["c", ""]
        with pytest.raises(SessionNotFoundError):
            await streamer.status("old")
        assert datas(await finished(streamer, "newer")) == ["b", ""]


async def test_memory_store_full_of_running_streams_refuses_new_ones() -> None:
    """When every held stream is running, start() raises StoreFullError and runs nothing."""
    one, two = Script(["a"], []), Script(["b"], [])
    async with Streamer(MemoryStore(max_streams=2)) as streamer:
        await streamer.start("one", one)
        await streamer.start("two", two)
        third = Script(["c"])
        with pytest.raises(StoreFullError):
            await streamer.start("three", third)
        with pytest.raises(StoreFullError):
            await collect(streamer.stream("three", third.generate()))
        assert third.runs == 0
        one.release_all()
        await finished(streamer, "one")
        assert await streamer.start("three", third) is True
        two.release_all()


async def test_memory_does_not_grow_over_thousands_of_finished_sessions() -> None:
    """Finished streams are dropped after the retention time, so the store stays bounded."""
    clock = FakeClock()
    store = MemoryStore(retention=60, clock=clock)
    async with Streamer(store) as streamer:
        for batch in range(4):
            for index in range(500):
                await collect(streamer.stream(f"s{batch}-{index}", ["token"]))
            assert len(store) == 500
            clock.now += 61
        assert len(store) == 0
        with pytest.raises(SessionNotFoundError):
            await streamer.status("s3-499")


# -- lifecycle ----------------------------------------------------------------------------


async def test_leaving_async_with_ends_running_streams_with_shutdown(store: StreamStore) -> None:
    """Leaving `async with` stores cancelled {"reason": "shutdown"} and closes generators."""
    script = Script(["a"], ["never"])
    async with Streamer(store) as streamer:
        await streamer.start("s1", script)
        await take(streamer.resume("s1"), 1)
    assert script.closed
    events = await collect(Streamer(store).resume("s1"))  # a reader needs no running streamer
    assert names(events) == ["message", "cancelled"]
    assert json.loads(events[-1]["data"]) == {"reason": "shutdown"}
    with pytest.raises(StreamerClosedError):
        await streamer.start("s2", ["x"])


async def test_waiting_reader_gets_the_shutdown_event(store: StreamStore) -> None:
    """A client following a live stream is ended by shutdown, not left hanging."""
    script = Script(["a"], ["never"])
    received: list[dict[str, str]] = []

    async def follow(subscription: AsyncIterator[dict[str, str]]) -> None:
        received.extend(await collect(subscription))

    async with anyio.create_task_group() as tg, Streamer(store) as streamer:
        await streamer.start("s1", script)
        subscription = streamer.resume("s1")
        received += await take(subscription, 1)
        tg.start_soon(follow, subscription)
    assert names(received) == ["message", "cancelled"]


async def test_aclose_inside_async_with_ends_running_streams(store: StreamStore) -> None:
    """An explicit aclose() ends running streams even when the streamer is used as `async with`."""
    script = Script(["a"], ["never"])
    async with Streamer(store) as streamer:
        await streamer.start("s1", script)
        await take(streamer.resume("s1"), 1)
        await streamer.aclose()
        assert (await streamer.status("s1")).state is StreamState.CANCELLED
        assert script.closed


async def test_streamer_without_async_with_runs_and_aclose_stops_it(store: StreamStore) -> None:
    """Used without `async with`, the streamer hosts its own task; aclose() ends its streams."""
    streamer = Streamer(store)
    try:
        assert datas(await collect(streamer.stream("done", ["a"]))) == ["a", ""]
        script = Script(["a"], ["never"])
        await streamer.start("running", script)
        await take(streamer.resume("running"), 1)
    finally:
        await streamer.aclose()
    await streamer.aclose()  # idempotent
    assert script.closed
    events = await collect(streamer.resume("running"))
    assert names(events) == ["message", "cancelled"]
    assert json.loads(events[-1]["data"]) == {"reason": "shutdown"}


async def test_closed_streamer_refuses_new_work_and_closes_generators(store: StreamStore) -> None:
    """After aclose(), start() and stream() raise StreamerClosedError and run nothing."""
    streamer = Streamer(store)
    await streamer.aclose()
    script = Script(["x"])
    with pytest.raises(StreamerClosedError):
        await streamer.start("s1", script)
    unused = script.generate()
    with pytest.raises(StreamerClosedError):
        await collect(streamer.stream("s1", unused))
    assert script.runs == 0
    with pytest.raises(StopAsyncIteration):
        await unused.__anext__()
    with pytest.raises(RuntimeError):
        async with streamer:
            pass


async def test_failures_leave_no_unretrieved_task_exceptions(
    store: StreamStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising generator under the auto-hosted streamer logs no 'never retrieved' errors."""
    streamer = Streamer(store)
    try:
        for index in range(3):
            events = await collect(streamer.stream(f"s{index}", Script(["a"], fail=ValueError())))
            assert names(events) == ["message", "error"]
    finally:
        await streamer.aclose()
    del streamer
    gc.collect()
    assert [r for r in caplog.records if r.name == "asyncio"] == []
    failures = [r for r in caplog.records if r.name == "resumable_sse"]
    assert failures
    assert all(r.exc_info is not None for r in failures if r.levelno >= logging.ERROR)


# -- regressions of bugs found in review ----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_generator_raising_cancelled_error_fails_only_its_own_stream() -> None:
    """A generator whose upstream task was cancelled elsewhere ends with error; others go on."""

    async def upstream() -> None:
        await asyncio.Event().wait()

    async def llm() -> AsyncIterator[str]:
        call = asyncio.create_task(upstream())
        yield "a"
        call.cancel()  # e.g. the SDK's connection task was cancelled by someone else
        await call

    other = Script(["g"], ["h"])
    outcome: list[object] = []
    try:
        async with Streamer(MemoryStore()) as streamer:
            await streamer.start("other", other)
            outcome.append(await collect(streamer.stream("bad", llm())))
            other.release_all()
            outcome.append(await collect(streamer.resume("other")))
    except BaseException as exc:  # the bug: the whole streamer is cancelled
        outcome.append(exc)
    assert len(outcome) == 2, outcome
    bad, good = outcome
    assert isinstance(bad, list)
    assert names(bad) == ["message", "error"]
    assert isinstance(good, list)
    assert datas(good) == ["g", "h", ""]


def _blocked_llm(blocked: threading.Event, unblock: threading.Event) -> Iterator[str]:
    yield "a"
    blocked.set()
    unblock.wait()  # a sync SDK waiting on the network
    yield "late"


async def test_cancel_ends_a_stream_whose_sync_generator_is_blocked() -> None:
    """cancel() (a Stop button) ends the stream even while a sync LLM call is blocked.

    The fail_after is only a hang guard: without it the bug would deadlock the test.
    """
    blocked, unblock = threading.Event(), threading.Event()
    async with Streamer(MemoryStore()) as streamer:
        try:
            await streamer.start("s1", _blocked_llm(blocked, unblock))
            subscription = streamer.resume("s1")
            await take(subscription, 1)
            await anyio.to_thread.run_sync(blocked.wait)
            assert await streamer.cancel("s1") is True
            with anyio.fail_after(20):  # far above what a busy machine needs
                rest = await collect(subscription)
        finally:
            unblock.set()
    assert names(rest) == ["cancelled"]


async def test_shutdown_is_bounded_when_a_sync_generator_is_blocked() -> None:
    """aclose() returns (after shutdown_timeout) even while a sync LLM call is blocked.

    The fail_after is only a hang guard: without it the bug would deadlock the test.
    """
    blocked, unblock = threading.Event(), threading.Event()
    streamer = Streamer(MemoryStore(), shutdown_timeout=0.05)
    try:
        await streamer.start("s1", _blocked_llm(blocked, unblock))
        await take(streamer.resume("s1"), 1)
        await anyio.to_thread.run_sync(blocked.wait)
        with anyio.fail_after(20):  # far above what a busy machine needs
            await streamer.aclose()
    finally:
        unblock.set()
        await streamer.aclose()
    assert names(await collect(streamer.resume("s1"))) == ["message", "cancelled"]
