"""Readers waiting for a memory stream's next event: woken together, and cancellable."""

from __future__ import annotations

import anyio
import pytest

from resumable_sse.stores._wakeup import Wakeup

pytestmark = pytest.mark.anyio


async def test_one_wake_releases_every_waiting_reader_and_only_them() -> None:
    wakeup = Wakeup()
    woken: list[int] = []

    async def reader(i: int) -> None:
        await wakeup.wait()
        woken.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(reader, i)
        await anyio.wait_all_tasks_blocked()
        assert wakeup.waiting
        assert woken == []
        wakeup.wake()
        await anyio.wait_all_tasks_blocked()
        assert sorted(woken) == [0, 1, 2]
        assert not wakeup.waiting
        tg.start_soon(reader, 3)  # waits for the next wake, not the last one
        await anyio.wait_all_tasks_blocked()
        assert sorted(woken) == [0, 1, 2]
        wakeup.wake()
    assert 3 in woken


async def test_a_cancelled_wait_does_not_swallow_the_next_wake() -> None:
    wakeup = Wakeup()
    with anyio.move_on_after(0):
        await wakeup.wait()
    woken = anyio.Event()

    async def reader() -> None:
        await wakeup.wait()
        woken.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        wakeup.wake()
        with anyio.fail_after(5):
            await woken.wait()


async def test_readers_giving_up_on_a_stalled_stream_leave_little_behind() -> None:
    wakeup = Wakeup()
    for _ in range(10_000):
        with anyio.move_on_after(0):
            await wakeup.wait()
    # On asyncio each wait is a future: cancelled ones are dropped as they pile up.
    assert len(wakeup._futures) <= 128
