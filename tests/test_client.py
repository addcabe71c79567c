"""The Python client, ``resumable_sse.client``, against real servers over loopback.

The demo app runs in this event loop (its model counters are checked); the scripted
server (``tests/scripted.py``) runs in a child process, so those tests also run on trio.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from resumable_sse._demo import SimulatedLLM, create_app, simulated_answer, tokenize
from resumable_sse.client import (
    ReconnectFailedError,
    Reconnecting,
    ResumableEventSource,
    StreamEvent,
    StreamRequestError,
    stream_events,
)
from tests.llm_gate import gate
from tests.proxy import DropProxy, drop_proxy
from tests.scripted import EMPTY_BODIES, FLAKY_TOKENS, TRICKY_EVENTS
from tests.servers import refusing_port, serve_in_process, serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PROMPT = "Three drops, one answer: ünïcode “quotes” 🙂"
ANSWER = simulated_answer(PROMPT)


@asynccontextmanager
async def demo_behind_proxy(delay: float) -> AsyncIterator[tuple[DropProxy, SimulatedLLM]]:
    app = create_app(delay=delay)
    async with serve_in_task(app) as url, drop_proxy(url) as proxy:
        yield proxy, app.state.llm


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.data for event in events if event.event == "message")


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    """The scripted server's url."""
    with serve_in_process("tests.scripted:app") as server:
        yield server.url


