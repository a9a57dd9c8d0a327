"""``WorkQueue``: client-go's rate-limited work queue, for controllers that sync keys.

    informer handlers ──add(key)──► queue (FIFO, a key at most once) ──get()──► worker ──sync(key)
                                        ▲                                          │
          add_after / add_rate_limited ─┘ (timers on the injected Clock)   done(key) ┘

Guarantees, as in client-go:
- a key is queued at most once however often it is added (``dirty``);
- a key is never handed to two workers at once: one added while it is being processed
  (``processing``) is queued again when the worker calls ``done``;
- ``add_rate_limited`` waits 5 ms, 10 ms, 20 ms ... (capped at 30 s) per key until ``forget``.

``shutdown()`` wakes every waiting ``get`` with :class:`ShutDown`; keys still queued are dropped
(controllers are level-triggered: the next start lists everything again). Timers run on a
:class:`Clock`; tests pass a :class:`FakeClock` and move time with ``advance``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("kubelite.client.workqueue")

K = TypeVar("K", bound=Hashable)
BASE_DELAY = 0.005
MAX_DELAY = 30.0


# --- clocks -------------------------------------------------------------------------------------


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time for queues and informers: ``now`` in seconds, and callbacks after a delay."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


class _FakeTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told: ``advance(seconds)`` runs the timers that came due."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(callback)
        heapq.heappush(self._timers, (self._now + max(delay, 0.0), next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, running due timers in time order (each sees ``now()`` at its due time)."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            due, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            if not timer.cancelled:
                timer.callback()
        self._now = target

    @property
    def pending(self) -> int:
        """Timers not yet run nor cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def next_due(self) -> float | None:
        """When the next live timer runs, or None."""
        live = [due for due, _, t in self._timers if not t.cancelled]
        return min(live) if live else None


async def sleep(clock: Clock, seconds: float) -> None:
    """``asyncio.sleep`` on ``clock``; cancellation cancels the timer."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    timer = clock.call_later(seconds, wake)
    try:
        await future
    finally:
        timer.cancel()


# --- the queue ----------------------------------------------------------------------------------


class ShutDown(Exception):
    """``get`` on a queue that was shut down."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self._clock: Clock = clock or LoopClock()
        self._base = base_delay
        self._max = max_delay
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._ready = asyncio.Event()
        self._shutting_down = False
        self._failures: dict[K, int] = {}
        # Keys waiting for a timer: the earliest due time wins, later adds of the key are dropped.
        self._waiting: dict[K, tuple[float, Timer]] = {}

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._ready.set()

    async def get(self) -> K:
        """The next key; the caller owns it until ``done(key)``. Raises ShutDown after ``shutdown()``."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        """The worker finished ``key``; if it was added meanwhile it is queued again now."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: K, seconds: float) -> None:
        if self._shutting_down:
            return
        if seconds <= 0:
            self.add(key)
            return
        due = self._clock.now() + seconds
        waiting = self._waiting.get(key)
        if waiting is not None:
            if waiting[0] <= due:
                return
            waiting[1].cancel()
        self._waiting[key] = (due, self._clock.call_later(seconds, lambda: self._fire(key)))

    def _fire(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def when(self, key: K) -> float:
        """The delay ``add_rate_limited(key)`` would use next."""
        failures = self._failures.get(key, 0)
        if failures >= 64:  # long capped; 2**failures would overflow a float
            return self._max
        return min(self._base * 2.0**failures, self._max)

    def add_rate_limited(self, key: K) -> None:
        delay = self.when(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (call it when a sync succeeded)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._dirty.clear()
        self._ready.set()


async def run_workers(
    queue: WorkQueue[K],
    sync: Callable[[K], Awaitable[None]],
    workers: int = 1,
    *,
    name: str = "",
) -> None:
    """Run ``workers`` loops of get → sync → done until the queue shuts down.

    A sync that raises is logged and its key re-queued with backoff; one that returns resets
    the key's backoff. Cancelling this coroutine cancels the workers (a sync in progress sees
    CancelledError).
    """
    label = name or getattr(sync, "__qualname__", "sync")

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await sync(key)
            except Exception:
                log.exception(
                    "%s of %r failed; retrying in %.3fs (attempt %d)",
                    label,
                    key,
                    queue.when(key),
                    queue.num_requeues(key) + 1,
                )
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(workers, 1)):
            group.create_task(worker())
