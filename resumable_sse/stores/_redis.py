"""The Redis store: streams shared by every worker and machine that uses one Redis.

Layout. Each session has two keys and a pub/sub channel under one hash tag, so they
share a Cluster slot and one Lua script can touch them all atomically::

    {<prefix>|<session id>}:m     hash: incarnation, fencing token, state, first/last
                                  seq, times, cancel flag, lease expiry, owner
    {<prefix>|<session id>}:log   stream: the events
    {<prefix>|<session id>}:n     channel (sharded pub/sub): wakes waiters

The log is a Redis Stream with explicit ids. One ``append`` is one script call that
writes the whole batch as *one* stream entry whose id is ``<last seq of the batch>-0``,
with two fields: ``n``, the number of events, and ``b``, the events as one JSON array
of *runs*, ``[event, [data, data, ...], event, [data, ...], ...]``: consecutive events
of one name and kind share their name (the name of a *text* event, one the generator
yielded as ``str`` or ``bytes``, starts with ``~``, which no event name contains). A
batch thus costs a constant number of Redis commands and a single argument to encode
and parse, however many events it holds (encoding each event as its own argument made
redis-py's packing the bottleneck), and a run of tokens stores each name once.
``read_frames`` builds the SSE frames of a run straight from the decoded data (the
name's part of the frame once per run), without an event object per event.
Each event still has its own sequence number and id. Sequence numbers map
to ids, so ``read(after=k)`` is ``XRANGE (k-0 +`` (entries whose last seq exceeds ``k``).

Connections do not grow with sessions. No command blocks a pooled connection: waiting
readers and producers' cancel watches wait in this process, on the :class:`Notifier`
(``_redis_notify.py``), which holds one pub/sub connection per Redis node and wakes
them when a script publishes on the session's channel (``a`` appended, ``f``
finished, ``c`` cancel requested, ``d`` deleted). A waiter subscribes, then reads, then
waits for a message newer than its read, so no event can slip between the read and
the wait; a lost message (a reconnect, a slot migration) only delays a waiter until its
bounded wait (``block_ms``) ends and it reads again. Every other command runs on the
client's pool, but not one connection per call: calls queue in this process and go
out together as pipelines, at most ``connections`` at once (``_redis_pipeline.py``).
redis-py's asyncio pool raises ``MaxConnectionsError`` at its limit rather than wait,
so bounding the store's own commands in flight is what keeps it inside any pool. The
store thus uses at most ``connections`` pooled connections plus one per node, whatever
the number of sessions, and under load one round trip carries many sessions' calls.

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
replaces it.

Lost history. If the log disappears while the hash remains (evicted under a
``volatile-*``/``allkeys-*`` maxmemory policy, deleted by hand, a restart without
persistence), reads return fewer events than the hash promises; the consumer reports
that as :class:`~resumable_sse.HistoryLostError` instead of reading again.

Conversations. ``{<prefix>|<conversation id>}:active`` holds the session id of the
conversation's active stream (a string, in the conversation's own slot). Setting it and
clearing it are scripts (set-if-absent-or-same-or-replace, compare-and-delete); it
expires ``lease + retention`` after the last ``set_active`` naming that session, which
the streamer repeats every ``lease / 3`` while the stream runs.

Cancel. ``request_cancel`` sets the hash's flag and publishes ``c``; the producer's
``wait_cancel`` wakes at once, anywhere.

Errors. Every ``redis.exceptions.RedisError`` (and ``OSError``) becomes
:class:`~resumable_sse.StoreUnavailableError` at this module's boundary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from itertools import count, groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple, Union, cast

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError
from typing_extensions import final

from .._exceptions import LeaseLostError, StoreUnavailableError
from .._frames import concat_frames, encode_run
from .._ids import new_incarnation
from . import _redis_scripts as scripts
from ._contract import (
    Claim,
    Entry,
    FramePage,
    LogItem,
    Page,
    StoredEvent,
    StreamInfo,
    StreamState,
    StreamStore,
    split_by_size,
)
from ._memory import DEFAULT_RETENTION
from ._redis_host import TaskHost
from ._redis_live import LiveIndex
from ._redis_notify import Notifier, Watch
from ._redis_pipeline import Pipelines

__all__ = ["RedisStore"]

DEFAULT_LEASE = 10.0
DEFAULT_BLOCK_MS = 5_000
DEFAULT_CONNECTIONS = 8

_LOST_DATA = json.dumps(
    {"code": "producer_lost", "message": "The stream's producer stopped responding."},
    separators=(",", ":"),
)

RedisClient = Union["Redis", "RedisCluster"]


class RedisKeys(NamedTuple):
    """The Redis names of one session (all under one hash tag: one Cluster slot)."""

    meta: str
    log: str
    channel: str  # a pub/sub channel, not a key


@contextmanager
def _translated() -> Iterator[None]:
    """Turn Redis and socket errors into :class:`StoreUnavailableError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"Redis is unavailable: {exc!r}") from exc


#: Seconds a round trip of the store's own client may take (redis-py's default socket
#: timeout, which that client goes without).
_ROUND_TRIP_TIMEOUT = 5.0

#: Marks a text event's name in a stored batch; never part of an event name.
_TEXT = "~"

_kind = itemgetter(0, 2)  # an entry's (event, text): what a run shares
_data = itemgetter(1)
_stored_event = partial(tuple.__new__, StoredEvent)  # from (seq, event, data, text)


def _add_runs(runs: list[str | list[str]], entries: Iterable[Entry]) -> None:
    for (event, text), run in groupby(entries, _kind):
        runs.append(_TEXT + event if text else event)
        runs.append(list(map(_data, run)))


def _dumps(runs: list[str | list[str]]) -> str:
    return json.dumps(runs, ensure_ascii=False, separators=(",", ":"))


def _encode(entries: Sequence[Entry]) -> str:
    """A batch as the log stores it: one JSON array of runs ``[event, [data, ...], ...]``.

    A text event's name carries the ``~`` marker (one byte; names never contain it).
    """
    runs: list[str | list[str]] = []
    _add_runs(runs, entries)
    return _dumps(runs)


def _encode_items(items: Sequence[LogItem], event: str) -> str:
    """Like :func:`_encode`, for log items (a ``str`` is a text event named ``event``):
    a run of them is stored as the list of them, with no object made per event."""
    runs: list[str | list[str]] = []
    for kind, group in groupby(items, type):
        if kind is str:
            runs += (_TEXT + event, list(cast("Iterator[str]", group)))
        else:
            _add_runs(runs, cast("Iterator[Entry]", group))
    return _dumps(runs)


def _encode_parts(items: Sequence[LogItem], event: str) -> list[str | int]:
    """A batch as the ``APPEND`` script takes it: the number of events and the encoding
    of each part, parts of about ``ENTRY_BYTES`` at most (or one event)."""
    whole = _encode_items(items, event)
    if len(whole) <= scripts.ENTRY_BYTES:  # the usual case: one part
        return [len(items), whole]
    parts: list[str | int] = []
    for part in split_by_size(items, scripts.ENTRY_BYTES):
        parts += (part.stop - part.start, _encode_items(items[part], event))
    return parts


def _runs(reply: Sequence[Any], after: int, limit: int) -> Iterator[tuple[int, str, list[str]]]:
    """The runs of a ``READ`` reply's batches as ``(first seq, stored name, data)``, cut
    to the events after ``after``, at most ``limit`` of them in all."""
    start = after + 1
    if limit <= 0:
        return
    for i in range(10, len(reply), 3):
        runs = json.loads(reply[i + 2])
        seq = int(reply[i]) - int(reply[i + 1]) + 1
        for j in range(0, len(runs), 2):
            name, datas = runs[j], runs[j + 1]
            end = seq + len(datas)
            if end > start:
                skip = max(start - seq, 0)
                datas = datas[skip : skip + limit] if skip or len(datas) > limit else datas
                yield seq + skip, name, datas
                limit -= len(datas)
                if limit <= 0:
                    return
            seq = end


def _info(reply: Sequence[Any]) -> StreamInfo:
    inc, state, first, last, created, updated, cancel, _, _, owner = map(_text, reply[:10])
    return StreamInfo(
        incarnation=inc,
        state=StreamState(state),
        first_seq=int(first),
        last_seq=int(last),
        created_at=int(created) / 1000,
        updated_at=int(updated) / 1000,
        cancel_requested=cancel == "1",
        owner=owner or None,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _pool_limit(client: RedisClient) -> int | None:
    """The most connections the client's pool (or each Cluster node's) will open."""
    pool = getattr(client, "connection_pool", None)
    limit = getattr(pool, "max_connections", None) or getattr(client, "max_connections", None)
    return int(limit) if isinstance(limit, int) else None


@final
class RedisStore(StreamStore):
    """Keeps streams in Redis (standalone, Sentinel-managed or Cluster).

    Args:
        client: A ``redis.asyncio.Redis`` or ``RedisCluster``, with or without
            ``decode_responses``. The store does not close a client it was given.
        url: A Redis URL, instead of ``client``; the store owns and closes that client,
            which has no socket timeout: the store bounds each round trip itself (5 s).
        prefix: Key prefix (default ``"rsse"``); no ``{``, ``}`` or ``|``.
        retention: Seconds a finished stream stays readable (default 600; 0 is allowed:
            readers still reading it when it ends get to its end all the same).
        lease: Seconds a producer may go without renewing before its stream is
            suspect (default 10); a stream still suspect one lease later ends with
            ``lost_event``, so a dead producer is detected within about two leases.
        block_ms: Longest wait, in ms, before a waiting reader or cancel watch reads
            again even without news (default 5000): a lost notification delays a
            waiter by at most this much.
        max_len: Keep about this many newest events per stream (whole batches are
            trimmed); ``None`` (the default) keeps all.
        lost_event: Event name stored when a producer is lost (default ``"error"``).
        connections: Pooled connections the store's commands use at most, in this
            process (default 8; at most the pool's ``max_connections`` minus one,
            which the notifier uses). The commands of all sessions share them as
            pipelines; on Cluster the bound holds per node.
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
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        if (client is None) == (url is None):
            raise ValueError("pass exactly one of client=... or url=...")
        if not prefix or any(c in prefix for c in "{}|"):
            raise ValueError("prefix must be non-empty, without '{', '}' or '|'")
        if retention < 0 or lease <= 0 or block_ms < 1 or connections < 1:
            raise ValueError("retention must be >= 0, lease, block_ms and connections > 0")
        if max_len is not None and max_len < 1:
            raise ValueError("max_len must be >= 1")
        self._owned = client is None
        if client is None:
            assert url is not None
            # No socket timeout of redis-py's (a task per command on Python 3.11): the
            # store bounds its round trips itself (see _redis_pipeline).
            client = Redis.from_url(url, socket_timeout=None)
        self._client: RedisClient = client
        self.prefix = prefix
        self.retention = retention
        self.lease = lease
        self.renew_interval = lease / 3
        self._wait = block_ms / 1000
        pool_limit = _pool_limit(client)
        if pool_limit is not None:
            connections = max(1, min(connections, pool_limit - 1))
        #: Pooled connections the store's commands use at most (after the pool's limit).
        self.connections = connections
        self._host = TaskHost()
        self._notifier = Notifier(client, self._host, linger=self._wait)
        self._ready = False
        self._init_lock = anyio.Lock()
        self._pipelines = Pipelines(
            client,
            self._host,
            connections=connections,
            scripts=scripts.ALL,
            timeout=_ROUND_TRIP_TIMEOUT if self._owned else None,
        )
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
        self._claim, self._append, self._finish, self._read = map(
            _sha, (scripts.CLAIM, scripts.APPEND, scripts.FINISH, scripts.READ)
        )
        self._request_cancel, self._cancel_check, self._renew, self._delete = map(
            _sha, (scripts.REQUEST_CANCEL, scripts.CANCEL_CHECK, scripts.RENEW, scripts.DELETE)
        )
        self._set_active = _sha(scripts.SET_ACTIVE)
        self._clear_active = _sha(scripts.CLEAR_ACTIVE)
        self._active_ttl_ms = lease_ms + retention_ms
        self._live = LiveIndex(self._pipelines, prefix, lease)

    def keys(self, session_id: str) -> RedisKeys:
        """The session's names: meta hash, log stream, notification channel.

        The hash tag is ``{<prefix>|<session id>}``. Session ids never contain ``|``
        and prefixes may not, so no session id can name another prefix's or another
        session's keys (``:`` is allowed in both and could not separate them).
        """
        tag = f"{{{self.prefix}|{session_id}}}"
        return RedisKeys(f"{tag}:m", f"{tag}:log", f"{tag}:n")

    async def _ensure_ready(self) -> None:
        """Load the slot map (Cluster) and the scripts, once, before the first command.

        Loaded up front, the scripts are never missing when many sessions start at
        once (each would otherwise get ``NOSCRIPT`` and load them itself).
        """
        if self._ready:
            return
        async with self._init_lock:
            if not self._ready:
                with _translated():
                    if isinstance(self._client, RedisCluster):
                        # redis-py's RedisCluster fails commands issued concurrently
                        # before it has loaded the slot map.
                        await self._client.initialize()
                    await self._pipelines.load_scripts()
                self._ready = True

    async def _run(self, sha: str, session_id: str, *args: str | int) -> Any:
        """Run a script on the session's names (in the next shared pipeline)."""
        await self._ensure_ready()
        with _translated():
            return await self._pipelines.call(
                "EVALSHA", sha, 3, *self.keys(session_id), *self._common, *args
            )

    async def _write(self, sha: str, session_id: str, claim: Claim, *args: str | int) -> None:
        done = await self._run(sha, session_id, str(claim.token), claim.incarnation, *args)
        if not int(done):
            raise LeaseLostError(f"stream {session_id!r} is no longer owned by this producer")

    async def claim(self, session_id: str, *, owner: str | None = None) -> Claim | None:
        incarnation = new_incarnation()
        token = await self._run(self._claim, session_id, incarnation, owner or "")
        if token is None:
            return None
        await self._live.add(session_id, owner)
        return Claim(incarnation, int(token))

    async def append(
        self, session_id: str, claim: Claim, entries: Sequence[Entry], *, first_seq: int
    ) -> None:
        parts = _encode_parts(entries, "")
        await self._write(
            self._append, session_id, claim, first_seq, self._max_len, len(entries), *parts
        )

    async def append_items(
        self,
        session_id: str,
        claim: Claim,
        items: Sequence[LogItem],
        *,
        event: str,
        first_seq: int,
    ) -> None:
        parts = _encode_parts(items, event)
        await self._write(
            self._append, session_id, claim, first_seq, self._max_len, len(items), *parts
        )

    async def finish(
        self, session_id: str, claim: Claim, state: StreamState, entry: Entry, *, seq: int
    ) -> None:
        if not state.finished:
            raise ValueError("finish() needs a final state")
        await self._write(self._finish, session_id, claim, state.value, seq, _encode([entry]))
        await self._live.remove(session_id)

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
        reply = await self._read_reply(session_id, after, limit, wait, incarnation or "")
        if reply is None:
            return None
        events: list[StoredEvent] = []
        for seq, name, datas in _runs(reply, after, limit):
            text = name[:1] == _TEXT
            event = name[1:] if text else name
            events += map(_stored_event, zip(count(seq), repeat(event), datas, repeat(text)))
        return Page(_info(reply), events)

    async def read_frames(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> FramePage | None:
        """Like :meth:`read`: each run's frames are built from the stored data at once."""
        after = max(after, 0)
        reply = await self._read_reply(session_id, after, limit, wait, incarnation or "")
        if reply is None:
            return None
        inc = _text(reply[0])
        prefix = inc + "-"
        first = after + 1
        parts: list[Sequence[bytes]] = []
        for seq, name, datas in _runs(reply, after, limit):
            if not parts:
                first = seq
            parts.append(encode_run(prefix, seq, name[1:] if name[:1] == _TEXT else name, datas))
        state, first_seq, last_seq = _text(reply[1]), int(reply[2]), int(reply[3])
        return FramePage(inc, StreamState(state), first_seq, last_seq, first, concat_frames(parts))

    async def _read_reply(
        self, session_id: str, after: int, limit: int, wait: bool, incarnation: str
    ) -> Sequence[Any] | None:
        """The ``READ`` script's reply; with ``wait``, once it holds events or an end.

        The reply holds events exactly when it holds batches: each batch ends after
        ``after``. It holds none after a wait that timed out, or at once when the log
        lacks events the stream counts (lost history, which the consumer reports).
        """
        reply: Sequence[Any] | None
        if not wait:
            reply = await self._run(self._read, session_id, after, limit, incarnation)
            return reply
        async with self._watch(session_id) as watch:
            reply = await self._run(self._read, session_id, after, limit, incarnation)
            if (
                reply is None
                or len(reply) > 10
                or _text(reply[1]) != StreamState.RUNNING
                or int(reply[3]) > after  # events the log lacks (lost): waiting won't bring them
            ):
                return reply
            # Wait for news newer than that read, but no longer than until the reap's
            # next step is due: then the read below takes it.
            timeout = self._wait
            due_in_ms = int(reply[7]) - int(reply[8])
            if due_in_ms > 0:
                timeout = min(timeout, due_in_ms / 1000 + 0.005)
            await watch.wait(timeout)
        # This reader was attached if the stream ended meanwhile: it gets the end.
        reply = await self._run(self._read, session_id, after, limit, _text(reply[0]))
        return reply

    @asynccontextmanager
    async def _watch(self, session_id: str) -> AsyncIterator[Watch]:
        """Subscribe to the session's channel (the watch is marked on entry)."""
        await self._ensure_ready()
        with _translated():
            async with self._notifier.watch(self.keys(session_id).channel, self._wait) as watch:
                yield watch

    async def info(self, session_id: str) -> StreamInfo | None:
        reply = await self._run(self._read, session_id, 0, 0, "")
        return None if reply is None else _info(reply)

    async def request_cancel(self, session_id: str) -> bool:
        return bool(int(await self._run(self._request_cancel, session_id)))

    async def wait_cancel(self, session_id: str, claim: Claim) -> None:
        token = str(claim.token)
        while True:
            async with self._watch(session_id) as watch:
                while True:
                    if int(
                        await self._run(self._cancel_check, session_id, token, claim.incarnation)
                    ):
                        return
                    # Wakes at once on a cancel request, a finish or a delete; the
                    # timeout only makes a lost notification a delay.
                    await watch.wait(self._wait, control=True)
                    if not watch.current:  # the subscription was lost: subscribe afresh
                        break

    async def renew(self, session_id: str, claim: Claim) -> None:
        await self._write(self._renew, session_id, claim)
        await self._live.touch(session_id)

    async def delete(self, session_id: str) -> bool:
        existed = bool(int(await self._run(self._delete, session_id)))
        await self._live.remove(session_id)
        return existed

    async def running(
        self, owner: str | None = None, *, limit: int = 1000
    ) -> Sequence[tuple[str, StreamInfo]]:
        """List running streams of every worker through an index; see ``_redis_live``.

        Cost: one round trip to list the index, then one state read per listed
        stream (32 at a time); independent of the size of the database.
        """
        await self._ensure_ready()
        ids = await self._live.members(owner, limit)
        found: list[tuple[str, StreamInfo]] = []
        stale: list[str] = []
        for start in range(0, len(ids), 32):
            chunk = ids[start : start + 32]
            infos = await asyncio.gather(*(self.info(session_id) for session_id in chunk))
            for session_id, info in zip(chunk, infos, strict=True):
                if info is None or info.state.finished or (owner and info.owner != owner):
                    stale.append(session_id)
                else:
                    found.append((session_id, info))
        if stale:
            await self._live.forget(stale, owner)
        return found

    # -- conversations -------------------------------------------------------------------

    def active_key(self, conversation_id: str) -> str:
        """The key holding the conversation's active session id.

        Its hash tag follows :meth:`keys`, with a suffix no session key uses.
        """
        return f"{{{self.prefix}|{conversation_id}}}:active"

    async def _run_active(self, sha: str, conversation_id: str, *args: str | int) -> Any:
        await self._ensure_ready()
        with _translated():
            return await self._pipelines.call(
                "EVALSHA", sha, 1, self.active_key(conversation_id), *args
            )

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
            current = await self._pipelines.call("GET", self.active_key(conversation_id))
        return None if current is None else _text(current)

    async def clear_active(self, conversation_id: str, session_id: str) -> bool:
        return bool(int(await self._run_active(self._clear_active, conversation_id, session_id)))

    async def aclose(self) -> None:
        """Close the notifier's connections, and the client if the store made it from ``url``."""
        await self._host.aclose()
        if self._owned:
            with _translated():
                await self._client.aclose()
