"""The producer: drains one generator into the store, in the background.

For a store with I/O, two tasks cooperate through a
:class:`~resumable_sse._commit_queue.CommitQueue`. The *reader* pulls items from the
generator, encodes them and pushes them; the *writer* takes whatever has queued up since
its previous write and appends it in one batch (group commit), so a store with a network
round trip pays one round trip per batch, not per token, and a slow store never slows
the generator below its own pace until ``max_pending`` items wait (then the reader
pauses: backpressure).

A store that keeps its log in this process (the memory store) gives a
:class:`~resumable_sse.stores.LocalLog` instead: the reader appends each event to
it itself, at once, and no writer task runs (a hand-off per token would cost more than
the append).

The stream always ends with a terminal event stored in the log: ``end`` when the
generator is exhausted, ``error`` when it raises (or a limit or the store fails), and
``cancelled`` when a cancel was requested or the streamer shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
from typing_extensions import final

from ._backoff import backoff_delay
from ._commit_queue import CommitQueue
from ._events import encode_log_item
from ._exceptions import (
    InvalidItemError,
    LeaseLostError,
    LimitExceededError,
    ResumableSSEError,
    StoreUnavailableError,
)
from ._in_place import InPlaceWriter
from ._settings import DEFAULT_ERROR_MESSAGE, Settings, limit_error
from ._sources import Source, close_iterator, close_unused, open_source
from .stores._contract import (
    Claim,
    Entry,
    LocalLog,
    LogItem,
    StreamState,
    StreamStore,
)

__all__ = ["Producer"]

logger = logging.getLogger("resumable_sse")

# Store retries back off from 50 ms to 2 s (with jitter, so producers cut off by one
# outage do not all retry at the same instant).
_STORE_RETRY_BASE = 0.05
_STORE_RETRY_CAP = 2.0


def _store_retry_delay(failures: int) -> float:
    return backoff_delay(failures, base=_STORE_RETRY_BASE, cap=_STORE_RETRY_CAP)


def _cancelled_from_outside() -> bool:
    """Whether the current task is really being cancelled (versus a stray CancelledError)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not asyncio: trio's Cancelled only ever means cancellation
        return True
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return cancelling is None or cancelling() > 0


def _error_data(code: str, message: str) -> str:
    return json.dumps({"code": code, "message": message}, separators=(",", ":"))


