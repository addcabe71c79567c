"""The AI SDK adapter over real HTTP: uvicorn on 127.0.0.1, httpx-sse reading the wire format.

The real AI SDK client runs in tests/test_aisdk_client.py; these tests pin the bytes it
relies on (chunks, headers, status codes) and the cases it cannot produce by itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from resumable_sse import InvalidItemError, MemoryStore, RedisStore, Streamer, StreamStore
from resumable_sse.aisdk import ChatRequest, ChatStreams, ui_message_chunks
from tests.servers import serve_in_task
from tests.sse import aconnect_sse
from tests.stores import RedisHarness

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves in this event loop, and uvicorn runs on asyncio."""
    return "asyncio"


class Model:
    """The app's model call: yields ``items``, pausing before item ``pause_at`` until released."""

    def __init__(self, items: list[Any], pause_at: int | None = None) -> None:
        self.items = items
        self.pause_at = pause_at
        self.release = anyio.Event()
        self.runs = 0
        self.closed = 0
        self.requests: list[ChatRequest] = []

    async def __call__(self, chat: ChatRequest) -> AsyncIterator[Any]:
        self.runs += 1
        self.requests.append(chat)
        try:
            for index, item in enumerate(self.items):
                if index == self.pause_at:
                    await self.release.wait()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


