"""The task group that runs a streamer's producers, and how it is hosted.

Producers outlive the requests that start them, so they cannot run in a request's task.
They run in one task group owned by the streamer: entered by ``async with streamer``
(structured: the app's lifespan owns it), or, when the streamer is used without that,
hosted by a task started on first use on the running event loop (an asyncio task, or a
trio system task) and stopped by ``aclose()``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from typing_extensions import final

from ._exceptions import StreamerClosedError
from ._producer import Producer

__all__ = ["ProducerHost"]

logger = logging.getLogger("resumable_sse")


@final
class ProducerHost:
    """Runs producers; on shutdown stops them, waits for their ends, then cancels the rest."""

    def __init__(self, shutdown_timeout: float) -> None:
        self._shutdown_timeout = shutdown_timeout
        self._producers: dict[str, Producer] = {}
        self._tg: TaskGroup | None = None
        self._closed = False
        self._idle: anyio.Event | None = None
        # Set when the host task (not `async with`) runs the task group.
        self._hosted: tuple[anyio.Event, anyio.Event, anyio.Event] | None = None
        self._host_task: object = None  # a strong reference, so asyncio keeps the task alive

    def producer(self, session_id: str) -> Producer | None:
        """The producer of ``session_id`` running here, if any."""
        return self._producers.get(session_id)

    async def ready(self) -> None:
        """Make sure producers can be run: start the host task if nothing runs them yet.

        Raises:
            StreamerClosedError: the streamer is closed.
        """
        if self._closed:
            raise StreamerClosedError("the streamer is closed")
        if self._tg is not None:
            return
        if self._hosted is None:
            self._hosted = (anyio.Event(), anyio.Event(), anyio.Event())
            self._spawn_host_task()
        await self._hosted[0].wait()
        if self._tg is None:
            raise StreamerClosedError("the streamer is closed")

    async def run(
        self,
        session_id: str,
        producer: Producer,
        runner: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run ``producer`` in the background; call :meth:`ready` first.

        ``runner``, if given, is awaited instead of ``producer.run`` (it wraps it).

        Raises:
            StreamerClosedError: the streamer began closing since :meth:`ready` (while
                the stream was being claimed). The stream is ended at once with
                ``cancelled`` (reason ``shutdown``) and its generator closed unused, so
                no stream is left running without a producer.
        """
        if self._closed or self._tg is None:
            await producer.abandon("shutdown")
            raise StreamerClosedError("the streamer is closed")
        self._producers[session_id] = producer
        self._tg.start_soon(
            self._run, session_id, producer, runner or producer.run, name=f"producer {session_id}"
        )

    async def _run(
        self, session_id: str, producer: Producer, runner: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            await runner()
        finally:
            if self._producers.get(session_id) is producer:
                del self._producers[session_id]
            if not self._producers and self._idle is not None:
                self._idle.set()

    # -- hosting by `async with` ----------------------------------------------------------

    async def enter(self) -> None:
        if self._tg is not None or self._closed:
            raise RuntimeError("the streamer is already running or closed")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg = self._tg
        assert tg is not None
        self._closed = True
        await self._drain()
        self._tg = None
        await tg.__aexit__(exc_type, exc, tb)

    # -- hosting by a task of its own -----------------------------------------------------

    def _spawn_host_task(self) -> None:
        try:
            import asyncio

            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._host_task = loop.create_task(self._host(), name="resumable-sse host")
            return
        trio = sys.modules.get("trio")
        if trio is None:
            raise RuntimeError("no running asyncio or trio event loop")
        trio.lowlevel.spawn_system_task(self._host, name="resumable-sse host")

    async def _host(self) -> None:
        assert self._hosted is not None
        started, stop, done = self._hosted
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                started.set()
                await stop.wait()
                await self._drain()
        except BaseException:  # the event loop is shutting down and cancelled us
            logger.debug("streamer host task ended", exc_info=True)
            raise
        finally:
            self._tg = None
            started.set()
            done.set()

    # -- shutdown -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every producer (idempotent); with a host task, also end that task."""
        if self._closed:
            if self._hosted is not None:
                await self._hosted[2].wait()
            return
        self._closed = True
        if self._hosted is not None:
            self._hosted[1].set()
            await self._hosted[2].wait()
        elif self._tg is not None:  # entered with `async with`: end the streams now
            await self._drain()

    async def _drain(self) -> None:
        for producer in list(self._producers.values()):
            producer.stop("shutdown")
        if self._producers:
            self._idle = anyio.Event()
            with anyio.move_on_after(self._shutdown_timeout):
                await self._idle.wait()
            if self._producers and self._tg is not None:
                logger.warning("%d streams did not end in time; cancelling", len(self._producers))
                self._tg.cancel_scope.cancel()
