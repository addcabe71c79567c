"""Accepting what users pass as ``generator``: async or sync iterables, or factories."""

from __future__ import annotations

import inspect
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

__all__ = ["Items", "Source", "close_unused", "open_source"]

#: What a generator may produce: ``str``, ``bytes``, ``{"data": ..., "event": ...}`` or JSON.
Items: TypeAlias = AsyncIterable[object] | Iterable[object]

#: A stream's content: an async or sync iterable, or a zero-argument callable returning
#: one (or an awaitable of one). A callable is only called if this call starts the stream.
Source: TypeAlias = Items | Callable[[], Items | Awaitable[Items]]

_END = object()


def _is_iterable(source: object) -> bool:
    return isinstance(source, (AsyncIterable, Iterable))


async def open_source(source: Source) -> AsyncIterator[object]:
    """Return an async iterator over the source's items.

    Sync iterables are iterated in a worker thread so a blocking ``next()`` never
    blocks the event loop.

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
        return _iterate_in_thread(iter(items))
    raise TypeError(
        "generator must be an async iterable, an iterable, or a callable returning one; "
        f"got {type(items).__name__}"
    )


class _ThreadedIterator:
    """A sync iterator stepped in worker threads, which a cancel may leave behind.

    A cancelled ``next()`` cannot be interrupted: its thread is abandoned so that cancel
    and shutdown never wait for it, and that thread closes the generator itself as soon
    as its blocked call returns (closing it earlier would raise "generator already
    executing").
    """

    def __init__(self, iterator: Iterator[object]) -> None:
        self.iterator = iterator
        self.lock = threading.Lock()
        self.running = False
        self.abandoned = False

    def step(self) -> object:  # runs in a worker thread
        try:
            return next(self.iterator, _END)
        finally:
            with self.lock:
                self.running = False
                if self.abandoned:
                    self.close()

    def close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()


async def _iterate_in_thread(iterator: Iterator[object]) -> AsyncIterator[object]:
    state = _ThreadedIterator(iterator)
    try:
        while True:
            state.running = True
            try:
                item = await anyio.to_thread.run_sync(state.step, abandon_on_cancel=True)
            except BaseException:
                with state.lock:
                    state.abandoned = state.running
                raise
            if item is _END:
                return
            yield item
    finally:
        if not state.abandoned:
            # Shielded: when cancellation brought us here, the close must still run.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(state.close)


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
