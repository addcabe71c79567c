"""FastAPI's native SSE (``fastapi.sse``) serving resumable streams, end to end.

A real uvicorn on 127.0.0.1 serves a FastAPI app whose streaming routes use
``response_class=EventSourceResponse`` and the dependencies of :mod:`resumable_sse.fastapi`;
a plain ``sse_response`` route on the same app is the reference the answers must match.
The client reads events as a browser does: a comment-only block (FastAPI's keep-alive
``: ping``) is no event. httpx-sse's decoder would dispatch such a block as an empty
``message`` carrying the last id, so the events are read here by a small reader that
follows the WHATWG rule.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi import routing as fastapi_routing
from fastapi.sse import EventSourceResponse, ServerSentEvent
from httpx_sse import aconnect_sse
from starlette.requests import Request
from starlette.responses import Response

from resumable_sse import Source, Streamer, StreamStore, sse_response
from resumable_sse.fastapi import (
    NoStream,
    ServerSentEvents,
    add_exception_handler,
    open_events,
    resume,
)
from tests.helpers import Script
from tests.servers import serve_in_task
from tests.stores import HARNESSES
from tests.test_http_e2e import Tracker, UnreachableStore

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Wire = tuple[str, str, str]  # (id, event, data) as the client received them


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The in-process store and a real Redis: the HTTP layer is the same for all."""
    return str(request.param)


class App(Tracker):
    """The test app; ``kept`` holds every ``ServerSentEvents`` a route opened, so none is
    freed (and its slot given back) by the garbage collector: only an explicit close counts."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        self.kept: list[ServerSentEvents] = []


def fastapi_app(
    streamer: Streamer, source: Callable[[str], Source], *, handler: bool = True
) -> App:
    """``/chat/{id}`` starts or resumes (principal from ``x-user``), ``/resume/{id}`` only
    resumes, ``/guarded/{id}`` resumes but a later dependency refuses, ``/plain/{id}`` is
    ``sse_response``."""
    app = FastAPI()
    if handler:
        add_exception_handler(app)
    tracker = App(app)

    async def start_or_resume(
        request: Request, session_id: str, x_user: str | None = Header(None)
    ) -> AsyncIterator[ServerSentEvents]:
        opened = await open_events(
            streamer, request, session_id, source(session_id), principal=x_user
        )
        async with opened as events:
            yield events

    resume_only = resume(streamer)

    def kept(events: ServerSentEvents = Depends(resume_only)) -> ServerSentEvents:
        tracker.kept.append(events)
        return events

    def kept_chat(events: ServerSentEvents = Depends(start_or_resume)) -> ServerSentEvents:
        tracker.kept.append(events)
        return events

    def refuse() -> None:
        raise HTTPException(401, "log in first")

    @app.get("/chat/{session_id}", response_class=EventSourceResponse)
    async def chat(events: ServerSentEvents = Depends(kept_chat)) -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield event

    @app.get("/resume/{session_id}", response_class=EventSourceResponse)
    async def resume_route(
        events: ServerSentEvents = Depends(kept),
    ) -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield event

    @app.get("/guarded/{session_id}", response_class=EventSourceResponse)
    async def guarded(
        events: ServerSentEvents = Depends(kept), _: None = Depends(refuse)
    ) -> AsyncIterator[ServerSentEvent]:
        async for event in events:  # pragma: no cover - refuse() always raises
            yield event

    @app.get("/plain/{session_id}")
    async def plain(
        request: Request, session_id: str, x_user: str | None = Header(None)
    ) -> Response:
        return await sse_response(
            streamer, request, session_id, source(session_id), principal=x_user
        )

    return tracker


@asynccontextmanager
async def running(app: App) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on a free loopback port and yield a client for it."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with (
        serve_in_task(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client,
    ):
        yield client


class Reader:
    """Events of one SSE response, as a browser parses them (comments are no events)."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines
        self.comments: list[str] = []
        self.retry: list[int] = []

    async def __aiter__(self) -> AsyncIterator[Wire]:
        fields: dict[str, list[str]] = {}
        last_id = ""  # an event without an id: line keeps the last one, as in a browser
        async for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
            elif fields:  # a blank line dispatches the block, if it had any field
                if "retry" in fields:
                    self.retry.append(int(fields["retry"][-1]))
                last_id = fields.get("id", [last_id])[-1]
                if "data" in fields:
                    event = fields.get("event", ["message"])[-1]
                    yield (last_id, event, "\n".join(fields["data"]))
                fields = {}


@asynccontextmanager
async def connect(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Reader]:
    """An SSE request through httpx-sse; fails unless the stream was accepted (200)."""
    async with aconnect_sse(client, "GET", path, headers=headers or {}) as source:
        response = source.response
        if response.status_code != 200:
            await response.aread()
            pytest.fail(f"{path}: {response.status_code} {response.text}")
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Reader(response.aiter_lines())


async def read(
    client: httpx.AsyncClient,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    count: int | None = None,
) -> list[Wire]:
    """Read a stream to its end, or only ``count`` events and then disconnect."""
    received: list[Wire] = []
    async with connect(client, path, headers) as reader:
        async for event in reader:
            received.append(event)
            if len(received) == count:
                break
    return received


