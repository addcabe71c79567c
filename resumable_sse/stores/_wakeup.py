"""Where a memory stream's readers wait for its next event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import anyio

__all__ = ["Wakeup", "on_asyncio"]

#: Waits pending at which cancelled ones are first dropped (a wake drops them all).
_PRUNE_AT = 64


class Wakeup:
    """The readers waiting for one stream's next event.

    A reader at an LLM's pace waits once per token, so a wait must cost little. On
    asyncio each waiting reader parks on a future of its own: an ``anyio.Event`` per
    wait would build an ``asyncio.Event`` each time, whose first wait takes a lock
    shared by the whole process. On other backends (trio) the readers wait on one
    ``anyio.Event`` that the next :meth:`wake` sets.

    ``waiting`` is true while a reader may be waiting: the producer calls :meth:`wake`
    after an event only then.
    """

    __slots__ = ("_event", "_futures", "_loop", "_prune_at", "waiting")

    def __init__(self) -> None:
        self._loop = _asyncio_loop()
        self._futures: list[asyncio.Future[None]] = []
        self._event: anyio.Event | None = None
        self._prune_at = _PRUNE_AT
        self.waiting = False

    def wait(self) -> Awaitable[None]:
        """What to await until the next :meth:`wake` (cancellable).

        On asyncio it is a bare future, one frame less on every wake-up. A cancelled
        wait leaves its future behind until the next wake; a stalled stream that many
        readers give up on prunes them now and then.
        """
        self.waiting = True
        if self._loop is None:
            if self._event is None:
                self._event = anyio.Event()
            return self._event.wait()
        if len(self._futures) >= self._prune_at:  # amortized: the bound doubles
            self._futures = [future for future in self._futures if not future.done()]
            self._prune_at = max(_PRUNE_AT, 2 * len(self._futures))
        future = self._loop.create_future()
        self._futures.append(future)
        return future

    def wake(self) -> None:
        """Wake every reader waiting now."""
        self.waiting = False
        if self._event is not None:
            self._event.set()
            self._event = None
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)


def on_asyncio() -> bool:
    """Whether the calling task is an asyncio task."""
    return _asyncio_loop() is not None


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, if the calling task is an asyncio task."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio, say
        return None
    return loop if asyncio.current_task(loop) is not None else None
