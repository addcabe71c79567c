"""Sync generators run in a thread pool of their own, never in the app's default one."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Generator

import anyio
import pytest

from resumable_sse import MemoryStore, Streamer, StreamState
from tests.helpers import collect, datas, names

pytestmark = pytest.mark.anyio


class BlockingLLM:
    """A sync LLM client's token stream: its first next() blocks until the test releases it."""

    def __init__(self) -> None:
        self.entered = anyio.Event()  # set from the worker thread once next() blocks
        self.unblock = threading.Event()
        self.generator = self.generate()

    def generate(self) -> Generator[str, None, None]:
        anyio.from_thread.run_sync(self.entered.set)
        self.unblock.wait()
        yield "token"


async def test_blocked_sync_generators_leave_the_apps_threads_free() -> None:
    """Sync generators blocked in next() hold none of anyio's default thread tokens,
    so the app's own `def` endpoints (run in those threads) keep working."""
    default = anyio.to_thread.current_default_thread_limiter()
    total = default.total_tokens
    llms = [BlockingLLM() for _ in range(3)]
    default.total_tokens = len(llms)  # as if they were the app's 40 threads
    try:
        async with Streamer(MemoryStore(), sync_generator_threads=len(llms)) as streamer:
            for index, llm in enumerate(llms):
                await streamer.start(f"s{index}", llm.generator)
            for llm in llms:
                await llm.entered.wait()
            assert default.borrowed_tokens == 0
            assert await anyio.to_thread.run_sync(lambda: "a def endpoint") == "a def endpoint"
            for llm in llms:
                llm.unblock.set()
            for index in range(len(llms)):
                assert datas(await collect(streamer.resume(f"s{index}"))) == ["token", ""]
    finally:
        default.total_tokens = total
        for llm in llms:
            llm.unblock.set()


async def test_when_every_thread_is_busy_the_next_sync_stream_waits() -> None:
    """With the pool full, a new sync stream runs but yields nothing until a thread frees."""
    first, second = BlockingLLM(), BlockingLLM()
    async with Streamer(MemoryStore(), sync_generator_threads=1) as streamer:
        try:
            await streamer.start("first", first.generator)
            await first.entered.wait()
            assert await streamer.start("second", second.generator)
            await anyio.wait_all_tasks_blocked()
            status = await streamer.status("second")
            assert (status.state, status.events) == (StreamState.RUNNING, 0)
            assert not second.entered.is_set()  # its generator has not started
            first.unblock.set()
            second.unblock.set()
            assert datas(await collect(streamer.resume("second"))) == ["token", ""]
            assert datas(await collect(streamer.resume("first"))) == ["token", ""]
        finally:
            first.unblock.set()
            second.unblock.set()


async def test_a_stream_waiting_for_a_thread_can_be_cancelled() -> None:
    """Cancelling a stream that waits for a free thread ends it at once, never running it."""
    busy, waiting = BlockingLLM(), BlockingLLM()
    async with Streamer(MemoryStore(), sync_generator_threads=1) as streamer:
        try:
            await streamer.start("busy", busy.generator)
            await busy.entered.wait()
            await streamer.start("waiting", waiting.generator)
            assert await streamer.cancel("waiting")
            assert names(await collect(streamer.resume("waiting"))) == ["cancelled"]
            assert not waiting.entered.is_set()
            assert inspect.getgeneratorstate(waiting.generator) == inspect.GEN_CLOSED
        finally:
            busy.unblock.set()
            waiting.unblock.set()


def test_sync_generator_threads_must_be_positive() -> None:
    """A pool of no threads is refused when the streamer is made."""
    with pytest.raises(ValueError, match="positive"):
        Streamer(sync_generator_threads=0)
