"""The Redis store's commands: every session's script calls share a few pipelines.

Each store operation is one ``EVALSHA``. Rather than each taking a pooled connection
for its own round trip, calls join a queue; one dispatcher task sends whatever has
queued up as one pipeline (``transaction=False``: each script is atomic by itself),
on at most ``connections`` connections at once. Under load, a round trip thus carries
the calls of many sessions (group commit); alone, a call goes out at once. The number
of pooled connections is bounded by ``connections`` whatever the number of sessions,
which matters because redis-py's asyncio pool raises ``MaxConnectionsError`` at its
limit instead of waiting.

A call whose caller is cancelled still completes in its pipeline (its result is
dropped), so a cancelled reader can never disturb the other calls sent with it. The
scripts are loaded before the first call; if Redis lost them (a restart, ``SCRIPT
FLUSH``), they are loaded again and the calls that got ``NOSCRIPT`` are sent again.
Calls refused with ``CLUSTERDOWN`` or ``TRYAGAIN`` (a Cluster failing over or
migrating a slot) are sent again after a short pause, as redis-py does for single
commands; these replies mean the script did not run, so nothing runs twice.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError, RedisError, TryAgainError
from typing_extensions import final

from ._redis_host import TaskHost

__all__ = ["Pipelines"]

_MAX_BATCH = 512  # calls per pipeline: bounds one reply's size and one round trip's time
_ATTEMPTS = 4
_CLUSTER_DOWN_DELAY = 0.25  # seconds, times the attempt number
#: Replies that mean the script did not run, so sending the call again is safe.
_NOT_RUN = (NoScriptError, ClusterDownError, TryAgainError)


class _Call:
    __slots__ = ("args", "done", "error", "result")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.done = anyio.Event()
        self.result: Any = None
        self.error: RedisError | OSError | None = None


@final
class Pipelines:
    """Sends queued commands in pipelines, at most ``connections`` at a time.

    Args:
        client: The store's client (standalone, Sentinel-managed or Cluster).
        host: Runs the dispatcher and the pipelines.
        connections: Pipelines in flight at once (each holds one pooled connection,
            or one per node on Cluster).
        scripts: The Lua sources to load before the first call and after ``NOSCRIPT``.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        host: TaskHost,
        *,
        connections: int,
        scripts: Sequence[str],
    ) -> None:
        self._client = client
        self._host = host
        self._slots = anyio.Semaphore(connections)
        self._scripts = list(scripts)
        self._queue: list[_Call] = []
        self._wake = anyio.Event()
        self._dispatching = False

    async def call(self, *args: Any) -> Any:
        """Run one command (in the next pipeline) and return its reply.

        Raises:
            RedisError, OSError: the command failed, or Redis could not be reached.
        """
        if not self._dispatching:
            tg = await self._host.task_group()
            if not self._dispatching:
                self._dispatching = True
                tg.start_soon(self._dispatch, name="resumable-sse redis pipelines")
        call = _Call(args)
        self._queue.append(call)
        self._wake.set()
        await call.done.wait()
        if call.error is not None:  # a copy: one error may fail a whole batch of callers
            raise copy.copy(call.error).with_traceback(None) from call.error
        return call.result

    async def load_scripts(self) -> None:
        """Load every script (on every primary, on Cluster)."""
        for source in self._scripts:
            await self._client.script_load(source)

    async def _dispatch(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    if not self._queue:
                        self._wake = anyio.Event()
                        await self._wake.wait()
                        continue
                    await self._slots.acquire()
                    batch = self._queue[:_MAX_BATCH]
                    del self._queue[:_MAX_BATCH]
                    tg.start_soon(self._send, batch)
        finally:
            self._dispatching = False
            _fail(self._queue, RedisError("the Redis store is closed"))
            self._queue.clear()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            for attempt in range(_ATTEMPTS):
                batch, noscript = await self._execute(batch, last=attempt == _ATTEMPTS - 1)
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
            self._slots.release()

    async def _execute(self, batch: list[_Call], *, last: bool) -> tuple[list[_Call], bool]:
        """Send ``batch`` as one pipeline; return the calls to send again, and why.

        Calls are sent again (unless ``last``) when their script was not run at all:
        ``NOSCRIPT`` (the second value is then true), ``CLUSTERDOWN`` or ``TRYAGAIN``.
        """
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
            if isinstance(reply, (RedisError, OSError)):
                call.error = reply
            else:
                call.result = reply
            call.done.set()
        return again, noscript


def _fail(calls: list[_Call], error: RedisError | OSError) -> None:
    """End every call of ``calls`` that has no reply yet with ``error``."""
    for call in calls:
        if not call.done.is_set():
            call.error = error
            call.done.set()
