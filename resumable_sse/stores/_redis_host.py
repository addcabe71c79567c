"""The task group behind the Redis store's background work, hosted by one task.

The store's notifier connections and command pipelines run as tasks of one task group.
A store is often made outside any async context (at import, in an app factory), so the
group is entered by a host task started on the running event loop on first use, and
left by :meth:`TaskHost.aclose` (which the store's ``aclose`` calls): nothing runs
before the store is used or after it is closed. The Redis store runs on asyncio only
(redis-py does), hence an asyncio task.
"""

from __future__ import annotations

import asyncio

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import RedisError
from typing_extensions import final

__all__ = ["TaskHost"]


@final
class TaskHost:
    """Runs background tasks in one task group, from first use until :meth:`aclose`."""

    def __init__(self) -> None:
        self._tg: TaskGroup | None = None
        self._started: anyio.Event | None = None
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._task: asyncio.Task[None] | None = None  # a strong reference to the host task
        self._closed = False

    async def task_group(self) -> TaskGroup:
        """The running task group, started on first use.

        Raises:
            RedisError: the store is closed (it becomes ``StoreUnavailableError``).
        """
        if self._tg is not None:
            return self._tg
        if self._closed:
            raise RedisError("the Redis store is closed")
        if self._started is None:
            self._started = anyio.Event()
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._host(), name="resumable-sse redis store")
        await self._started.wait()
        if self._tg is None:
            raise RedisError("the Redis store is closed")
        return self._tg

    async def _host(self) -> None:
        assert self._started is not None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._started.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._started.set()
            self._done.set()

    async def aclose(self) -> None:
        """Cancel the background tasks and wait for them to end. Idempotent."""
        self._closed = True
        if self._task is None:
            return
        self._stop.set()
        await self._done.wait()
