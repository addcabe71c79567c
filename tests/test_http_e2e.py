"""End-to-end tests over a real uvicorn on 127.0.0.1 with a real SSE client (httpx-sse).

``httpx.ASGITransport`` buffers whole bodies, so streaming, disconnects and resumes are
only meaningful over a socket. uvicorn runs inside the test's own event loop (asyncio),
which lets the test hold the generator's gates and see when the server has finished a
request, so nothing here sleeps or polls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resumable_sse import (
    Claim,
    Entry,
    Page,
    Source,
    StoreUnavailableError,
    Streamer,
    StreamInfo,
    StreamState,
    StreamStore,
    sse_response,
)
from tests.helpers import Script
from tests.servers import serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Wire = tuple[str, str, str]  # (id, event, data) as the client received them


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


class Tracker:
    """ASGI middleware that records each request the server has finished handling."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.finished: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.finished.append(scope["path"])
                self._changed.set()
                self._changed = anyio.Event()

    async def wait_finished(self, path: str, count: int = 1) -> None:
        """Return once the server has finished ``count`` requests for ``path``."""
        while self.finished.count(path) < count:
            await self._changed.wait()


def chat_app(streamer: Streamer, source: Callable[[str], Source]) -> Tracker:
    """A Starlette app: ``/chat`` starts or resumes, ``/resume`` only resumes, ``/seed`` is
    the seed README's handler, ``/ping`` is an ordinary endpoint."""

    async def chat(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        return await sse_response(streamer, request, session_id, source(session_id))

    async def resume(request: Request) -> Response:
        return await sse_response(streamer, request, request.path_params["session_id"])

    async def seed(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        return EventSourceResponse(
            streamer.stream(
                session_id=session_id,
                generator=source(session_id),
                last_id=request.headers.get("last-event-id"),
            )
        )

    async def ping(request: Request) -> Response:
        return PlainTextResponse("pong")

    return Tracker(
        Starlette(
            routes=[
                Route("/chat/{session_id}", chat),
                Route("/resume/{session_id}", resume),
                Route("/seed/{session_id}", seed),
                Route("/ping", ping),
            ]
        )
    )


@asynccontextmanager
async def running(app: Tracker) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on a free loopback port and yield a client for it."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with (
        serve_in_task(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client,
    ):
        yield client


def wire(sse: ServerSentEvent) -> Wire:
    return (sse.id, sse.event, sse.data)


async def read(
    client: httpx.AsyncClient,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    count: int | None = None,
) -> list[Wire]:
    """Read a stream to its end, or only ``count`` events and then disconnect."""
    received: list[Wire] = []
    async with aconnect_sse(client, "GET", path, headers=headers or {}) as source:
        async for sse in source.aiter_sse():
            received.append(wire(sse))
            if len(received) == count:
                break
    return received


def datas(events: Sequence[Wire]) -> list[str]:
    return [data for _, _, data in events]


# -- resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
async def test_reconnect_after_a_drop_gets_exactly_the_rest(streamer: Streamer, via: str) -> None:
    """A client that drops mid-stream and reconnects with its last id misses and repeats nothing.

    Part of the rest is produced while no client is connected, part after the reconnect.
    """
    script = Script(["t1", "t2", "t3"], ["t4", "t5"], ["t6"])
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        first = await read(client, "/chat/s1", count=3)
        await app.wait_finished("/chat/s1")  # the server saw the drop
        script.release()  # t4, t5 are produced with nobody connected
        last_id = first[-1][0]
        if via == "header":
            path, headers = "/chat/s1", {"Last-Event-ID": last_id}
        else:
            path, headers = f"/chat/s1?last_event_id={last_id}", {}
        async with aconnect_sse(client, "GET", path, headers=headers) as source:
            events = source.aiter_sse()
            rest = [wire(await events.__anext__()) for _ in range(2)]
            script.release()  # t6 is produced while this client follows live
            rest += [wire(sse) async for sse in events]
        everything = await read(client, "/chat/s1")
    assert datas(first) == ["t1", "t2", "t3"]
    assert datas(rest) == ["t4", "t5", "t6", ""]
    assert first + rest == everything
    assert len({event_id for event_id, _, _ in everything}) == len(everything)
    assert script.runs == 1


async def test_header_wins_over_query(streamer: Streamer) -> None:
    """With both a Last-Event-ID header and a last_event_id query, the header is used."""
    app = chat_app(streamer, lambda _: ["a", "b", "c", "d"])
    async with running(app) as client:
        events = await read(client, "/chat/s1")
        header_id, query_id = events[0][0], events[2][0]
        rest = await read(
            client, f"/chat/s1?last_event_id={query_id}", headers={"Last-Event-ID": header_id}
        )
    assert rest == events[1:]


async def test_seed_style_handler_resumes_with_last_event_id(streamer: Streamer) -> None:
    """The seed README's `EventSourceResponse(streamer.stream(...))` handler resumes exactly."""
    script = Script(["t1", "t2"], ["t3"])
    app = chat_app(streamer, lambda _: script.generate())
    async with running(app) as client:
        first = await read(client, "/seed/s1", count=2)
        await app.wait_finished("/seed/s1")
        script.release()
        rest = await read(client, "/seed/s1", headers={"Last-Event-ID": first[-1][0]})
        everything = await read(client, "/seed/s1")
    assert [(e, d) for _, e, d in rest] == [("message", "t3"), ("end", "")]
    assert first + rest == everything
    assert script.runs == 1


async def test_client_disconnect_does_not_stop_the_producer(streamer: Streamer) -> None:
    """The generator runs to its end after the only client left; a later client gets it all."""
    script = Script(["a"], ["b", "c"])
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        assert datas(await read(client, "/chat/s1", count=1)) == ["a"]
        await app.wait_finished("/chat/s1")
        script.release()
        everything = await read(client, "/resume/s1")
    assert [(e, d) for _, e, d in everything] == [
        ("message", "a"),
        ("message", "b"),
        ("message", "c"),
        ("end", ""),
    ]
    assert script.closed
    assert script.runs == 1
    assert (await streamer.status("s1")).state is StreamState.DONE


async def test_resume_at_the_terminal_event_answers_204(streamer: Streamer) -> None:
    """A client that already has the terminal event gets 204, which stops EventSource retries."""
    app = chat_app(streamer, lambda _: ["a"])
    async with running(app) as client:
        events = await read(client, "/chat/s1")
        last_id = events[-1][0]
        by_header = await client.get("/chat/s1", headers={"Last-Event-ID": last_id})
        by_query = await client.get(f"/resume/s1?last_event_id={last_id}")
    assert events[-1][1] == "end"
    for response in (by_header, by_query):
        assert response.status_code == 204
        assert response.content == b""


# -- many clients, sync generators ----------------------------------------------------------


async def test_fifty_concurrent_clients_get_the_identical_full_stream(streamer: Streamer) -> None:
    """50 clients of one session, all attached while it is live, receive the same events."""
    script = Script(["a", "b"], ["c", "d", "e"])
    app = chat_app(streamer, lambda _: script)
    results: list[list[Wire]] = []
    all_in = anyio.Event()

    async def client_task(client: httpx.AsyncClient) -> None:
        async with aconnect_sse(client, "GET", "/chat/shared") as source:
            events = source.aiter_sse()
            received = [wire(await events.__anext__()) for _ in range(2)]
            results.append(received)
            if len(results) == 50:
                all_in.set()
            received += [wire(sse) async for sse in events]

    async with running(app) as client, anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(client_task, client)
        await all_in.wait()
        script.release()
    assert len(results) == 50
    assert all(received == results[0] for received in results)
    assert datas(results[0]) == ["a", "b", "c", "d", "e", ""]
    assert script.runs == 1


async def test_blocking_sync_generator_does_not_block_other_requests(streamer: Streamer) -> None:
    """A sync generator blocked (like an LLM SDK waiting on the network) stalls only its stream."""
    blocked, unblock = threading.Event(), threading.Event()

    def slow_llm() -> Iterator[str]:
        yield "before"
        blocked.set()
        unblock.wait()  # blocks its worker thread, as time.sleep or a socket read would
        yield "after"

    sources: dict[str, Source] = {"slow": slow_llm, "other": ["x", "y"]}
    app = chat_app(streamer, sources.__getitem__)
    try:
        async with running(app) as client, aconnect_sse(client, "GET", "/chat/slow") as source:
            events = source.aiter_sse()
            assert (await events.__anext__()).data == "before"
            await anyio.to_thread.run_sync(blocked.wait)  # the generator is now blocked
            other = await read(client, "/chat/other")
            pong = await client.get("/ping")
            unblock.set()
            rest = [(sse.event, sse.data) async for sse in events]
    finally:
        unblock.set()
    assert [(e, d) for _, e, d in other] == [("message", "x"), ("message", "y"), ("end", "")]
    assert pong.text == "pong"
    assert rest == [("message", "after"), ("end", "")]


# -- what arrives on the wire ---------------------------------------------------------------


async def test_custom_event_types_arrive_with_their_names(streamer: Streamer) -> None:
    """Dict items with an "event" key arrive as SSE events of that type."""
    items: list[object] = [
        {"data": "searching", "event": "tool_call"},
        "answer",
        {"data": {"name": "f", "args": [1]}, "event": "tool_result"},
    ]
    app = chat_app(streamer, lambda _: items)
    async with running(app) as client:
        events = await read(client, "/chat/s1")
    assert [(e, d) for _, e, d in events] == [
        ("tool_call", "searching"),
        ("message", "answer"),
        ("tool_result", '{"name":"f","args":[1]}'),
        ("end", ""),
    ]


async def test_payload_line_breaks_and_unicode_on_the_wire(streamer: Streamer) -> None:
    """What a standard SSE client receives for awkward payloads.

    SSE has no escaping: sse-starlette writes one ``data:`` line per line of the payload,
    splitting on ``\\r\\n``, ``\\r`` and ``\\n``, and clients join data lines with
    ``\\n``. So ``\\n`` (leading, trailing, doubled) and unicode round-trip exactly,
    while a bare ``\\r`` or ``\\r\\n`` arrives as ``\\n``. Leading and trailing spaces
    survive (only the one space after ``data:`` is syntax).
    """
    sent = [
        "line1\nline2",
        "a\n\nb",
        "\nleading",
        "trailing\n",
        "cr\rx",
        "crlf\r\nx",
        "ünïcødé 🦜 中文",
        "  spaced  ",
        "",
    ]
    arrived = [
        "line1\nline2",
        "a\n\nb",
        "\nleading",
        "trailing\n",
        "cr\nx",
        "crlf\nx",
        "ünïcødé 🦜 中文",
        "  spaced  ",
        "",
    ]
    app = chat_app(streamer, lambda _: sent)
    async with running(app) as client:
        events = await read(client, "/chat/s1")
        resumed = await read(client, "/chat/s1", headers={"Last-Event-ID": events[3][0]})
    assert datas(events) == [*arrived, ""]
    assert resumed == events[4:]
    stored = [event["data"] async for event in streamer.resume("s1")]
    assert stored == [*sent, ""]  # the store keeps the payload exactly; only the wire folds CR


async def test_stream_response_headers(streamer: Streamer) -> None:
    """Streams are text/event-stream and tell proxies not to buffer or transform them."""
    app = chat_app(streamer, lambda _: ["a"])
    async with running(app) as client, aconnect_sse(client, "GET", "/chat/s1") as source:
        headers = source.response.headers
        first = await source.aiter_sse().__anext__()
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    assert headers["cache-control"] == "no-store, no-transform"
    assert headers["x-accel-buffering"] == "no"
    assert first.retry == 1000  # the reconnection delay advised with the first event


async def test_generator_failure_sends_a_safe_error_event_to_all_clients(
    streamer: Streamer,
) -> None:
    """A raising generator ends the stream with error/generator_failed for live and later
    clients, and the exception text never reaches them."""
    script = Script(["a"], [], fail=RuntimeError("secret database password"))
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        async with aconnect_sse(client, "GET", "/chat/s1") as source:
            events = source.aiter_sse()
            live = [wire(await events.__anext__())]
            script.release()
            live += [wire(sse) async for sse in events]
        later = await read(client, "/chat/s1")
    assert later == live
    assert [e for _, e, _ in live] == ["message", "error"]
    body = json.loads(live[-1][2])
    assert body["code"] == "generator_failed"
    assert body["message"]
    assert "secret" not in body["message"]
    assert script.runs == 1


# -- error statuses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/chat/s1", {"Last-Event-ID": "garbage"}),
        ("/chat/s1?last_event_id=garbage", {}),
        ("/resume/s1", {"Last-Event-ID": "not-an-id!"}),
    ],
)
async def test_malformed_last_event_id_is_400_json(
    streamer: Streamer, path: str, headers: dict[str, str]
) -> None:
    """A Last-Event-ID the library did not issue gets 400 with a short JSON body."""
    script = Script(["a"])
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        await read(client, "/chat/s1")
        response = await client.get(path, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_event_id"
    assert response.json()["message"]


async def test_bad_session_id_is_400_json(streamer: Streamer) -> None:
    """A session id with forbidden characters gets 400 and never starts a generator."""
    script = Script(["a"])
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        response = await client.get("/chat/bad%20id!")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_session_id"
    assert script.runs == 0


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/resume/nobody", {}), ("/chat/nobody", {"Last-Event-ID": "abc123-3"})],
)
async def test_resume_of_unknown_session_is_404_json(
    streamer: Streamer, path: str, headers: dict[str, str]
) -> None:
    """Resuming a session that does not exist gets 404 and starts nothing."""
    script = Script(["a"])
    app = chat_app(streamer, lambda _: script)
    async with running(app) as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"] == "session_not_found"
    assert script.runs == 0


