"""Access control and consumer limits: who may touch a session, and how many may read it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import (
    AccessDeniedError,
    AccessRequest,
    SessionNotFoundError,
    Streamer,
    StreamStore,
    TooManyConsumersError,
    _access,
    sse_response,
)
from tests.helpers import Script, collect, datas, take
from tests.servers import serve_in_task

pytestmark = pytest.mark.anyio


async def test_a_stream_belongs_to_the_principal_that_started_it(streamer: Streamer) -> None:
    """The owner reads, inspects and cancels its stream; nobody else can."""
    script = Script(["a"], ["b"])
    assert await streamer.start("s1", script, principal="alice")
    assert datas(await take(streamer.resume("s1", principal="alice"), 1)) == ["a"]
    assert (await streamer.status("s1", principal="alice")).owner == "alice"
    for attempt in (
        lambda: streamer.status("s1", principal="mallory"),
        lambda: streamer.cancel("s1", principal="mallory"),
        lambda: streamer.delete("s1", principal="mallory"),
        lambda: take(streamer.resume("s1", principal="mallory"), 1),
    ):
        with pytest.raises(AccessDeniedError):
            await attempt()
    assert await streamer.cancel("s1", principal="alice")


async def test_a_stranger_learns_nothing_about_existence(streamer: Streamer) -> None:
    """A foreign session and a missing one give the same error and the same message."""
    await streamer.start("s1", Script(["a"]), principal="alice")
    with pytest.raises(AccessDeniedError) as foreign:
        await streamer.status("s1", principal="mallory")
    with pytest.raises(AccessDeniedError) as missing:
        await streamer.status("nope", principal="mallory")
    assert str(foreign.value) == str(missing.value)


async def test_what_a_stranger_observes(streamer: Streamer) -> None:
    """Exactly what SECURITY.md says: reading, inspecting, cancelling or deleting someone
    else's session looks the same as a missing one; only a start tells a taken id apart."""
    running = Script(["a"], ["b"])
    await streamer.start("running", running, principal="alice")
    await streamer.start("done", Script(["a"]), principal="alice")
    await collect(streamer.resume("done"))
    await streamer.start("deleted", Script(["a"]), principal="alice")
    await collect(streamer.resume("deleted"))
    assert await streamer.delete("deleted", principal="alice")
    last_id = (await take(streamer.resume("running"), 1))[0]["id"]
    sessions = ("running", "done", "deleted", "never")

    async def answer(attempt: Callable[[str], Awaitable[object]], session_id: str) -> str:
        with pytest.raises(AccessDeniedError) as denied:
            await attempt(session_id)
        return f"{denied.value.status} {denied.value}"

    for attempt in (
        lambda sid: streamer.status(sid, principal="mallory"),
        lambda sid: streamer.cancel(sid, principal="mallory"),
        lambda sid: streamer.delete(sid, principal="mallory"),
        lambda sid: streamer.open(sid, principal="mallory"),
        lambda sid: streamer.open(sid, last_id=last_id, principal="mallory"),
        lambda sid: collect(streamer.resume(sid, last_id, principal="mallory")),
    ):
        assert {await answer(attempt, sid) for sid in sessions} == {"403 access denied"}
    intruder = Script(["x"])
    for taken in ("running", "done"):  # a start does reveal that these ids are taken
        assert await answer(lambda sid: streamer.start(sid, intruder, principal="mallory"), taken)
    assert intruder.runs == 0
    for free in ("deleted", "never"):  # and these are free: the stranger now owns them
        assert await streamer.start(free, Script(["mine"]), principal="mallory")
        assert (await streamer.status(free, principal="mallory")).owner == "mallory"
    running.release_all()


