"""The demo app end to end: a real uvicorn on 127.0.0.1 and a real SSE client (httpx-sse)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from resumable_sse._demo import SimulatedLLM, create_app, simulated_answer, tokenize
from tests.servers import serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PROMPT = "How do resumable streams work? Ünïcode, “quotes” and\nnewlines 🙂"
ANSWER = simulated_answer(PROMPT)
TERMINAL = {"end", "error", "cancelled"}


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves in this event loop, and uvicorn runs on asyncio."""
    return "asyncio"


@dataclass
class Demo:
    client: httpx.AsyncClient
    llm: SimulatedLLM


@asynccontextmanager
async def running_demo(delay: float) -> AsyncIterator[Demo]:
    app = create_app(delay=delay)
    async with serve_in_task(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield Demo(client, app.state.llm)


async def start_chat(client: httpx.AsyncClient, prompt: str = PROMPT) -> str:
    response = await client.post("/api/sessions", json={"prompt": prompt})
    assert response.status_code == 201
    session_id = response.json()["session_id"]
    assert isinstance(session_id, str)
    assert response.json()["stream_url"] == f"/api/sessions/{session_id}/stream"
    assert response.json()["cancel_url"] == f"/api/sessions/{session_id}/cancel"
    assert response.headers["location"] == f"/api/sessions/{session_id}/stream"
    return session_id


async def read_events(
    client: httpx.AsyncClient,
    session_id: str,
    *,
    limit: int | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> list[ServerSentEvent]:
    """Read events up to the terminal one, or only ``limit`` events then disconnect."""
    events: list[ServerSentEvent] = []
    url = f"/api/sessions/{session_id}/stream"
    async with aconnect_sse(client, "GET", url, headers=headers or {}, params=params) as source:
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            events.append(event)
            if event.event in TERMINAL or len(events) == limit:
                break
    return events


def text_of(events: list[ServerSentEvent]) -> str:
    return "".join(event.data for event in events if event.event == "message")


def test_answer_is_long_deterministic_and_tokenized_losslessly() -> None:
    """The simulated answer is several paragraphs, fixed per prompt, and split into words."""
    assert simulated_answer(PROMPT) == ANSWER
    assert simulated_answer("something else") != ANSWER
    assert len(ANSWER.split()) >= 400
    assert ANSWER.count("\n\n") >= 4
    tokens = tokenize(ANSWER)
    assert "".join(tokens) == ANSWER
    assert len(tokens) == len(ANSWER.split())


async def test_page_and_its_scripts_are_served() -> None:
    """``/`` serves the page, which loads its scripts from the package, not a CDN."""
    async with running_demo(delay=0) as demo:
        page = await demo.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert '<meta name="viewport"' in html
        for hook in ('id="prompt"', 'id="send"', 'id="stop"', 'id="answer"', 'id="status"'):
            assert hook in html
        assert 'id="resumed"' in html
        assert '<script type="module" src="static/demo.js">' in html
        assert "http://" not in html
        assert "https://" not in html

        ui = await demo.client.get("/static/demo.js")
        assert ui.status_code == 200
        assert "javascript" in ui.headers["content-type"]
        assert 'from "../resumable-sse/resumable-sse.js"' in ui.text
        assert "sessionStorage" in ui.text

        client = await demo.client.get("/resumable-sse/resumable-sse.js")
        assert client.status_code == 200
        assert "javascript" in client.headers["content-type"]
        assert "export function postStream(" in client.text
        assert "Last-Event-ID" in client.text
        # The modules it imports by relative url are served beside it.
        for module in ("sse-parser.js", "backoff.js", "storage.js"):
            assert f'from "./{module}"' in client.text
            served = await demo.client.get(f"/resumable-sse/{module}")
            assert served.status_code == 200
            assert "javascript" in served.headers["content-type"]
            assert "export " in served.text


async def test_whole_answer_streams_exactly_and_ends() -> None:
    """A chat streams the exact answer, then ``end``; a late reader gets it all again."""
    async with running_demo(delay=0.001) as demo:
        session_id = await start_chat(demo.client)
        events = await read_events(demo.client, session_id)
        assert text_of(events) == ANSWER
        assert [event.event for event in events[:-1]] == ["message"] * (len(events) - 1)
        assert events[-1].event == "end"
        seqs = [int(event.id.rsplit("-", 1)[1]) for event in events]
        assert seqs == list(range(1, len(events) + 1))

        late = await read_events(demo.client, session_id)
        assert [(e.id, e.event, e.data) for e in late] == [(e.id, e.event, e.data) for e in events]
        assert demo.llm.started[session_id] == 1
        assert demo.llm.finalized[session_id] == 1

        status = (await demo.client.get(f"/api/sessions/{session_id}")).json()
        assert status["state"] == "done"
        assert status["events"] == len(events)
        assert status["last_event_id"] == events[-1].id


async def test_post_asking_for_sse_streams_the_answer_at_once() -> None:
    """``POST /api/sessions`` with ``Accept: text/event-stream`` streams the answer back."""
    async with running_demo(delay=0.001) as demo:
        events: list[ServerSentEvent] = []
        async with aconnect_sse(
            demo.client, "POST", "/api/sessions", headers={}, json={"prompt": PROMPT}
        ) as source:
            assert source.response.status_code == 200
            location = source.response.headers["content-location"]
            async for event in source.aiter_sse():
                events.append(event)
        assert text_of(events) == ANSWER
        assert events[-1].event == "end"
        [session_id] = demo.llm.started
        assert location == f"/api/sessions/{session_id}/stream"
        late = await read_events(demo.client, session_id)
        assert text_of(late) == ANSWER


@pytest.mark.parametrize("via", ["header", "query"])
async def test_resume_after_disconnect_gets_exactly_the_rest(via: str) -> None:
    """Disconnecting mid-answer and resuming from the last id (header or query) loses nothing."""
    async with running_demo(delay=0.002) as demo:
        session_id = await start_chat(demo.client)
        first = await read_events(demo.client, session_id, limit=20)
        assert len(first) == 20
        last_id = first[-1].id
        if via == "header":
            rest = await read_events(demo.client, session_id, headers={"Last-Event-ID": last_id})
        else:
            rest = await read_events(demo.client, session_id, params={"last_event_id": last_id})
        assert text_of(first) + text_of(rest) == ANSWER
        assert rest[-1].event == "end"
        ids = [event.id for event in first + rest]
        assert len(set(ids)) == len(ids)
        assert demo.llm.started[session_id] == 1


async def test_stop_cancels_the_answer_and_closes_the_generator() -> None:
    """Stop mid-answer ends the stream with ``cancelled`` after the generator was closed."""
    async with running_demo(delay=30) as demo:  # the next token waits: Stop comes first
        session_id = await start_chat(demo.client)
        url = f"/api/sessions/{session_id}/stream"
        async with aconnect_sse(demo.client, "GET", url) as source:
            events = source.aiter_sse()
            first = await anext(events)
            assert first.event == "message"
            response = await demo.client.post(f"/api/sessions/{session_id}/cancel")
            assert response.status_code == 200
            assert response.json() == {"session_id": session_id, "cancelled": True}
            rest = [event async for event in events]
        assert rest[-1].event == "cancelled"
        assert json.loads(rest[-1].data) == {"reason": "cancelled"}
        text = text_of([first, *rest])
        assert ANSWER.startswith(text)
        assert text != ANSWER
        assert demo.llm.started[session_id] == 1
        assert demo.llm.finalized[session_id] == 1

        again = await demo.client.post(f"/api/sessions/{session_id}/cancel")
        assert again.json() == {"session_id": session_id, "cancelled": False}
        status = (await demo.client.get(f"/api/sessions/{session_id}")).json()
        assert status["state"] == "cancelled"


async def test_unknown_session_is_404_json() -> None:
    """Streaming, stopping or asking about an unknown session answers 404 with JSON."""
    async with running_demo(delay=0) as demo:
        for method, path in [
            ("GET", "/api/sessions/no-such-session/stream"),
            ("POST", "/api/sessions/no-such-session/cancel"),
            ("GET", "/api/sessions/no-such-session"),
        ]:
            response = await demo.client.request(method, path)
            assert response.status_code == 404, path
            assert response.json()["error"] == "session_not_found"


async def test_bad_last_event_id_is_400_json() -> None:
    """A malformed or foreign resume position is refused with 400, by header or query."""
    async with running_demo(delay=0.001) as demo:
        session_id = await start_chat(demo.client)
        url = f"/api/sessions/{session_id}/stream"
        malformed = await demo.client.get(url, headers={"Last-Event-ID": "not-an-id"})
        assert malformed.status_code == 400
        assert malformed.json()["error"] == "invalid_event_id"
        foreign = await demo.client.get(url, params={"last_event_id": "0000000000-1"})
        assert foreign.status_code == 400
        assert foreign.json()["error"] == "stale_event_id"
        invalid_session = await demo.client.get("/api/sessions/bad%20id/stream")
        assert invalid_session.status_code == 400
        assert invalid_session.json()["error"] == "invalid_session_id"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"prompt": ""}',
        b'{"prompt": 42}',
        b"[]",
        b'{"prompt": "' + b"x" * 4001 + b'"}',
    ],
)
async def test_bad_chat_request_is_400_json(body: bytes) -> None:
    """A chat without a usable prompt is refused with 400 and starts nothing."""
    async with running_demo(delay=0) as demo:
        response = await demo.client.post(
            "/api/sessions", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"] in {"invalid_json", "invalid_prompt"}
        assert not demo.llm.started
