"""The Redis store's notifier: one pub/sub connection per Redis node wakes every local waiter.

Waiting readers and producers' cancel watches hold no Redis connection. Each waits on
an in-process event of its session's *channel* (``{<prefix>|<session id>}:n``, in the
session's Cluster slot), to which the write scripts publish with ``SPUBLISH``: ``a``
(events appended), ``f`` (finished), ``c`` (cancel requested), ``d`` (deleted). This
module keeps one connection per node (one on a standalone or Sentinel-managed server)
subscribed (``SSUBSCRIBE``) to the channels that local waiters need, and turns each
message into a bump of the channel's counters.

A waiter marks the counters *before* it reads the stream and, if it found nothing, waits
until they move (or a bounded time passes): a message published after the read always
wakes it, one published before it only wakes it early. A lost message therefore only
delays a waiter until its bounded wait ends. When a connection breaks, every waiter on
that node is woken to read again, and its channels are subscribed afresh by the next
waits (on Cluster, on whatever node then owns the slot).

A channel stays subscribed while someone waits on it and for ``linger`` seconds after
(readers come back after each page; unsubscribing at once would churn), or until its
stream ends. The connections' tasks run in the store's :class:`TaskHost`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError
from typing_extensions import final

from .._backoff import backoff_delay
from ._redis_host import TaskHost

__all__ = ["Notifier", "Watch"]

logger = logging.getLogger("resumable_sse")

_KEEPALIVE = 10.0  # seconds without traffic before the connection is pinged
_RECONNECT_BASE = 0.05  # seconds before reconnecting, doubling while it fails
_RECONNECT_CAP = 2.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Channel:
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

    def __init__(self, channel: _Channel) -> None:
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


class _Node:
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
        self.channels: dict[str, _Channel] = {}
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


@final
class Notifier:
    """Wakes local waiters on the messages the store's scripts publish.

    Args:
        client: The store's client (standalone, Sentinel-managed or Cluster).
        host: Runs the connections' tasks.
        linger: Seconds a channel stays subscribed after its last waiter left.
    """

    def __init__(self, client: Redis | RedisCluster, host: TaskHost, *, linger: float) -> None:
        self._client = client
        self._host = host
        self._linger = linger
        self._nodes: dict[str, _Node] = {}

    # -- waiting --------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, name: str, confirm_within: float) -> AsyncIterator[Watch]:
        """Subscribe to ``name``, waiting at most ``confirm_within`` s for the confirmation.

        Past that (the node is unreachable, say) the watch is given anyway: its waits
        then end by their own bound, and the caller's reads report the outage.
        """
        node = await self._node_for(name)
        channel = node.channels.get(name)
        if channel is None:
            channel = node.channels[name] = _Channel(name)
            node.confirmed[name] = anyio.Event()
            node.queue("SSUBSCRIBE", name)
        confirmed = node.confirmed.get(name)
        channel.idle = None
        channel.waiters += 1
        try:
            if confirmed is not None:
                with anyio.move_on_after(confirm_within):
                    await confirmed.wait()
            yield Watch(channel)
        finally:
            channel.waiters -= 1
            if not channel.waiters and node.channels.get(name) is channel:
                self._leave(node, channel)

    def _leave(self, node: _Node, channel: _Channel) -> None:
        if channel.ended:  # no more news will come for this stream
            del node.channels[channel.name]
            node.queue("SUNSUBSCRIBE", channel.name)
        else:
            channel.idle = anyio.current_time()
            node.wake.set()

    async def _node_for(self, name: str) -> _Node:
        tg = await self._host.task_group()
        client = self._client
        cluster_node = None
        key = "main"
        if isinstance(client, RedisCluster):
            cluster_node = client.get_node_from_key(name)
            if cluster_node is None:
                raise RedisError(f"no cluster node serves channel {name!r}")
            key = cluster_node.name
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _new_node(client, key, cluster_node)
            tg.start_soon(self._serve, node, name=f"resumable-sse notifier {key}")
        return node

    # -- the connections ------------------------------------------------------------------

    async def _serve(self, node: _Node) -> None:
        """Keep the node's connection while channels need it; reconnect with backoff."""
        failures = 0
        while True:
            if not node.ops:  # connect on demand: a waiter has queued a subscription
                await node.wake.wait()
            node.wake = anyio.Event()
            failures += 1
            try:
                if await self._connected(node):
                    failures = 1
            except (RedisError, OSError) as exc:
                logger.debug("notifier %s cannot connect: %r", node.name, exc)
            except Exception:  # a bug: keep serving, the waiters fall back to bounded waits
                logger.exception("notifier %s failed", node.name)
            finally:
                node.reset()
            await anyio.sleep(backoff_delay(failures, base=_RECONNECT_BASE, cap=_RECONNECT_CAP))

    async def _connected(self, node: _Node) -> bool:
        """Serve one connection until it fails; return whether it ever answered."""
        connection = await node.acquire()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send_loop, node, connection)
                answered = await self._read_loop(node, connection)
                tg.cancel_scope.cancel()
            return answered
        finally:
            with anyio.CancelScope(shield=True):
                with suppress(RedisError, OSError):
                    await node.release(connection)

    async def _read_loop(self, node: _Node, connection: Any) -> bool:
        """Read replies and messages until the connection fails; return whether any came."""
        answered = False
        while True:
            try:
                reply = await connection.read_response(
                    timeout=_KEEPALIVE, disconnect_on_error=False, push_request=True
                )
            except ResponseError as exc:
                node.on_error(exc)
                continue
            except (RedisError, OSError) as exc:
                logger.debug("notifier %s lost its connection: %r", node.name, exc)
                return answered
            if reply is not None:
                answered = True
                node.on_reply(reply)
            elif any(command == "PING" for command, _ in node.sent):
                logger.debug("notifier %s: no answer to a ping", node.name)
                return answered
            else:
                node.queue("PING", "")

    async def _send_loop(self, node: _Node, connection: Any) -> None:
        """Send queued (un)subscriptions in batches; unsubscribe channels left idle."""
        try:
            while True:
                node.wake = anyio.Event()
                if node.ops:
                    ops, node.ops = node.ops, []
                    node.sent.extend(ops)
                    commands = [(c,) if c == "PING" else (c, name) for c, name in ops]
                    packed = connection.pack_commands(commands)
                    await connection.send_packed_command(packed, check_health=False)
                due = node.sweep(anyio.current_time(), self._linger)
                if node.ops:
                    continue
                wait = None if due is None else max(due - anyio.current_time(), 0.0)
                with anyio.move_on_after(wait):
                    await node.wake.wait()
        except (RedisError, OSError) as exc:
            logger.debug("notifier %s cannot send: %r", node.name, exc)
            await connection.disconnect()  # ends the read loop too


def _new_node(client: Redis | RedisCluster, key: str, cluster_node: Any) -> _Node:
    """A node whose connection comes from the client's pool (or the Cluster node's)."""
    if cluster_node is not None:

        async def acquire() -> Any:
            connection = cluster_node.acquire_connection()
            await connection.connect()
            return connection

        async def release(connection: Any) -> None:
            await connection.disconnect()
            cluster_node.release(connection)

        return _Node(key, acquire, release)
    assert isinstance(client, Redis)
    pool: Any = client.connection_pool

    async def acquire_pooled() -> Any:
        return await pool.get_connection()

    async def release_pooled(connection: Any) -> None:
        await connection.disconnect()
        await pool.release(connection)

    return _Node(key, acquire_pooled, release_pooled)
