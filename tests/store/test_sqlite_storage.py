"""What only the SQLite back end promises: durability under kill -9, one process per file,
group commit isolating failed requests, bounded watchers, and compaction in chunks."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kubelite.store import (
    AutoCompactor,
    KeyExistsError,
    KeyValue,
    SqliteStorage,
    StoreError,
    WatchClosedError,
)
from kubelite.store import sqlite as sqlite_module

from .helpers import collect

# The child acknowledges a key by printing it only after create() returned.
CRASH_CHILD = """
import asyncio, sys
from kubelite.store import SqliteStorage

async def main(path):
    store = SqliteStorage(path)
    await store.start()

    async def client(n):
        for i in range(1_000_000):
            kv = await store.create(f"/crash/{n:02d}/{i:06d}", b"payload-%d" % i)
            print(kv.key, kv.mod_revision, flush=True)

    await asyncio.gather(*(client(n) for n in range(20)))

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
async def open_sqlite(tmp_path: Path) -> AsyncIterator[Callable[..., SqliteStorage]]:
    """Build SqliteStorage objects on tmp_path/state.db (any keyword arguments); closes them all."""
    made: list[SqliteStorage] = []

    def make(**kwargs: int) -> SqliteStorage:
        made.append(SqliteStorage(tmp_path / "state.db", **kwargs))
        return made[-1]

    yield make
    for store in made:
        await store.close()


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM log").fetchone()[0])


