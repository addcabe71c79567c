"""Real ``redis-server`` processes for the tests: free port, temp dir, no shared state.

Readiness is read from the server's own log on stdout ("Ready to accept connections"),
never by sleeping. A server can be killed (``kill -9``) and restarted on the same port
and directory, so tests with ``appendonly=True`` can check what survives a crash.

In CI (``CI=true``) a server that cannot start fails the test; locally it skips it
with the reason, so a machine without ``redis-server`` still runs everything else.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest

from tests.servers import free_port

__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "require_redis",
    "shared_cluster",
    "shared_server",
    "started_server",
]

_READY = "Ready to accept connections"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Make the child die if pytest dies, so no redis-server outlives a killed run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class _PortTaken(RuntimeError):
    """redis-server could not bind its port: someone else took it."""


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, owned by the test process."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        cluster: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.pick_port: Callable[[], int] = free_port
        self.port = self.pick_port()
        self.started = False
        self.dir = tempfile.mkdtemp(prefix="rsse-redis-")
        self.appendonly = appendonly
        self.cluster = cluster
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it accepts connections.

        The port was free when it was chosen, but another process may have taken it
        since; then a first start moves to another free port (a restart cannot: its
        clients know the port).
        """
        for _ in range(10):
            try:
                self._start()
            except _PortTaken:
                if self.started:
                    raise
                self.port = self.pick_port()
            else:
                self.started = True
                return
        raise RuntimeError("no free port for redis-server after 10 tries")

    def _start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            # Every write is on disk before its reply: a kill -9 loses nothing acknowledged.
            "--appendfsync",
            "always",
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += self.extra
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.proc = proc
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:  # blocks on the server's own log, up to its ready line
            lines.append(line)
            if _READY in line:
                break
        else:
            proc.wait(10)
            proc.stdout.close()
            self.proc = None
            self.output.extend(lines)
            if any("Address already in use" in line for line in lines):
                raise _PortTaken(self.port)
            raise RuntimeError("redis-server exited before it was ready:\n" + "".join(lines))
        self.output.extend(lines)
        stdout = proc.stdout
        # Keep draining the log so the server never blocks on a full pipe.
        self._drain = threading.Thread(target=lambda: self.output.extend(stdout), daemon=True)
        self._drain.start()

    def kill(self) -> None:
        """kill -9 the server (its data directory stays for a restart)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(10)
            if self._drain is not None:
                self._drain.join(10)  # the log pipe is at EOF once the server is gone
            if proc.stdout is not None:
                proc.stdout.close()
        self.proc = None
        self._drain = None

    def restart(self) -> None:
        """Kill the server if it runs, then start it again on the same port and directory."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop the server for good and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def require_redis(exc: BaseException) -> None:
    """A server could not start: fail in CI, skip visibly elsewhere."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"redis-server is required in CI: {exc}")
    pytest.skip(f"redis-server could not be started: {exc}")


_started: dict[str, RedisServer | RedisClusterServers | BaseException] = {}


def _started_once(name: str, make: Callable[[], RedisServer | RedisClusterServers]) -> object:
    """Start the shared server ``name`` on first use; stopped when the test process exits."""
    if name not in _started:
        server = make()
        try:
            server.start()
        except Exception as exc:
            server.close()
            _started[name] = exc
        else:
            _started[name] = server
            atexit.register(server.close)
    found = _started[name]
    if isinstance(found, BaseException):
        require_redis(found)
    return found


def shared_server() -> RedisServer:
    """The one server shared by the store harnesses, started on first use.

    Tests keep apart by key prefix. It is stopped when the test process exits (and
    killed by the kernel if the test process dies first).
    """
    server = _started_once("server", RedisServer)
    assert isinstance(server, RedisServer)
    return server


@contextmanager
def started_server(*, appendonly: bool = True, extra: Sequence[str] = ()) -> Iterator[RedisServer]:
    """A server of the caller's own, free to be killed, restarted or have its stats reset."""
    server = RedisServer(appendonly=appendonly, extra=extra)
    try:
        server.start()
    except Exception as exc:
        server.close()
        require_redis(exc)
    try:
        yield server
    finally:
        server.close()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterServers:
    """Three cluster-enabled masters joined by ``redis-cli --cluster create``."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(size)]
        for node in self.nodes:
            node.pick_port = _cluster_port
            node.port = _cluster_port()

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        # Returns once every node agrees on the slot map ("Waiting for the cluster to join").
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def shared_cluster() -> RedisClusterServers:
    """The one three-master cluster shared by the ``cluster`` store harness."""
    cluster = _started_once("cluster", RedisClusterServers)
    assert isinstance(cluster, RedisClusterServers)
    return cluster