def datas(events: list[Wire]) -> list[str]:
    return [data for _, _, data in events]


# -- streaming and resuming -----------------------------------------------------------------


async def test_a_new_stream_arrives_whole_with_ids_names_and_retry(streamer: Streamer) -> None:
    """The first request starts the stream; every event keeps its id, name and data."""
    script = Script(["hello", {"event": "tool_call", "data": {"name": "search"}}, "wö\r\nld\n"])
    app = fastapi_app(streamer, lambda _: script)
    async with running(app) as client, connect(client, "/chat/s1") as reader:
        events = [event async for event in reader]
        reference = await read(client, "/plain/s1")
    assert [(name, data) for _, name, data in events] == [
        ("message", "hello"),
        ("tool_call", '{"name":"search"}'),
        ("message", "wö\nld\n"),  # SSE has no bare CR: a CRLF arrives as LF
        ("end", ""),
    ]
    assert events == reference
    assert reader.retry == [1000]
    assert script.runs == 1
    assert streamer.consumers == 0


@pytest.mark.parametrize("via", ["header", "query"])
async def test_resume_from_last_event_id_gets_exactly_the_rest(
    streamer: Streamer, via: str
) -> None:
    """A client that drops and comes back with its last id misses and repeats nothing."""
    script = Script(["t1", "t2", "t3"], ["t4", "t5"], ["t6"])
    app = fastapi_app(streamer, lambda _: script)
    async with running(app) as client:
        first = await read(client, "/chat/s1", count=3)
        await app.wait_finished("/chat/s1")  # the server saw the drop
        assert streamer.consumers == 0
        script.release()  # t4, t5 are produced with nobody connected
        last_id = first[-1][0]
        if via == "header":
            path, headers = "/resume/s1", {"Last-Event-ID": last_id}
        else:
            path, headers = f"/resume/s1?last_event_id={last_id}", {}
        async with connect(client, path, headers) as reader:
            events = aiter(reader)
            rest = [await anext(events) for _ in range(2)]
            script.release()  # t6 is produced while this client follows live
            rest += [event async for event in events]
        everything = await read(client, "/resume/s1")
    assert datas(first) == ["t1", "t2", "t3"]
    assert datas(rest) == ["t4", "t5", "t6", ""]
    assert first + rest == everything
    assert script.runs == 1


async def test_a_client_that_has_everything_gets_204(streamer: Streamer) -> None:
    """Resuming after the terminal event answers 204 (EventSource then stops retrying)."""
    app = fastapi_app(streamer, lambda _: ["a"])
    async with running(app) as client:
        events = await read(client, "/chat/s1")
        last_id = events[-1][0]
        answers = [
            await client.get(path, headers={"Last-Event-ID": last_id})
            for path in ("/chat/s1", "/resume/s1", "/plain/s1")
        ]
    assert events[-1][1] == "end"
    assert [(r.status_code, r.content) for r in answers] == [(204, b"")] * 3
    assert streamer.consumers == 0


async def test_keep_alive_comments_flow_while_the_generator_waits(
    streamer: Streamer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's keep-alive comment goes out while the LLM is silent; no event is lost."""
    monkeypatch.setattr(fastapi_routing, "_PING_INTERVAL", 0.01)
    script = Script(["a"], ["b"])
    app = fastapi_app(streamer, lambda _: script)
    async with running(app) as client, connect(client, "/chat/s1") as reader:
        events = aiter(reader)
        received = [await anext(events)]
        async for line in reader.lines:  # wait for the server's keep-alive, then go on
            if line.startswith(":"):
                break
        script.release()
        received += [event async for event in events]
    assert datas(received) == ["a", "b", ""]


# -- answers before the stream starts -------------------------------------------------------


async def refusal(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, object], str | None]:
    response = await client.get(path, headers=headers)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json(), response.headers.get("retry-after")


