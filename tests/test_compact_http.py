"""Compacted replay over real HTTP: ``sse_response`` on uvicorn, read by httpx-sse and by
the Python client, on the memory store and on a real Redis.

A client that asks (``Compact-Replay: 1`` or ``?compact=1``) gets the replay with each
run of text merged; the live tail follows event by event; ids stay exact resume points.
A client that does not ask gets the very same bytes as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.sse import EventSourceResponse
from httpx_sse import aconnect_sse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import Streamer, sse_response
from resumable_sse.client import StreamEvent, stream_events
from resumable_sse.fastapi import ServerSentEvents, add_exception_handler, resume
from tests.proxy import drop_proxy
from tests.servers import serve_in_task
from tests.stores import HARNESSES

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TOKENS = [f"tok{i} " for i in range(40)] + ["line\r", "\nbreak", b"bytes!".decode()]
#: A stream: text, a JSON item, a custom event, more text (bytes too), the end.
ITEMS: list[object] = [*TOKENS[:20], {"n": 1}, {"event": "tool", "data": "t"}, *TOKENS[20:], b"!"]
TEXT = "".join(TOKENS).replace("\r", "\n") + "!"  # as a client receives it


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


@dataclass
class Site:
    streamer: Streamer
    url: str
    gates: dict[str, anyio.Event] = field(default_factory=dict)


def app(site: Site) -> Starlette:
    async def gated(key: str) -> AsyncIterator[object]:
        for item in ITEMS[:30]:
            yield item
        await site.gates[key].wait()
        for item in ITEMS[30:]:
            yield item

    async def items(request: Request) -> Response:
        key = request.path_params["key"]
        if key.startswith("gated"):
            site.gates.setdefault(key, anyio.Event())
            return await sse_response(site.streamer, request, key, lambda: gated(key), ping=0)
        return await sse_response(site.streamer, request, key, lambda: list(ITEMS), ping=0)

    async def never(request: Request) -> Response:
        key = request.path_params["key"]
        return await sse_response(site.streamer, request, key, ping=0, compact=False)

    return Starlette(routes=[Route("/s/{key}", items), Route("/never/{key}", never)])


@pytest.fixture(scope="module", params=["memory", "redis"])
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    async with HARNESSES[request.param]().make() as store:
        streamer = Streamer(store, page_size=7)  # small pages: a run spans several reads
        async with streamer:
            site = Site(streamer, "")
            async with serve_in_task(app(site)) as url:
                site.url = url
                yield site


async def events(
    http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    async with aconnect_sse(http, "GET", path, headers=headers or {}) as source:
        return [(e.id, e.event, e.data) async for e in source.aiter_sse()]


async def raw(http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> bytes:
    response = await http.get(path, headers=headers or {})
    return response.content


def lf(data: str) -> str:
    """Data as an SSE client receives it: CRLF and CR arrive as LF."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


def text_of(received: list[tuple[str, str, str]]) -> str:
    """The text of the message events, the JSON item left out."""
    return "".join(data for _, name, data in received if name == "message" and data != '{"n":1}')


