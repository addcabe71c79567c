"""Store harnesses: every StreamStore the test suite runs against, behind one interface.

A harness makes stores with a given retention and can move their clock forward, so
expiry is tested without sleeping where the store allows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from resumable_sse import MemoryStore, StreamStore

#: Store kinds the suites are parametrised over. Kinds whose client only runs on asyncio
#: are listed in ASYNCIO_ONLY; their trio variants are deselected (see conftest.py).
STORE_KINDS: list[str] = ["memory"]
ASYNCIO_ONLY: set[str] = set()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StoreHarness:
    """Makes stores of one kind for one test and cleans them up."""

    kind = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()

    @asynccontextmanager
    async def make(
        self, *, retention: float = 600.0, **options: object
    ) -> AsyncIterator[StreamStore]:
        """A fresh, empty store."""
        store = MemoryStore(retention=retention, clock=self.clock, **options)  # type: ignore[arg-type]
        try:
            yield store
        finally:
            await store.aclose()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the stores' expiry clocks."""
        self.clock.now += seconds


HARNESSES: dict[str, type[StoreHarness]] = {"memory": StoreHarness}