@pytest.mark.parametrize(
    ("session_id", "headers", "status", "code"),
    [
        ("s1", {"Last-Event-ID": "garbage"}, 400, "invalid_event_id"),
        ("s1", {"Last-Event-ID": "abc123-1"}, 400, "stale_event_id"),
        ("s1", {"Last-Event-ID": "{incarnation}-99"}, 400, "event_id_ahead"),
        ("bad%20id!", {}, 400, "invalid_session_id"),
        ("s1", {"x-user": "mallory"}, 403, "access_denied"),
        ("nobody", {"Last-Event-ID": "abc123-3"}, 404, "session_not_found"),
        ("s1", {"x-user": "alice"}, 429, "too_many_consumers"),
    ],
)
async def test_refusals_match_sse_response(
    store: StreamStore,
    session_id: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Each refusal has sse_response's status, JSON body and Retry-After; nothing leaks."""
    script = Script(["a"], ["b"])
    async with Streamer(store, max_consumers_per_session=1) as streamer:
        app = fastapi_app(streamer, lambda _: script)
        await streamer.start("s1", script, principal="alice")
        held = await streamer.open("s1", principal="alice")  # the one reader allowed
        incarnation = (await anext(held))["id"].rsplit("-", 1)[0]
        headers = {k: v.format(incarnation=incarnation) for k, v in headers.items()}
        if status != 429:
            await held.aclose()
        # /resume passes no principal (trusted server-side code), so it is never refused 403.
        routes = ("/chat", "/plain") if status == 403 else ("/chat", "/resume", "/plain")
        async with running(app) as client:
            answers = [await refusal(client, f"{route}/{session_id}", headers) for route in routes]
        await held.aclose()
        assert streamer.consumers == 0
        await streamer.cancel("s1")
    assert all(answer == answers[-1] for answer in answers)  # the last is sse_response's
    assert answers[0][0] == status
    assert answers[0][1]["error"] == code
    assert answers[0][2] == ("1" if status == 429 else None)
    assert script.runs == 1


@pytest.mark.parametrize("route", ["/chat", "/resume"])
async def test_an_unreachable_store_is_503_as_with_sse_response(route: str) -> None:
    """A store outage before the stream starts is 503 with Retry-After, as sse_response."""
    script = Script(["a"])
    async with Streamer(UnreachableStore()) as streamer:
        app = fastapi_app(streamer, lambda _: script)
        async with running(app) as client:
            ours = await refusal(client, f"{route}/s1", {})
            reference = await refusal(client, "/plain/s1", {})
    assert ours == reference
    assert ours[0] == 503
    assert ours[1]["error"] == "store_unavailable"
    assert ours[2] == "1"
    assert script.runs == 0


async def test_trimmed_history_is_410_as_with_sse_response() -> None:
    """A position older than what a Redis store with max_len keeps is 410 (no silent gap)."""
    script = Script(*[[str(n)] for n in range(8)])
    async with (
        HARNESSES["redis"]().make(max_len=2) as store,
        Streamer(store) as streamer,
    ):
        await streamer.start("s1", script)
        async with await streamer.open("s1") as reader:
            for _ in range(7):  # each event is stored before the next is made: 8 batches
                last_id = (await anext(reader))["id"]
                script.release()
        app = fastapi_app(streamer, lambda _: [])
        headers = {"Last-Event-ID": last_id.rsplit("-", 1)[0] + "-1"}
        async with running(app) as client:
            ours = await refusal(client, "/resume/s1", headers)
            reference = await refusal(client, "/plain/s1", headers)
        assert streamer.consumers == 0
    assert ours == reference
    assert ours[0] == 410
    assert ours[1]["error"] == "history_trimmed"


async def test_without_the_handler_the_status_and_headers_still_hold(streamer: Streamer) -> None:
    """Without add_exception_handler FastAPI still answers NoStream's status and headers."""
    async with Streamer(UnreachableStore()) as down:
        apps = [fastapi_app(s, lambda _: ["a"], handler=False) for s in (streamer, down)]
        async with running(apps[0]) as client:
            await read(client, "/chat/s1")
            missing = await client.get("/resume/nobody")
            last_id = (await streamer.status("s1")).last_event_id or ""
            done = await client.get("/resume/s1", headers={"Last-Event-ID": last_id})
        async with running(apps[1]) as client:
            unavailable = await client.get("/resume/s1")
    assert missing.status_code == 404
    assert missing.json()["detail"]["error"] == "session_not_found"
    assert (done.status_code, done.content) == (204, b"")
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "1"
    assert unavailable.json()["detail"]["error"] == "store_unavailable"


# -- the subscription is closed on every path -----------------------------------------------


async def test_a_later_dependency_that_refuses_closes_the_subscription(
    streamer: Streamer,
) -> None:
    """A dependency that fails after ours opened: its answer goes out, our slot comes back."""
    script = Script(["a"], ["b"])
    app = fastapi_app(streamer, lambda _: script)
    await streamer.start("s1", script)
    async with running(app) as client:
        response = await client.get("/guarded/s1")
    assert response.status_code == 401
    assert response.json() == {"detail": "log in first"}
    assert len(app.kept) == 1
    assert streamer.consumers == 0
    script.release()


async def test_a_session_deleted_while_read_ends_with_an_error_event(streamer: Streamer) -> None:
    """A library error while streaming becomes a final error event, and the slot comes back."""
    script = Script(["a"], ["b"])
    app = fastapi_app(streamer, lambda _: script)
    async with running(app) as client, connect(client, "/chat/s1") as reader:
        events = aiter(reader)
        first = await anext(events)
        assert await streamer.delete("s1")
        rest = [event async for event in events]
        await app.wait_finished("/chat/s1")
    assert first[2] == "a"
    assert [name for _, name, _ in rest] == ["error"]
    assert json.loads(rest[0][2])["code"] == "session_not_found"
    assert streamer.consumers == 0


def test_no_stream_is_an_http_exception() -> None:
    """NoStream carries the exact response and FastAPI's status and Retry-After fallback."""
    response = Response(status_code=503, headers={"Retry-After": "1"})
    exc = NoStream(response, {"error": "store_unavailable"})
    assert isinstance(exc, HTTPException)
    assert exc.response is response
    assert (exc.status_code, exc.headers) == (503, {"Retry-After": "1"})
