"""Consumers: reading a stream from a position, then following it live until its end."""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from operator import attrgetter

from typing_extensions import Self, final

from ._compact import Compactor
from ._exceptions import (
    EventIdAheadError,
    HistoryLostError,
    HistoryTrimmedError,
    SessionNotFoundError,
    StaleEventIdError,
    TooManyConsumersError,
)
from ._frames import encode_items, frames_size, join_frames
from ._ids import EventId
from ._resource import AsyncResource
from ._telemetry import NO_HOOKS, Hooks
from .stores._contract import (
    Entry,
    EventRun,
    FramePage,
    LogItem,
    Page,
    StoredEvent,
    StreamInfo,
    StreamStore,
    split_by_size,
)
from .stores._wakeup import on_asyncio

__all__ = ["ConsumerSlots", "Subscription"]

_FIRST_PAGE = 32
#: The most bytes in one chunk of SSE bytes (unless one event is larger): what a client that
#: stops reading can make the server buffer beyond the socket's own buffers.
_CHUNK_BYTES = 256 * 1024


def _as_items(
    events: Sequence[StoredEvent],
) -> tuple[Sequence[int], str, Sequence[LogItem], bool]:
    """The numbers of ``events``, the events as log items (see ``LogItem``: as the store
    keeps them, if it keeps them so), and whether every item is a ``str``."""
    if type(events) is EventRun:
        run = range(events.seq, events.seq + len(events))
        return run, events.event, events.items, events.texts
    if not events:
        return (), "", (), True
    seqs, names, datas, texts = zip(*events, strict=True)
    return seqs, "", list(map(Entry, names, datas, texts)), False


_seq = attrgetter("seq")


def _check_continuity(page: Page, after: int, last_event_id: str | None) -> None:
    """Raise if the page does not go on right after ``after`` though the stream has more.

    Events that the stream's state counts but the store no longer returns cannot come
    back by reading again: reading again would spin.

    Raises:
        HistoryTrimmedError: the store trimmed them (they are older than ``first_seq``).
        HistoryLostError: the store lost them (its log was evicted or deleted).
    """
    info, events = page.info, page.events
    if info.last_seq <= after or (events and events[0].seq == after + 1):
        return
    where = f"after {last_event_id}" if last_event_id else "from the start"
    if after + 1 < info.first_seq:
        raise HistoryTrimmedError(f"events {where} were trimmed before they were read")
    raise HistoryLostError(
        f"events {where} of session stream {info.incarnation} are missing from the store "
        "(evicted, deleted or lost in a restart)"
    )


