"""A TCP proxy for tests: forwards bytes to a server and cuts every connection on command.

Cutting from the middle, rather than stopping the server, is what a network drop looks
like to both ends: the client's connection dies mid-response while the server (and the
stream it is producing) lives on.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketAttribute, SocketStream


class _Connection:
    def __init__(self, scope: anyio.CancelScope, *streams: SocketStream) -> None:
        self.scope = scope
        self.streams = streams
        self.closed = anyio.Event()


class DropProxy:
    """Forwards connections on ``url`` to a server on 127.0.0.1; :meth:`drop` cuts them."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.upstream_port = upstream_port
        #: Connections accepted so far.
        self.accepted = 0
        #: Connections cut by :meth:`drop` so far.
        self.dropped = 0
        self._live: set[_Connection] = set()

    async def drop(self, *, reset: bool = True) -> int:
        """Cut every open connection, on both sides; return how many there were.

        Args:
            reset: Abort with a TCP reset, as a dead network path looks to a peer; else
                close normally (FIN), as a proxy that gives up would.
        """
        live = list(self._live)
        for connection in live:
            if reset:
                for stream in connection.streams:
                    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.scope.cancel()
        for connection in live:
            await connection.closed.wait()
        self.dropped += len(live)
        return len(live)

    async def handle(self, client: SocketStream) -> None:
        """Serve one accepted connection until either side closes or it is dropped."""
        self.accepted += 1
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            except OSError:
                return
            async with upstream:
                with anyio.CancelScope() as scope:
                    connection = _Connection(scope, client, upstream)
                    self._live.add(connection)
                    try:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(_pump, client, upstream)
                            tg.start_soon(_pump, upstream, client)
                    finally:
                        self._live.discard(connection)
        connection.closed.set()


async def _pump(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
        await sink.send_eof()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


@asynccontextmanager
async def drop_proxy(upstream_url: str) -> AsyncIterator[DropProxy]:
    """Run a :class:`DropProxy` in front of ``upstream_url`` (``http://127.0.0.1:PORT``)."""
    upstream_port = int(upstream_url.rsplit(":", 1)[1])
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    proxy = DropProxy(port, upstream_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
