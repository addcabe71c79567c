"""Edge cases of the streamer's lifecycle: the end of a stream with retention=0, and
starts racing a shutdown. Run over every store kind on asyncio and trio."""

from __future__ import annotations

import json

import anyio
import pytest

from resumable_sse import (
    AccessRequest,
    SessionNotFoundError,
    Streamer,
    StreamerClosedError,
    StreamStore,
)
from tests.helpers import Event, Script, collect, datas, names, take
from tests.stores import StoreHarness

pytestmark = pytest.mark.anyio


async def test_retention_0_still_ends_every_open_subscription(harness: StoreHarness) -> None:
    """With retention=0, readers waiting, behind, or reconnecting at the end all get it."""
    async with harness.make(retention=0) as store, Streamer(store) as streamer:
        script = Script(["a"], ["b"])
        await streamer.start("s1", script)
        waiting, behind = streamer.resume("s1"), streamer.resume("s1")
        first = await take(waiting, 1)
        assert datas(await take(behind, 1)) == datas(first) == ["a"]
        rest: list[Event] = []

        async def follow() -> None:
            rest.extend(await collect(waiting))

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            script.release_all()
        assert datas(rest) == ["b", ""]
        assert datas(await collect(behind)) == ["b", ""]
        reconnect = streamer.resume("s1", first[0]["id"])
        assert datas(await collect(reconnect)) == ["b", ""]
        with pytest.raises(SessionNotFoundError):  # nobody else sees it any more
            await streamer.status("s1")
        assert await streamer.start("s1", Script(["new"]))  # and its id is free


@pytest.mark.parametrize("how", ["start", "start_active"])
async def test_a_start_racing_aclose_ends_its_stream_and_raises(
    store: StreamStore, how: str
) -> None:
    """A start whose claim lands after aclose() raises StreamerClosedError, not an
    AssertionError, and its stream ends with cancelled/shutdown instead of running forever
    (and no conversation is left mapped to it)."""
    deciding, decide = anyio.Event(), anyio.Event()

    async def slow_policy(request: AccessRequest) -> bool:
        deciding.set()
        await decide.wait()  # aclose() completes while start() is in flight
        return True

    streamer = Streamer(store, authorize=slow_policy)
    script = Script(["never"])
    raised: list[BaseException] = []

    async def start() -> None:
        try:
            if how == "start":
                await streamer.start("s1", script)
            else:
                await streamer.start_active("chat", script, session_id="s1")
        except StreamerClosedError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        await deciding.wait()
        await streamer.aclose()
        decide.set()
    assert len(raised) == 1
    assert script.runs == 0
    events = await collect(Streamer(store).resume("s1"))
    assert names(events) == ["cancelled"]
    assert json.loads(events[0]["data"]) == {"reason": "shutdown"}
    assert await store.get_active("chat") is None
