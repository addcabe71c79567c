"""The producer's commit queue: events on their way from the generator to the store.

The generator's side :meth:`~CommitQueue.push`\\ es each event synchronously (the hot
path: one list append, and a wake-up only when the writer is idle); the writer
:meth:`~CommitQueue.take_all`\\ s whatever has queued since its previous write and
appends it as one batch (group commit). So a store with a network round trip pays one
round trip per batch, not per token, and a slow store never slows the generator until
``limit`` events wait: then ``push`` says the queue is full and the generator's side
waits in :meth:`~CommitQueue.wait_space` (backpressure).
"""

from __future__ import annotations

import anyio
from typing_extensions import final

from .stores._contract import LogItem

__all__ = ["CommitQueue"]


@final
class CommitQueue:
    """Events waiting to be appended, as log items (see ``LogItem``: a ``str`` is a text
    event with the stream's usual name); one pushing task, one taking task."""

    __slots__ = ("_closed", "_entries", "_limit", "_space", "_taker")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: list[LogItem] = []
        self._closed = False
        self._taker: anyio.Event | None = None  # set when the writer waits for entries
        self._space: anyio.Event | None = None  # set when the pusher waits for room

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, item: LogItem) -> bool:
        """Queue ``item``; return ``True`` if the queue is now full (see :meth:`wait_space`)."""
        entries = self._entries
        entries.append(item)
        if self._taker is not None:
            self._taker.set()
            self._taker = None
        return len(entries) >= self._limit

    async def wait_space(self) -> None:
        """Wait until the writer has taken the queued entries, if it is still full."""
        if len(self._entries) >= self._limit:
            self._space = anyio.Event()
            await self._space.wait()

    def close(self) -> None:
        """No more entries will come: the writer takes what is left, then stops."""
        self._closed = True
        if self._taker is not None:
            self._taker.set()
            self._taker = None

    async def take_all(self) -> list[LogItem]:
        """Every queued entry, waiting for one if none is; ``[]`` once closed and empty."""
        while not self._entries:
            if self._closed:
                return []
            self._taker = anyio.Event()
            await self._taker.wait()
        batch, self._entries = self._entries, []
        if self._space is not None:
            self._space.set()
            self._space = None
        return batch