@asynccontextmanager
async def serving(
    model: Callable[[ChatRequest], Any], store: StreamStore | None = None, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    streamer = Streamer(store if store is not None else MemoryStore())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamer:
            yield

    app = Starlette(routes=ChatStreams(streamer, model, **options).routes(), lifespan=lifespan)
    async with serve_in_task(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def body(chat_id: str = "chat-1", text: str = "hi", message_id: str = "u1") -> dict[str, Any]:
    message = {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message"}


async def read_chunks(
    client: httpx.AsyncClient, method: str, url: str, *, limit: int | None = None, **kw: Any
) -> tuple[httpx.Response, list[Any]]:
    """The response and its data lines: chunks as dicts, ``[DONE]`` as the string."""
    chunks: list[Any] = []
    async with aconnect_sse(client, method, url, **kw) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            return source.response, chunks
        async for event in source.aiter_sse():
            chunks.append(event.data if event.data == "[DONE]" else json.loads(event.data))
            if limit is not None and len(chunks) >= limit:
                break
    return source.response, chunks


def text_of(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")


async def test_text_becomes_text_chunks_with_headers_and_done() -> None:
    """Text items arrive as start, text-start, deltas, text-end, finish and [DONE]."""
    model = Model(["Hello", ", world"])
    async with serving(model) as client:
        response, chunks = await read_chunks(client, "POST", "/api/chat", json=body())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    message_id = chunks[0]["messageId"]
    assert chunks == [
        {"type": "start", "messageId": message_id},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hello"},
        {"type": "text-delta", "id": "text-1", "delta": ", world"},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish"},
        "[DONE]",
    ]
    assert model.requests[0].messages == body()["messages"]


async def test_chunk_dicts_pass_through_and_close_the_text_part() -> None:
    """Tool, reasoning and data chunks are sent as they are; text around them gets new parts."""
    tool = {"type": "tool-input-available", "toolCallId": "c1", "toolName": "w", "input": {}}
    data = {"type": "data-weather", "data": {"temp": 21}}
    model = Model(["Let me check.", tool, data, "It is 21."])
    async with serving(model) as client:
        _, chunks = await read_chunks(client, "POST", "/api/chat", json=body())
    types = [c if isinstance(c, str) else c["type"] for c in chunks]
    assert types == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-available",
        "data-weather",
        "text-start",
        "text-delta",
        "text-end",
        "finish",
        "[DONE]",
    ]
    assert chunks[4] == tool
    assert chunks[5] == data
    assert chunks[6]["id"] == "text-2"


async def test_a_failing_model_ends_with_an_error_chunk() -> None:
    """An exception in the model becomes ``error{errorText}`` then [DONE], never a traceback."""
    model = Model(["partial", RuntimeError("secret detail")])
    async with serving(model) as client:
        _, chunks = await read_chunks(client, "POST", "/api/chat", json=body())
    assert chunks[-2]["type"] == "error"
    assert isinstance(chunks[-2]["errorText"], str)
    assert "secret detail" not in chunks[-2]["errorText"]
    assert chunks[-1] == "[DONE]"


async def test_an_item_that_is_no_chunk_ends_with_an_error_chunk() -> None:
    """A dict with an unknown type is refused: the stream ends with ``error``."""
    model = Model(["ok", {"type": "nonsense"}])
    async with serving(model) as client:
        _, chunks = await read_chunks(client, "POST", "/api/chat", json=body())
    assert [c if isinstance(c, str) else c["type"] for c in chunks[-2:]] == ["error", "[DONE]"]
    assert text_of(chunks) == "ok"


async def test_resume_replays_from_the_start_and_follows_live() -> None:
    """GET {api}/{id}/stream gives the whole answer again, then its live rest."""
    model = Model(["one", " two", " three"], pause_at=2)
    async with serving(model) as client:
        _, first = await read_chunks(client, "POST", "/api/chat", json=body(), limit=4)
        assert text_of(first) == "one two"

        async def release_once_open() -> None:
            model.release.set()

        async with aconnect_sse(client, "GET", "/api/chat/chat-1/stream") as source:
            assert source.response.status_code == 200
            replay: list[Any] = []
            async for event in source.aiter_sse():
                replay.append(event.data if event.data == "[DONE]" else json.loads(event.data))
                if len(replay) == 3:
                    await release_once_open()
    assert replay[0] == first[0]  # the same start chunk and message id
    # The text so far comes as one delta (a compacted replay), the rest live.
    assert replay[2] == {"type": "text-delta", "id": "text-1", "delta": "one two"}
    assert replay[3] == {"type": "text-delta", "id": "text-1", "delta": " three"}
    assert text_of(replay) == "one two three"
    assert replay[-2:] == [{"type": "finish"}, "[DONE]"]
    assert model.runs == 1


async def test_a_compacted_replay_merges_deltas_of_one_part_only() -> None:
    """Deltas of one text or reasoning part merge (escapes and all); chunks between split."""
    tricky = ['say "hi"\n', "\\ é 🙂", "\r\n"]
    items: list[Any] = [
        *tricky,
        {"type": "reasoning-start", "id": "r"},
        {"type": "reasoning-delta", "id": "r", "delta": "think "},
        {"type": "reasoning-delta", "id": "r", "delta": "more"},
        {"type": "reasoning-end", "id": "r"},
        {"type": "tool-input-available", "toolCallId": "c", "toolName": "t", "input": {}},
        "after",
        " tool",
        "paused",
    ]
    model = Model(items, pause_at=len(items) - 1)
    async with serving(model) as client:
        _, first = await read_chunks(client, "POST", "/api/chat", json=body(), limit=14)
        async with aconnect_sse(client, "GET", "/api/chat/chat-1/stream") as source:
            merged: list[Any] = []
            async for event in source.aiter_sse():
                merged.append(event.data if event.data == "[DONE]" else json.loads(event.data))
                if len(merged) == 10:
                    model.release.set()
    kinds = [c if isinstance(c, str) else (c["type"], c.get("delta")) for c in merged]
    assert kinds == [
        ("start", None),
        ("text-start", None),
        ("text-delta", "".join(tricky)),
        ("text-end", None),
        ("reasoning-start", None),
        ("reasoning-delta", "think more"),
        ("reasoning-end", None),
        ("tool-input-available", None),
        ("text-start", None),
        ("text-delta", "after tool"),
        ("text-delta", "paused"),
        ("text-end", None),
        ("finish", None),
        "[DONE]",
    ]
    assert text_of(merged) == text_of(first) + "paused"


async def test_compact_false_replays_chunk_by_chunk() -> None:
    """``ChatStreams(compact=False)``: the replay is what the first reader got."""
    model = Model(["one", " two", " three"], pause_at=2)
    async with serving(model, compact=False) as client:
        _, first = await read_chunks(client, "POST", "/api/chat", json=body(), limit=4)
        _, replay = await read_chunks(client, "GET", "/api/chat/chat-1/stream", limit=4)
        model.release.set()
    assert replay == first


async def test_resume_of_a_chat_without_a_running_answer_is_204() -> None:
    """Unknown chats and finished answers have nothing to resume; a bad id is a 400."""
    model = Model(["done"])
    async with serving(model) as client:
        assert (await client.get("/api/chat/unknown/stream")).status_code == 204
        await read_chunks(client, "POST", "/api/chat", json=body())
        assert (await client.get("/api/chat/chat-1/stream")).status_code == 204
        bad = await client.get("/api/chat/bad%20id/stream")
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_session_id"


async def test_tail_mode_serves_only_what_comes_next() -> None:
    """With ``resume="tail"`` a resumed stream starts after the events sent so far."""
    model = Model(["one", " two", " three"], pause_at=2)
    async with serving(model, resume="tail") as client:
        await read_chunks(client, "POST", "/api/chat", json=body(), limit=4)
        async with aconnect_sse(client, "GET", "/api/chat/chat-1/stream") as source:
            model.release.set()
            rest = [e.data async for e in source.aiter_sse()]
    assert [json.loads(d)["type"] if d != "[DONE]" else d for d in rest] == [
        "text-delta",
        "text-end",
        "finish",
        "[DONE]",
    ]
    assert json.loads(rest[0])["delta"] == " three"


async def test_stop_cancels_the_answer_and_readers_get_abort() -> None:
    """POST {api}/{id}/stop closes the model and ends every reader with ``abort``."""
    model = Model(["one", " two"], pause_at=1)
    async with serving(model) as client:
        async with aconnect_sse(client, "POST", "/api/chat", json=body()) as source:
            events = source.aiter_sse()
            chunks = [json.loads((await anext(events)).data) for _ in range(3)]
            stopped = await client.post("/api/chat/chat-1/stop")
            chunks += [e.data if e.data == "[DONE]" else json.loads(e.data) async for e in events]
        again = await client.post("/api/chat/chat-1/stop")
    assert stopped.json() == {"stopped": True}
    assert again.json() == {"stopped": False}
    assert text_of(chunks) == "one"
    assert chunks[-2:] == [{"type": "abort", "reason": "cancelled"}, "[DONE]"]
    assert model.closed == 1


async def test_a_repeated_request_joins_and_a_new_message_supersedes() -> None:
    """The same POST twice runs the model once; a new message cancels the running answer."""
    model = Model(["a", "b"], pause_at=1)
    async with serving(model) as client, anyio.create_task_group() as tg:
        results: list[list[Any]] = []

        async def send(payload: dict[str, Any]) -> None:
            results.append((await read_chunks(client, "POST", "/api/chat", json=payload))[1])

        _, first = await read_chunks(client, "POST", "/api/chat", json=body(), limit=3)
        tg.start_soon(send, body())  # the same request again: joins the running answer
        _, newer = await read_chunks(
            client, "POST", "/api/chat", json=body(message_id="u2"), limit=3
        )
        model.release.set()
    assert model.runs == 2  # the first request and the new message, not the repeat
    assert results[0][-2:] == [{"type": "abort", "reason": "cancelled"}, "[DONE]"]
    assert newer[0]["messageId"] != first[0]["messageId"]


async def test_refusing_mode_answers_409_while_an_answer_runs() -> None:
    """With ``supersede=False`` a new message during a running answer gets 409."""
    model = Model(["a", "b"], pause_at=1)
    async with serving(model, supersede=False) as client:
        await read_chunks(client, "POST", "/api/chat", json=body(), limit=3)
        busy = await client.post("/api/chat", json=body(message_id="u2"))
        model.release.set()
    assert busy.status_code == 409
    assert busy.json()["error"] == "conversation_busy"
    assert model.runs == 1


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (json.dumps({"messages": []}).encode(), "id"),
        (json.dumps({"id": "c", "messages": "x"}).encode(), "messages"),
        (json.dumps({"id": "bad id", "messages": []}).encode(), "session id"),
        (b'{"id": "c", "messages": ["' + b"x" * (17 * 1024 * 1024) + b'"]}', "exceeds"),
    ],
)
async def test_bad_requests_get_400(payload: bytes, fragment: str) -> None:
    """A malformed body or chat id gets a 400 with a JSON reason, and nothing runs."""
    model = Model(["x"])
    async with serving(model) as client:
        response = await client.post(
            "/api/chat", content=payload, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert model.runs == 0


async def test_workers_sharing_redis_resume_and_stop_each_others_answers() -> None:
    """A chat started on one worker is resumed and stopped through another (one Redis)."""
    harness = RedisHarness()
    model = Model(["one", " two"], pause_at=1)
    async with AsyncExitStack() as stack:
        first_store = await stack.enter_async_context(harness.make())
        second_store = RedisHarness.client(harness)
        assert isinstance(first_store, RedisStore)
        shared = RedisStore(second_store, prefix=first_store.prefix)
        stack.push_async_callback(second_store.aclose)
        a = await stack.enter_async_context(serving(model, first_store))
        b = await stack.enter_async_context(serving(model, shared))
        _, first = await read_chunks(a, "POST", "/api/chat", json=body(), limit=3)
        async with aconnect_sse(b, "GET", "/api/chat/chat-1/stream") as source:
            events = source.aiter_sse()
            replay = [json.loads((await anext(events)).data) for _ in range(3)]
            assert (await b.post("/api/chat/chat-1/stop")).json() == {"stopped": True}
            replay += [e.data if e.data == "[DONE]" else json.loads(e.data) async for e in events]
    assert replay[:3] == first
    assert replay[-2:] == [{"type": "abort", "reason": "cancelled"}, "[DONE]"]
    assert model.runs == 1
    assert model.closed == 1


# -- the chunk encoder, without HTTP (both async backends) ----------------------------------


async def chunks_of(source: Any) -> list[dict[str, Any]]:
    return [json.loads(c) async for c in ui_message_chunks(source, message_id="m")]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_empty_answer_is_a_start_and_nothing_else() -> None:
    """A generator that yields nothing still opens the message (finish comes from ``end``)."""
    assert await chunks_of([]) == [{"type": "start", "messageId": "m"}]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_app_may_send_its_own_start_and_text_parts() -> None:
    """A ``start`` yielded first replaces the default one; ``text-*`` chunks keep their ids."""
    items = [
        {"type": "start", "messageMetadata": {"model": "x"}},
        {"type": "text-start", "id": "a"},
        {"type": "text-delta", "id": "a", "delta": "hi"},
        {"type": "text-end", "id": "a"},
    ]
    chunks = await chunks_of(iter(items))  # a sync iterable works as well
    assert chunks[0] == {"type": "start", "messageId": "m", "messageMetadata": {"model": "x"}}
    assert chunks[1:] == items[1:]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_items_that_are_not_chunks_are_refused() -> None:
    """Numbers, unknown types and non-JSON values raise ``InvalidItemError``."""
    for bad in (42, {"type": "unknown"}, {"type": "data-x", "data": object()}):
        with pytest.raises(InvalidItemError):
            await chunks_of([bad])
