"""The Redis store's commands: every session's script calls share a few pipelines.

Each store operation is one ``EVALSHA``. Rather than each taking a pooled connection
for its own round trip, calls join a queue; ``connections`` long-lived sender tasks
each send whatever has queued up as one pipeline (``transaction=False``: each script is
atomic by itself), so at most ``connections`` connections are in use at once. Under
load, a round trip thus carries the calls of many sessions (group commit); alone, a call
goes out at once, as a plain command (building a pipeline for one call costs a fifth of
its round trip's CPU). The number of pooled connections is bounded by ``connections``
whatever the number of sessions, which matters because redis-py's asyncio pool raises
``MaxConnectionsError`` at its limit instead of waiting.

A call whose caller is cancelled still completes in its pipeline (its result is
dropped), so a cancelled reader can never disturb the other calls sent with it. The
scripts are loaded before the first call; if Redis lost them (a restart, ``SCRIPT
FLUSH``), they are loaded again and the calls that got ``NOSCRIPT`` are sent again.
Calls refused with ``CLUSTERDOWN`` or ``TRYAGAIN`` (a Cluster failing over or
migrating a slot) are sent again after a short pause, as redis-py does for single
commands; these replies mean the script did not run, so nothing runs twice.

With ``timeout``, the store bounds each round trip itself (a late one fails its calls
with ``TimeoutError``, and redis-py drops the connection it was on). The store's own
client (made from a URL) has no socket timeout of redis-py's, which on Python 3.11
wraps every command's send in ``asyncio.wait_for``, a task per command: about a sixth
of a short stream's CPU.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from typing_extensions import final

from ._redis_host import TaskHost

__all__ = ["Pipelines"]

_T = TypeVar("_T")

_MAX_BATCH = 512  # calls per pipeline: bounds one reply's size and one round trip's time
_ATTEMPTS = 4
_CLUSTER_DOWN_DELAY = 0.25  # seconds, times the attempt number
#: Replies that mean the script did not run, so sending the call again is safe.
_NOT_RUN = (NoScriptError, ClusterDownError, TryAgainError)


class _Call:
    __slots__ = ("args", "future")

    def __init__(self, args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.args = args
        self.future = future  # cancelled if its caller is: the reply is then dropped


@final
class Pipelines:
    """Sends queued commands in pipelines, at most ``connections`` at a time.

    ``connections`` sender tasks, started on first use, take turns: an idle one is woken
    by the next call and sends everything queued by then. A call waits on a bare
    future (the store runs on asyncio only), and no task is started per pipeline.

    Args:
        client: The store's client (standalone, Sentinel-managed or Cluster).
        host: Runs the senders.
        connections: Pipelines in flight at once (each holds one pooled connection,
            or one per node on Cluster).
        scripts: The Lua sources to load before the first call and after ``NOSCRIPT``.
        timeout: Seconds a round trip may take, if the store bounds them itself.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        host: TaskHost,
        *,
        connections: int,
        scripts: Sequence[str],
        timeout: float | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._host = host
        self._connections = connections
        self._scripts = list(scripts)
        self._queue: list[_Call] = []
        self._idle: list[asyncio.Future[None]] = []  # one per sender waiting for calls
        self._serving = False

    async def call(self, *args: Any) -> Any:
        """Run one command (in the next pipeline) and return its reply.

        Raises:
            RedisError, OSError: the command failed, or Redis could not be reached.
        """
        (future,) = await self._enqueue([args])
        try:
            return await future
        except (RedisError, OSError) as exc:  # a copy: one error may fail a whole batch
            raise copy.copy(exc).with_traceback(None) from exc

    async def call_each(self, *commands: Sequence[Any]) -> list[Any]:
        """Run ``commands`` (in the next pipeline, together: one round trip); return each
        one's reply, or the ``RedisError`` or ``OSError`` it failed with."""
        futures = await self._enqueue(commands)
        replies: list[Any] = []
        try:
            for future in futures:
                try:
                    replies.append(await future)
                except (RedisError, OSError) as exc:
                    replies.append(copy.copy(exc).with_traceback(None))
        finally:
            for future in futures:
                future.cancel()  # if this caller was cancelled: their replies are dropped
        return replies

    async def _enqueue(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Queue ``commands`` and wake an idle sender; the futures of their replies."""
        if not self._serving:
            tg = await self._host.task_group()
            if not self._serving:
                self._serving = True
                tg.start_soon(self._serve, name="resumable-sse redis pipelines")
        loop = asyncio.get_running_loop()
        calls = [_Call(tuple(args), loop.create_future()) for args in commands]
        self._queue += calls
        while self._idle:
            sender = self._idle.pop()
            if not sender.done():
                sender.set_result(None)
                break
        return [call.future for call in calls]

    async def load_scripts(self) -> None:
        """Load every script (on every primary, on Cluster)."""
        for source in self._scripts:
            await self._bounded(self._client.script_load(source))

    async def _serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self._connections):
                    tg.start_soon(self._sender)
        finally:
            self._serving = False
            _fail(self._queue, RedisError("the Redis store is closed"))
            self._queue.clear()

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                idle = loop.create_future()
                self._idle.append(idle)
                await idle
                continue
            batch = self._queue[:_MAX_BATCH]
            del self._queue[:_MAX_BATCH]
            await self._send(batch)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            for attempt in range(_ATTEMPTS):
                batch, noscript = await self._bounded(
                    self._execute(batch, last=attempt == _ATTEMPTS - 1)
                )
                if not batch:
                    break
                if noscript:  # Redis lost the scripts (a restart): load them again
                    await self.load_scripts()
                else:  # the cluster is failing over: give it a moment, like redis-py does
                    await anyio.sleep(_CLUSTER_DOWN_DELAY * (attempt + 1))
        except (RedisError, OSError) as exc:
            _fail(batch, exc)
        finally:
            _fail(batch, RedisError("the Redis store is closed"))  # if cancelled

    async def _bounded(self, round_trip: Awaitable[_T]) -> _T:
        """``round_trip``, failed with ``TimeoutError`` (an ``OSError``) past ``timeout``."""
        if self._timeout is None:
            return await round_trip
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(self._timeout):
                return await round_trip
        with anyio.fail_after(self._timeout):  # Python 3.10 has no asyncio.timeout
            return await round_trip

    async def _execute(self, batch: list[_Call], *, last: bool) -> tuple[list[_Call], bool]:
        """Send ``batch`` as one pipeline; return the calls to send again, and why.

        Calls are sent again (unless ``last``) when their script was not run at all:
        ``NOSCRIPT`` (the second value is then true), ``CLUSTERDOWN`` or ``TRYAGAIN``.
        """
        replies: list[Any]
        if len(batch) == 1:  # the usual case unless under load: no pipeline to build
            try:
                replies = [await self._client.execute_command(*batch[0].args)]
            except ResponseError as exc:  # the command's own error, as a pipeline returns it
                replies = [exc]
        else:
            pipe = self._client.pipeline(transaction=False)
            for call in batch:
                pipe.execute_command(*call.args)
            replies = await pipe.execute(raise_on_error=False)
        again: list[_Call] = []
        noscript = False
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, _NOT_RUN) and not last:
                again.append(call)
                noscript = noscript or isinstance(reply, NoScriptError)
                continue
            if call.future.done():  # its caller was cancelled
                continue
            if isinstance(reply, (RedisError, OSError)):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)
        return again, noscript


def _fail(calls: list[_Call], error: RedisError | OSError) -> None:
    """End every call of ``calls`` that has no reply yet with ``error``."""
    for call in calls:
        if not call.future.done():
            call.future.set_exception(error)
