"""Pieces shared by the Storage back ends.

    StorageBase      create/update/delete written once in terms of commit()
    QueueWatch       a Watch fed by a producer through push()/fail(); bounded, never blocks the producer
    WatchHub         in-process fan-out of committed events to QueueWatches (used by sqlite)
    AutoCompactor    periodic compaction that keeps the last N revisions and the last few minutes

Everything here runs on the event loop thread; nothing is thread-safe on purpose (the sqlite
writer thread hands its results to the loop before they reach the hub).
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import time
from collections import deque
from collections.abc import Callable, Sequence

from kubelite.store.interface import (
    Create,
    Delete,
    KeyValue,
    Op,
    Storage,
    StoreError,
    StoreEvent,
    Update,
    WatchClosedError,
)

DEFAULT_WATCH_QUEUE_LIMIT = 10_000
"""Events a watcher may leave unread before it is closed instead of slowing down writers."""


def validate_ops(ops: Sequence[Op]) -> None:
    """Raise ValueError unless every op names a distinct, non-empty key (etcd's rule for a txn)."""
    seen: set[str] = set()
    for op in ops:
        if not isinstance(op, Create | Update | Delete):
            raise ValueError(f"commit() takes Create, Update and Delete ops, not {type(op).__name__}")
        if not op.key:
            raise ValueError("a key must not be empty")
        if op.key in seen:
            raise ValueError(
                f"key {op.key!r} appears more than once in one commit; split it into two commits"
            )
        seen.add(op.key)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``.

    None when there is none (empty prefix, or only 0xff bytes): the range is then unbounded.
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None


class StorageBase(abc.ABC):
    """create/update/delete as one-op commits, so each back end writes the CAS logic once."""

    @abc.abstractmethod
    async def commit(self, ops: Sequence[Op]) -> builtins.list[KeyValue]: ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        return (await self.commit([Create(key, value)]))[0]

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> KeyValue:
        return (await self.commit([Update(key, value, expected_mod_revision)]))[0]

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        return (await self.commit([Delete(key, expected_mod_revision)]))[0]


class QueueWatch:
    """A Watch whose events are pushed in by a producer.

    push() never blocks: a watcher with more than ``max_pending`` unread events is failed
    with WatchClosedError, so one stuck client cannot stall the writers. After fail() the
    events already queued are still returned (they are gap-free, so the owner can watch
    again from the last revision it saw), then next() raises the error. close() by the
    owner drops what is queued and makes next() raise at once.
    """

    def __init__(self, *, max_pending: int = DEFAULT_WATCH_QUEUE_LIMIT) -> None:
        self._batches: deque[list[StoreEvent]] = deque()
        self._pending = 0
        self._max_pending = max_pending
        self._error: StoreError | None = None
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._close_callbacks: list[Callable[[], object]] = []

    @property
    def closed(self) -> bool:
        return self._error is not None

    @property
    def pending(self) -> int:
        """Events pushed and not yet returned by next()."""
        return self._pending

    def on_close(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once when the watch closes (at once if it already has)."""
        if self._error is not None:
            callback()
        else:
            self._close_callbacks.append(callback)

    def push(self, batch: list[StoreEvent]) -> None:
        """Queue events (in revision order, after everything pushed before); takes ownership of ``batch``.

        Ignored once the watch is closed.
        """
        if self._error is not None or not batch:
            return
        if self._pending + len(batch) > self._max_pending:
            self.fail(
                WatchClosedError(
                    f"the watcher fell behind: more than {self._max_pending} events were waiting "
                    "to be read; watch again from the last revision it saw"
                )
            )
            return
        self._batches.append(batch)
        self._pending += len(batch)
        if self._pending >= self._max_pending // 2:
            self._room.clear()
        self._wakeup.set()

    def fail(self, error: StoreError) -> None:
        """End the watch: next() returns what is queued, then raises ``error``. Idempotent."""
        if self._error is not None:
            return
        self._error = error
        self._wakeup.set()
        self._room.set()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback()

    def close(self) -> None:
        """Stop the watch; next() raises WatchClosedError from now on. Idempotent."""
        self._batches.clear()
        self._pending = 0
        self.fail(WatchClosedError("the watch was closed by its owner"))

    async def next(self) -> list[StoreEvent]:
        """Every queued event (one or more batches merged, in revision order), waiting for one."""
        while not self._batches:
            if self._error is not None:
                # A fresh traceback each time: the same error may be raised by many next() calls.
                raise self._error.with_traceback(None)
            self._wakeup.clear()
            await self._wakeup.wait()
        events = self._batches.popleft()
        while self._batches:
            events.extend(self._batches.popleft())
        self._pending = 0
        self._room.set()
        return events

    async def wait_for_room(self) -> None:
        """Wait until at most half the queue is used (or the watch closed): lets history readers pace."""
        await self._room.wait()


class _Subscriber:
    __slots__ = ("after", "buffer", "prefix", "watch")

    def __init__(self, prefix: str, after: int, watch: QueueWatch, backfilling: bool) -> None:
        self.prefix = prefix
        self.after = after
        """The revision of the last event handed to the watch; later events must be newer."""
        self.watch = watch
        self.buffer: list[StoreEvent] | None = [] if backfilling else None
        """Live events held back while history is still being read; None once live."""


class HubSubscription:
    """The producer side of one hub watcher that starts from history.

    The store registers the subscription first (so no live event can be missed), reads the
    history itself, hands it over with deliver(), then calls go_live(): live events that
    arrived meanwhile are released, minus those the history already contained.
    """

    def __init__(self, hub: WatchHub, subscriber: _Subscriber) -> None:
        self._hub = hub
        self._sub = subscriber

    @property
    def watch(self) -> QueueWatch:
        return self._sub.watch

    @property
    def after(self) -> int:
        return self._sub.after

    def deliver(self, history: list[StoreEvent]) -> None:
        """Hand over history events (revision order); those at or below ``after`` are skipped."""
        fresh = [e for e in history if e.revision > self._sub.after]
        if fresh:
            self._sub.watch.push(fresh)
            self._sub.after = fresh[-1].revision

    def go_live(self) -> None:
        buffered, self._sub.buffer = self._sub.buffer or [], None
        self.deliver(buffered)


class WatchHub:
    """Fans events out to watchers in the same process, in the order publish() is called.

    The caller publishes each committed batch once, in revision order; every watcher receives
    the events under its prefix that are newer than the last one it got. Loop thread only.
    """

    def __init__(self, *, max_pending: int = DEFAULT_WATCH_QUEUE_LIMIT) -> None:
        self._max_pending = max_pending
        self._subscribers: set[_Subscriber] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, prefix: str, after_revision: int, *, backfilling: bool = False) -> HubSubscription:
        """Register a watcher for events under ``prefix`` with revision > ``after_revision``.

        With ``backfilling`` the live events are held back until go_live() (see HubSubscription).
        """
        watch = QueueWatch(max_pending=self._max_pending)
        sub = _Subscriber(prefix, after_revision, watch, backfilling)
        self._subscribers.add(sub)
        watch.on_close(lambda: self._subscribers.discard(sub))
        return HubSubscription(self, sub)

    def publish(self, events: Sequence[StoreEvent]) -> None:
        for sub in list(self._subscribers):
            prefix, after = sub.prefix, sub.after
            matched = [e for e in events if e.revision > after and e.kv.key.startswith(prefix)]
            if not matched:
                continue
            if sub.buffer is None:
                sub.watch.push(matched)
                sub.after = matched[-1].revision
                continue
            sub.buffer.extend(matched)
            if len(sub.buffer) > self._max_pending:
                sub.watch.fail(
                    WatchClosedError(
                        f"the watcher fell behind: more than {self._max_pending} events arrived "
                        "while its history was being read; watch again from a newer revision"
                    )
                )

    def close(self, error: StoreError) -> None:
        """Fail every watcher with ``error`` (the store is shutting down)."""
        for sub in list(self._subscribers):
            sub.watch.fail(error)
        self._subscribers.clear()


class AutoCompactor:
    """Compacts a Storage so history stays bounded; call tick() periodically (e.g. every minute).

    History is kept while it is younger than ``min_age`` seconds OR among the last
    ``keep_revisions`` revisions: tick() compacts to the newest revision that is both older
    than ``min_age`` (as seen by an earlier tick) and at least ``keep_revisions`` behind the
    current one. Watchers and paginated lists get ``min_age`` to finish before they meet
    CompactedError. The clock is injected so tests need no sleeps.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        keep_revisions: int = 1000,
        min_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._keep_revisions = keep_revisions
        self._min_age = min_age
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    async def tick(self) -> int:
        """Compact if history is due; return the revision compacted to, or 0 when nothing was done."""
        now = self._clock()
        current = await self._storage.current_revision()
        self._samples.append((now, current))
        # Keep only the newest sample that is old enough, plus the younger ones.
        while len(self._samples) >= 2 and now - self._samples[1][0] >= self._min_age:
            self._samples.popleft()
        oldest_time, oldest_revision = self._samples[0]
        if now - oldest_time < self._min_age:
            return 0
        target = min(oldest_revision, current - self._keep_revisions)
        if target <= 0 or target <= await self._storage.compacted_revision():
            return 0
        await self._storage.compact(target)
        return target
