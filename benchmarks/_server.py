"""A uvicorn server in a child process, and the CPU time it has used (from /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Server:
    """A running server: its URL and its process id."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid

    def cpu(self) -> float:
        """CPU seconds the server process has used so far, all threads, in nanoseconds'
        resolution: the first field of each thread's ``/proc/<pid>/task/<tid>/schedstat``
        (``/proc/<pid>/stat`` counts in 10 ms ticks, too coarse for one run)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):  # a thread that just ended
                continue
        return total / 1e9


@contextmanager
def server(app: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """uvicorn serving ``app`` on a pre-bound loopback socket handed over by fd."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
        ],
        pass_fds=[sock.fileno()],
        env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})},
    )
    try:
        yield Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)
        sock.close()
