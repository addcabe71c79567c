"""Pausing the demo's simulated model at chosen tokens, so tests act mid-answer for sure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from resumable_sse._demo import SimulatedLLM


def gate(monkeypatch: pytest.MonkeyPatch, llm: SimulatedLLM, *after: int) -> list[anyio.Event]:
    """Make the model pause after each of its ``after``-th tokens until that event is set.

    While it pauses, a client that shows the token has everything: nothing is in flight,
    so a reload, a cut connection or a Stop then happens mid-answer, deterministically.
    The model's ``started``/``finalized`` counters work as before.
    """
    releases = [anyio.Event() for _ in after]
    original = llm.answer

    async def answer(session_id: str, prompt: str) -> AsyncIterator[str]:
        tokens = original(session_id, prompt)
        try:
            count = 0
            async for token in tokens:
                yield token
                count += 1
                if count in after:
                    await releases[after.index(count)].wait()
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]

    monkeypatch.setattr(llm, "answer", answer)
    return releases
