"""The Redis store: streams shared by every worker and machine that uses one Redis.

Layout. Each session has three keys under one hash tag, so they share a Cluster slot
and one Lua script can touch them all atomically::

    {<prefix>|<session id>}:m     hash: incarnation, fencing token, state, first/last
                                  seq, times, cancel flag, lease expiry
    {<prefix>|<session id>}:log   stream: the events
    {<prefix>|<session id>}:ctl   list: wakes the producer's ``wait_cancel`` (BLPOP)

The log is a Redis Stream with explicit ids. One ``append`` is one script call that
writes the whole batch as *one* stream entry whose id is ``<last seq of the batch>-0``,
with two fields: ``n``, the number of events, and ``b``, the events as one JSON array
``[event, data, event, data, ...]`` (the name of a *text* event, one the generator
yielded as ``str`` or ``bytes``, starts with ``~``, which no event name contains). A
batch thus costs a constant number of Redis commands and a single argument to encode
and parse, however many events it holds (encoding each event as its own argument made
redis-py's packing the bottleneck).
Each event still has its own sequence number and id. Sequence numbers map
to ids, so ``read(after=k)`` is ``XRANGE (k-0 +`` (entries whose last seq exceeds ``k``)
and a live tail is ``XREAD BLOCK ... STREAMS log k-0``, which wakes on the next append,
on the terminal event, and on delete (which leaves a short-lived tombstone entry).

Claims, fencing and leases. ``claim`` is a script that creates the hash only if it
is absent. The fencing token is the server's time in microseconds at the claim and is
checked, with the incarnation, by every write script: a producer whose stream was
deleted, re-claimed, finished or reaped can never write again. The producer holds a
lease (``lease`` seconds, default 10) that each append and each ``renew`` (every
``lease / 3`` s) extends; all times are the server's (``TIME``), not the clients'.

Producer death. A producer that stops renewing is reaped in two steps (the details
are in ``_redis_scripts.py``): whoever else touches a running stream whose lease has
expired - a reader, ``info``, a claim - first only marks it suspect; a look one lease
later reaps it if the producer has still not written or renewed: the event named
``lost_event`` (default ``"error"``, the default terminal error name; pass your
``TerminalEvents.error`` if you renamed it) is appended with data
``{"code":"producer_lost",...}`` and the state becomes ``error``. The producer's own
writes never reap its stream. So a stall or outage of Redis, during which no producer
can renew, never ends a stream whose producer is alive and comes back within
``store_retry_deadline``, and a dead producer's stream ends about two leases after
its last renewal: waiting readers wake for both steps by themselves (they block no
longer than until the next step is due). The store does not know the streamer's
terminal names, hence the argument.

Expiry. While running, every key has a sliding TTL of ``lease + retention``, set when
the key is created and pushed forward by each ``renew`` (not by each batch, to keep a
batch cheap), so a stream whose producer died and which nobody reads still disappears;
finishing (or reaping) sets ``retention`` (at least ``FINISHED_LINGER``, so that readers
still reading the stream reach its end) on every key and records when the retention
ends; past that, the stream is hidden from everyone but those readers, and a claim
replaces it. Deleting leaves two tombstones of one second that wake blocked readers
and the producer's cancel wait.

Conversations. ``{<prefix>|<conversation id>}:active`` holds the session id of the
conversation's active stream (a string, in the conversation's own slot). Setting it and
clearing it are scripts (set-if-absent-or-same-or-replace, compare-and-delete); it
expires ``lease + retention`` after the last ``set_active`` naming that session, which
the streamer repeats every ``lease / 3`` while the stream runs.

Cancel. ``request_cancel`` sets the hash's flag and pushes to the control list; the
producer's ``wait_cancel`` blocks on it with ``BLPOP``, so it wakes at once, anywhere.

Errors. Every ``redis.exceptions.RedisError`` (and ``OSError``) becomes
:class:`~resumable_sse.StoreUnavailableError` at this module's boundary. Blocking
commands are capped below the client's ``socket_timeout``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Union

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError
from typing_extensions import final

from .._exceptions import LeaseLostError, StoreUnavailableError
from .._ids import new_incarnation
from . import _redis_scripts as scripts
from ._contract import Claim, Entry, Page, StoredEvent, StreamInfo, StreamState, StreamStore
from ._memory import DEFAULT_RETENTION

__all__ = ["RedisStore"]

DEFAULT_LEASE = 10.0
DEFAULT_BLOCK_MS = 5_000

_LOST_DATA = json.dumps(
    {"code": "producer_lost", "message": "The stream's producer stopped responding."},
    separators=(",", ":"),
)

RedisClient = Union["Redis", "RedisCluster"]


class RedisKeys(NamedTuple):
    """The Redis keys of one session (all under one hash tag: one Cluster slot)."""

    meta: str
    log: str
    ctl: str


@contextmanager
def _translated() -> Iterator[None]:
    """Turn Redis and socket errors into :class:`StoreUnavailableError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"Redis is unavailable: {exc!r}") from exc


_new = tuple.__new__


#: Marks a text event's name in a stored batch; never part of an event name.
_TEXT = "~"


def _encode(entries: Sequence[Entry]) -> str:
    """A batch as the log stores it: one JSON array ``[event, data, event, data, ...]``.

    A text event's name carries the ``~`` marker (one byte; names never contain it).
    """
    flat = itertools.chain.from_iterable(
        (_TEXT + event if text else event, data) for event, data, text in entries
    )
    return json.dumps(list(flat), ensure_ascii=False, separators=(",", ":"))


def _stored(seq: int, name: str, data: str) -> StoredEvent:
    """A stored event from a batch's name (with or without the text marker) and data."""
    if name[:1] == _TEXT:
        return _new(StoredEvent, (seq, name[1:], data, True))
    return _new(StoredEvent, (seq, name, data, False))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _socket_timeout(client: RedisClient) -> float | None:
    """The client's socket timeout: redis-py's default (5 s) unless it says otherwise."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(client, "connection_kwargs", {})
    if not isinstance(kwargs, dict):
        return 5.0
    timeout = kwargs.get("socket_timeout", kwargs.get("orig_socket_timeout", 5.0))
    return float(timeout) if timeout else None


@final
class RedisStore(StreamStore):
    """Keeps streams in Redis (standalone, Sentinel-managed or Cluster).

    Args:
        client: A ``redis.asyncio.Redis`` or ``RedisCluster``, with or without
            ``decode_responses``. The store does not close a client it was given.
        url: A Redis URL, instead of ``client``; the store owns and closes that client.
        prefix: Key prefix (default ``"rsse"``); no ``{``, ``}`` or ``|``.
        retention: Seconds a finished stream stays readable (default 600; 0 is allowed:
            readers still reading it when it ends get to its end all the same).
        lease: Seconds a producer may go without renewing before its stream is
            suspect (default 10); a stream still suspect one lease later ends with
            ``lost_event``, so a dead producer is detected within about two leases.
        block_ms: Longest blocking read, in ms (default 5000; capped below the
            client's ``socket_timeout``).
        max_len: Keep about this many newest events per stream (whole batches are
            trimmed); ``None`` (the default) keeps all.
        lost_event: Event name stored when a producer is lost (default ``"error"``).
    """

    def __init__(
        self,
        client: RedisClient | None = None,
        *,
        url: str | None = None,
        prefix: str = "rsse",
        retention: float = DEFAULT_RETENTION,
        lease: float = DEFAULT_LEASE,
        block_ms: int = DEFAULT_BLOCK_MS,
        max_len: int | None = None,
        lost_event: str = "error",
    ) -> None:
        if (client is None) == (url is None):
            raise ValueError("pass exactly one of client=... or url=...")
        if not prefix or any(c in prefix for c in "{}|"):
            raise ValueError("prefix must be non-empty, without '{', '}' or '|'")
        if retention < 0 or lease <= 0 or block_ms < 1:
            raise ValueError("retention must be >= 0, lease and block_ms > 0")
        if max_len is not None and max_len < 1:
            raise ValueError("max_len must be >= 1")
        self._owned = client is None
        if client is None:
            assert url is not None
            client = Redis.from_url(url)
        self._client: RedisClient = client
        self.prefix = prefix
        self.retention = retention
        self.lease = lease
        self.renew_interval = lease / 3
        timeout = _socket_timeout(client)
        if timeout is not None:
            block_ms = max(1, min(block_ms, int(timeout * 800)))
        self._block_ms = block_ms
        # redis-py's RedisCluster fails commands issued concurrently before it has
        # loaded the slot map, so the first command initialises it alone.
        self._ready = not isinstance(client, RedisCluster)
        self._init_lock = anyio.Lock()
        self._max_len = max_len or 0
        retention_ms = int(retention * 1000)
        lease_ms = max(int(lease * 1000), 1)
        self._common: list[str | int] = [
            lost_event,
            _LOST_DATA,
            retention_ms,
            lease_ms + retention_ms,
            lease_ms,
        ]
        register = client.register_script
        self._claim = register(scripts.CLAIM)
        self._append = register(scripts.APPEND)
        self._finish = register(scripts.FINISH)
        self._read = register(scripts.READ)
        self._request_cancel = register(scripts.REQUEST_CANCEL)
        self._cancel_check = register(scripts.CANCEL_CHECK)
        self._renew = register(scripts.RENEW)
        self._delete = register(scripts.DELETE)
        self._set_active = register(scripts.SET_ACTIVE)
        self._clear_active = register(scripts.CLEAR_ACTIVE)
        self._active_ttl_ms = lease_ms + retention_ms

    def keys(self, session_id: str) -> RedisKeys:
        """The session's keys: meta hash, log stream, control list.

        The hash tag is ``{<prefix>|<session id>}``. Session ids never contain ``|``
        and prefixes may not, so no session id can name another prefix's or another
        session's keys (``:`` is allowed in both and could not separate them).
        """
        tag = f"{{{self.prefix}|{session_id}}}"
        return RedisKeys(f"{tag}:m", f"{tag}:log", f"{tag}:ctl")

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._init_lock:
            if not self._ready:
                assert isinstance(self._client, RedisCluster)
                with _translated():
                    await self._client.initialize()
                self._ready = True

    async def _run(self, script: Any, session_id: str, *args: str | int) -> Any:
        await self._ensure_ready()
        with _translated():
            return await script(keys=list(self.keys(session_id)), args=[*self._common, *args])

    async def _write(self, script: Any, session_id: str, claim: Claim, *args: str | int) -> None:
        done = await self._run(script, session_id, str(claim.token), claim.incarnation, *args)
        if not int(done):
            raise LeaseLostError(f"stream {session_id!r} is no longer owned by this producer")

    async def claim(self, session_id: str, *, owner: str | None = None) -> Claim | None:
        incarnation = new_incarnation()
        token = await self._run(self._claim, session_id, incarnation, owner or "")
        return None if token is None else Claim(incarnation, int(token))

    async def append(
        self, session_id: str, claim: Claim, entries: Sequence[Entry], *, first_seq: int
    ) -> None:
        batch = _encode(entries)
        await self._write(
            self._append, session_id, claim, first_seq, self._max_len, len(entries), batch
        )

    async def finish(
        self, session_id: str, claim: Claim, state: StreamState, entry: Entry, *, seq: int
    ) -> None:
        if not state.finished:
            raise ValueError("finish() needs a final state")
        await self._write(self._finish, session_id, claim, state.value, seq, _encode([entry]))

    async def read(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> Page | None:
        after = max(after, 0)
        reply = await self._run(self._read, session_id, after, limit, incarnation or "")
        if reply is None:
            return None
        page, due_in_ms = self._page(reply, after, limit)
        if not wait or page.events or page.info.state.finished:
            return page
        # Block until the log grows past ``after`` (or is deleted), but no longer than
        # until the reap's next step is due: then the re-read below takes it.
        block = max(1, min(self._block_ms, due_in_ms + 5))
        with _translated():
            await self._client.xread(
                {self.keys(session_id).log: f"{after}-0"}, count=1, block=block
            )
        # This reader was attached if the stream ended meanwhile: it gets the end.
        reply = await self._run(self._read, session_id, after, limit, page.info.incarnation)
        return None if reply is None else self._page(reply, after, limit)[0]

    @staticmethod
    def _page(reply: Sequence[Any], after: int, limit: int) -> tuple[Page, int]:
        inc, state, first, last, created, updated, cancel, due, now, owner = map(_text, reply[:10])
        info = StreamInfo(
            incarnation=inc,
            state=StreamState(state),
            first_seq=int(first),
            last_seq=int(last),
            created_at=int(created) / 1000,
            updated_at=int(updated) / 1000,
            cancel_requested=cancel == "1",
            owner=owner or None,
        )
        events: list[StoredEvent] = []
        for i in range(10, len(reply), 3):
            top, count, batch = int(reply[i]), int(reply[i + 1]), json.loads(reply[i + 2])
            seq = top - count
            for j in range(0, 2 * count, 2):
                seq += 1
                if seq > after:
                    events.append(_stored(seq, batch[j], batch[j + 1]))
        return Page(info, events[:limit]), int(due) - int(now)

    async def info(self, session_id: str) -> StreamInfo | None:
        reply = await self._run(self._read, session_id, 0, 0, "")
        return None if reply is None else self._page(reply, 0, 0)[0].info

    async def request_cancel(self, session_id: str) -> bool:
        return bool(int(await self._run(self._request_cancel, session_id)))

    async def wait_cancel(self, session_id: str, claim: Claim) -> None:
        ctl = self.keys(session_id).ctl
        while not int(
            await self._run(self._cancel_check, session_id, str(claim.token), claim.incarnation)
        ):
            # Wakes at once on a cancel request or a delete; the timeout only bounds
            # the blocking call below the client's socket timeout.
            with _translated():
                await self._client.blpop([ctl], timeout=self._block_ms / 1000)

    async def renew(self, session_id: str, claim: Claim) -> None:
        await self._write(self._renew, session_id, claim)

    async def delete(self, session_id: str) -> bool:
        return bool(int(await self._run(self._delete, session_id)))

    # -- conversations -------------------------------------------------------------------

    def active_key(self, conversation_id: str) -> str:
        """The key holding the conversation's active session id.

        Its hash tag follows :meth:`keys`, with a suffix no session key uses.
        """
        return f"{{{self.prefix}|{conversation_id}}}:active"

    async def _run_active(self, script: Any, conversation_id: str, *args: str | int) -> Any:
        await self._ensure_ready()
        with _translated():
            return await script(keys=[self.active_key(conversation_id)], args=list(args))

    async def set_active(
        self, conversation_id: str, session_id: str, *, replace: bool
    ) -> str | None:
        previous = await self._run_active(
            self._set_active, conversation_id, session_id, int(replace), self._active_ttl_ms
        )
        return None if previous is None else _text(previous)

    async def get_active(self, conversation_id: str) -> str | None:
        await self._ensure_ready()
        with _translated():
            current = await self._client.get(self.active_key(conversation_id))
        return None if current is None else _text(current)

    async def clear_active(self, conversation_id: str, session_id: str) -> bool:
        return bool(int(await self._run_active(self._clear_active, conversation_id, session_id)))

    async def aclose(self) -> None:
        """Close the client if the store created it from ``url``."""
        if self._owned:
            with _translated():
                await self._client.aclose()
