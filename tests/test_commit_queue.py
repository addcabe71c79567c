"""The producer's commit queue on its own: batches, backpressure, closing."""

from __future__ import annotations

import anyio
import pytest

from resumable_sse._commit_queue import CommitQueue
from resumable_sse.stores import Entry, LogItem

pytestmark = pytest.mark.anyio


def entries(n: int) -> list[Entry]:
    return [Entry("message", str(i)) for i in range(n)]


async def test_the_writer_takes_everything_queued_since_its_last_take_in_order() -> None:
    """Group commit: one take returns every pushed entry, in push order, then none."""
    queue = CommitQueue(limit=10)
    for entry in entries(3):
        assert queue.push(entry) is False
    assert await queue.take_all() == entries(3)
    assert len(queue) == 0
    queue.push(Entry("message", "x"))
    assert await queue.take_all() == [Entry("message", "x")]


async def test_a_waiting_writer_wakes_on_the_first_push() -> None:
    """A lone entry is taken at once: the writer never waits to fill a batch."""
    queue = CommitQueue(limit=10)
    taken: list[list[LogItem]] = []

    async def writer() -> None:
        taken.append(await queue.take_all())

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        await anyio.wait_all_tasks_blocked()
        queue.push(Entry("message", "lone"))
    assert taken == [[Entry("message", "lone")]]


async def test_a_full_queue_holds_the_pusher_until_the_writer_takes() -> None:
    """push reports a full queue, and wait_space returns only after a take."""
    queue = CommitQueue(limit=2)
    assert queue.push(Entry("message", "a")) is False
    assert queue.push(Entry("message", "b")) is True
    released = anyio.Event()

    async def pusher() -> None:
        await queue.wait_space()
        released.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pusher)
        await anyio.wait_all_tasks_blocked()
        assert not released.is_set()
        assert len(await queue.take_all()) == 2
    assert released.is_set()


async def test_closing_lets_the_writer_drain_then_stop() -> None:
    """After close, take_all returns what is left, then an empty batch (not a hang)."""
    queue = CommitQueue(limit=10)
    queue.push(Entry("message", "last"))
    queue.close()
    assert await queue.take_all() == [Entry("message", "last")]
    assert await queue.take_all() == []

    idle = CommitQueue(limit=10)
    async with anyio.create_task_group() as tg:
        result: list[list[LogItem]] = []

        async def writer() -> None:
            result.append(await idle.take_all())

        tg.start_soon(writer)
        await anyio.wait_all_tasks_blocked()
        idle.close()
    assert result == [[]]
