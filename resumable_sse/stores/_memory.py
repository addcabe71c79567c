"""The in-memory store: the embedded default, and a fast store for tests.

Each stream keeps its events in one list indexed by sequence number: a text event with
the stream's usual name is just its data (one reference per token), any other event its
:class:`~resumable_sse.stores.Entry`. An append is O(1), seeking to any position is
O(1), and no object is made per event: a read hands out a slice of the list (an
:class:`~resumable_sse.stores.EventRun`), and the producer appends to the list itself
(the stream is its :class:`~resumable_sse.stores.LocalLog`), with no batching and no
writer task. Readers waiting for new events park on an ``anyio.Event`` that the next
append or finish sets; nothing polls. A running stream's ``updated_at`` is refreshed
whenever a waiting reader is woken, and at least every 1,024 events.

Readers that send SSE bytes (``read_frames``) share one frame per event: it is built
by the first such read that reaches it and kept with the stream, so a stream read that
way holds each event's frame beside the event itself.

Finished streams are remembered in an ordered dict, oldest finish first. Expired streams
are dropped from its front whenever a stream is claimed or looked up, so memory stays
bounded by the streams finished within the retention time (and by ``max_streams``). A
deleted or re-claimed stream leaves that dict at once, so nothing keeps its events alive.

Once its retention has passed, a finished stream is invisible (its id can be claimed
anew), but it is only dropped ``FINISHED_LINGER`` seconds after its end at the earliest,
so that readers still reading it (they name its incarnation) get to its terminal event.

A conversation's active-stream mapping is dropped with the stream it names (when that
stream is dropped: expired, evicted, deleted or replaced), so mappings are bounded the
same way; one that names a stream never claimed lasts until
:meth:`~MemoryStore.clear_active`, which the streamer calls when a start fails.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import anyio
from typing_extensions import final

from .._exceptions import LeaseLostError, StoreFullError
from .._frames import encode_frame, encode_items
from .._ids import new_incarnation
from ._contract import (
    FINISHED_LINGER,
    Claim,
    Entry,
    EventRun,
    FramePage,
    LocalLog,
    LogItem,
    Page,
    StreamInfo,
    StreamState,
    StreamStore,
    as_log_item,
)
from ._wakeup import Wakeup

__all__ = ["MemoryStore"]

_new = tuple.__new__

_RUNNING = StreamState.RUNNING
_NEVER = math.inf

DEFAULT_RETENTION = 600.0
DEFAULT_MAX_STREAMS = 10_000


class _Stream(Wakeup):
    """One stream; to its producer, a :class:`~resumable_sse.stores.LocalLog`. Its
    readers wait on it for its next event (a :class:`Wakeup`)."""

    __slots__ = (
        "cancel_event",
        "cancelled",
        "created_at",
        "drop_at",
        "event",
        "expires_at",
        "frames",
        "incarnation",
        "items",
        "last_entry",
        "on_cancelled",
        "owner",
        "state",
        "token",
        "updated_at",
    )

    def __init__(self, incarnation: str, token: int, now: float, owner: str | None) -> None:
        super().__init__()
        self.incarnation = incarnation
        self.owner = owner
        self.token = token
        self.state = StreamState.RUNNING
        # Event number n is items[n - 1]: its data if it is a text event named `event`
        # (the usual case: one reference per event), else its Entry.
        self.event = ""
        self.items: list[LogItem] = []
        self.last_entry = 0  # see LocalLog
        # The SSE frames of the first len(frames) events, built on the first read_frames
        # that needs them and shared by every later reader.
        self.frames: list[bytes] = []
        self.created_at = now
        self.updated_at = now
        # Set when it finishes: when its retention ends (it becomes invisible), and when
        # even readers still reading it lose it.
        self.expires_at = math.inf
        self.drop_at = math.inf
        # Whether a cancel was requested (or the stream dropped); the producer's callback
        # for it; the event wait_cancel waits on, made by the first such wait.
        self.cancelled = False
        self.on_cancelled: Callable[[], object] | None = None
        self.cancel_event: anyio.Event | None = None

    def wake(self) -> None:
        self.updated_at = time.time()
        Wakeup.wake(self)

    def on_cancel(self, callback: Callable[[], object]) -> None:
        if self.cancelled:
            callback()
        else:
            self.on_cancelled = callback

    def cancel(self) -> None:
        """Request cancellation: tell the producer and whoever waits in wait_cancel."""
        if self.cancelled:
            return
        self.cancelled = True
        callback, self.on_cancelled = self.on_cancelled, None
        if callback is not None:
            callback()
        if self.cancel_event is not None:
            self.cancel_event.set()

    def frames_to(self, end: int) -> list[bytes]:
        """The frames of events 1 to ``end`` at least (each built once, then kept)."""
        frames = self.frames
        start = len(frames)
        if start + 1 == end and type(item := self.items[start]) is str:  # a lone token
            frames.append(encode_frame(f"{self.incarnation}-{end}", self.event, item))
        elif start < end:
            seqs, items = range(start + 1, end + 1), self.items[start:end]
            frames += encode_items(self.incarnation + "-", seqs, self.event, items)
        return frames

    def extend(self, entries: Sequence[Entry]) -> None:
        event, items = self.event, self.items
        if not items and not event:
            self.event = event = entries[0].event
        items += [as_log_item(entry, event) for entry in entries]
        for number in range(len(items), len(items) - len(entries), -1):
            if type(items[number - 1]) is not str:
                self.last_entry = number
                break

    def run(self, after: int, end: int) -> EventRun:
        """Events ``after + 1`` to ``end``."""
        # Text only if no Entry is in it: none after `after`, nor the end of the stream.
        texts = self.last_entry <= after and (end < len(self.items) or self.state is _RUNNING)
        return EventRun(after + 1, self.event, self.items[after:end], texts)

    def info(self) -> StreamInfo:
        return StreamInfo(
            incarnation=self.incarnation,
            state=self.state,
            first_seq=1,
            last_seq=len(self.items),
            created_at=self.created_at,
            updated_at=self.updated_at,
            cancel_requested=self.cancelled,
            owner=self.owner,
        )


@final
class MemoryStore(StreamStore):
    """Keeps streams in this process's memory.

    Args:
        retention: Seconds a finished stream stays readable (default 600; 0 is allowed).
            Readers still reading a stream when it ends get to its terminal event even
            if that is longer than ``retention`` (up to ``FINISHED_LINGER`` seconds).
        max_streams: Streams held at once (default 10,000). When full, the stream that
            finished longest ago is dropped early to make room; if every stream is still
            running, :meth:`claim` raises :class:`~resumable_sse.StoreFullError`.
        clock: Monotonic clock used for expiry (injectable for tests).
    """

    def __init__(
        self,
        *,
        retention: float = DEFAULT_RETENTION,
        max_streams: int = DEFAULT_MAX_STREAMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retention < 0:
            raise ValueError("retention must be >= 0")
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.retention = retention
        self.max_streams = max_streams
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        # Finished streams in the order they finished, which is the order they expire in.
        self._finished: OrderedDict[str, _Stream] = OrderedDict()
        self._tokens = itertools.count(1)
        self._active: dict[str, str] = {}
        self._active_of: dict[str, set[str]] = {}  # session id -> conversations naming it

    def __len__(self) -> int:
        """The number of streams held: running, retained, or still being read to their end."""
        self._expire()
        return len(self._streams)

    def _expire(self) -> None:
        now = self._clock()
        finished = self._finished
        while finished:
            session_id, stream = next(iter(finished.items()))
            if stream.drop_at > now:
                return
            self._drop(session_id)

    def _drop(self, session_id: str) -> _Stream | None:
        """Forget a stream at once, waking whoever waits on it."""
        stream = self._streams.pop(session_id, None)
        self._finished.pop(session_id, None)
        if stream is not None:
            stream.cancel()
            stream.wake()
            self._forget_active(session_id)
        return stream

    def _forget_active(self, session_id: str) -> None:
        for conversation_id in self._active_of.pop(session_id, ()):
            if self._active.get(conversation_id) == session_id:
                del self._active[conversation_id]

    def _get(self, session_id: str, incarnation: str | None = None) -> _Stream | None:
        """The visible stream, or a finished one past retention that ``incarnation`` names."""
        stream = self._streams.get(session_id)
        if stream is None or stream.expires_at == math.inf:  # absent, or running
            return stream
        now = self._clock()
        if stream.expires_at > now:
            return stream
        if stream.incarnation == incarnation and stream.drop_at > now:
            return stream
        self._expire()
        return None

    def _after_wait(self, session_id: str, stream: _Stream) -> _Stream | None:
        """``stream`` after a reader waited on it, unless it was deleted or expired
        meanwhile; a reader attached when it ended still gets the end."""
        if self._streams.get(session_id) is stream:  # the usual case: still there
            return stream
        return self._get(session_id, stream.incarnation)

    def _owned(self, session_id: str, claim: Claim) -> _Stream:
        stream = self._get(session_id)
        if stream is None or stream.token != claim.token:
            raise LeaseLostError(f"stream {session_id!r} is no longer owned by this producer")
        return stream

    async def claim(self, session_id: str, *, owner: str | None = None) -> Claim | None:
        self._expire()
        if self._get(session_id) is not None:
            return None
        self._drop(session_id)  # a stream past its retention that readers still finish
        while len(self._streams) >= self.max_streams:
            if not self._finished:
                raise StoreFullError(f"the store holds {self.max_streams} running streams")
            self._drop(next(iter(self._finished)))
        token = next(self._tokens)
        stream = _Stream(new_incarnation(), token, time.time(), owner)
        self._streams[session_id] = stream
        return Claim(stream.incarnation, token)

    async def append(
        self, session_id: str, claim: Claim, entries: Sequence[Entry], *, first_seq: int
    ) -> None:
        stream = self._owned(session_id, claim)
        last = len(stream.items)
        if last == first_seq - 1 + len(entries) and not stream.state.finished:
            return  # a retry of a batch that landed
        if last != first_seq - 1 or stream.state.finished:
            raise LeaseLostError(f"stream {session_id!r} ends at {last}, not {first_seq - 1}")
        stream.extend(entries)
        stream.wake()

    def local_log(self, session_id: str, claim: Claim, event: str) -> LocalLog | None:
        stream = self._owned(session_id, claim)
        if not stream.items:
            stream.event = event
        return stream

    async def finish(
        self, session_id: str, claim: Claim, state: StreamState, entry: Entry, *, seq: int
    ) -> None:
        if not state.finished:
            raise ValueError("finish() needs a final state")
        stream = self._owned(session_id, claim)
        if stream.state is state and len(stream.items) == seq:
            return  # a retry of a finish that landed
        if stream.state.finished or len(stream.items) != seq - 1:
            raise LeaseLostError(f"stream {session_id!r} cannot end at {seq}")
        stream.items.append(entry)
        stream.state = state
        stream.on_cancelled = None  # the producer is done: the stream keeps nothing of it
        now = self._clock()
        stream.expires_at = now + self.retention
        stream.drop_at = now + max(self.retention, FINISHED_LINGER)
        self._finished[session_id] = stream
        stream.wake()

    async def read(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> Page | None:
        stream = self._get(session_id, incarnation)
        if stream is None:
            return None
        after = max(after, 0)
        if wait and len(stream.items) <= after and stream.state is _RUNNING:
            await stream.wait()
            stream = self._after_wait(session_id, stream)
            if stream is None:
                return None
        return Page(stream.info(), stream.run(after, after + limit))

    async def read_frames(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> FramePage | None:
        # Kept lean: a reader at an LLM's pace calls this once per token. A running
        # stream is the one _get would return (only finished ones can be hidden).
        stream = self._streams.get(session_id)
        if stream is None or stream.expires_at != _NEVER:
            stream = self._get(session_id, incarnation)
            if stream is None:
                return None
        if after < 0:
            after = 0
        if wait and len(stream.items) <= after and stream.state is _RUNNING:
            await stream.wait()
            if self._streams.get(session_id) is not stream:
                stream = self._after_wait(session_id, stream)
                if stream is None:
                    return None
        last = len(stream.items)
        end = last if last - after <= limit else after + limit
        frames = stream.frames
        if len(frames) < end:
            frames = stream.frames_to(end)
        return _new(
            FramePage,
            (stream.incarnation, stream.state, 1, last, after + 1, frames[after:end]),
        )

    async def info(self, session_id: str) -> StreamInfo | None:
        stream = self._get(session_id)
        return None if stream is None else stream.info()

    async def request_cancel(self, session_id: str) -> bool:
        stream = self._get(session_id)
        if stream is None or stream.state.finished:
            return False
        stream.cancel()
        return True

    async def wait_cancel(self, session_id: str, claim: Claim) -> None:
        stream = self._streams.get(session_id)
        if stream is None or stream.token != claim.token:
            return
        if not stream.cancelled:
            if stream.cancel_event is None:
                stream.cancel_event = anyio.Event()
            await stream.cancel_event.wait()

    async def running(
        self, owner: str | None = None, *, limit: int = 1000
    ) -> Sequence[tuple[str, StreamInfo]]:
        # One pass over the streams held (at most max_streams), newest first.
        found = [
            (session_id, stream)
            for session_id, stream in self._streams.items()
            if stream.state is StreamState.RUNNING and (owner is None or stream.owner == owner)
        ]
        found.sort(key=lambda item: item[1].created_at, reverse=True)
        return [(session_id, stream.info()) for session_id, stream in found[:limit]]

    async def delete(self, session_id: str) -> bool:
        self._expire()
        return self._drop(session_id) is not None

    # -- conversations -------------------------------------------------------------------

    async def set_active(
        self, conversation_id: str, session_id: str, *, replace: bool
    ) -> str | None:
        self._expire()
        current = self._active_session(conversation_id)
        if current is None or replace:
            if current is not None:
                self._unlink(conversation_id, current)
            self._active[conversation_id] = session_id
            self._active_of.setdefault(session_id, set()).add(conversation_id)
        return current

    async def get_active(self, conversation_id: str) -> str | None:
        self._expire()
        return self._active_session(conversation_id)

    def _active_session(self, conversation_id: str) -> str | None:
        """The mapped session; a mapping to a stream past its retention is dropped."""
        session_id = self._active.get(conversation_id)
        lingering = session_id in self._streams and self._get(session_id) is None
        if session_id is not None and lingering:
            self._forget_active(session_id)  # only readers still reading it see it
            return None
        return session_id

    async def clear_active(self, conversation_id: str, session_id: str) -> bool:
        if self._active.get(conversation_id) != session_id:
            return False
        del self._active[conversation_id]
        self._unlink(conversation_id, session_id)
        return True

    def _unlink(self, conversation_id: str, session_id: str) -> None:
        conversations = self._active_of.get(session_id)
        if conversations is not None:
            conversations.discard(conversation_id)
            if not conversations:
                del self._active_of[session_id]
