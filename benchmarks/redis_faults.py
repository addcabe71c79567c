"""Redis outages and producer crashes with the default settings, measured by hand.

    .venv/bin/python -m benchmarks.redis_faults [outage seconds ...]   (default: 5 13 25)

Not part of ``dev.py bench``: each case lasts as long as its outage. Every case starts
its own ``redis-server`` (append-only, every write fsynced) and uses the defaults
(``lease`` 10 s, ``store_retry_deadline`` 30 s).

*Outage*: a generator of 150 tokens (one per 20 ms) runs; after 20 tokens Redis is
killed (``kill -9``) and restarted ``N`` seconds later. Once with a reader following
throughout (it reconnects by id while Redis is down, as a client would), once with no
reader until the stream has ended. Printed: tokens delivered, duplicates, the terminal
event and its code.

*Stall*: the same stream, with a reader, while Redis stops serving for 13 s
(``DEBUG SLEEP``, then ``CLIENT PAUSE ... ALL``).

*kill -9 of the producer*: a child process runs the producer (its generator idles
after 5 tokens); this process follows the stream; the child is killed. Printed: the
seconds from the kill to the reader's ``producer_lost``, and the same on Redis's clock
(``TIME`` before the kill to the reap time stored in the stream).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from resumable_sse import RedisStore, StoreUnavailableError, Streamer
from tests.redis_server import RedisServer

TOKENS = 150
CUT_AT = 20


def _client(url: str) -> Redis:
    return Redis.from_url(url, retry=Retry(NoBackoff(), 1))


async def _tokens(reached: anyio.Event) -> AsyncIterator[str]:
    for i in range(TOKENS):
        if i == CUT_AT:
            reached.set()
        yield str(i)
        await anyio.sleep(0.02)


async def _follow(streamer: Streamer, received: list[dict[str, str]]) -> None:
    """Follow session ``s`` to its end, reconnecting by id while Redis is down."""
    while not received or received[-1]["event"] == "message":
        last = received[-1]["id"] if received else None
        try:
            async for event in streamer.resume("s", last):
                received.append(event)
        except StoreUnavailableError:
            await anyio.sleep(0.2)  # a client's reconnection delay


def _summary(received: list[dict[str, str]]) -> dict[str, Any]:
    tokens = [e["data"] for e in received if e["event"] == "message"]
    last = received[-1] if received else {"event": "-", "data": ""}
    code = json.loads(last["data"]).get("code") if last["event"] == "error" else None
    return {
        "tokens": f"{len(set(tokens))}/{TOKENS}",
        "duplicates": len(tokens) - len(set(tokens)),
        "in_order": tokens == [str(i) for i in range(len(tokens))],
        "end": last["event"] + (f"/{code}" if code else ""),
    }


async def outage(seconds: float, *, reader: bool) -> dict[str, Any]:
    with RedisServer(appendonly=True) as server:
        client = _client(server.url)
        reached = anyio.Event()
        received: list[dict[str, str]] = []
        async with Streamer(RedisStore(client)) as streamer:
            await streamer.start("s", _tokens(reached))
            async with anyio.create_task_group() as tg:
                if reader:
                    tg.start_soon(_follow, streamer, received)
                await reached.wait()
                await anyio.to_thread.run_sync(server.kill)
                await anyio.sleep(seconds)
                await anyio.to_thread.run_sync(server.start)
            if not reader:
                await _follow(streamer, received)
        await client.aclose()
    return {"outage_s": seconds, "reader_attached": reader, **_summary(received)}


async def stall(command: str, seconds: float) -> dict[str, Any]:
    """Redis stops serving for ``seconds`` (``DEBUG SLEEP`` or ``CLIENT PAUSE ... ALL``)."""
    with RedisServer(appendonly=True, extra=("--enable-debug-command", "yes")) as server:
        client = _client(server.url)
        admin = Redis.from_url(server.url, socket_timeout=seconds + 30)  # waits out the stall
        reached = anyio.Event()
        received: list[dict[str, str]] = []
        async with Streamer(RedisStore(client)) as streamer:
            await streamer.start("s", _tokens(reached))
            async with anyio.create_task_group() as tg:
                tg.start_soon(_follow, streamer, received)
                await reached.wait()
                if command == "DEBUG SLEEP":
                    await admin.execute_command("DEBUG", "SLEEP", seconds)  # type: ignore[no-untyped-call]
                else:
                    pause = ("CLIENT", "PAUSE", int(seconds * 1000), "ALL")
                    await admin.execute_command(*pause)  # type: ignore[no-untyped-call]
        await client.aclose()
        await admin.aclose()
    return {"stall": command, "seconds": seconds, **_summary(received)}


_CHILD = """
import anyio, sys
from redis.asyncio import Redis
from resumable_sse import RedisStore, Streamer

async def tokens():
    for i in range(5):
        yield str(i)
    await anyio.sleep_forever()

async def main():
    async with Streamer(RedisStore(Redis.from_url(sys.argv[1]))) as streamer:
        await streamer.start("k", tokens())
        print("started", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def _start_producer(url: str) -> subprocess.Popen[str]:
    """A child process whose producer has started session ``k``."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    return child


async def producer_crash() -> dict[str, Any]:
    with RedisServer(appendonly=True) as server:
        child = await anyio.to_thread.run_sync(_start_producer, server.url)
        client = _client(server.url)
        store = RedisStore(client)
        received: list[dict[str, str]] = []
        async with Streamer(store) as streamer:
            subscription = await streamer.open("k")
            for _ in range(5):
                received.append(await subscription.__anext__())
            seconds, micros = await client.time()
            redis_kill = seconds + micros / 1e6
            killed = time.monotonic()
            child.kill()
            await anyio.to_thread.run_sync(child.wait)
            async for event in subscription:
                received.append(event)
        detected = time.monotonic() - killed
        reaped = float(await client.hget(store.keys("k").meta, "u") or 0) / 1000
        await client.aclose()
    return {
        "end": _summary(received)["end"],
        "kill_to_reader_s": round(detected, 2),
        "kill_to_reap_on_redis_clock_s": round(reaped - redis_kill, 2),
    }


async def main(outages: list[float]) -> None:
    for seconds in outages:
        for reader in (True, False):
            print(json.dumps(await outage(seconds, reader=reader)), flush=True)
    for command in ("DEBUG SLEEP", "CLIENT PAUSE"):
        print(json.dumps(await stall(command, 13.0)), flush=True)
    print(json.dumps({"kill_9_of_the_producer": await producer_crash()}), flush=True)


if __name__ == "__main__":
    anyio.run(main, [float(a) for a in sys.argv[1:]] or [5.0, 13.0, 25.0])