async def test_asking_merges_the_replay_and_not_asking_changes_nothing(site: Site) -> None:
    """Header or query: text runs merged, JSON and custom events in place; else every event."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        full = await events(http, "/s/done")  # starts it and reads it to the end
        assert len(full) == len(ITEMS) + 1
        merged = await events(http, "/s/done", {"Compact-Replay": "1"})
        assert merged == await events(http, "/s/done?compact=1")
        assert [(event, data) for _, event, data in merged] == [
            ("message", "".join(TOKENS[:20])),
            ("message", '{"n":1}'),
            ("tool", "t"),
            ("message", TEXT[len("".join(TOKENS[:20])) :]),
            ("end", ""),
        ]
        assert [i for i, _, _ in merged] == [full[k][0] for k in (19, 20, 21, len(ITEMS) - 1, -1)]
        assert text_of(merged) == text_of(full) == TEXT
        # Not asking, or asking a route that never compacts: today's bytes exactly.
        plain = await raw(http, "/s/done")
        assert plain == await raw(http, "/never/done", {"Compact-Replay": "1"})
        assert plain == await raw(http, "/s/done", {"Compact-Replay": "0"})
        compacted = await raw(http, "/s/done", {"Compact-Replay": "1"})
        assert len(compacted) < len(plain) / 4
        # Every id sent resumes exactly, compacted or not.
        for event_id, _, _ in merged[:-1]:
            seq = int(event_id.rsplit("-", 1)[1])
            rest = await events(http, "/s/done", {"Last-Event-ID": event_id})
            assert rest == full[seq:]


async def test_the_live_tail_follows_event_by_event(site: Site) -> None:
    """A client joining a running stream gets the text so far at once, then each token."""
    async with (
        httpx.AsyncClient(base_url=site.url, timeout=30) as http,
        aconnect_sse(http, "GET", "/s/gated1") as first,
    ):
        seen = first.aiter_sse()
        while (await seen.__anext__()).data != ITEMS[29]:  # 30 items are stored
            pass
        async with aconnect_sse(
            http, "GET", "/s/gated1", headers={"Compact-Replay": "1"}
        ) as second:
            received = second.aiter_sse()
            replay = [await received.__anext__() for _ in range(4)]
            assert [e.data for e in replay][1:3] == ['{"n":1}', "t"]
            assert replay[3].data == "".join(TOKENS[20:28])
            site.gates["gated1"].set()
            tail = [(e.event, e.data) async for e in received]
        await seen.aclose()
    assert tail == [("message", lf(token)) for token in TOKENS[28:]] + [
        ("message", "!"),
        ("end", ""),
    ]


async def test_python_client_asks_when_starting_with_nothing(site: Site) -> None:
    """stream_events: merged replay from nothing; exact text; without it, every token."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        await events(http, "/s/client")
        got = [e async for e in stream_events(http, "/s/client")]
        assert len(got) == 5
        assert got[-1].terminal
        assert "".join(e.data for e in got if e.event == "message") == '{"n":1}'.join(
            ["".join(TOKENS[:20]), TEXT[len("".join(TOKENS[:20])) :]]
        )
        plain = [e async for e in stream_events(http, "/s/client", compact=False)]
        assert len(plain) == len(ITEMS) + 1
        # Resuming from a saved id asks for the rest only, event by event.
        after = [e async for e in stream_events(http, "/s/client", last_event_id=plain[30].id)]
        assert after == plain[31:]


async def test_python_client_resumes_exactly_after_a_drop_in_the_tail(site: Site) -> None:
    """Compacted replay, then the connection drops in the live tail: the rest is exact."""
    async with (
        drop_proxy(site.url) as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=30) as http,
    ):
        async with aconnect_sse(http, "GET", "/s/gated2") as starter:
            async for sse in starter.aiter_sse():
                if sse.data == ITEMS[29]:
                    break
        got: list[StreamEvent] = []
        async for event in stream_events(http, "/s/gated2", max_retry_delay=0.05):
            got.append(event)
            if len(got) == 4:  # the replay: text, JSON, tool, text
                assert await proxy.drop() >= 1
                site.gates["gated2"].set()
        text = "".join(e.data for e in got if e.event == "message" and e.data != '{"n":1}')
        assert text == TEXT
        assert got[-1].event == "end"
        ids = [int(str(e.id).rsplit("-", 1)[1]) for e in got]
        assert ids == sorted(set(ids))
        assert ids[3] == 30


async def test_fastapi_dependency_follows_the_request(site: Site) -> None:
    """``resume(streamer)`` on FastAPI's own SSE compacts when asked, else sends each event."""
    api = FastAPI()
    add_exception_handler(api)

    @api.get("/f/{session_id}", response_class=EventSourceResponse)
    async def stream(
        events: ServerSentEvents = Depends(resume(site.streamer)),  # noqa: B008 - FastAPI's form
    ) -> AsyncIterator[object]:
        async for event in events:
            yield event

    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        full = await events(http, "/s/fastapi")
    async with serve_in_task(api) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        plain = await events(http, "/f/fastapi")
        merged = await events(http, "/f/fastapi?compact=1")
    assert plain == full
    assert [data for _, _, data in merged][1:3] == ['{"n":1}', "t"]
    assert len(merged) == 5
    assert text_of(merged) == TEXT
