"""The notifier's bookkeeping: channels, their waiters' watches, one node's subscriptions.

A :class:`Channel` counts the messages of one session channel (data news and cancel
news apart) and wakes the waiters of each kind; a :class:`Watch` is one waiter's hold on
it. A :class:`Node` is one Redis node's subscriber connection as the notifier sees it:
the channels subscribed there, the commands to send, the replies awaited (in order), and
what a reply or a broken connection means for the waiters. ``_redis_notify.py`` runs the
connections; nothing here does I/O.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError
from typing_extensions import final

__all__ = ["Channel", "Node", "Watch", "new_node"]

logger = logging.getLogger("resumable_sse")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Channel:
    """One subscribed channel: counters that messages bump, and events to wait on."""

    __slots__ = (
        "control",
        "control_event",
        "data",
        "data_event",
        "dropped",
        "ended",
        "idle",
        "name",
        "waiters",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = 0  # appended, finished, deleted, or the connection broke
        self.control = 0  # cancel requested, finished, deleted, or the connection broke
        self.data_event: anyio.Event | None = None
        self.control_event: anyio.Event | None = None
        self.ended = False  # the last message said finished or deleted
        self.dropped = False  # no longer subscribed: a waiter must watch afresh
        self.idle: float | None = None  # when the last waiter left (None: in use)
        self.waiters = 0

    def bump(self, data: bool, control: bool) -> None:
        if data:
            self.data += 1
            if self.data_event is not None:
                self.data_event.set()
                self.data_event = None
        if control:
            self.control += 1
            if self.control_event is not None:
                self.control_event.set()
                self.control_event = None

    def on_message(self, kind: str) -> None:
        self.ended = kind in ("f", "d")
        self.bump(kind != "c", kind != "a")


@final
class Watch:
    """A waiter's hold on one channel: :meth:`wait` returns once it moved after the mark."""

    __slots__ = ("_channel", "_mark")

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._mark = (channel.data, channel.control)

    @property
    def current(self) -> bool:
        """Whether the channel is still subscribed (else messages no longer reach it)."""
        return not self._channel.dropped

    def mark(self) -> None:
        """Remember the counters; call it before reading what the waiter waits for."""
        self._mark = (self._channel.data, self._channel.control)

    async def wait(self, within: float, *, control: bool = False) -> None:
        """Wait for data (or, with ``control``, cancel) news since the mark, at most ``within`` s.

        The mark moves to now when it returns.
        """
        channel = self._channel
        with anyio.move_on_after(within):
            if control:
                while channel.control == self._mark[1]:
                    if channel.control_event is None:
                        channel.control_event = anyio.Event()
                    await channel.control_event.wait()
            else:
                while channel.data == self._mark[0]:
                    if channel.data_event is None:
                        channel.data_event = anyio.Event()
                    await channel.data_event.wait()
        self.mark()


class Node:
    """One Redis node's subscriber connection and the channels subscribed on it."""

    def __init__(
        self,
        name: str,
        acquire: Callable[[], Awaitable[Any]],
        release: Callable[[Any], Awaitable[None]],
    ) -> None:
        self.name = name
        self.acquire = acquire
        self.release = release
        self.channels: dict[str, Channel] = {}
        self.confirmed: dict[str, anyio.Event] = {}
        self.ops: list[tuple[str, str]] = []  # commands to send
        self.sent: deque[tuple[str, str]] = deque()  # sent, reply not read yet
        self.wake = anyio.Event()

    def queue(self, command: str, channel: str) -> None:
        self.ops.append((command, channel))
        self.wake.set()

    def reset(self) -> None:
        """The connection is gone: wake every waiter, forget every subscription."""
        for event in self.confirmed.values():
            event.set()
        for channel in self.channels.values():
            channel.dropped = True
            channel.bump(True, True)
        self.channels.clear()
        self.confirmed.clear()
        self.ops.clear()
        self.sent.clear()

    def on_reply(self, reply: Any) -> None:
        if not isinstance(reply, (list, tuple)) or len(reply) < 2:
            self._answered("PING")
            return
        kind, name = _text(reply[0]), _text(reply[1])
        if kind == "smessage":
            channel = self.channels.get(name)
            if channel is not None:
                channel.on_message(_text(reply[2]))
        elif kind == "ssubscribe":
            self._answered("SSUBSCRIBE")
            event = self.confirmed.pop(name, None)
            if event is not None:
                event.set()
        elif kind == "sunsubscribe" and not self._answered("SUNSUBSCRIBE"):
            # The server dropped the subscription (its slot moved): let the waiters
            # read again; their next wait subscribes on the slot's new node.
            self._drop(name)
        elif kind == "pong":
            self._answered("PING")

    def on_error(self, exc: ResponseError) -> None:
        """An error reply (a slot that moved, say): waiters fall back to bounded waits."""
        if self.sent:
            command, name = self.sent.popleft()
            if command == "SSUBSCRIBE":
                logger.debug("SSUBSCRIBE %s failed: %s", name, exc)
                event = self.confirmed.pop(name, None)
                if event is not None:
                    event.set()
                channel = self.channels.pop(name, None)
                if channel is not None:  # its waiters watch afresh after their bounded wait
                    channel.dropped = True

    def _answered(self, command: str) -> bool:
        if self.sent and self.sent[0][0] == command:
            self.sent.popleft()
            return True
        return False

    def _drop(self, name: str) -> None:
        channel = self.channels.pop(name, None)
        if channel is not None:
            channel.dropped = True
            channel.bump(True, True)

    def sweep(self, now: float, linger: float) -> float | None:
        """Unsubscribe channels unused for ``linger`` s; return when to sweep next."""
        due: float | None = None
        for name, channel in list(self.channels.items()):
            if channel.idle is None:
                continue
            if channel.idle + linger <= now:
                del self.channels[name]
                self.queue("SUNSUBSCRIBE", name)
            else:
                due = channel.idle + linger if due is None else min(due, channel.idle + linger)
        return due


def new_node(client: Redis | RedisCluster, key: str, cluster_node: Any) -> Node:
    """A node whose connection comes from the client's pool (or the Cluster node's)."""
    if cluster_node is not None:

        async def acquire() -> Any:
            connection = cluster_node.acquire_connection()
            await connection.connect()
            return connection

        async def release(connection: Any) -> None:
            await connection.disconnect()
            cluster_node.release(connection)

        return Node(key, acquire, release)
    assert isinstance(client, Redis)
    pool: Any = client.connection_pool

    async def acquire_pooled() -> Any:
        return await pool.get_connection()

    async def release_pooled(connection: Any) -> None:
        await connection.disconnect()
        await pool.release(connection)

    return Node(key, acquire_pooled, release_pooled)
