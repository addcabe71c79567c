"""Accepting what users pass as ``generator``: async or sync iterables, or factories."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TypeAlias

import anyio
from anyio import CapacityLimiter

__all__ = ["Items", "Source", "close_unused", "open_source"]

#: What a generator may produce: ``str``, ``bytes``, ``{"data": ..., "event": ...}`` or JSON.
Items: TypeAlias = AsyncIterable[object] | Iterable[object]

#: A stream's content: an async or sync iterable, or a zero-argument callable returning
#: one (or an awaitable of one). A callable is only called if this call starts the stream.
Source: TypeAlias = Items | Callable[[], Items | Awaitable[Items]]

_END = object()
_CLOSE_WAIT = 5.0  # seconds a generator's close() may wait for a free worker thread

logger = logging.getLogger("resumable_sse")


def _is_iterable(source: object) -> bool:
    return isinstance(source, (AsyncIterable, Iterable))


async def open_source(
    source: Source, *, threads: CapacityLimiter | None = None
) -> AsyncIterator[object]:
    """Return an async iterator over the source's items.

    Sync iterables are iterated in a worker thread so a blocking ``next()`` never
    blocks the event loop. Each ``next()`` (and the final ``close()``) holds a token of
    ``threads`` while it runs; when none is free it waits for one. Pass a limiter of
    its own, so that blocked generators never hold the tokens of anyio's default
    limiter, which the app's own sync endpoints need.

    Raises:
        TypeError: ``source`` is none of the accepted kinds.
    """
    items: object = source
    if callable(items) and not _is_iterable(items):
        items = items()
        if inspect.isawaitable(items):
            items = await items
    if isinstance(items, AsyncIterable):
        return aiter(items)
    if isinstance(items, Iterable) and not isinstance(items, (str, bytes, Mapping)):
        return _iterate_in_thread(iter(items), threads)
    raise TypeError(
        "generator must be an async iterable, an iterable, or a callable returning one; "
        f"got {type(items).__name__}"
    )


class _ThreadedIterator:
    """A sync iterator stepped in worker threads, which a cancel may leave behind.

    A cancelled ``next()`` cannot be interrupted: its thread is abandoned so that cancel
    and shutdown never wait for it, and that thread closes the generator itself as soon
    as its blocked call returns (closing it earlier would raise "generator already
    executing"). A step cancelled before its thread started (it was waiting for a free
    thread) never runs.
    """

    def __init__(self, iterator: Iterator[object]) -> None:
        self.iterator = iterator
        self.lock = threading.Lock()
        self.running = False
        self.given_up = False

    def step(self) -> object:  # runs in a worker thread
        with self.lock:
            if self.given_up:
                return _END
            self.running = True
        try:
            return next(self.iterator, _END)
        finally:
            with self.lock:
                self.running = False
                if self.given_up:
                    self.close()

    def give_up(self) -> bool:
        """Stop stepping (a step was cancelled); return whether its thread closes the iterator."""
        with self.lock:
            self.given_up = True
            return self.running

    @property
    def unstarted(self) -> bool:
        """Whether the iterator is a generator whose body has not run at all."""
        return (
            inspect.isgenerator(self.iterator)
            and inspect.getgeneratorstate(self.iterator) == inspect.GEN_CREATED
        )

    def close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()


async def _iterate_in_thread(
    iterator: Iterator[object], threads: CapacityLimiter | None
) -> AsyncIterator[object]:
    state = _ThreadedIterator(iterator)
    thread_closes = False
    try:
        while True:
            try:
                item = await anyio.to_thread.run_sync(
                    state.step, abandon_on_cancel=True, limiter=threads
                )
            except BaseException:
                thread_closes = state.give_up()
                raise
            if item is _END:
                return
            yield item
    finally:
        if not thread_closes:
            await _close_in_thread(state, threads)


async def _close_in_thread(state: _ThreadedIterator, threads: CapacityLimiter | None) -> None:
    if state.unstarted:
        state.close()  # runs none of the generator's code: no thread needed
        return
    # Shielded, because cancellation may have brought us here, but bounded: when every
    # thread is taken by a blocked generator, waiting for one could last forever.
    with anyio.move_on_after(_CLOSE_WAIT, shield=True) as scope:
        await anyio.to_thread.run_sync(state.close, limiter=threads)
    if scope.cancelled_caught:
        logger.warning("a sync generator was not closed: no worker thread was free")


async def close_iterator(iterator: AsyncIterator[object]) -> None:
    """Close an iterator returned by :func:`open_source`, running its cleanup."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def close_unused(source: Source) -> None:
    """Close a source that will never be iterated, without running any of its items.

    A factory is simply not called. A generator is closed before its first step, so
    its body (an LLM call, say) never starts.
    """
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None and inspect.isgenerator(source):
        close()
