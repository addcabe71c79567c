"""Principals behave the same on every store: ``str`` as given, ``int`` and ``UUID`` as
their ``str``, anything else (``bool``, ``float``, ``bytes``...) a ``TypeError`` and an
empty string a ``ValueError``, raised by the Streamer before any store sees them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import (
    AccessDeniedError,
    Principal,
    SessionNotFoundError,
    Streamer,
    StreamStore,
    sse_response,
)
from tests.helpers import Script, datas, read_events, take
from tests.servers import serve_in_task

pytestmark = pytest.mark.anyio

USER_ID = uuid.UUID("6f1c2a9e-8d0b-4c4e-9a51-3f2d7c1b0e42")


@pytest.mark.parametrize(
    ("principal", "as_str"),
    [("alice", "alice"), (42, "42"), (0, "0"), (USER_ID, str(USER_ID))],
    ids=["str", "int", "zero", "uuid"],
)
async def test_a_principal_owns_its_stream_as_its_str(
    streamer: Streamer, principal: Principal, as_str: str
) -> None:
    """An int or UUID principal (0 included) is bound as its str: the owner, given either
    way, reads, inspects and cancels; another principal is refused."""
    assert await streamer.start("s1", Script(["a"], ["b"]), principal=principal)
    status = await streamer.status("s1", principal=as_str)
    assert status.owner == as_str
    assert datas(await take(streamer.resume("s1", principal=principal), 1)) == ["a"]
    for stranger in ("mallory", 7, uuid.uuid4()):
        with pytest.raises(AccessDeniedError):
            await streamer.status("s1", principal=stranger)
    assert await streamer.cancel("s1", principal=principal)


def calls(streamer: Streamer, principal: Any, script: Script) -> list[Callable[[], Awaitable[Any]]]:
    """Every Streamer method that takes a principal, on session ``s1``."""
    return [
        lambda: streamer.start("s1", script, principal=principal),
        lambda: streamer.open("s1", script, principal=principal),
        lambda: take(streamer.stream("s1", script, principal=principal), 1),
        lambda: take(streamer.resume("s1", principal=principal), 1),
        lambda: streamer.status("s1", principal=principal),
        lambda: streamer.cancel("s1", principal=principal),
        lambda: streamer.delete("s1", principal=principal),
        lambda: streamer.start_active("c1", script, session_id="s1", principal=principal),
        lambda: streamer.active("c1", principal=principal),
    ]


@pytest.mark.parametrize(
    ("principal", "error"),
    [
        ("", ValueError),
        (True, TypeError),
        (False, TypeError),
        (1.5, TypeError),
        (b"alice", TypeError),
        (["alice"], TypeError),
    ],
    ids=["empty", "true", "false", "float", "bytes", "list"],
)
async def test_a_bad_principal_is_refused_before_anything_happens(
    streamer: Streamer, principal: object, error: type[Exception]
) -> None:
    """Every method raises the same clear error; no stream is made (none without owner
    either), the generator never runs, and an existing stream is left alone."""
    script = Script(["a"])
    for call in calls(streamer, principal, script):
        with pytest.raises(error, match="principal"):
            await call()
    assert script.runs == 0
    with pytest.raises(SessionNotFoundError):
        await streamer.status("s1")
    await streamer.start("s1", Script(["a"]), principal="alice")
    for call in calls(streamer, principal, script):
        with pytest.raises(error, match="principal"):
            await call()
    assert (await streamer.status("s1")).owner == "alice"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn
async def test_an_int_principal_over_http(store: StreamStore) -> None:
    """sse_response with an int principal (a typical user id) serves its owner."""
    script = Script(["a", "b"])

    async def endpoint(request: Request) -> Response:
        user = int(request.query_params["user"])
        return await sse_response(streamer, request, "s1", script, principal=user, ping=0)

    async with Streamer(store) as streamer:
        app = Starlette(routes=[Route("/s", endpoint)])
        async with serve_in_task(app) as url, httpx.AsyncClient() as http:
            events = await read_events(http, f"{url}/s?user=42")
            refused = await http.get(f"{url}/s?user=43")
        assert (await streamer.status("s1", principal=42)).owner == "42"
    assert [e.data for e in events] == ["a", "b", ""]
    assert refused.status_code == 403