async def test_no_acknowledged_write_is_lost_on_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    stderr_path = tmp_path / "child.stderr"
    with stderr_path.open("wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CRASH_CHILD, str(path), stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    try:
        async with asyncio.timeout(60):
            while len(acknowledged) < 1500:
                line = await child.stdout.readline()
                assert line, f"the child stopped early:\n{stderr_path.read_text()}"
                key, revision = line.decode().split()
                acknowledged[key] = int(revision)
    finally:
        child.kill()  # SIGKILL, mid-run: the writer is busy with the next batches
        await child.wait()
    # Acknowledged before the kill; a line the kill cut in half (no newline yet) claims nothing.
    for raw in (await child.stdout.read()).split(b"\n")[:-1]:
        key, revision = raw.decode().split()
        acknowledged[key] = int(revision)

    store = SqliteStorage(path)  # the lock died with the child
    await store.start()
    try:
        assert await store.current_revision() >= max(acknowledged.values())
        listed = {kv.key: kv for kv in (await store.list("/crash/")).items}
        missing = [key for key in acknowledged if key not in listed]
        assert not missing, f"{len(missing)} acknowledged keys were lost, e.g. {missing[:5]}"
        assert all(listed[key].mod_revision == revision for key, revision in acknowledged.items())
        assert len({kv.mod_revision for kv in listed.values()}) == len(listed)
    finally:
        await store.close()


async def test_a_file_is_opened_by_one_store_at_a_time(open_sqlite: Callable[..., SqliteStorage]) -> None:
    await open_sqlite().start()
    with pytest.raises(StoreError, match="in use by another process"):
        await open_sqlite().start()


async def test_lifecycle_errors(open_sqlite: Callable[..., SqliteStorage]) -> None:
    store = open_sqlite()
    with pytest.raises(StoreError, match="not started"):
        await store.get("/x")
    await store.start()
    with pytest.raises(StoreError, match="already started"):
        await store.start()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.create("/x", b"v")


async def test_a_failed_request_does_not_fail_its_batch(open_sqlite: Callable[..., SqliteStorage]) -> None:
    store = open_sqlite()
    await store.start()
    await store.create("/g/taken", b"first")
    keys = ["/g/taken" if i % 5 == 0 else f"/g/{i:03d}" for i in range(100)]
    results = await asyncio.gather(*(store.create(key, b"v") for key in keys), return_exceptions=True)
    assert sum(isinstance(r, KeyExistsError) for r in results) == 20
    created = [r for r in results if isinstance(r, KeyValue)]
    assert len(created) == 80
    assert len((await store.list("/g/")).items) == 81
    taken = await store.get("/g/taken")
    assert taken is not None
    assert taken.value == b"first"


async def test_a_watcher_that_falls_behind_is_closed_not_waited_for(
    open_sqlite: Callable[..., SqliteStorage],
) -> None:
    store = open_sqlite(watch_queue_limit=10)
    await store.start()
    watch = await store.watch("/")
    written = [await store.create(f"/slow/{i:02d}", b"v") for i in range(25)]  # nobody reads
    events = await watch.next()  # what was queued before the overflow is still delivered, gap-free
    assert [e.kv for e in events] == written[:10]
    with pytest.raises(WatchClosedError, match="fell behind"):
        await watch.next()


async def test_history_replay_is_paced_by_the_reader(open_sqlite: Callable[..., SqliteStorage]) -> None:
    store = open_sqlite(watch_queue_limit=100)
    await store.start()
    start = (await store.create("/before", b"v")).mod_revision  # 0 would mean "from now"
    written = await asyncio.gather(*(store.create(f"/hist/{i:04d}", b"v") for i in range(1000)))
    watch = await store.watch("/hist/", after_revision=start)  # 10x the queue limit of history
    events = await collect(watch, 1000)
    assert [e.revision for e in events] == sorted(kv.mod_revision for kv in written)
    watch.close()


async def test_compaction_sweeps_in_chunks_and_keeps_current_values(
    open_sqlite: Callable[..., SqliteStorage], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sqlite_module, "_COMPACT_CHUNK", 7)
    store = open_sqlite()
    await store.start()
    for i in range(20):
        kv = await store.create(f"/c/{i:02d}", b"v0")
        for n in range(3):
            kv = await store.update(kv.key, b"v%d" % (n + 1), kv.mod_revision)
        if i % 4 == 0:
            await store.delete(kv.key)
    current = await store.list("/c/")
    await store.compact(await store.current_revision())
    assert await store.list("/c/") == current
    await store.close()
    assert await asyncio.to_thread(count_rows, tmp_path / "state.db") == len(current.items) == 15


async def test_an_interrupted_compaction_resumes_at_start(
    open_sqlite: Callable[..., SqliteStorage], tmp_path: Path
) -> None:
    store = open_sqlite()
    await store.start()
    for i in range(10):
        kv = await store.create(f"/c/{i}", b"v")
        await store.update(kv.key, b"w", 0)
    revision = await store.current_revision()
    await store.close()

    def interrupt() -> None:  # what a crash after writing the floor, before sweeping, leaves
        with sqlite3.connect(tmp_path / "state.db") as conn:
            conn.execute("INSERT INTO meta (name, value) VALUES ('compact_revision', ?)", (revision,))

    await asyncio.to_thread(interrupt)
    reopened = open_sqlite()
    await reopened.start()
    assert await reopened.compacted_revision() == revision
    await reopened.close()  # the writer finishes the resumed sweep before it exits
    assert await asyncio.to_thread(count_rows, tmp_path / "state.db") == 10


async def test_auto_compactor_keeps_recent_history(open_sqlite: Callable[..., SqliteStorage]) -> None:
    now = [0.0]
    store = open_sqlite()
    await store.start()
    compactor = AutoCompactor(store, keep_revisions=5, min_age=300.0, clock=lambda: now[0])
    for i in range(20):
        await store.create(f"/a/{i}", b"v")
    assert await compactor.tick() == 0  # t=0, revision 20: remembered, nothing old enough yet
    for i in range(20, 40):
        await store.create(f"/a/{i}", b"v")
    now[0] = 200.0
    assert await compactor.tick() == 0  # t=200, revision 40: still younger than min_age
    now[0] = 310.0
    assert await compactor.tick() == 20  # the revision seen 300 s ago
    assert await store.compacted_revision() == 20
    now[0] = 520.0
    assert await compactor.tick() == 35  # revision 40 is old enough, but the last 5 are kept
    assert await compactor.tick() == 0
