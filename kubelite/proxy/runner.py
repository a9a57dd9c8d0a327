"""The proxy's sync loop: a bounded-frequency runner, as kube-proxy's.

``request()`` asks for a sync; syncs happen at most once per ``min_interval`` (changes that arrive
meanwhile are batched into the next one) and at least once per ``max_interval`` (a periodic full
resync that repairs rules someone else removed). A failed sync is retried after ``retry_interval``
with a full rewrite. The clock and sleep are injected so tests need no real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["BoundedFrequencyRunner", "SyncStats"]

log = logging.getLogger(__name__)


@dataclass
class SyncStats:
    syncs: int = 0
    failures: int = 0
    last_duration: float = 0.0
    last_success: float = 0.0
    """Clock time of the last successful sync (0 = never)."""
    durations: list[float] = field(default_factory=list)


class BoundedFrequencyRunner:
    def __init__(
        self,
        sync: Callable[[bool], Awaitable[None]],
        *,
        min_interval: float = 0.0,
        max_interval: float = 30.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``sync(full)`` does the work; ``full`` is True for periodic resyncs and retries."""
        self._sync = sync
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_interval = retry_interval
        self._clock = clock
        self._wake = asyncio.Event()
        self._full_due = True
        self._last_run = float("-inf")
        self.stats = SyncStats()
        self.pending_since: float | None = None
        """When the oldest unsynced request arrived (for /healthz)."""

    def request(self, *, full: bool = False) -> None:
        if self.pending_since is None:
            self.pending_since = self._clock()
        if full:
            self._full_due = True
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            timeout = max(self.max_interval - (self._clock() - self._last_run), 0.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._full_due = True  # periodic resync
            wait = self.min_interval - (self._clock() - self._last_run)
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            await self.run_once()

    async def run_once(self) -> bool:
        full, self._full_due = self._full_due, False
        started = self._clock()
        self._last_run = started
        self.pending_since = None
        try:
            await self._sync(full)
        except Exception:
            self.stats.failures += 1
            log.exception("proxy sync failed; retrying with a full sync in %.1f s", self.retry_interval)
            self._full_due = True
            await asyncio.sleep(self.retry_interval)
            self._wake.set()
            return False
        self.stats.syncs += 1
        self.stats.last_duration = self._clock() - started
        self.stats.last_success = self._clock()
        self.stats.durations.append(self.stats.last_duration)
        del self.stats.durations[:-1000]
        return True

    def healthy(self, now: float | None = None) -> bool:
        """kube-proxy's rule: unhealthy when a queued update waited longer than 2 x max_interval."""
        now = self._clock() if now is None else now
        return self.pending_since is None or now - self.pending_since <= 2 * self.max_interval
