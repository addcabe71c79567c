"""Real servers for end-to-end tests: uvicorn in this process or in a child process.

Both listen on a free loopback port chosen by the OS. Readiness is awaited from the
server itself (uvicorn's ``started`` flag, or its startup line on stderr), never by
sleeping.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.types import ASGIApp


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def http_client(base_url: str = "", **options: Any) -> httpx.AsyncClient:
    """An httpx client for the test servers.

    All share one TLS context: httpx would otherwise load the CA bundle for every
    client (a tenth of a second on a busy machine), though loopback never uses TLS.
    """
    return httpx.AsyncClient(base_url=base_url, verify=_tls(), **options)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs.

    The port is bound but not listening, so nobody else can take it meanwhile and every
    connection attempt is refused at once.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Racy by nature: another process may take the port before the caller binds it. Use
    it only for servers that cannot be handed a socket (redis-server, the demo command).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket(port: int = 0) -> socket.socket:
    """A socket bound to 127.0.0.1 and already listening: clients may connect at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


@asynccontextmanager
async def serve_in_task(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn inside the current event loop (asyncio); yield its URL.

    The socket listens before uvicorn starts, so connections made right away wait in
    the backlog until uvicorn accepts them: no readiness polling is needed.
    """
    sock = listening_socket()
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's own logging setup (dictConfig) would close every handler
    # already installed in this process, pytest's among them.
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


class ServerProcess:
    """A uvicorn child process serving an app given by import string."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.output: list[str] = []

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: uvicorn's graceful shutdown runs."""
        self.proc.terminate()
        self.proc.wait(15)


@contextmanager
def serve_in_process(
    app: str, *, env: Mapping[str, str] | None = None, sock: socket.socket | None = None
) -> Iterator[ServerProcess]:
    """Run ``uvicorn <app>`` in a child process; yield once it accepts connections.

    The child serves on ``sock`` (by default a new listening socket), which it inherits:
    the port is never free for another process to take, and a server started again on
    the same socket keeps the port (connections wait in its backlog meanwhile).
    """
    with contextlib.ExitStack() as stack:
        if sock is None:
            sock = stack.enter_context(listening_socket())
        yield stack.enter_context(_child(app, sock, env or {}))


@contextmanager
def _child(app: str, sock: socket.socket, env: Mapping[str, str]) -> Iterator[ServerProcess]:
    fd = sock.fileno()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--fd",
            str(fd),
            "--log-level",
            "info",
            "--timeout-graceful-shutdown",
            "5",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
        pass_fds=[fd],
    )
    port = sock.getsockname()[1]
    server = ServerProcess(proc, f"http://127.0.0.1:{port}")
    assert proc.stderr is not None
    for line in proc.stderr:  # blocks on the child's own output, up to its startup line
        server.output.append(line)
        if "Uvicorn running on" in line:
            break
    else:
        proc.wait(10)
        raise RuntimeError("uvicorn exited before it started:\n" + "".join(server.output))
    # Keep draining stderr so the child never blocks on a full pipe.
    drain = threading.Thread(target=lambda: server.output.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        drain.join(10)  # the pipe is at its end once the child is gone
        proc.stderr.close()
