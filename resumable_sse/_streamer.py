"""The :class:`Streamer`: starts producers, hands out subscriptions, owns the background work."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from typing_extensions import Self, final

from ._access import (
    AccessRequest,
    Action,
    Authorize,
    Principal,
    check_access,
    normalize_principal,
    owner_only,
)
from ._consumer import ConsumerSlots, Subscription
from ._conversations import ActiveStream, activate, run_mapped
from ._events import TerminalEvents, check_event_name
from ._exceptions import (
    ResumableSSEError,
    SessionNotFoundError,
    StoreUnavailableError,
    StreamerClosedError,
)
from ._host import ProducerHost
from ._ids import EventId, new_session_id, parse_last_event_id, validate_session_id
from ._live import LiveStream, list_streams
from ._producer import Producer
from ._settings import BATCH, Settings
from ._sources import Source, close_unused
from ._telemetry import make_telemetry
from .stores._contract import Claim, Page, StreamInfo, StreamState, StreamStore
from .stores._memory import MemoryStore

__all__ = ["StreamStatus", "Streamer"]

logger = logging.getLogger("resumable_sse")


@final
@dataclass(frozen=True, slots=True)
class StreamStatus:
    """What :meth:`Streamer.status` reports about one stream.

    ``events`` counts the stored events, the terminal event included; times are Unix
    timestamps in seconds; ``owner`` is the principal that started the stream.
    """

    session_id: str
    state: StreamState
    events: int
    created_at: float
    updated_at: float
    last_event_id: str | None
    cancel_requested: bool
    owner: str | None = None


@final
class Streamer:
    """Runs each session's generator once, in the background, and streams it to any client.

    Background producers are owned by the streamer. Use it as ``async with streamer:``
    (in an app's lifespan, say) for fully structured shutdown; without that, the first
    call starts a host task on the running event loop (asyncio or trio), and
    :meth:`aclose` stops it. Closing ends every running stream with a ``cancelled``
    event whose data is ``{"reason": "shutdown"}``.

    Args:
        store: Where streams live; a fresh :class:`~resumable_sse.MemoryStore` by default.
        event: SSE event name for plain items (default ``"message"``).
        terminal_events: Names of the ``end``, ``error`` and ``cancelled`` events.
        max_events: Events one stream may hold (default 100,000).
        max_bytes: UTF-8 bytes of data one stream may hold (default 64 MiB).
        max_event_bytes: UTF-8 bytes of data one event may hold (default 1 MiB).
        error_message: Turns a generator's exception into the message sent to clients;
            by default a fixed, safe sentence (the traceback goes to the log).
        page_size: Events a consumer reads from the store at a time (default 4096, as
            many as a producer writes at most in one batch: a batch is read in one call).
        shutdown_timeout: Seconds :meth:`aclose` waits for streams to store their
            terminal event before cancelling them outright (default 5).
        store_retry_deadline: Seconds a producer keeps retrying a write while the store
            is unavailable (default 30). Retries never duplicate events. Past it, the
            generator is closed and the stream ends with ``error`` (code
            ``store_unavailable``) once the store can take that event; a store with
            leases ends it as ``producer_lost`` if it cannot.
        authorize: Decides who may start, read, inspect, cancel or delete a session
            when a ``principal`` is given; :func:`~resumable_sse.owner_only` by default.
        max_consumers_per_session: Concurrent subscriptions one session may have in
            this process (default 100); one more raises ``TooManyConsumersError``.
        max_consumers: Concurrent subscriptions in all, in this process (default 10,000).
        sync_generator_threads: Worker threads for sync generators (default 100): at most
            this many sync generators run a ``next()`` at once. They are a pool of their
            own, apart from anyio's default thread limiter, so blocked sync generators
            never starve the app's own ``def`` endpoints. When all are busy, the next
            sync generator step waits for a free thread: its stream stays ``running``
            with no new events (its readers simply wait), nothing fails, and cancel,
            delete and shutdown end it as usual. Async generators use no threads.
        meter_provider: The OpenTelemetry ``MeterProvider`` that gets the streamer's
            metrics; the global one if ``None``. See the README's "Operations".
        tracer_provider: The OpenTelemetry ``TracerProvider`` for its spans; the global
            one if ``None``.
        telemetry: ``None`` (the default) records metrics and spans if the
            ``opentelemetry-api`` package is installed (the ``[otel]`` extra); ``False``
            never; ``True`` requires it.

    When a stream reaches a limit, its generator is closed and the stream ends with an
    ``error`` event whose code is ``limit_exceeded``; everything stored stays readable.
    """

    def __init__(
        self,
        store: StreamStore | None = None,
        *,
        event: str = "message",
        terminal_events: TerminalEvents | None = None,
        max_events: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_event_bytes: int = 1024 * 1024,
        error_message: Callable[[BaseException], str] | None = None,
        page_size: int = BATCH,
        shutdown_timeout: float = 5.0,
        store_retry_deadline: float = 30.0,
        authorize: Authorize = owner_only,
        max_consumers_per_session: int = 100,
        max_consumers: int = 10_000,
        sync_generator_threads: int = 100,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        telemetry: bool | None = None,
    ) -> None:
        terminal = terminal_events or TerminalEvents()
        if check_event_name(event) in terminal:
            raise ValueError(f"event name {event!r} is reserved for the end of the stream")
        limits = (max_events, max_bytes, max_event_bytes, page_size, max_consumers)
        if min(*limits, max_consumers_per_session, sync_generator_threads) < 1:
            raise ValueError("limits and page_size must be positive")
        self.store: StreamStore = store if store is not None else MemoryStore()
        self._telemetry = make_telemetry(
            self.store, meter_provider, tracer_provider, enabled=telemetry
        )
        settings = Settings(
            telemetry=self._telemetry,
            terminal=terminal,
            event=event,
            max_events=max_events,
            max_bytes=max_bytes,
            max_event_bytes=max_event_bytes,
            store_retry_deadline=store_retry_deadline,
            sync_threads=anyio.CapacityLimiter(sync_generator_threads),
        )
        if error_message is not None:
            settings = dataclasses.replace(settings, error_message=error_message)
        self._settings = settings
        self._page_size = page_size
        self._authorize = authorize
        self._slots = ConsumerSlots(
            per_session=max_consumers_per_session, total=max_consumers, hooks=self._telemetry
        )
        self._host = ProducerHost(shutdown_timeout)

    @property
    def consumers(self) -> int:
        """The number of subscriptions open in this process."""
        return len(self._slots)

    @property
    def terminal_events(self) -> TerminalEvents:
        """The names of the events that end a stream."""
        return self._settings.terminal

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._host.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._host.exit(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop taking work, end running streams with ``cancelled``, and stop the host task.

        Idempotent. With ``async with streamer:`` leaving the block does this.
        """
        await self._host.aclose()

    # -- access -------------------------------------------------------------------------

    async def _authorized(
        self, action: Action, session_id: str, principal: str | None
    ) -> StreamInfo | None:
        """Apply the authorize policy; return the stream's info if it was looked up."""
        if principal is None and self._authorize is owner_only:
            return None  # trusted caller, default policy: nothing to look up
        info = await self.store.info(session_id)
        owner = None if info is None else info.owner
        request = AccessRequest(action, session_id, principal, owner, info is not None)
        await check_access(self._authorize, request)
        return info

    # -- producing ----------------------------------------------------------------------

    async def start(
        self, session_id: str, generator: Source, *, principal: Principal | None = None
    ) -> bool:
        """Start the session's stream in the background, unless it exists already.

        Args:
            session_id: The stream's name (1-128 chars of ``A-Z a-z 0-9 _ . : @ -``).
            generator: An async or sync iterable of items, or a zero-argument callable
                returning one. If the stream exists, a generator is closed without being
                iterated and a callable is never called.
            principal: Who is starting it (the app's user id: a non-empty ``str``, or an
                ``int`` or ``UUID``, which stands for its ``str``); a new stream is bound
                to it, see :func:`~resumable_sse.owner_only`.

        Returns:
            ``True`` if this call started the stream, ``False`` if it already existed.

        Raises:
            InvalidSessionIdError: the session id is not allowed.
            TypeError, ValueError: ``principal`` is of another type, or empty.
            AccessDeniedError: the authorize policy refused.
            StoreFullError: the store holds its maximum number of streams.
            StoreUnavailableError: the store cannot be reached.
            StreamerClosedError: the streamer is closed.
        """
        return await self._start(session_id, generator, principal) is not None

    async def _start(
        self, session_id: str, generator: Source, principal: Principal | None
    ) -> Page | None:
        """Start the stream as :meth:`start` does; return its first page (empty: it was
        just created) if this call started it."""
        with self._telemetry.span("start", session_id):
            claim = await self._claim(session_id, generator, principal)
            if claim is None:
                return None
            await self._host.run(
                session_id, Producer(self.store, session_id, claim, generator, self._settings)
            )
        now = time.time()
        owner = normalize_principal(principal)
        info = StreamInfo(claim.incarnation, StreamState.RUNNING, 1, 0, now, now, False, owner)
        return Page(info, ())

    async def _claim(
        self, session_id: str, generator: Source, principal: Principal | None
    ) -> Claim | None:
        """Validate and claim the stream; close ``generator`` unless a claim is returned."""
        try:
            validate_session_id(session_id)
            owner = normalize_principal(principal)
            await self._host.ready()
            await self._authorized("start", session_id, owner)
            claim = await self.store.claim(session_id, owner=owner)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await close_unused(generator)
            raise
        if claim is None:
            await close_unused(generator)
        else:
            self._telemetry.stream_started()
        return claim

    # -- conversations ------------------------------------------------------------------

    async def start_active(
        self,
        conversation_id: str,
        generator: Source,
        *,
        session_id: str | None = None,
        supersede: bool = True,
        principal: Principal | None = None,
    ) -> ActiveStream:
        """Start a stream as the conversation's one active stream, atomically.

        The stream is claimed, then mapped to the conversation in the store (see
        :meth:`StreamStore.set_active`), then run; the mapping is cleared when it ends.
        :meth:`active` finds it from any worker sharing the store.

        Args:
            conversation_id: The conversation (a chat's id), validated like a session id.
            generator: The content, used only if this call starts the stream.
            session_id: The stream's id; a new random one by default. Passing the same
                id for a repeated request makes the repeat join the first one's stream
                (the generator runs once).
            supersede: If another stream of the conversation runs, cancel it and make
                this one active (the default); if false, refuse.
            principal: Who is starting it, for the authorize policy.

        Returns:
            The active stream: this call's, or the running one it joined.

        Raises:
            ConversationBusyError: another stream runs and ``supersede`` is false.
            InvalidSessionIdError, TypeError or ValueError (a bad ``principal``),
            AccessDeniedError, StoreFullError,
            StoreUnavailableError, StreamerClosedError: as for :meth:`start`.
        """
        validate_session_id(conversation_id)
        session_id = session_id if session_id is not None else new_session_id()
        claim = await self._claim(session_id, generator, principal)
        if claim is None:
            return ActiveStream(session_id, started=False)
        try:
            superseded = await activate(
                self.store, conversation_id, session_id, supersede=supersede
            )
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailableError):
                await close_unused(generator)
                await self.store.delete(session_id)  # claimed, never run
            raise
        producer = Producer(self.store, session_id, claim, generator, self._settings)
        try:
            await self._host.run(
                session_id,
                producer,
                functools.partial(
                    run_mapped, self.store, conversation_id, session_id, producer.run
                ),
            )
        except StreamerClosedError:  # closed meanwhile: the stream was ended, unmap it
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailableError):
                await self.store.clear_active(conversation_id, session_id)
            raise
        if superseded is not None:
            try:
                await self.store.request_cancel(superseded)
            except StoreUnavailableError as exc:  # ours runs; the old one may finish
                logger.warning("could not cancel superseded stream %r: %s", superseded, exc)
        return ActiveStream(session_id, started=True, superseded=superseded)

    async def active(
        self, conversation_id: str, *, principal: Principal | None = None
    ) -> str | None:
        """The session id of the conversation's running stream, or ``None``.

        A stream that has finished (or expired) is not active, even before its
        mapping is cleared.

        Raises:
            InvalidSessionIdError: the conversation id is not allowed.
            TypeError, ValueError: ``principal`` is of another type, or empty.
            AccessDeniedError: the authorize policy refused reading that stream.
            StoreUnavailableError: the store cannot be reached.
        """
        validate_session_id(conversation_id)
        principal = normalize_principal(principal)
        session_id = await self.store.get_active(conversation_id)
        if session_id is None:
            return None
        info = await self._authorized("read", session_id, principal)
        if info is None:
            info = await self.store.info(session_id)
        if info is None or info.state.finished:
            return None
        return session_id

    # -- consuming ----------------------------------------------------------------------

    async def open(
        self,
        session_id: str,
        generator: Source | None = None,
        last_id: str | None = None,
        *,
        principal: Principal | None = None,
        compact: bool = False,
    ) -> Subscription:
        """Start the stream if needed and open a subscription at ``last_id``, eagerly.

        Everything that can fail is checked before this returns, so an HTTP handler can
        still answer with an error status (see :func:`~resumable_sse.sse_response`).
        A ``last_id`` other than the start means "resume": it never starts a stream.
        Close the subscription (``aclose()``) if you stop reading it early, to give back
        its consumer slot at once.

        With ``compact=True``, the events already stored (the replay after ``last_id``)
        come with every run of consecutive text events (``str`` or ``bytes`` items)
        merged into one event carrying their concatenated data and the id of the last
        one; JSON items, custom and terminal events keep their place; later events come
        one by one. Every id sent is an exact resume point.

        Raises:
            InvalidSessionIdError, InvalidEventIdError (and its subclasses),
            TypeError or ValueError (a bad ``principal``), AccessDeniedError,
            SessionNotFoundError, HistoryTrimmedError, TooManyConsumersError,
            StoreFullError, StoreUnavailableError, StreamerClosedError.
        """
        subscription = self._subscription(session_id, compact=compact)
        await self._open(subscription, session_id, generator, last_id, principal)
        return subscription

    def _subscription(
        self,
        session_id: str,
        opener: Callable[[], Awaitable[object]] | None = None,
        *,
        compact: bool = False,
    ) -> Subscription:
        return Subscription(
            self.store,
            session_id,
            page_size=self._page_size,
            opener=opener,
            slots=self._slots,
            hooks=self._telemetry,
            compact=compact,
        )

    async def _open(
        self,
        subscription: Subscription,
        session_id: str,
        generator: Source | None,
        last_id: str | None,
        principal: Principal | None,
    ) -> None:
        """Prepare and open ``subscription``, counting the open by its kind."""
        with self._telemetry.span("open", session_id):
            try:
                position, new = await self._prepare(session_id, generator, last_id, principal)
                await subscription.open(position, first_page=new)
            except ResumableSSEError as exc:
                self._telemetry.refused(exc)
                raise
        if subscription.finished:
            kind = "complete"  # the client has every event (HTTP: 204)
        elif new is not None:
            kind = "new"
        else:
            kind = "join" if position is None else "resume"
        self._telemetry.opened(kind, subscription.backlog)

    async def _prepare(
        self,
        session_id: str,
        generator: Source | None,
        last_id: str | None,
        principal: Principal | None,
    ) -> tuple[EventId | None, Page | None]:
        """Validate, start the stream if asked to, check read access.

        Returns:
            The position, and the stream's first page if this call started it.
        """
        try:
            validate_session_id(session_id)
            principal = normalize_principal(principal)
            position = parse_last_event_id(last_id)
        except BaseException:
            if generator is not None:
                await close_unused(generator)
            raise
        new = None
        if generator is not None:
            if position is None:
                new = await self._start(session_id, generator, principal)
            else:
                await close_unused(generator)
        await self._authorized("read", session_id, principal)
        return position, new

    def stream(
        self,
        session_id: str,
        generator: Source,
        last_id: str | None = None,
        *,
        principal: Principal | None = None,
        compact: bool = False,
    ) -> Subscription:
        """Stream a session: start it if it is new, then yield its events from ``last_id``.

        The result is an async iterator of ``{"id", "event", "data"}`` dicts for
        ``EventSourceResponse``. Nothing happens until it is first iterated; errors (see
        :meth:`open`) are raised then.

        Args:
            session_id: The stream's name.
            generator: The content, used only if this call starts the stream.
            last_id: The client's ``Last-Event-ID``; ``None``, ``""`` or ``"0"`` for the
                start. Exclusive: streaming resumes with the event after it.
            principal: Who is asking (the app's user id), for the authorize policy.
            compact: Merge runs of text events in the replay (see :meth:`open`).

        Raises:
            TypeError, ValueError: ``principal`` is not a principal (raised at once).
        """
        principal = normalize_principal(principal)

        async def opener() -> None:
            await self._open(subscription, session_id, generator, last_id, principal)

        subscription = self._subscription(session_id, opener, compact=compact)
        return subscription

    def resume(
        self,
        session_id: str,
        last_id: str | None = None,
        *,
        principal: Principal | None = None,
        compact: bool = False,
    ) -> Subscription:
        """Like :meth:`stream`, for an existing stream only; never starts one.

        ``compact`` is as for :meth:`open`.

        Raises:
            TypeError, ValueError: ``principal`` is not a principal (raised at once).

        Raises (when iterated):
            SessionNotFoundError: there is no stream under this session id.
        """
        principal = normalize_principal(principal)

        async def opener() -> None:
            await self._open(subscription, session_id, None, last_id, principal)

        subscription = self._subscription(session_id, opener, compact=compact)
        return subscription

    # -- managing -----------------------------------------------------------------------

    async def streams(
        self, owner: Principal | None = None, *, limit: int = 1000
    ) -> list[LiveStream]:
        """List the running streams, newest first, for an admin page or a user's menu.

        With a store that keeps an index of running streams (both built-in stores),
        the list covers every process sharing the store: on Redis, every worker's
        streams, through a sorted set of the running ones (one round trip, then one
        state read per stream listed, never a scan of the database). Otherwise it
        lists the streams whose producer runs in this process. ``consumers`` counts
        the subscriptions open in this process. No authorize policy applies: filter
        by ``owner`` for a user's own streams.

        Args:
            owner: Only the streams started with this principal (normalised as
                principals are: an ``int`` or ``UUID`` is its string).
            limit: At most this many streams (default 1000).

        Raises:
            TypeError or ValueError: a bad ``owner`` or ``limit``.
            StoreUnavailableError: the store cannot be reached.
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        owner = normalize_principal(owner)
        return await list_streams(self.store, self._host, self._slots, owner, limit)

    async def status(self, session_id: str, *, principal: Principal | None = None) -> StreamStatus:
        """Report a stream's state, event count and times.

        Raises:
            AccessDeniedError: the authorize policy refused.
            SessionNotFoundError: there is no stream under this session id.
        """
        validate_session_id(session_id)
        principal = normalize_principal(principal)
        info = await self._authorized("status", session_id, principal)
        if info is None:
            info = await self.store.info(session_id)
        if info is None:
            raise SessionNotFoundError(f"no stream for session {session_id!r}")
        return StreamStatus(
            session_id=session_id,
            state=info.state,
            events=info.last_seq,
            created_at=info.created_at,
            updated_at=info.updated_at,
            last_event_id=f"{info.incarnation}-{info.last_seq}" if info.last_seq else None,
            cancel_requested=info.cancel_requested,
            owner=info.owner,
        )

    async def cancel(self, session_id: str, *, principal: Principal | None = None) -> bool:
        """Stop a running stream: its generator is closed and ``cancelled`` is stored.

        Works wherever the producer runs (any worker sharing the store). Idempotent.

        Returns:
            ``True`` if the stream was running, ``False`` if it had already ended.

        Raises:
            AccessDeniedError: the authorize policy refused.
            SessionNotFoundError: there is no stream under this session id.
        """
        with self._telemetry.span("cancel", session_id):
            return await self._cancel(session_id, principal)

    async def _cancel(self, session_id: str, principal: Principal | None) -> bool:
        validate_session_id(session_id)
        principal = normalize_principal(principal)
        info = await self._authorized("cancel", session_id, principal)
        if info is None and await self.store.info(session_id) is None:
            raise SessionNotFoundError(f"no stream for session {session_id!r}")
        return await self.store.request_cancel(session_id)

    async def delete(self, session_id: str, *, principal: Principal | None = None) -> bool:
        """Delete a stream and its events, stopping its producer if it runs.

        Clients still reading it get :class:`~resumable_sse.SessionNotFoundError`.

        Returns:
            Whether a stream existed.

        Raises:
            AccessDeniedError: the authorize policy refused.
        """
        with self._telemetry.span("delete", session_id):
            return await self._delete(session_id, principal)

    async def _delete(self, session_id: str, principal: Principal | None) -> bool:
        validate_session_id(session_id)
        principal = normalize_principal(principal)
        await self._authorized("delete", session_id, principal)
        producer = self._host.producer(session_id)
        if producer is not None:
            producer.stop("deleted")
        return await self.store.delete(session_id)
