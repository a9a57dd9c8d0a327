"""The shared pieces: key ranges, op validation, the bounded QueueWatch and the WatchHub."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.store import Create, Delete, KeyValue, StoreError, StoreEvent, Update, WatchClosedError
from kubelite.store.base import QueueWatch, WatchHub, prefix_end, validate_ops


def put(key: str, revision: int) -> StoreEvent:
    return StoreEvent("PUT", KeyValue(key, b"v", revision, revision), None)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff\xff", None), (b"", None)],
)
def test_prefix_end(prefix: bytes, end: bytes | None) -> None:
    assert prefix_end(prefix) == end


def test_validate_ops() -> None:
    validate_ops([Create("/a", b""), Update("/b", b"", 0), Delete("/c")])
    with pytest.raises(ValueError, match="more than once"):
        validate_ops([Create("/a", b""), Delete("/a")])
    with pytest.raises(ValueError, match="empty"):
        validate_ops([Delete("")])
    with pytest.raises(ValueError, match="not str"):
        validate_ops(["/a"])  # type: ignore[list-item]


async def test_queue_watch_merges_batches_in_order() -> None:
    watch = QueueWatch(max_pending=10)
    watch.push([put("/a", 1)])
    watch.push([])
    watch.push([put("/b", 2), put("/c", 3)])
    assert watch.pending == 3
    assert [e.revision for e in await watch.next()] == [1, 2, 3]
    waiting = asyncio.create_task(watch.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    watch.push([put("/d", 4)])
    assert [e.revision for e in await waiting] == [4]


async def test_queue_watch_overflow_keeps_what_was_queued() -> None:
    closed: list[bool] = []
    watch = QueueWatch(max_pending=3)
    watch.on_close(lambda: closed.append(True))
    watch.push([put("/a", 1), put("/b", 2)])
    watch.push([put("/c", 3), put("/d", 4)])  # 4 > 3: the watch fails, it does not block
    assert closed == [True]
    watch.push([put("/e", 5)])  # ignored once closed
    assert [e.revision for e in await watch.next()] == [1, 2]
    for _ in range(2):
        with pytest.raises(WatchClosedError, match="fell behind"):
            await watch.next()


async def test_queue_watch_fail_then_close() -> None:
    watch = QueueWatch()
    watch.push([put("/a", 1)])
    watch.fail(StoreError("broken"))
    assert [e.revision for e in await watch.next()] == [1]
    with pytest.raises(StoreError, match="broken"):
        await watch.next()
    watch.close()  # after fail(): the first error stays
    with pytest.raises(StoreError, match="broken"):
        await watch.next()
    late: list[bool] = []
    watch.on_close(lambda: late.append(True))
    assert late == [True]


async def test_queue_watch_close_drops_queued_events() -> None:
    watch = QueueWatch()
    watch.push([put("/a", 1)])
    watch.close()
    assert watch.closed
    with pytest.raises(WatchClosedError, match="closed by its owner"):
        await watch.next()


async def test_queue_watch_room_opens_when_the_reader_catches_up() -> None:
    watch = QueueWatch(max_pending=4)
    watch.push([put("/a", 1), put("/b", 2)])  # half full
    room = asyncio.create_task(watch.wait_for_room())
    await asyncio.sleep(0)
    assert not room.done()
    await watch.next()
    await asyncio.wait_for(room, 1)


async def test_hub_filters_by_prefix_and_revision() -> None:
    hub = WatchHub()
    sub = hub.subscribe("/a/", after_revision=1)
    hub.publish([put("/a/x", 1), put("/b/x", 2), put("/a/y", 3), put("/a", 4)])
    assert [e.revision for e in await sub.watch.next()] == [3]
    assert len(hub) == 1
    sub.watch.close()
    assert len(hub) == 0


async def test_hub_backfill_then_live_without_gaps_or_duplicates() -> None:
    hub = WatchHub()
    sub = hub.subscribe("/", after_revision=2, backfilling=True)
    hub.publish([put("/x", 5), put("/x", 6)])  # live, while history (3..5) is being read
    assert sub.watch.pending == 0
    sub.deliver([put("/x", 2), put("/x", 3), put("/x", 4), put("/x", 5)])
    sub.go_live()
    hub.publish([put("/x", 7)])
    events = await sub.watch.next()
    assert [e.revision for e in events] == [3, 4, 5, 6, 7]


async def test_hub_close_fails_every_watch() -> None:
    hub = WatchHub()
    subs = [hub.subscribe("/", 0) for _ in range(3)]
    hub.close(WatchClosedError("the store was closed"))
    for sub in subs:
        with pytest.raises(WatchClosedError, match="store was closed"):
            await sub.watch.next()
