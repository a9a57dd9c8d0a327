"""Small helpers shared by the store tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kubelite.store import Storage, StoreEvent, Watch

OpenStore = Callable[[], Awaitable[Storage]]
"""The ``open_store`` fixture: starts a store of the test's back end, closed after the test."""


async def collect(watch: Watch, count: int, within: float = 10.0) -> list[StoreEvent]:
    """Exactly ``count`` events from ``watch`` (fails if more arrived in the last batch)."""
    events: list[StoreEvent] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            events.extend(await watch.next())
    assert len(events) == count, events
    return events


async def assert_quiet(watch: Watch, seconds: float = 0.2) -> None:
    """Nothing more arrives for a little while (used after the expected events)."""
    try:
        async with asyncio.timeout(seconds):
            extra = await watch.next()
    except TimeoutError:
        return
    pytest.fail(f"unexpected events {extra}")
