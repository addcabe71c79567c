"""``sse_response`` sends SSE bytes it builds itself; they must be the dicts' bytes exactly.

For arbitrary generator items, each stream is read live (the generator still running,
so chunks hold one or several events), replayed from the start once finished, and
resumed from every position in between. Every body is compared byte for byte with what
sse-starlette makes of the same subscription's dicts (the seed form,
``EventSourceResponse(streamer.stream(...))`` with ``retry`` on the first event), and
parsed back by two independent parsers (httpx-sse and the npm ``eventsource-parser``),
which must agree with the model of what the generator produced. It runs on the memory
store (frames shared between readers) and on a real Redis (frames from ``read``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import httpx
import pytest
from httpx_sse import aconnect_sse
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import Streamer, last_event_id, sse_response
from resumable_sse._http import EventStreamResponse
from tests.servers import serve_in_task
from tests.stores import HARNESSES
from tests.test_properties import (  # noqa: F401 - fixtures
    MAX_EVENT_BYTES,
    PROPERTIES,
    NodeParser,
    check_received,
    check_wire,
    event_dicts,
    eventsource_parser_dir,
    json_values,
    model,
    node_parser,
    texts,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

#: Items with line breaks of every kind, JSON and custom events (and some that end the
#: stream with an error); no huge ones, which test_properties covers, so that each example
#: stays cheap for the byte-by-byte parse.
items_on_the_wire = st.one_of(texts, texts.map(str.encode), json_values, event_dicts)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


@dataclass(repr=False)  # hypothesis prints the fixture: keep the items out of it
class Wire:
    streamer: Streamer
    http: httpx.AsyncClient
    items: dict[str, list[object]] = field(default_factory=dict)
    gates: dict[str, anyio.Event] = field(default_factory=dict)
    count: int = 0

    def new_key(self, items: list[object]) -> str:
        self.count += 1
        key = f"w{self.count}"
        self.items[key] = items
        self.gates[key] = anyio.Event()
        return key


def app(wire: Wire) -> Starlette:
    async def produce(key: str) -> AsyncIterator[object]:
        items = wire.items[key]
        half = len(items) // 2
        for item in items[:half]:
            yield item
        await wire.gates[key].wait()  # the rest once the test's readers are attached
        for i, item in enumerate(items[half:]):
            yield item
            if i % 2:
                await anyio.lowlevel.checkpoint()  # sometimes a lone event, sometimes several

    async def ours(request: Request) -> Response:
        key = request.path_params["key"]
        return await sse_response(wire.streamer, request, key, lambda: produce(key), ping=0)

    async def dicts(request: Request) -> Response:
        """The reference: the subscription's dicts, encoded by sse-starlette."""
        key = request.path_params["key"]
        subscription = await wire.streamer.open(key, None, last_event_id(request))
        if subscription.finished:
            return Response(status_code=204)

        async def events() -> AsyncIterator[dict[str, object]]:
            retry: int | None = 1000
            async for event in subscription:
                yield {**event, "retry": retry} if retry is not None else {**event}
                retry = None

        return EventSourceResponse(events(), ping=0)

    return Starlette(routes=[Route("/ours/{key}", ours), Route("/dicts/{key}", dicts)])


@pytest.fixture(scope="module", params=["memory", "redis"])
async def wire(request: pytest.FixtureRequest) -> AsyncIterator[Wire]:
    async with HARNESSES[request.param]().make() as store:
        # Small pages: a chunk then spans several reads of the store.
        streamer = Streamer(store, max_event_bytes=MAX_EVENT_BYTES, page_size=3)
        async with streamer, httpx.AsyncClient(timeout=30) as http:
            wire = Wire(streamer, http)
            async with serve_in_task(app(wire)) as url:
                http.base_url = httpx.URL(url)
                yield wire


@asynccontextmanager
async def opened(wire: Wire, path: str, last_id: str | None) -> AsyncIterator[httpx.Response]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with wire.http.stream("GET", path, headers=headers) as response:
        yield response


async def body(response: httpx.Response) -> list[bytes]:
    return [chunk async for chunk in response.aiter_raw()]


async def parse_both(
    wire: Wire, node: NodeParser, chunks: list[bytes], path: str, last_id: str | None
) -> list[tuple[str, str, str]]:
    """The body parsed by eventsource-parser (in its chunks and byte by byte) and by
    httpx-sse (a second read of the same, finished, position): all three must agree."""
    chunked, single = await node.parse(chunks)
    assert chunked == single
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with aconnect_sse(wire.http, "GET", path, headers=headers) as source:
        parsed = [(e.id, e.event, e.data) async for e in source.aiter_sse()]
    assert parsed == chunked
    return parsed