class TestDemo:
    """Against the demo app in this event loop (asyncio: uvicorn runs on it)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_survives_three_forced_drops_with_exact_output(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three connections cut mid-answer: it resumes each time; text exact, model ran once."""
        async with demo_behind_proxy(delay=0.002) as (proxy, llm):
            releases = dict(zip((50, 150, 250), gate(monkeypatch, llm, 50, 150, 250), strict=True))
            async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
                chat = await http.post("/api/sessions", json={"prompt": PROMPT})
                assert chat.status_code == 201
                session_id = chat.json()["session_id"]
                events: list[StreamEvent] = []
                # Event by event (no compacted replay): the drops happen at chosen events.
                source = ResumableEventSource(http, chat.json()["stream_url"], compact=False)
                async with source:
                    async for event in source:
                        events.append(event)
                        if len(events) in releases:
                            assert await proxy.drop(reset=len(events) != 150) >= 1
                            releases[len(events)].set()
                assert source.reconnects == 3
            assert proxy.dropped >= 3
            assert text_of(events) == ANSWER
            assert events[-1].event == "end"
            assert events[-1].terminal
            assert [e.id for e in events] == [
                f"{events[0].id.rsplit('-', 1)[0]}-{n}"  # type: ignore[union-attr]
                for n in range(1, len(events) + 1)
            ]
            assert len(events) == len(tokenize(ANSWER)) + 1
            assert llm.started[session_id] == 1
            assert llm.finalized[session_id] == 1

    async def test_post_streams_and_resumes_from_content_location(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A POST streams the answer; after a drop it resumes by GET from Content-Location."""
        async with demo_behind_proxy(delay=0.001) as (proxy, llm):
            [release] = gate(monkeypatch, llm, 40)
            async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
                source = ResumableEventSource(
                    http, "/api/sessions", method="POST", json={"prompt": PROMPT}
                )
                events: list[StreamEvent] = []
                async with source:
                    async for event in source:
                        events.append(event)
                        if len(events) == 40:
                            await proxy.drop()
                            release.set()
                assert source.url is not None
                assert source.url.startswith(proxy.url + "/api/sessions/")
                assert source.url.endswith("/stream")
                assert source.reconnects == 1
            assert text_of(events) == ANSWER
            assert events[-1].event == "end"
            assert sum(llm.started.values()) == 1

    async def test_cancelled_stream_ends_with_cancelled_event(self) -> None:
        """Cancelling mid-answer ends the iteration with the ``cancelled`` event."""
        async with demo_behind_proxy(delay=30) as (proxy, llm):
            async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
                chat = (await http.post("/api/sessions", json={"prompt": PROMPT})).json()
                events = []
                async for event in stream_events(http, chat["stream_url"]):
                    events.append(event)
                    if len(events) == 1:
                        assert (await http.post(chat["cancel_url"])).status_code == 200
            assert [e.event for e in events] == ["message", "cancelled"]
            assert events[-1].json() == {"reason": "cancelled"}
            assert llm.finalized[chat["session_id"]] == 1

    async def test_unknown_session_raises_a_clear_error(self) -> None:
        """A 404 from the server is a ``StreamRequestError`` carrying its code and message."""
        async with demo_behind_proxy(delay=0) as (proxy, _):
            async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
                with pytest.raises(StreamRequestError) as caught:
                    async for _event in stream_events(http, "/api/sessions/nope/stream"):
                        pass
            assert caught.value.status == 404
            assert caught.value.code == "session_not_found"
            assert "session" in caught.value.message


async def collect(http: httpx.AsyncClient, url: str, **options: object) -> list[StreamEvent]:
    return [event async for event in stream_events(http, url, **options)]  # type: ignore[arg-type]


async def test_duplicates_are_dropped_and_last_event_id_is_sent(scripted: str) -> None:
    """After a response ends early, the client resends its last id and skips repeated events."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        events = await collect(http, "/flaky")
    assert [e.data for e in events if e.event == "message"] == FLAKY_TOKENS
    assert [(e.event, e.data) for e in events[-2:]] == [("resumed", "x-3"), ("end", "")]
    assert [e.id for e in events] == [f"x-{n}" for n in range(1, 7)]


async def test_post_without_drop_resumes_from_content_location(scripted: str) -> None:
    """A POSTed stream that ends early is resumed by GET from its Content-Location."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        events = await collect(http, "/start", method="POST", json={"prompt": "x"})
    assert [e.data for e in events if e.event == "message"] == FLAKY_TOKENS


async def test_awkward_but_valid_sse_is_parsed(scripted: str) -> None:
    """BOM, mixed line endings, comments, multi-line data, NUL ids: parsed per the spec."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        source = ResumableEventSource(http, "/tricky")
        async with source:
            events = [event async for event in source]
        assert source.retry == 0.015
    assert [(e.event, e.data) for e in events] == [(ev, data) for ev, data, _ in TRICKY_EVENTS]
    assert events[-1].terminal
    assert events[-1].id is None  # the error event carried no id of its own
    assert json.loads(events[-1].data)["code"] == "boom"


async def test_503_is_retried_after_retry_after(scripted: str, anyio_backend: str) -> None:
    """A 503 (store busy) is retried; the stream then reads normally."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        source = ResumableEventSource(http, f"/busy?key=client-{anyio_backend}")
        async with source:
            events = [event async for event in source]
        assert source.reconnects == 1
    assert [(e.event, e.data) for e in events] == [("message", "ok"), ("end", "")]


async def test_204_ends_without_events(scripted: str) -> None:
    """204 means the client already has everything: the iteration just ends."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        assert await collect(http, "/empty", last_event_id="x-9") == []


async def test_4xx_is_final(scripted: str) -> None:
    """A 404 is not retried: it raises ``StreamRequestError`` at once."""
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        with pytest.raises(StreamRequestError) as caught:
            await collect(http, "/gone")
    assert (caught.value.status, caught.value.code) == (404, "session_not_found")


async def test_unreachable_server_gives_up(scripted: str) -> None:
    """With nothing listening, the client gives up after its retries with a clear error."""
    with refusing_port() as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            with pytest.raises(ReconnectFailedError) as caught:
                await collect(http, "/stream", max_retries=0)
            assert isinstance(caught.value.__cause__, httpx.ConnectError)
            with pytest.raises(ReconnectFailedError, match="could not start"):
                await collect(http, "/chat", method="POST", json={})


# --- hostile servers: the cap holds and retries end (tests/scripted.py /hostile/...) ------

CAP = 0.05  # max_retry_delay for these tests, in seconds: small, so real waits stay short


class Delays:
    """An ``on_reconnecting`` callback recording each wait; a wait past the cap fails at once."""

    def __init__(self, cap: float = CAP) -> None:
        self.cap = cap
        self.calls: list[Reconnecting] = []

    def __call__(self, info: Reconnecting) -> None:
        self.calls.append(info)
        assert 0 <= info.delay <= self.cap, f"waits {info.delay} s, past the cap {self.cap} s"

    @property
    def attempts(self) -> list[int]:
        return [call.attempt for call in self.calls]


async def requests_made(http: httpx.AsyncClient, key: str) -> int:
    count = (await http.get("/requests", params={"key": key})).json()
    assert isinstance(count, int)
    return count


@pytest.mark.parametrize("retry_after", ["inf", "1e9", "1000000000", "nan", "-1", "soon"])
async def test_retry_after_never_lifts_the_delay_past_the_cap(
    scripted: str, anyio_backend: str, retry_after: str
) -> None:
    """Two 503s with a hostile ``Retry-After``: waits stay within ``max_retry_delay``."""
    key = f"py-busy-{retry_after}-{anyio_backend}"
    delays = Delays()
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        events = await collect(
            http,
            f"/hostile/busy?key={key}&retry_after={retry_after}",
            max_retry_delay=CAP,
            on_reconnecting=delays,
        )
        assert await requests_made(http, key) == 3
    assert [(e.event, e.data) for e in events] == [("message", "ok"), ("end", "")]
    assert delays.attempts == [1, 2]
    if retry_after == "1000000000":  # a valid Retry-After is honoured, up to the cap
        assert [call.delay for call in delays.calls] == [CAP, CAP]


async def test_retry_field_of_a_day_is_capped(scripted: str, anyio_backend: str) -> None:
    """``retry: 86400000`` on every response: each wait stays within ``max_retry_delay``."""
    key = f"py-retry-{anyio_backend}"
    delays = Delays()
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        source = ResumableEventSource(
            http,
            f"/hostile/retry?key={key}&times=4",
            max_retries=1,
            max_retry_delay=CAP,
            on_reconnecting=delays,
        )
        async with source:
            events = [event async for event in source]
        assert source.retry == 86400.0  # what the server said, kept as it said it
        assert await requests_made(http, key) == 5
    # Each response brought a new event, so each drop is the first failure in a row:
    # max_retries=1 never ran out.
    assert [e.data for e in events] == ["tok-1", "tok-2", "tok-3", "tok-4", ""]
    assert delays.attempts == [1, 1, 1, 1]


@pytest.mark.parametrize("body", sorted(EMPTY_BODIES))
async def test_responses_without_events_use_up_the_retries(
    scripted: str, anyio_backend: str, body: str
) -> None:
    """200 event streams with no event (garbage, comments, empty) count as failures."""
    key = f"py-empty-{body}-{anyio_backend}"
    delays = Delays()
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        with pytest.raises(ReconnectFailedError, match="after 3 attempts"):
            await collect(
                http,
                f"/hostile/empty?key={key}&body={body}",
                max_retries=3,
                max_retry_delay=CAP,
                on_reconnecting=delays,
            )
        assert await requests_made(http, key) == 4  # the first request and 3 retries
    assert delays.attempts == [1, 2, 3]
    assert all("without any new event" in call.reason for call in delays.calls)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retry_delay": math.inf}, "max_retry_delay"),
        ({"max_retry_delay": math.nan}, "max_retry_delay"),
        ({"max_retry_delay": -1.0}, "max_retry_delay"),
    ],
)
async def test_bad_retry_settings_are_refused(options: dict[str, Any], message: str) -> None:
    """An unbounded or negative retry setting is a clear error, before any request."""
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
        with pytest.raises(ValueError, match=message):
            ResumableEventSource(http, "/stream", **options)