@final
class ConsumerSlots:
    """Counts open subscriptions, per session and in all, against their limits."""

    __slots__ = ("_counts", "_hooks", "_total", "per_session", "total")

    def __init__(self, *, per_session: int, total: int, hooks: Hooks = NO_HOOKS) -> None:
        self.per_session = per_session
        self.total = total
        self._hooks = hooks
        self._counts: dict[str, int] = {}
        self._total = 0

    def acquire(self, session_id: str) -> None:
        """Take a slot for one consumer of ``session_id``.

        Raises:
            TooManyConsumersError: the session or the streamer is at its limit.
        """
        count = self._counts.get(session_id, 0)
        if count >= self.per_session:
            raise TooManyConsumersError(
                f"session {session_id!r} already has {count} consumers (max_consumers_per_session)"
            )
        if self._total >= self.total:
            raise TooManyConsumersError(f"{self._total} consumers are open (max_consumers)")
        self._counts[session_id] = count + 1
        self._total += 1
        self._hooks.consumer_opened()

    def release(self, session_id: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        count = self._counts.get(session_id, 0) - 1
        if count > 0:
            self._counts[session_id] = count
        else:
            self._counts.pop(session_id, None)
        self._total -= 1
        self._hooks.consumer_closed()

    def count(self, session_id: str) -> int:
        """The number of open consumers of ``session_id``."""
        return self._counts.get(session_id, 0)

    def __len__(self) -> int:
        """The number of open consumers."""
        return self._total


@final
class Subscription(AsyncResource):
    """One client's read of one stream: an async iterator of SSE-ready dicts.

    Each item is ``{"id": ..., "event": ..., "data": ...}``, which sse-starlette's
    ``EventSourceResponse`` sends as it is. Iteration ends after the stream's terminal
    event. Positions are validated when the subscription opens, before any event is
    yielded, so an HTTP layer can still answer with an error status.

    With ``compact=True`` the *replay* (the events already stored when it opens) comes
    with every run of text events merged into one event (see ``_compact``); the events
    stored after that follow one by one, as usual.
    """

    __slots__ = (
        "_after",
        "_compact",
        "_event",
        "_events",
        "_holds_slot",
        "_hooks",
        "_info",
        "_opener",
        "_page_size",
        "_pending",
        "_prefix",
        "_replay_end",
        "_reported",
        "_seqs",
        "_session_id",
        "_slots",
        "_store",
        "_texts",
    )

    def __init__(
        self,
        store: StreamStore,
        session_id: str,
        *,
        page_size: int,
        opener: Callable[[], Awaitable[object]] | None = None,
        slots: ConsumerSlots | None = None,
        hooks: Hooks = NO_HOOKS,
        compact: bool = False,
    ) -> None:
        self._store = store
        self._compact = compact
        self._replay_end = 0
        self._slots = slots
        self._holds_slot = False
        self._session_id = session_id
        self._page_size = page_size
        self._opener = opener
        self._info: StreamInfo | None = None
        # The events read and not all yielded yet: as read, and their numbers and log
        # items (a str is the data of a text event named _event); _pending yields the
        # (number, item) of each event not yielded yet.
        self._events: Sequence[StoredEvent] = ()
        self._seqs: Sequence[int] = ()
        self._event = ""
        self._texts = True  # every item in _pending is a str
        self._pending: Iterator[tuple[int, LogItem]] = iter(())
        self._reported = 0  # events of the current page already counted as delivered
        self._hooks = hooks
        self._after = 0
        self._prefix = ""

    async def open(self, position: EventId | None, *, first_page: Page | None = None) -> Self:
        """Read the first page after ``position`` and check that the position is valid.

        ``first_page`` is that page if the caller knows it already (a stream it has just
        created is empty): it is then not read.

        Raises:
            SessionNotFoundError: there is no stream under this session id.
            StaleEventIdError: ``position`` belongs to an earlier stream of this session.
            EventIdAheadError: ``position`` is past the stream's last event.
            HistoryTrimmedError: ``position`` is older than the retained history.
        """
        after = 0 if position is None else position.seq
        if self._slots is not None and not self._holds_slot:
            self._slots.acquire(self._session_id)
            self._holds_slot = True
        try:
            await self._first_page(position, after, first_page)
            if self._compact:
                await self._compact_replay()
        except BaseException:
            self._release()
            raise
        return self

    async def _first_page(self, position: EventId | None, after: int, page: Page | None) -> None:
        if page is None:
            # A short first page: the first event goes out as soon as possible, whatever
            # the position; later pages are full-sized.
            first_limit = min(self._page_size, _FIRST_PAGE)
            # A resume names its stream: one that just ended is read to its end (read()).
            incarnation = None if position is None else position.incarnation
            page = await self._store.read(
                self._session_id, after, limit=first_limit, wait=False, incarnation=incarnation
            )
        if page is None:
            raise SessionNotFoundError(f"no stream for session {self._session_id!r}")
        info = page.info
        if position is not None:
            if position.incarnation != info.incarnation:
                raise StaleEventIdError(
                    f"event id {position} belongs to an earlier stream of this session"
                )
            if position.seq > info.last_seq:
                raise EventIdAheadError(
                    f"event id {position} is past the end of the stream ({info.last_seq} events)"
                )
            if position.seq < info.first_seq - 1:
                raise HistoryTrimmedError(
                    f"events after {position} are no longer retained "
                    f"(oldest is {info.incarnation}-{info.first_seq})"
                )
        _check_continuity(page, after, None if position is None else str(position))
        self._info = info
        self._take(page.events)
        self._after = after
        self._prefix = info.incarnation + "-"
        self._replay_end = info.last_seq

    async def _compact_replay(self) -> None:
        """Read the whole replay (up to ``replay_end``), merging runs of text events.

        Done before the first event goes out: a merged event can only be sent once its
        run has ended. Events stored meanwhile, past ``replay_end``, follow unmerged.
        """
        info, end = self._info, self._replay_end
        assert info is not None
        compactor = Compactor()
        out = compactor.feed(self._events)
        read_to = self._events[-1].seq if self._events else self._after
        late: Sequence[StoredEvent] = ()
        while read_to < end:
            page = await self._store.read(
                self._session_id, read_to, limit=self._page_size, wait=False
            )
            if page is None or page.info.incarnation != info.incarnation:
                raise SessionNotFoundError(
                    f"the stream of session {self._session_id!r} was deleted or expired"
                )
            events = page.events
            if not events or events[0].seq != read_to + 1:
                raise HistoryTrimmedError(
                    f"events after {self._prefix}{read_to} were trimmed before they were read"
                )
            cut = bisect_right(events, end, key=_seq)  # events are in order
            out += compactor.feed(events[:cut])
            late = events[cut:]
            read_to = events[-1].seq
            info = page.info
        self._info = info
        self._take([*out, *compactor.flush(), *late])

    @property
    def replay_end(self) -> int:
        """The number of the last event stored when the subscription opened (0 if none).

        The events up to it are the *replay*; those after it, the live tail.
        """
        return self._replay_end

    def _take(self, events: Sequence[StoredEvent]) -> None:
        """Make ``events`` the ones to yield next."""
        self._events = events
        self._seqs, self._event, items, self._texts = _as_items(events)
        self._pending = zip(self._seqs, items, strict=True)

    def _count_delivered(self) -> None:
        yielded = bisect_right(self._seqs, self._after)  # events of the page yielded
        if yielded > self._reported:
            self._hooks.delivered(yielded - self._reported)
            self._reported = yielded

    def _release(self) -> None:
        self._count_delivered()
        if self._holds_slot and self._slots is not None:
            self._holds_slot = False
            self._slots.release(self._session_id)

    async def aclose(self) -> None:
        """Stop consuming: frees this consumer's slot. Idempotent."""
        self._release()

    def __del__(self) -> None:
        # A consumer abandoned mid-stream (its task was cancelled between two events and
        # nobody called aclose) still gives its slot back.
        self._release()

    @property
    def finished(self) -> bool:
        """Whether every event, the terminal one included, has been yielded already."""
        info = self._info
        return info is not None and info.state.finished and self._after >= info.last_seq

    @property
    def backlog(self) -> int:
        """Events stored after the last one yielded (or the position), as last read."""
        info = self._info
        return 0 if info is None else max(info.last_seq - self._after, 0)

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event yielded (or of the position opened at), if any."""
        return f"{self._prefix}{self._after}" if self._after else None

    def __aiter__(self) -> AsyncIterator[dict[str, str]]:
        # On asyncio an async generator steps faster than `async def __anext__`, which
        # makes a coroutine per event. It moves this subscription's cursor, so iterating
        # and calling __anext__ can be mixed. trio warns of a generator dropped before
        # its end (as when a client leaves): there the subscription iterates itself.
        return self._dicts() if on_asyncio() else self

    async def __anext__(self) -> dict[str, str]:
        while True:
            for seq, item in self._pending:  # the hot path: an event already read
                self._after = seq
                if type(item) is str:
                    return {"id": f"{self._prefix}{seq}", "event": self._event, "data": item}
                return {"id": f"{self._prefix}{seq}", "event": item[0], "data": item[1]}
            try:
                await self._next_page()
            except BaseException:
                self._release()
                raise

    async def _dicts(self) -> AsyncGenerator[dict[str, str], None]:
        """The events from the cursor on, as :meth:`__anext__` returns them."""
        while True:
            prefix, event = self._prefix, self._event
            if self._texts:  # the hot path: text events, already read
                for seq, data in self._pending:
                    self._after = seq
                    # data is a str, as _texts says
                    yield {"id": f"{prefix}{seq}", "event": event, "data": data}  # type: ignore[dict-item]
            for seq, item in self._pending:  # events already read
                self._after = seq
                if type(item) is str:
                    yield {"id": f"{prefix}{seq}", "event": event, "data": item}
                else:
                    yield {"id": f"{prefix}{seq}", "event": item[0], "data": item[1]}
            try:
                await self._next_page()
            except StopAsyncIteration:
                self._release()
                return
            except BaseException:
                self._release()
                raise

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The rest of the stream as SSE bytes: each chunk holds every event available.

        A chunk holds every event the store has when it is read (read ``page_size`` at a
        time, up to 256 KiB a chunk) and goes out at once, a lone event too: nothing
        waits to fill a batch. The bytes are what ``EventSourceResponse`` makes of the
        dicts this subscription yields when iterated. Use one form or the other.

        Raises:
            As :meth:`open` (if not opened yet); then SessionNotFoundError if the
            stream is deleted or expires, HistoryTrimmedError if events are trimmed
            before they are read, StoreUnavailableError.
        """
        try:
            if self._info is None:
                assert self._opener is not None, "Subscription used before open()"
                await self._opener()  # opens this subscription
            info = self._info
            assert info is not None
            rest = list(self._pending)
            if rest:
                seqs, items = zip(*rest, strict=True)
                self._after = seqs[-1]
                for cut in split_by_size(items, _CHUNK_BYTES):  # large events: a chunk a time
                    replay = encode_items(self._prefix, seqs[cut], self._event, items[cut])
                    for chunk in join_frames(replay, _CHUNK_BYTES):
                        yield chunk
            state, last_seq = info.state, info.last_seq
            # The live tail, once per token at an LLM's pace: one store call per wake-up.
            incarnation, session_id = info.incarnation, self._session_id
            read_frames, page_size = self._store.read_frames, self._page_size
            delivered, after = self._hooks.delivered, self._after
            while not (state.finished and after >= last_seq):
                page = await read_frames(
                    session_id, after, limit=page_size, wait=True, incarnation=incarnation
                )
                if (
                    page is None
                    or page.incarnation != incarnation
                    or ((page.seq != after + 1 or not page.frames) and page.last_seq > after)
                ):
                    page = self._checked(page, incarnation)  # raises
                frames = page.frames
                count = len(frames)
                self._after = after = after + count
                if count == 1:  # a lone token, as at an LLM's pace
                    yield frames[0]
                    delivered(1)
                elif count:
                    parts = [join_frames(frames, _CHUNK_BYTES)]
                    if count == page_size:  # more may be there: up to a chunk's worth
                        page = await self._more(page, parts, incarnation)
                        count += self._after - after
                        after = self._after
                    for part in parts:
                        for chunk in part:
                            yield chunk
                    delivered(count)
                state, last_seq = page.state, page.last_seq
            self._info = dataclasses.replace(info, state=state, last_seq=last_seq)
        finally:
            self._release()

    async def _more(
        self, page: FramePage, parts: list[Iterable[bytes]], incarnation: str
    ) -> FramePage:
        """After ``page`` (a full one, whose chunks are ``parts``), read on while pages are
        full, up to _CHUNK_BYTES in all: add their chunks; return the last page read."""
        size = frames_size(page.frames)
        while len(page.frames) == self._page_size and size < _CHUNK_BYTES:
            page = await self._frames_after(incarnation, wait=False)
            self._after += len(page.frames)
            parts.append(join_frames(page.frames, _CHUNK_BYTES))
            size += frames_size(page.frames)
        return page

    async def _frames_after(self, incarnation: str, *, wait: bool) -> FramePage:
        """The frames after the last one sent (waiting for them if ``wait``), checked."""
        page = await self._store.read_frames(
            self._session_id,
            self._after,
            limit=self._page_size,
            wait=wait,
            incarnation=incarnation,
        )
        return self._checked(page, incarnation)

    def _checked(self, page: FramePage | None, incarnation: str) -> FramePage:
        """``page``, read after the last frame sent, unless the stream is gone or the
        store lacks events it counts."""
        if page is None or page.incarnation != incarnation:
            raise SessionNotFoundError(
                f"the stream of session {self._session_id!r} was deleted or expired"
            )
        if page.last_seq > self._after and (not page.frames or page.seq != self._after + 1):
            # Events the stream counts but the store did not return: reading again would spin.
            where = f"after {self.last_event_id}" if self._after else "from the start"
            if self._after + 1 < page.first_seq:
                raise HistoryTrimmedError(f"events {where} were trimmed before they were read")
            raise HistoryLostError(
                f"events {where} of session stream {incarnation} are missing from the store "
                "(evicted, deleted or lost in a restart)"
            )
        return page

    async def _next_page(self) -> None:
        """Open, or read the next page (waiting for it); StopAsyncIteration at the end."""
        info = self._info
        if info is None:
            assert self._opener is not None, "Subscription used before open()"
            await self._opener()  # opens this subscription
            return
        if info.state.finished and self._after >= info.last_seq:
            raise StopAsyncIteration
        page = await self._store.read(
            self._session_id,
            self._after,
            limit=self._page_size,
            wait=True,
            incarnation=info.incarnation,
        )
        if page is None or page.info.incarnation != info.incarnation:
            raise SessionNotFoundError(
                f"the stream of session {self._session_id!r} was deleted or expired"
            )
        _check_continuity(page, self._after, self.last_event_id)
        self._count_delivered()
        self._info = page.info
        self._take(page.events)
        self._reported = 0