@final
class Producer:
    """Runs one stream's generator to completion and records its outcome."""

    def __init__(
        self,
        store: StreamStore,
        session_id: str,
        claim: Claim,
        source: Source,
        settings: Settings,
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._claim = claim
        self._source = source
        self._settings = settings
        self._scope = anyio.CancelScope()
        # The cancel watch's: it ends when reading does (a cancel request is moot then,
        # and the finish would only wake it for one more look at the store).
        self._watch_scope = anyio.CancelScope()
        self._stop_reason: str | None = None
        self._failure: ResumableSSEError | None = None
        self._queue = CommitQueue(settings.max_pending)
        self._next_seq = 1
        self._hooks = settings.telemetry
        self._exc: BaseException | None = None  # what made the stream fail, for the log
        self._started = time.perf_counter()

    def stop(self, reason: str) -> None:
        """Stop the generator; the stream ends with the ``cancelled`` event.

        ``reason`` is stored in the event's data (``cancelled`` or ``shutdown``).
        """
        if self._stop_reason is None:
            self._stop_reason = reason
        self._scope.cancel()

    async def abandon(self, reason: str) -> None:
        """End the stream without running it: close the generator unused, store ``cancelled``.

        For a stream claimed but never run (the streamer closed meanwhile). Never raises.
        """
        with anyio.CancelScope(shield=True):
            try:
                await close_unused(self._source)
            except Exception:
                logger.exception("closing the generator of stream %r raised", self._session_id)
        data = json.dumps({"reason": reason}, separators=(",", ":"))
        try:
            await self._finish(
                StreamState.CANCELLED, Entry(self._settings.terminal.cancelled, data)
            )
        finally:
            self._hooks.producer_done()

    def _fail(self, error: ResumableSSEError) -> None:
        if self._failure is None:
            self._failure = error
        self._scope.cancel()

    async def run(self) -> None:
        """Drain the generator, then store the terminal event. Never raises."""
        try:
            log = self._local_log()
            if log is not None and self._store.renew_interval is None:
                # The log is in this process: a cancel request stops the generator
                # directly, and no watcher task is needed.
                log.on_cancel(self._cancel_requested)
                await self._produce(log)
                return
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(self._watch_cancel)
                if self._store.renew_interval is not None:
                    watchers.start_soon(self._keep_lease, self._store.renew_interval)
                await self._produce(log)
                watchers.cancel_scope.cancel()
        except Exception as exc:  # a bug or a store fault: never let it reach the task group
            self._exc = exc
            # Best effort, so that consumers are told instead of waiting forever.
            entry = Entry(
                self._settings.terminal.error,
                _error_data("producer_failed", DEFAULT_ERROR_MESSAGE),
            )
            with contextlib.suppress(Exception):
                await self._finish(StreamState.ERROR, entry)
        finally:
            self._hooks.producer_done()

    async def _produce(self, log: LocalLog | None) -> None:
        """Write every event of the generator to ``log`` (or the writer), then the end."""
        if log is not None:
            state, entry = await self._read_all(log)
        else:
            async with anyio.create_task_group() as io:
                io.start_soon(self._write_loop)
                state, entry = await self._read_all(None)
                self._queue.close()
        self._watch_scope.cancel()
        if self._failure is not None:  # the writer failed after reading ended
            state, entry = self._outcome_of_failure(self._failure)
        await self._finish(state, entry)

    def _cancel_requested(self) -> None:
        self.stop("cancelled")

    # -- reading -----------------------------------------------------------------------

    def _local_log(self) -> LocalLog | None:
        try:
            return self._store.local_log(self._session_id, self._claim, self._settings.event)
        except LeaseLostError as exc:  # lost before it started: end as a failed write would
            self._fail(exc)
            return None

    async def _read_all(self, log: LocalLog | None) -> tuple[StreamState, Entry]:
        """Store or queue every item of the generator; return the stream's final state
        and event."""
        settings = self._settings
        iterator: AsyncIterator[object] | None = None
        try:
            with self._scope:
                iterator = await open_source(self._source, threads=settings.sync_threads)
                if log is None:
                    await self._pump(iterator)
                else:
                    await self._pump_local(iterator, log)
        except anyio.get_cancelled_exc_class() as exc:
            if _cancelled_from_outside():
                raise
            # On asyncio a generator can raise CancelledError on its own (it awaited
            # something that was cancelled): a failure of this stream, not a shutdown.
            self._exc = exc
            return self._generator_failed(exc)
        except (LimitExceededError, InvalidItemError) as exc:
            return self._outcome_of_failure(exc)
        except Exception as exc:
            self._exc = exc
            return self._generator_failed(exc)
        finally:
            if iterator is not None:
                await self._close(iterator)
        if self._failure is not None:
            return self._outcome_of_failure(self._failure)
        if self._scope.cancel_called:
            reason = self._stop_reason or "cancelled"
            data = json.dumps({"reason": reason}, separators=(",", ":"))
            return StreamState.CANCELLED, Entry(settings.terminal.cancelled, data)
        return StreamState.DONE, Entry(settings.terminal.end, "")

    async def _pump(self, iterator: AsyncIterator[object]) -> None:
        """Encode, check and queue each item: the hot path, run once per token."""
        settings = self._settings
        terminal, event = settings.terminal, settings.event
        max_event_bytes, max_events, max_bytes = (
            settings.max_event_bytes,
            settings.max_events,
            settings.max_bytes,
        )
        push = self._queue.push
        count = total = 0
        async for item in iterator:
            logged: LogItem
            if type(item) is str and item.isascii():  # the common case, inlined
                logged, size = item, len(item)
            else:
                logged, size = encode_log_item(item, event, terminal)
            count += 1
            total += size
            if size > max_event_bytes or count > max_events or total > max_bytes:
                raise limit_error(settings, size, count, total)
            if push(logged):
                await self._queue.wait_space()

    async def _pump_local(self, iterator: AsyncIterator[object], log: LocalLog) -> None:
        """Like :meth:`_pump`, appending each event to the store's log at once.

        The hot path, once per token: an ASCII ``str`` within the budget is appended as
        it is (see ``_in_place``); anything else goes to the writer's exact check.
        """
        writer = InPlaceWriter(log, self._settings, self._started)
        append = log.items.append
        budget = 0  # the first event takes admit(), for its first_event hook
        try:
            async for item in iterator:
                if type(item) is str and item.isascii() and (cost := len(item) + 1) <= budget:
                    budget -= cost
                    append(item)
                    if log.waiting:  # a reader waits for this event
                        log.wake()
                else:
                    budget = await writer.admit(item, budget)
        finally:
            self._next_seq = writer.close(budget) + 1

    def _generator_failed(self, exc: BaseException) -> tuple[StreamState, Entry]:
        message = self._settings.error_message(exc)
        return StreamState.ERROR, Entry(
            self._settings.terminal.error, _error_data("generator_failed", message)
        )

    def _outcome_of_failure(self, error: ResumableSSEError) -> tuple[StreamState, Entry]:
        return StreamState.ERROR, Entry(
            self._settings.terminal.error, _error_data(error.code, str(error))
        )

    async def _close(self, iterator: AsyncIterator[object]) -> None:
        if getattr(iterator, "ag_frame", False) is None:
            return  # an async generator that has returned: nothing to close
        with anyio.move_on_after(self._settings.close_timeout, shield=True) as scope:
            try:
                await close_iterator(iterator)
            except Exception:
                logger.exception("closing the generator of stream %r raised", self._session_id)
        if scope.cancelled_caught:
            logger.warning("generator of stream %r did not close in time", self._session_id)

    # -- writing -----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while batch := await self._queue.take_all():
            try:
                await self._with_retry("append", self._append, batch)
            except ResumableSSEError as exc:
                # The stream's end is logged (and counted) when it is stored; this record
                # marks the moment the writer gave up.
                logger.warning(
                    "stream %r: writing to the store failed: %s",
                    self._session_id,
                    exc,
                    extra={"session_id": self._session_id, "code": exc.code, "attempt": None},
                )
                self._fail(exc)
                return

    async def _append(self, batch: Sequence[LogItem]) -> None:
        first = self._next_seq
        await self._store.append_items(
            self._session_id, self._claim, batch, event=self._settings.event, first_seq=first
        )
        self._next_seq = first + len(batch)
        self._hooks.events_produced(len(batch))
        if first == 1:
            self._hooks.first_event(time.perf_counter() - self._started)

    async def _finish(self, state: StreamState, entry: Entry) -> None:
        with anyio.CancelScope(shield=True):
            if isinstance(self._failure, LeaseLostError):
                # Another producer owns the stream now, or it is gone: never touch it.
                await self._lease_lost(self._failure, state, entry)
                return
            try:
                await self._with_retry("finish", self._store_terminal, state, entry)
            except LeaseLostError as exc:
                await self._lease_lost(exc, state, entry)
            except ResumableSSEError as exc:
                self._hooks.producer_lost(
                    self._session_id, exc.code, f"storing the end failed: {exc}"
                )
            else:
                self._hooks.stream_finished(self._session_id, state, entry.data, self._exc)

    async def _lease_lost(self, exc: LeaseLostError, state: StreamState, entry: Entry) -> None:
        """Tell a deleted stream (not a loss) from one reaped or taken over (a loss)."""
        try:
            gone = await self._store.info(self._session_id) is None
        except ResumableSSEError:
            gone = False
        if gone:
            logger.info("stream %r was deleted before it ended", self._session_id)
            data = json.dumps({"reason": "deleted"}, separators=(",", ":"))
            self._hooks.stream_finished(self._session_id, StreamState.CANCELLED, data)
        else:
            self._hooks.producer_lost(self._session_id, exc.code, str(exc))

    async def _store_terminal(self, state: StreamState, entry: Entry) -> None:
        await self._store.finish(self._session_id, self._claim, state, entry, seq=self._next_seq)

    async def _with_retry(
        self, operation: str, write: Callable[..., Awaitable[None]], *args: object
    ) -> None:
        """Retry a write while the store is unreachable, up to ``store_retry_deadline``.

        Writes carry the sequence number they start at, so a retried write that had in
        fact landed is recognised by the store and not applied twice.
        """
        deadline = anyio.current_time() + self._settings.store_retry_deadline
        failures = 0
        while True:
            began = time.perf_counter()
            try:
                await write(*args)
            except ResumableSSEError as exc:
                self._hooks.store_write(operation, time.perf_counter() - began, exc.code)
                remaining = deadline - anyio.current_time()
                if not isinstance(exc, StoreUnavailableError) or remaining <= 0:
                    raise
                failures += 1
                self._hooks.store_retry(self._session_id, operation, failures, exc)
                await anyio.sleep(min(_store_retry_delay(failures), remaining))
            else:
                self._hooks.store_write(operation, time.perf_counter() - began, None)
                return

    # -- watching ----------------------------------------------------------------------

    async def _watch_cancel(self) -> None:
        with self._watch_scope:
            await self._wait_cancel()

    async def _wait_cancel(self) -> None:
        failures = 0
        while True:
            try:
                await self._store.wait_cancel(self._session_id, self._claim)
            except StoreUnavailableError:
                failures += 1
                await anyio.sleep(_store_retry_delay(failures))
                continue
            self.stop("cancelled")
            return

    async def _keep_lease(self, interval: float) -> None:
        """Renew the lease every ``interval``; while the store is unavailable, sooner.

        A store with leases gives a producer one lease after its expired lease is first
        noticed, so after an outage the renewal must come soon: failed renewals are
        retried with a backoff that never exceeds ``interval``, however long the outage.
        """
        failures = 0  # renewals failed in a row
        while True:
            delay = interval
            if failures:
                delay = backoff_delay(failures, base=_STORE_RETRY_BASE, cap=interval)
            await anyio.sleep(delay)
            try:
                await self._store.renew(self._session_id, self._claim)
            except StoreUnavailableError:
                failures += 1
                continue
            except LeaseLostError as exc:
                self._fail(exc)
                return
            failures = 0
