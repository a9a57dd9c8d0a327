"""The Storage contract, run against every back end (see conftest.py: sqlite and a real etcd).

Revisions are only compared, never predicted: etcd's counter is shared by the whole cluster
and gives every key of one commit the same revision, SQLite gives each key its own.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from kubelite.store import (
    CompactedError,
    ConflictError,
    Create,
    Delete,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Storage,
    StoreEvent,
    Update,
    WatchClosedError,
)

from .helpers import OpenStore, assert_quiet, collect


async def test_get_create_and_create_conflict(store: Storage) -> None:
    assert await store.get("/a/x") is None
    kv = await store.create("/a/x", b"one")
    assert kv == KeyValue("/a/x", b"one", kv.mod_revision, kv.mod_revision)
    assert await store.get("/a/x") == kv
    assert await store.current_revision() >= kv.mod_revision
    with pytest.raises(KeyExistsError) as caught:
        await store.create("/a/x", b"two")
    assert caught.value.key == "/a/x"
    assert await store.get("/a/x") == kv


async def test_update_is_compare_and_swap(store: Storage) -> None:
    created = await store.create("/a/x", b"1")
    updated = await store.update("/a/x", b"2", created.mod_revision)
    assert updated.value == b"2"
    assert updated.create_revision == created.create_revision
    assert updated.mod_revision > created.mod_revision
    with pytest.raises(ConflictError) as caught:
        await store.update("/a/x", b"stale", created.mod_revision)
    assert caught.value.current == updated
    unconditional = await store.update("/a/x", b"3", 0)
    assert unconditional.mod_revision > updated.mod_revision
    with pytest.raises(KeyNotFoundError):
        await store.update("/a/missing", b"v", 0)
    with pytest.raises(KeyNotFoundError):
        await store.update("/a/missing", b"v", unconditional.mod_revision)


async def test_delete_with_precondition(store: Storage) -> None:
    created = await store.create("/a/x", b"last")
    with pytest.raises(ConflictError):
        await store.delete("/a/x", created.mod_revision + 1000)
    deleted = await store.delete("/a/x", created.mod_revision)
    assert deleted.value == b"last"
    assert deleted.create_revision == created.create_revision
    assert deleted.mod_revision > created.mod_revision
    assert await store.get("/a/x") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/a/x")
    again = await store.create("/a/x", b"new life")
    assert again.create_revision > deleted.mod_revision
    assert (await store.delete("/a/x")).value == b"new life"


async def test_list_prefix_in_key_order(store: Storage) -> None:
    for key in ["/a/c", "/a/a", "/ab", "/a/b", "/b/a", "/a/\u00e9"]:
        await store.create(key, key.encode())
    result = await store.list("/a/")
    assert [kv.key for kv in result.items] == ["/a/a", "/a/b", "/a/c", "/a/\u00e9"]
    assert not result.more
    assert result.revision == await store.current_revision()
    assert [kv.key for kv in (await store.list("/")).items] == [
        "/a/a",
        "/a/b",
        "/a/c",
        "/a/\u00e9",
        "/ab",
        "/b/a",
    ]
    assert (await store.list("/nothing/")).items == []


async def test_list_pagination_is_a_snapshot(store: Storage) -> None:
    for i in range(10):
        await store.create(f"/p/{i:02d}", b"v")
    first = await store.list("/p/", limit=3)
    assert [kv.key for kv in first.items] == ["/p/00", "/p/01", "/p/02"]
    assert (first.more, first.remaining) == (True, 7)
    await store.create("/p/99", b"after the first page")
    await store.delete("/p/05")
    keys, page = [kv.key for kv in first.items], first
    remaining = []
    while page.more:
        page = await store.list("/p/", revision=first.revision, start_key=page.items[-1].key, limit=3)
        assert page.revision == first.revision
        keys += [kv.key for kv in page.items]
        remaining.append(page.remaining)
    assert keys == [f"/p/{i:02d}" for i in range(10)]
    assert remaining == [4, 1, 0]
    exact = await store.list("/p/", limit=11)
    assert (exact.more, len(exact.items)) == (False, 10)


async def test_list_at_an_old_revision(store: Storage) -> None:
    a = await store.create("/r/a", b"a1")
    await store.create("/r/b", b"b1")
    then = await store.current_revision()
    await store.update("/r/a", b"a2", a.mod_revision)
    await store.delete("/r/b")
    await store.create("/r/c", b"c1")
    old = await store.list("/r/", revision=then)
    assert [(kv.key, kv.value) for kv in old.items] == [("/r/a", b"a1"), ("/r/b", b"b1")]
    assert old.revision == then
    now = await store.list("/r/")
    assert [(kv.key, kv.value) for kv in now.items] == [("/r/a", b"a2"), ("/r/c", b"c1")]
    future = await store.current_revision() + 100
    with pytest.raises(FutureRevisionError) as caught:
        await store.list("/r/", revision=future)
    assert caught.value.requested == future


async def test_commit_is_atomic(store: Storage) -> None:
    x = await store.create("/t/x", b"x1")
    gone = await store.create("/t/gone", b"g")
    with pytest.raises(ConflictError):
        await store.commit([Create("/t/y", b"y"), Update("/t/x", b"x2", x.mod_revision + 1000)])
    assert await store.get("/t/y") is None
    assert (await store.get("/t/x")) == x
    results = await store.commit(
        [Create("/t/y", b"y"), Update("/t/x", b"x2", x.mod_revision), Delete("/t/gone", gone.mod_revision)]
    )
    assert [kv.key for kv in results] == ["/t/y", "/t/x", "/t/gone"]
    assert results[1].value == b"x2"
    assert results[1].create_revision == x.create_revision
    assert results[2].value == b"g"
    assert results[2].mod_revision > gone.mod_revision
    revisions = [kv.mod_revision for kv in results]
    assert revisions == sorted(revisions)
    assert revisions[0] > gone.mod_revision
    assert await store.get("/t/gone") is None
    assert await store.get("/t/y") == results[0]
    assert await store.commit([]) == []


async def test_commit_reports_the_first_failed_op(store: Storage) -> None:
    await store.create("/f/exists", b"v")
    with pytest.raises(KeyExistsError):
        await store.commit([Create("/f/exists", b"v"), Update("/f/missing", b"v", 0)])
    with pytest.raises(KeyNotFoundError):
        await store.commit([Update("/f/missing", b"v", 0), Create("/f/exists", b"v")])
    with pytest.raises(ValueError, match="more than once"):
        await store.commit([Create("/f/dup", b"1"), Delete("/f/dup")])
    with pytest.raises(ValueError, match="empty"):
        await store.create("", b"v")


async def test_watch_from_now(store: Storage) -> None:
    await store.create("/w/before", b"not seen")
    watch = await store.watch("/w/")
    created = await store.create("/w/x", b"1")
    updated = await store.update("/w/x", b"2", created.mod_revision)
    deleted = await store.delete("/w/x")
    events = await collect(watch, 3)
    assert [e.type for e in events] == ["PUT", "PUT", "DELETE"]
    assert events[0] == StoreEvent("PUT", created, None)
    assert events[0].is_create
    assert events[1] == StoreEvent("PUT", updated, created)
    assert not events[1].is_create
    assert events[2] == StoreEvent("DELETE", deleted, updated)
    assert events[2].revision == deleted.mod_revision
    watch.close()


async def test_watch_sees_only_its_prefix(store: Storage) -> None:
    watch = await store.watch("/w/in/")
    await store.create("/w/out", b"x")
    await store.create("/w/in", b"x")  # the prefix is a string prefix: "/w/in" is not under "/w/in/"
    inside = await store.create("/w/in/a", b"x")
    await store.create("/w/inside", b"x")
    assert [e.kv for e in await collect(watch, 1)] == [inside]
    await assert_quiet(watch)
    watch.close()


async def test_watch_from_a_past_revision_has_no_gaps_or_duplicates(store: Storage) -> None:
    written = [await store.create(f"/h/{i:03d}", b"v") for i in range(30)]
    after = written[9].mod_revision

    async def writer() -> list[KeyValue]:
        out = []
        for i in range(60):  # deletes a third of the keys, then creates them again
            key = f"/h/{i % 30:03d}"
            if i % 3 != 2:
                out.append(await store.update(key, f"u{i}".encode(), 0))
            elif i < 30:
                out.append(await store.delete(key))
            else:
                out.append(await store.create(key, b"again"))
            await asyncio.sleep(0)
        return out

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0)
    watch = await store.watch("/h/", after_revision=after)
    more = await writing
    expected = [kv.mod_revision for kv in written[10:] + more]
    events = await collect(watch, len(expected))
    assert [e.revision for e in events] == expected
    assert all(e.kv.key.startswith("/h/") for e in events)
    await assert_quiet(watch)
    watch.close()


async def test_watch_close_wakes_a_pending_next(store: Storage) -> None:
    watch = await store.watch("/c/")
    pending = asyncio.create_task(watch.next())
    await asyncio.sleep(0.05)
    watch.close()
    with pytest.raises(WatchClosedError):
        await pending
    with pytest.raises(WatchClosedError):
        await watch.next()
    watch.close()  # idempotent


async def test_closing_the_store_ends_its_watches(open_store: OpenStore) -> None:
    store = await open_store()
    watch = await store.watch("/c/")
    await store.close()
    with pytest.raises(WatchClosedError):
        await watch.next()
    await store.close()  # idempotent


async def test_compaction(store: Storage) -> None:
    a = await store.create("/k/a", b"a1")
    b = await store.create("/k/b", b"b1")
    await store.update("/k/a", b"a2", a.mod_revision)
    await store.delete("/k/b", b.mod_revision)
    at = await store.current_revision()
    before = await store.list("/k/", revision=at)
    a3 = await store.update("/k/a", b"a3", 0)
    await store.compact(at)
    assert await store.compacted_revision() == at
    with pytest.raises(CompactedError) as caught:
        await store.list("/k/", revision=at - 1)
    assert (caught.value.requested, caught.value.compacted) == (at - 1, at)
    assert await store.list("/k/", revision=at) == before  # etcd's rule: the compacted revision is kept
    with pytest.raises(CompactedError):
        await store.watch("/k/", after_revision=at - 1)
    watch = await store.watch("/k/", after_revision=at)
    [event] = await collect(watch, 1)
    assert event.kv == a3
    assert event.prev is not None
    assert event.prev.value == b"a2"
    watch.close()
    assert await store.get("/k/a") == a3
    await store.compact(at - 1)  # already compacted: nothing to do
    with pytest.raises(FutureRevisionError):
        await store.compact(await store.current_revision() + 10)


async def test_revision_survives_reopen(open_store: OpenStore) -> None:
    store = await open_store()
    kept = await store.create("/s/kept", b"v")
    await store.create("/s/gone", b"v")
    await store.delete("/s/gone")  # the newest row is a tombstone...
    last = await store.current_revision()
    await store.compact(last)  # ...and compaction removes it: the counter must not go back
    await store.close()
    reopened = await open_store()
    assert await reopened.current_revision() >= last
    assert await reopened.get("/s/kept") == kept
    assert await reopened.get("/s/gone") is None
    assert (await reopened.create("/s/new", b"v")).mod_revision > last


async def test_many_concurrent_creates(store: Storage) -> None:
    start = await store.current_revision()
    watch = await store.watch("/m/")

    async def client(n: int) -> list[KeyValue]:
        return [await store.create(f"/m/{n:02d}/{i:03d}", b"v" * random.randint(1, 300)) for i in range(40)]

    created = [kv for batch in await asyncio.gather(*(client(n) for n in range(50))) for kv in batch]
    revisions = {kv.mod_revision for kv in created}
    assert len(revisions) == 2000
    assert min(revisions) > start
    listed = await store.list("/m/")
    assert sorted(listed.items, key=lambda kv: kv.key) == sorted(created, key=lambda kv: kv.key)
    events = await collect(watch, 2000)
    assert [e.revision for e in events] == sorted(revisions)
    watch.close()


async def test_large_values_round_trip_and_watch(store: Storage) -> None:
    # Larger than aiohttp's 128 KiB line limit once base64-encoded into one watch message.
    big = random.randbytes(300_000)
    watch = await store.watch("/big/")
    kv = await store.create("/big/blob", big)
    assert (await store.get("/big/blob")) == kv
    [event] = await collect(watch, 1)
    assert event.kv.value == big
    watch.close()
