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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError
from typing_extensions import final

from .._backoff import backoff_delay
from ._redis_channels import Channel, Node, Watch, new_node
from ._redis_host import TaskHost

__all__ = ["Notifier", "Watch"]

logger = logging.getLogger("resumable_sse")

_KEEPALIVE = 10.0  # seconds without traffic before the connection is pinged
_RECONNECT_BASE = 0.05  # seconds before reconnecting, doubling while it fails
_RECONNECT_CAP = 2.0


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
        self._nodes: dict[str, Node] = {}

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
            channel = node.channels[name] = Channel(name)
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

    def _leave(self, node: Node, channel: Channel) -> None:
        if channel.ended:  # no more news will come for this stream
            del node.channels[channel.name]
            node.queue("SUNSUBSCRIBE", channel.name)
        else:
            channel.idle = anyio.current_time()
            node.wake.set()

    async def _node_for(self, name: str) -> Node:
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
            node = self._nodes[key] = new_node(client, key, cluster_node)
            tg.start_soon(self._serve, node, name=f"resumable-sse notifier {key}")
        return node

    # -- the connections ------------------------------------------------------------------

    async def _serve(self, node: Node) -> None:
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

    async def _connected(self, node: Node) -> bool:
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

    async def _read_loop(self, node: Node, connection: Any) -> bool:
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

    async def _send_loop(self, node: Node, connection: Any) -> None:
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
