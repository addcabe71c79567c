"""The :class:`StreamStore` contract: what a storage backend must provide.

A store keeps, per session id, one *stream*: an append-only log of events numbered
1, 2, 3, ... plus a little state. Exactly one producer appends to a stream; any number
of consumers read it. The streamer relies on these guarantees, and the contract test
suite (``tests/contract``) checks them for every store:

* **Ordering.** Sequence numbers are assigned by the store, start at 1 for every new
  stream, and increase by exactly 1 per event, with no gaps.
* **Atomic batches.** ``append`` writes all entries of a batch or none; a reader never
  sees part of a batch.
* **One producer.** ``claim`` succeeds for exactly one caller while a stream exists
  (running or finished and not yet expired). The returned :class:`Claim` fences
  writes: once a stream is finished, deleted or re-claimed, appends with an old claim
  raise :class:`~resumable_sse.LeaseLostError` and change nothing.
* **Terminal state.** ``finish`` appends one last event and sets the final state in
  one atomic step; nothing can be appended after it.
* **Waiting without polling.** ``read(..., wait=True)`` returns as soon as an event
  after ``after`` exists or the stream is finished or deleted. It may return early with
  no events (a timeout of the backend); callers simply read again.
* **Expiry.** A finished stream is kept for the store's retention time, then it is
  gone as if deleted: ``claim`` starts a new stream, ``info`` and ``read`` return
  ``None``. A running stream never expires while its producer is alive.
* **Readers reach the end.** Whoever is still reading a stream when it ends gets its
  terminal event, even with a retention of 0: a ``read`` that waited on the stream
  when it finished returns the terminal event, and a ``read`` naming the stream's
  ``incarnation`` returns it until :data:`FINISHED_LINGER` seconds after the end
  (unless the id was claimed anew, the stream was deleted, or a full store dropped it).

All methods may raise :class:`~resumable_sse.StoreUnavailableError` when the backend
cannot be reached; no other exception escapes a store for backend trouble.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from typing import NamedTuple, Protocol, TypeAlias, overload

from typing_extensions import final

from .._frames import encode_frames
from .._resource import AsyncResource

__all__ = [
    "FINISHED_LINGER",
    "Claim",
    "Entry",
    "EventRun",
    "FramePage",
    "LocalLog",
    "LogItem",
    "Page",
    "StoredEvent",
    "StreamInfo",
    "StreamState",
    "StreamStore",
    "as_log_item",
    "log_item_size",
    "split_by_size",
]

#: Seconds after its end that a finished stream stays readable to the readers still
#: reading it (who name its incarnation), however short the store's retention.
FINISHED_LINGER = 10.0


class StreamState(str, enum.Enum):
    """The lifecycle of a stream: ``running``, then one of the three final states."""

    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the stream has ended (its last event is a terminal event)."""
        return self is not StreamState.RUNNING


# Entry and StoredEvent are named tuples, not frozen dataclasses: one of each is made per
# token, and a named tuple is immutable yet about twice as cheap to create.


class Entry(NamedTuple):
    """An event to append: its SSE event name and its data, before it has a number.

    ``text`` is true when the generator yielded the data itself (a ``str`` or ``bytes``
    item), false for JSON-encoded items, custom events and terminal events. A store
    keeps it (a flag, no copy of anything) so that a compacted replay can merge runs of
    text; a store that drops it stays correct, its replays are just never compacted.
    """

    event: str
    data: str
    text: bool = False


class StoredEvent(NamedTuple):
    """An event in the log, with the sequence number the store gave it (see :class:`Entry`)."""

    seq: int
    event: str
    data: str
    text: bool = False


#: How a store that keeps its log in this process may keep an event: an exact ``str``
#: (not a subclass) is the data of a text event with the stream's usual name; anything
#: else is its :class:`Entry`.
LogItem: TypeAlias = str | Entry


def log_item_size(item: LogItem) -> int:
    """The length of an item's data (characters: a measure of its size, not bytes)."""
    return len(item) if type(item) is str else len(item[1])


def split_by_size(items: Sequence[LogItem], limit: int) -> Iterator[slice]:
    """Consecutive parts of ``items`` whose data is about ``limit`` long at most (an item
    longer than that alone), as slices; one part for a short sequence."""
    start = size = 0
    for index, item in enumerate(items):
        item_size = log_item_size(item)
        if size and size + item_size > limit:
            yield slice(start, index)
            start, size = index, 0
        size += item_size
    yield slice(start, len(items))