def test_security_md_states_what_a_start_reveals() -> None:
    """The docs do not promise more than the code: SECURITY.md, the README and the module
    docstring say that a start reveals whether an id is taken, and none says otherwise."""
    root = Path(__file__).resolve().parent.parent
    security = (root / "SECURITY.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    for text in (security, readme, _access.__doc__ or ""):
        flat = " ".join(text.split())
        assert "nothing is learnt" not in flat
        assert "learns nothing" not in flat
        assert re.search(r"whether (its|an) id is taken", flat)
    assert "## What a stranger can observe" in security


async def test_streaming_into_a_foreign_session_does_not_run_the_generator(
    streamer: Streamer,
) -> None:
    """stream() on someone else's session is refused and its generator never starts."""
    await streamer.start("s1", Script(["a"]), principal="alice")
    intruder = Script(["x"])
    with pytest.raises(AccessDeniedError):
        await collect(streamer.stream("s1", intruder, principal="mallory"))
    assert intruder.runs == 0


async def test_trusted_calls_without_a_principal_are_not_checked(streamer: Streamer) -> None:
    """Server-side code that passes no principal can still manage any stream."""
    script = Script(["a"])
    await streamer.start("s1", script, principal="alice")
    assert datas(await collect(streamer.resume("s1"))) == ["a", ""]


async def test_a_custom_policy_decides(store: StreamStore) -> None:
    """An async authorize callable sees each request and its refusals are enforced."""
    seen: list[AccessRequest] = []

    async def only_admins_cancel(request: AccessRequest) -> bool:
        seen.append(request)
        return request.action != "cancel" or request.principal == "admin"

    async with Streamer(store, authorize=only_admins_cancel) as streamer:
        await streamer.start("s1", Script(["a"], ["b"]), principal="bob")
        with pytest.raises(AccessDeniedError):
            await streamer.cancel("s1", principal="bob")
        assert await streamer.cancel("s1", principal="admin")
    assert [r.action for r in seen] == ["start", "cancel", "cancel"]
    assert seen[1].owner == "bob"
    assert seen[1].exists


async def test_consumers_per_session_are_limited_and_slots_come_back(store: StreamStore) -> None:
    """One consumer too many is refused; closing one frees its slot."""
    async with Streamer(store, max_consumers_per_session=2) as streamer:
        await streamer.start("s1", Script(["a"], ["b"]))
        first = await streamer.open("s1")
        second = await streamer.open("s1")
        with pytest.raises(TooManyConsumersError):
            await streamer.open("s1")
        other = await streamer.open("s2") if await streamer.start("s2", Script(["z"])) else None
        assert other is not None  # another session is not affected
        await first.aclose()
        third = await streamer.open("s1")
        assert streamer.consumers == 3
        for subscription in (second, third, other):
            await subscription.aclose()
        assert streamer.consumers == 0


async def test_a_finished_consumer_gives_its_slot_back(streamer: Streamer) -> None:
    """Reading a stream to its end releases the consumer slot without aclose()."""
    await streamer.start("s1", Script(["a"]))
    await collect(streamer.resume("s1"))
    await collect(streamer.resume("s1"))
    assert streamer.consumers == 0


async def test_total_consumers_are_limited(store: StreamStore) -> None:
    """The streamer-wide limit counts consumers of every session."""
    async with Streamer(store, max_consumers=1) as streamer:
        await streamer.start("s1", Script(["a"], ["b"]))
        await streamer.start("s2", Script(["a"], ["b"]))
        held = await streamer.open("s1")
        with pytest.raises(TooManyConsumersError):
            await streamer.open("s2")
        await held.aclose()


async def test_a_failed_open_takes_no_slot(streamer: Streamer) -> None:
    """Errors while opening (unknown session) leave the consumer count unchanged."""
    with pytest.raises(SessionNotFoundError):
        await streamer.open("nope")
    assert streamer.consumers == 0


def _app(streamer: Streamer) -> Starlette:
    async def stream(request: Request) -> Response:
        user = request.headers.get("x-user")
        session_id = request.path_params["session_id"]
        generator = Script(["hello", " world"]) if request.method == "POST" else None
        return await sse_response(streamer, request, session_id, generator, principal=user)

    return Starlette(routes=[Route("/s/{session_id}", stream, methods=["GET", "POST"])])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_http_access_and_limits(store: StreamStore) -> None:
    """Over HTTP: the owner streams, strangers get 403 whether or not the session exists,
    and one consumer over the limit gets 429 with Retry-After."""
    async with (
        Streamer(store, max_consumers_per_session=1) as streamer,
        serve_in_task(_app(streamer)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        owner = await client.post("/s/chat1", headers={"x-user": "alice"})
        assert owner.status_code == 200
        assert "data: hello" in owner.text
        for path in ("/s/chat1", "/s/missing"):
            denied = await client.get(path, headers={"x-user": "mallory"})
            assert denied.status_code == 403
            assert denied.json() == {"error": "access_denied", "message": "access denied"}
        await streamer.start("live", Script(["a"], ["b"]), principal="alice")
        held = await streamer.open("live", principal="alice")
        busy = await client.get("/s/live", headers={"x-user": "alice"})
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"] == "too_many_consumers"
        await held.aclose()
        await streamer.cancel("live")
