"""Runs the peer packages' scenarios; executed by the peers' own venv, never imported.

    <peers-venv>/bin/python -I benchmarks/peer_runner.py REDIS_URL N

Prints one JSON object: per peer and scenario, seconds, events delivered, generator runs
and Redis commands. This file must not import resumable-sse's own code: the peers' venv
has the seed package installed under the same import name.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as redis


def _commands(info: dict[str, Any]) -> int:
    return sum(int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_"))


async def _measure(client: Any, body: Any) -> dict[str, Any]:
    await client.config_resetstat()
    start = time.perf_counter()
    result = await body()
    seconds = time.perf_counter() - start
    commands = _commands(await client.info("commandstats")) - 1  # the INFO call itself
    return {"seconds": seconds, "commands": commands, **result}


async def seed(url: str, n: int) -> dict[str, Any]:
    from resumable_sse.factory import get_streamer  # the seed package, in this venv

    out: dict[str, Any] = {}
    client = redis.Redis.from_url(url)
    runs = 0

    async def tokens(count: int, pause: float = 0.0) -> Any:
        nonlocal runs
        runs += 1
        for _ in range(count):
            yield "tokn"
            if pause:
                await asyncio.sleep(pause)

    for backend in ("memory", "redis"):
        streamer = get_streamer(backend, redis_client=client if backend == "redis" else None)

        async def one(streamer: Any = streamer, backend: str = backend) -> dict[str, Any]:
            count = 0
            async for _ in streamer.stream(f"tp-{backend}", tokens(n)):
                count += 1
            return {"events": count}

        out[f"throughput_{backend}"] = await _measure(client, one)

        async def three(streamer: Any = streamer, backend: str = backend) -> dict[str, Any]:
            nonlocal runs
            runs = 0

            async def reader() -> int:
                count = 0
                async for event in streamer.stream(f"three-{backend}", tokens(50, 0.002)):
                    count += event.get("event") == "message"
                return count

            counts = await asyncio.gather(reader(), reader(), reader())
            return {"events_per_client": list(counts), "generator_runs": runs, "expected": 50}

        out[f"three_clients_{backend}"] = await _measure(client, three)
    await client.aclose()
    return out


async def resumable_stream(url: str, n: int) -> dict[str, Any]:
    from resumable_stream import (
        CreateResumableStreamContextOptions,
        RedisPublisher,
        RedisSubscriber,
        create_resumable_stream_context,
    )

    out: dict[str, Any] = {}
    client = redis.Redis.from_url(url)
    publisher, subscriber = RedisPublisher(url), RedisSubscriber(url)
    await publisher.connect()
    await subscriber.connect()
    options = CreateResumableStreamContextOptions(
        key_prefix="bench", publisher=publisher, subscriber=subscriber
    )
    ctx = create_resumable_stream_context(options)
    runs = 0

    def make(count: int, pause: float = 0.0) -> Any:
        async def tokens() -> Any:
            nonlocal runs
            runs += 1
            for _ in range(count):
                yield "tokn"
                if pause:
                    await asyncio.sleep(pause)

        return tokens

    async def one() -> dict[str, Any]:
        stream = await ctx.resumable_stream("tp", make(n))
        count = 0
        async for _ in stream:
            count += 1
        return {"events": count}

    out["throughput_redis"] = await _measure(client, one)

    async def three() -> dict[str, Any]:
        nonlocal runs
        runs = 0

        async def reader() -> int:
            stream = await ctx.resumable_stream("three", make(50, 0.002))
            if stream is None:
                return 0
            text = ""
            async for chunk in stream:
                text += chunk
            return len(text) // 4

        counts = await asyncio.gather(reader(), reader(), reader())
        return {"events_per_client": list(counts), "generator_runs": runs, "expected": 50}

    out["three_clients_redis"] = await _measure(client, three)
    await client.aclose()
    return out


async def main(url: str, n: int) -> None:
    results = {
        "resumable-sse 0.1.0": await seed(url, n),
        "resumable-stream 0.2.0": await resumable_stream(url, n),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