def as_log_item(entry: Entry, event: str) -> LogItem:
    """``entry`` as a local log keeps it: a text event named ``event`` as its data alone."""
    if entry.text and entry.event == event and type(entry.data) is str:
        return entry.data
    return entry


@final
class EventRun(Sequence[StoredEvent]):
    """Consecutive stored events as a store keeps them in this process: the event numbered
    ``seq + i`` is ``items[i]``, a :data:`LogItem` (a ``str`` stands for a text event
    named ``event``).

    The memory store returns one as :attr:`Page.events`. To everyone it is a sequence
    of :class:`StoredEvent` (each made when it is accessed); readers that know it take
    the items as they are and make no object per event. ``texts`` promises that every
    item is a ``str``, so such a reader need not check each one.
    """

    __slots__ = ("event", "items", "seq", "texts")

    def __init__(self, seq: int, event: str, items: Sequence[LogItem], texts: bool = False) -> None:
        self.seq = seq
        self.event = event
        self.items = items
        self.texts = texts

    def __len__(self) -> int:
        return len(self.items)

    def _stored(self, seq: int, item: LogItem) -> StoredEvent:
        if isinstance(item, Entry):
            return StoredEvent(seq, *item)
        return StoredEvent(seq, self.event, item, True)

    @overload
    def __getitem__(self, index: int) -> StoredEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[StoredEvent]: ...

    def __getitem__(self, index: int | slice) -> StoredEvent | Sequence[StoredEvent]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self.items))
            if step != 1:
                return list(self)[index]
            return EventRun(self.seq + start, self.event, self.items[start:stop], self.texts)
        i = range(len(self.items))[index]  # negative indexes, and IndexError
        return self._stored(self.seq + i, self.items[i])

    def __iter__(self) -> Iterator[StoredEvent]:
        return map(self._stored, count(self.seq), self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a list

    def __repr__(self) -> str:
        return f"EventRun({list(self)!r})"


class LocalLog(Protocol):
    """One stream's log, in a store that keeps it in this process.

    See :meth:`StreamStore.local_log`. The producer appends each event to ``items``
    itself (a :data:`LogItem`), then calls :meth:`wake` if ``waiting`` (a reader is
    waiting). Writing needs no fencing: a producer that lost the stream
    (deleted, or finished by someone else) writes to a log nobody reads any more, and
    learns of it from :meth:`on_cancel` and :meth:`StreamStore.finish`.
    """

    items: list[LogItem]
    #: The number of the last event in ``items`` kept as an :class:`Entry`, the stream's
    #: terminal event aside (0 if none): whoever appends one sets it, so that readers
    #: know the run after it holds text only.
    last_entry: int

    @property
    def waiting(self) -> bool:
        """True while a reader may be waiting for the next event."""

    def wake(self) -> None:
        """Wake the readers waiting for the next event."""

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (once, in the canceller's task) when cancellation of the
        stream is requested or the stream is deleted; at once if that happened already.

        The producer stops its generator from it, so no task of its own waits in
        :meth:`StreamStore.wait_cancel`.
        """


@final
@dataclass(frozen=True, slots=True)
class Claim:
    """Proof that the holder is the stream's one producer.

    ``incarnation`` names the stream (it changes when a session id is reused);
    ``token`` is a fencing token that the store checks on every write.
    """

    incarnation: str
    token: int


@final
@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A snapshot of one stream's state.

    ``first_seq`` is the oldest event still retained (1 unless the store trims), and
    ``last_seq`` the newest (0 while empty). Times are Unix timestamps in seconds.
    ``owner`` is the principal given to :meth:`StreamStore.claim`, if any.
    """

    incarnation: str
    state: StreamState
    first_seq: int
    last_seq: int
    created_at: float
    updated_at: float
    cancel_requested: bool
    owner: str | None = None


@final
@dataclass(frozen=True, slots=True)
class Page:
    """The result of a read: the stream's state and the events after the position read."""

    info: StreamInfo
    events: Sequence[StoredEvent]


class FramePage(NamedTuple):
    """The result of :meth:`StreamStore.read_frames`: events as SSE bytes, ready to send.

    ``frames[i]`` is the event numbered ``seq + i``; ``state``, ``first_seq`` and
    ``last_seq`` are the stream's, as in :class:`StreamInfo`. A named tuple, not a
    :class:`StreamInfo`: one is made per read, and a live reader reads once per token.
    """

    incarnation: str
    state: StreamState
    first_seq: int
    last_seq: int
    seq: int
    frames: Sequence[bytes]


class StreamStore(AsyncResource):
    """Where streams live. Subclass it to add a backend; see the module docstring.

    Session ids reaching a store have been validated by the streamer (1 to 128
    characters from ``A-Z a-z 0-9 _ . : @ -``).
    """

    #: How often (seconds) a producer must call :meth:`renew`, or ``None`` if the store
    #: does not use leases (it notices producer death some other way, or cannot).
    renew_interval: float | None = None

    @abstractmethod
    async def claim(self, session_id: str, *, owner: str | None = None) -> Claim | None:
        """Create a new running stream and make the caller its producer.

        ``owner`` (the principal starting the stream, if any) is kept with the stream
        and reported by :meth:`info`.

        Returns:
            A claim if no stream existed (or it had expired), else ``None``: the stream
            has a producer already, or has finished and is still retained.

        Raises:
            StoreFullError: the store cannot take another stream.
        """

    @abstractmethod
    async def append(
        self, session_id: str, claim: Claim, entries: Sequence[Entry], *, first_seq: int
    ) -> None:
        """Append a non-empty batch of events atomically, in order.

        ``first_seq`` is the sequence number the first entry gets; the producer knows it
        because it is the only writer. If the log already ends at ``first_seq - 1 +
        len(entries)``, the batch is a retry of a write that landed (its reply was lost)
        and the store changes nothing: retried writes are never applied twice.

        Raises:
            LeaseLostError: ``claim`` is no longer the stream's producer, or the stream
                is finished or gone, or its log does not end where ``first_seq`` says.
                Nothing was written.
        """

    async def append_items(
        self,
        session_id: str,
        claim: Claim,
        items: Sequence[LogItem],
        *,
        event: str,
        first_seq: int,
    ) -> None:
        """:meth:`append`, the batch given as log items: a ``str`` is the data of a text
        event named ``event`` (see :data:`LogItem`), anything else its :class:`Entry`.

        The producer writes through this method. The default makes each ``str`` an
        :class:`Entry` and calls :meth:`append`; a store that can encode the items as
        they are overrides it, and saves an object per event.
        """
        entries = [Entry(event, item, True) if isinstance(item, str) else item for item in items]
        await self.append(session_id, claim, entries, first_seq=first_seq)

    def local_log(self, session_id: str, claim: Claim, event: str) -> LocalLog | None:
        """The stream's log, if this store keeps it in this process, for its producer.

        ``event`` is the name most of the stream's events have (the streamer's default):
        a ``str`` appended to the log is a text event with that name. The default,
        ``None``, is right for every store with I/O: the producer then batches events
        into :meth:`append` calls (group commit). A store whose log is a list in this
        process returns a :class:`LocalLog`, which saves the producer a task, a hand-off
        and an object per event.

        Raises:
            LeaseLostError: ``claim`` is no longer the stream's producer.
        """
        return None

    @abstractmethod
    async def finish(
        self, session_id: str, claim: Claim, state: StreamState, entry: Entry, *, seq: int
    ) -> None:
        """Append the terminal event as number ``seq`` and set the final ``state``, atomically.

        The retention clock starts now. Consumers waiting in :meth:`read` wake up. A
        retry of a finish that landed (same ``seq``, stream already in ``state``) is a
        no-op.

        Raises:
            LeaseLostError: as for :meth:`append`.
        """

    @abstractmethod
    async def read(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> Page | None:
        """Read up to ``limit`` events with a sequence number greater than ``after``.

        A store may return fewer, at least one if there are any (the Redis store stops
        at about a megabyte of events, so that large events do not make one read hold
        the whole stream); the caller reads on from the last event returned.

        With ``wait=True`` and nothing to return yet, block until an event arrives, the
        stream finishes, or it is deleted; the store may also return an empty page
        after a backend-specific timeout. A read that was waiting when the stream
        finished returns the terminal event, whatever the retention. Events before
        ``info.first_seq`` are not returned (the caller compares ``after`` with
        ``first_seq`` to detect trimming).

        ``incarnation`` is the stream the caller has been reading, if any: a finished
        stream of that incarnation whose retention has passed is still returned until
        :data:`FINISHED_LINGER` seconds after its end, so a reader gets to the end.

        Returns:
            The page, or ``None`` if no stream exists under ``session_id``.
        """

    async def read_frames(
        self,
        session_id: str,
        after: int,
        *,
        limit: int,
        wait: bool,
        incarnation: str | None = None,
    ) -> FramePage | None:
        """Like :meth:`read`, with each event as its SSE frame (see ``_frames``).

        The default encodes what :meth:`read` returns; a store may instead build each
        frame once and hand the same bytes to every reader.
        """
        page = await self.read(session_id, after, limit=limit, wait=wait, incarnation=incarnation)
        if page is None:
            return None
        info, events = page.info, page.events
        seq = events[0].seq if events else after + 1
        frames = encode_frames(info.incarnation + "-", events)
        return FramePage(info.incarnation, info.state, info.first_seq, info.last_seq, seq, frames)

    @abstractmethod
    async def info(self, session_id: str) -> StreamInfo | None:
        """Return the stream's state, or ``None`` if there is no stream."""

    @abstractmethod
    async def request_cancel(self, session_id: str) -> bool:
        """Ask the stream's producer, wherever it runs, to stop.

        Returns:
            ``True`` if the stream is running (its producer will be told), ``False`` if
            it has already finished or does not exist.
        """

    @abstractmethod
    async def wait_cancel(self, session_id: str, claim: Claim) -> None:
        """Return once cancellation of the stream has been requested (or it was deleted).

        Producers run this beside their generator; it may block forever.
        """

    async def renew(self, session_id: str, claim: Claim) -> None:
        """Extend the producer's lease (stores with a ``renew_interval``).

        Raises:
            LeaseLostError: the claim is no longer valid.
        """

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove a stream and all its events; waiting readers wake and see it gone.

        Returns:
            Whether a stream existed.
        """

    # -- conversations: one active stream each ---------------------------------------
    #
    # A conversation (a chat) has at most one *active* stream at a time. The store keeps
    # the mapping conversation id -> session id; the streamer decides what "active"
    # means (it checks the named stream's state) and clears the mapping when the stream
    # ends. Conversation ids are validated like session ids. A store that does not
    # override these methods cannot serve conversations: they raise NotImplementedError.

    async def set_active(
        self, conversation_id: str, session_id: str, *, replace: bool
    ) -> str | None:
        """Make ``session_id`` the conversation's active stream, in one atomic step.

        Concurrent calls for one conversation are applied one after the other, each
        seeing the mapping as the call before it left it (on every worker sharing the
        store), so of two calls naming different sessions with ``replace=False``
        exactly one gets ``None``.

        * No mapping: it is set to ``session_id``; returns ``None``.
        * Mapped to ``session_id`` already: unchanged, its expiry renewed; returns
          ``session_id``.
        * Mapped to another session: replaced by ``session_id`` if ``replace`` (the
          caller should then cancel the returned, superseded stream), else unchanged;
          returns that other session id either way.

        The mapping does not follow the stream's state: it lasts until
        :meth:`clear_active` or a replacement, and it expires with the store's
        retention (a store with leases drops it ``lease + retention`` after the last
        call naming it, which the streamer repeats every ``renew_interval`` while the
        stream runs; the memory store drops it with the stream it names).

        Raises:
            StoreUnavailableError: the backend cannot be reached; nothing changed.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support conversations")

    async def get_active(self, conversation_id: str) -> str | None:
        """Return the session id the conversation is mapped to, or ``None``.

        The named stream may have finished or expired since; callers check it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support conversations")

    async def clear_active(self, conversation_id: str, session_id: str) -> bool:
        """Remove the conversation's mapping if, and only if, it names ``session_id``.

        Atomic compare-and-delete: a stream that was superseded never clears its
        successor's mapping.

        Returns:
            Whether the mapping named ``session_id`` and was removed.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support conversations")

    async def running(
        self, owner: str | None = None, *, limit: int = 1000
    ) -> Sequence[tuple[str, StreamInfo]]:
        """List running streams (of ``owner`` only, if given): session id and state.

        Every worker sharing the store sees the same list. The cost is bounded by the
        number of running streams listed, never by the size of the whole backend.
        The default raises ``NotImplementedError``: a store without an index can
        only be asked about the streams this process runs.

        Args:
            owner: Only the streams started by this principal.
            limit: At most this many streams, the most recently started first.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the store's resources. The default does nothing."""