class UnreachableStore(StreamStore):
    """A store whose backend is down: every call raises StoreUnavailableError."""

    def _down(self) -> StoreUnavailableError:
        return StoreUnavailableError("the store cannot be reached")

    async def claim(self, session_id: str, *, owner: str | None = None) -> Claim | None:
        raise self._down()

    async def append(
        self, session_id: str, claim: Claim, entries: Sequence[Entry], *, first_seq: int
    ) -> None:
        raise self._down()

    async def finish(
        self, session_id: str, claim: Claim, state: StreamState, entry: Entry, *, seq: int
    ) -> None:
        raise self._down()

    async def read(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> Page | None:
        raise self._down()

    async def info(self, session_id: str) -> StreamInfo | None:
        raise self._down()

    async def request_cancel(self, session_id: str) -> bool:
        raise self._down()

    async def wait_cancel(self, session_id: str, claim: Claim) -> None:
        raise self._down()

    async def delete(self, session_id: str) -> bool:
        raise self._down()


@pytest.mark.parametrize("path", ["/chat/s1", "/resume/s1"])
async def test_unavailable_store_is_503_json(path: str) -> None:
    """When the store is down, clients get 503 with Retry-After and a JSON body.

    The memory store cannot fail, so a minimal StreamStore that always raises
    StoreUnavailableError stands in for a backend that is down.
    """
    script = Script(["a"])
    async with Streamer(UnreachableStore()) as streamer:
        app = chat_app(streamer, lambda _: script)
        async with running(app) as client:
            response = await client.get(path)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "store_unavailable"
    assert script.runs == 0
