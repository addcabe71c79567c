"""The view of live streams: :class:`LiveStream` and how :meth:`Streamer.streams` builds it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from typing_extensions import final

from ._consumer import ConsumerSlots
from ._host import ProducerHost
from .stores._contract import StreamInfo, StreamState, StreamStore

__all__ = ["LiveStream", "list_streams"]


@final
@dataclass(frozen=True, slots=True)
class LiveStream:
    """One running stream, as :meth:`Streamer.streams` reports it.

    ``events`` counts the events stored so far; ``age`` is the seconds since it
    started; ``consumers`` counts the subscriptions open on it *in this process*;
    ``local`` says whether its producer runs in this process.
    """

    session_id: str
    state: StreamState
    events: int
    age: float
    consumers: int
    local: bool
    owner: str | None
    cancel_requested: bool
    created_at: float


async def list_streams(
    store: StreamStore,
    host: ProducerHost,
    slots: ConsumerSlots,
    owner: str | None,
    limit: int,
) -> list[LiveStream]:
    """The running streams the store lists (every worker's), else this process's."""
    try:
        found: Sequence[tuple[str, StreamInfo]] = await store.running(owner, limit=limit)
    except NotImplementedError:
        found = await _local(store, host, owner, limit)
    now = time.time()
    return [
        LiveStream(
            session_id=session_id,
            state=info.state,
            events=info.last_seq,
            age=max(now - info.created_at, 0.0),
            consumers=slots.count(session_id),
            local=host.producer(session_id) is not None,
            owner=info.owner,
            cancel_requested=info.cancel_requested,
            created_at=info.created_at,
        )
        for session_id, info in found
    ]


async def _local(
    store: StreamStore, host: ProducerHost, owner: str | None, limit: int
) -> list[tuple[str, StreamInfo]]:
    """A store without an index: the streams whose producer runs here, newest first."""
    found = []
    for session_id in host.session_ids():
        info = await store.info(session_id)
        if info is not None and not info.state.finished and owner in (None, info.owner):
            found.append((session_id, info))
    found.sort(key=lambda item: item[1].created_at, reverse=True)
    return found[:limit]