@settings(PROPERTIES, max_examples=20)
@given(st.lists(items_on_the_wire, min_size=1, max_size=8), st.integers(0, 8))
async def test_live_replay_and_resume_send_the_dicts_bytes_exactly(
    wire: Wire,
    node_parser: NodeParser,  # noqa: F811 - the fixture imported above
    items: list[object],
    middle: int,
) -> None:
    """Live, replayed, resumed mid-stream and at the end, the body equals the dicts'
    bytes and both parsers read back exactly what the generator produced."""
    key = wire.new_key(items)
    async with opened(wire, f"/ours/{key}", None) as live:  # starts the stream
        assert live.status_code == 200
        async with opened(wire, f"/dicts/{key}", None) as reference:
            wire.gates[key].set()
            live_chunks, reference_bytes = await body(live), b"".join(await body(reference))
    live_bytes = b"".join(live_chunks)
    assert live_bytes == reference_bytes
    check_wire(live_bytes)
    received = await parse_both(wire, node_parser, live_chunks, f"/ours/{key}", None)
    check_received(received, model(items))
    ids = [event_id for event_id, _, _ in received]
    for position in (None, ids[middle % len(ids)], ids[-1]):
        async with opened(wire, f"/ours/{key}", position) as ours:
            chunks = await body(ours)
            status = ours.status_code
        async with opened(wire, f"/dicts/{key}", position) as reference:
            assert (status, b"".join(chunks)) == (reference.status_code, await reference.aread())
        if status == 204:  # the last event: nothing left to send
            assert position == received[-1][0]
            continue
        start = 0 if position is None else ids.index(position) + 1
        assert (
            await parse_both(wire, node_parser, chunks, f"/ours/{key}", position)
            == (received[start:])
        )


async def test_a_send_is_awaited_as_it_is_unless_a_send_timeout_is_set() -> None:
    """The stream response skips sse-starlette's per-send cancel scope only when there
    is no send timeout: with one, a send that never completes still times out."""
    message = {"type": "http.response.body", "body": b"data: x\r\n\r\n", "more_body": True}
    sent: list[object] = []

    async def record(sent_message: object) -> None:
        sent.append(sent_message)

    await EventStreamResponse(iter(()))._send_with_timeout(record, message)
    assert sent == [message]

    async def stuck(sent_message: object) -> None:
        await anyio.Event().wait()

    with pytest.raises(SendTimeoutError):
        await EventStreamResponse(iter(()), send_timeout=0.01)._send_with_timeout(stuck, message)


@pytest.fixture(scope="module", params=["memory", "redis"])
async def big_wire(request: pytest.FixtureRequest) -> AsyncIterator[Wire]:
    """As ``wire``, with the default limits and pages: events up to a megabyte."""
    async with (
        HARNESSES[request.param]().make() as store,
        Streamer(store) as streamer,
        httpx.AsyncClient(timeout=30) as http,
    ):
        wire = Wire(streamer, http)
        async with serve_in_task(app(wire)) as url:
            http.base_url = httpx.URL(url)
            yield wire


async def test_large_events_go_out_exactly_live_replayed_and_resumed(big_wire: Wire) -> None:
    """Events of hundreds of kilobytes (more than a chunk, more than a Redis read holds
    together), among tokens: the body is the dicts' bytes, live, from the start and from
    the middle."""
    big = [chr(97 + i) * 300_000 for i in range(6)]
    items: list[object] = [
        "token",
        *big[:3],
        {"event": "tool", "data": {"rows": ["r" * 1000] * 400}},
        "line\none\r\ntwo",
        *big[3:],
        "x" * 1_000_000,
        "last",
    ]
    key = big_wire.new_key(items)
    async with (
        opened(big_wire, f"/ours/{key}", None) as live,  # starts the stream
        opened(big_wire, f"/dicts/{key}", None) as reference,
    ):
        big_wire.gates[key].set()
        live_chunks, reference_bytes = await body(live), b"".join(await body(reference))
    assert b"".join(live_chunks) == reference_bytes
    first_id = reference_bytes.split(b"\r\n", 1)[0].decode().removeprefix("id: ")
    for position in (None, first_id.rsplit("-", 1)[0] + "-5"):
        async with opened(big_wire, f"/ours/{key}", position) as ours:
            chunks = await body(ours)
        async with opened(big_wire, f"/dicts/{key}", position) as reference:
            assert b"".join(chunks) == await reference.aread()
