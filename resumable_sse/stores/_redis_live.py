"""The Redis store's index of running streams, for :meth:`RedisStore.running`.

Two kinds of sorted sets under the prefix's own hash tag (no ``|`` in it, so no
session's keys can collide with them, and they share one Cluster slot)::

    {<prefix>}:live            every running stream: member session id, score the
                               time (ms) its producer last claimed or renewed it
    {<prefix>}:live:o:<owner>  the same, for the streams of one owner

A claim adds the stream, each lease renewal (every ``lease / 3`` s) refreshes its
score, its end and its deletion remove it. The index is advisory: it is updated
after the stream's own script, in a separate call (a stream's keys and the index
live in different Cluster slots, so one script cannot touch both), and a failed
update is only logged. Listing therefore checks every entry against the stream's
own state and drops, as it goes, entries whose stream ended or is gone; entries whose
score is older than three leases plus a minute (a producer that died with its
process, whose stream was reaped by a reader) are pruned by score first.

Cost. A claim, a renewal and an end each add one or two ``ZADD``/``ZREM`` commands,
O(log N) in the number N of running streams, sent in the store's shared pipelines
(no connection of their own). Listing is two round trips (``ZREMRANGEBYSCORE``, then
``ZREVRANGE``, O(log N + M)) plus one state read per listed stream, M of them, run 32
at a time: it grows with the streams listed, never with the size of the database (no
``KEYS`` or ``SCAN``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError
from typing_extensions import final

from .._exceptions import StoreUnavailableError
from ._redis_pipeline import Pipelines

__all__ = ["LiveIndex"]

logger = logging.getLogger("resumable_sse")


def _now_ms() -> int:
    return int(time.time() * 1000)


@final
class LiveIndex:
    """Adds, refreshes, removes and lists the running streams of one prefix."""

    def __init__(self, pipelines: Pipelines, prefix: str, lease: float) -> None:
        # The store's shared pipelines: index updates never take connections of their own.
        self._call = pipelines.call
        self._call_each = pipelines.call_each
        self._all = f"{{{prefix}}}:live"
        self._owner_prefix = f"{{{prefix}}}:live:o:"
        self._stale_ms = int(lease * 3000) + 60_000
        # Owners of the streams this store claimed, so a renewal refreshes both sets.
        self._owners: dict[str, str | None] = {}

    def key(self, owner: str | None) -> str:
        """The sorted set listing every running stream, or those of ``owner``."""
        return self._all if not owner else self._owner_prefix + owner

    def _keys(self, owner: str | None) -> list[str]:
        return [self._all] if not owner else [self._all, self.key(owner)]

    async def _apply(self, command: str, session_id: str, owner: str | None) -> None:
        """Best effort: ``ZADD`` (score now) or ``ZREM`` on each set, in one round trip."""
        keys = self._keys(owner)
        if command == "add":
            now = _now_ms()
            await self._quietly(*(("ZADD", key, now, session_id) for key in keys))
        else:
            await self._quietly(*(("ZREM", key, session_id) for key in keys))

    async def _quietly(self, *commands: tuple[object, ...]) -> None:
        for reply in await self._call_each(*commands):
            if isinstance(reply, (RedisError, OSError)):  # advisory: never fail a stream
                logger.debug("live index update failed: %r", reply)

    async def add(self, session_id: str, owner: str | None) -> None:
        """A stream was claimed by this store."""
        self._owners[session_id] = owner
        await self._apply("add", session_id, owner)

    async def touch(self, session_id: str) -> None:
        """Its producer renewed its lease: refresh its score (re-adding it if pruned)."""
        await self._apply("add", session_id, self._owners.get(session_id))

    async def remove(self, session_id: str) -> None:
        """The stream ended or was deleted."""
        await self._apply("rem", session_id, self._owners.pop(session_id, None))

    async def members(self, owner: str | None, limit: int) -> list[str]:
        """Prune stale entries of the set, then list up to ``limit``, newest first.

        Raises:
            StoreUnavailableError: Redis cannot be reached.
        """
        key = self.key(owner)
        try:
            await self._call("ZREMRANGEBYSCORE", key, "-inf", _now_ms() - self._stale_ms)
            members = await self._call("ZREVRANGE", key, 0, limit - 1)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"Redis is unavailable: {exc!r}") from exc
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def forget(self, session_ids: Sequence[str], owner: str | None) -> None:
        """Drop entries found stale: from every set if ended, else from ``owner``'s set.

        ``session_ids`` are streams found ended or gone when ``owner`` is ``None``, or
        streams not (or no longer) of ``owner`` otherwise. Best effort.
        """
        await self._quietly(("ZREM", self.key(owner), *session_ids))
