"""Shared fixtures: the async backends and the stores every suite is parametrised over."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from resumable_sse import Streamer, StreamStore
from tests.stores import ASYNCIO_ONLY, HARNESSES, STORE_KINDS, StoreHarness


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(store_kind: str) -> StoreHarness:
    return HARNESSES[store_kind]()


@pytest.fixture
async def store(harness: StoreHarness) -> AsyncIterator[StreamStore]:
    async with harness.make() as store:
        yield store


@pytest.fixture
async def streamer(store: StreamStore) -> AsyncIterator[Streamer]:
    async with Streamer(store) as streamer:
        yield streamer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop trio runs of stores whose client only works on asyncio (redis-py)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("anyio_backend") == "trio" and params.get("store_kind") in ASYNCIO_ONLY:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
