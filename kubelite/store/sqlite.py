"""SqliteStorage: the embedded Storage, a revision log in one SQLite file (the kine model).

    commit() ──► request queue ──► writer thread: BEGIN; SAVEPOINT per request; COMMIT (fsync)
                                        │
                  loop ◄── call_soon_threadsafe: resolve futures, WatchHub.publish(events)
    get/list/watch history ──► read pool: own connections, WAL snapshots, never behind the writer

See README.md in this package for the schema, group commit, fan-out and compaction rules.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import fcntl
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubelite.store.base import (
    DEFAULT_WATCH_QUEUE_LIMIT,
    HubSubscription,
    StorageBase,
    WatchHub,
    validate_ops,
)
from kubelite.store.base import prefix_end as _prefix_end
from kubelite.store.interface import (
    CompactedError,
    ConflictError,
    Create,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    Op,
    StoreError,
    StoreEvent,
    Update,
    Watch,
    WatchClosedError,
)

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,  -- one row per written key; the rowid, so MAX() is O(log n)
    key             BLOB NOT NULL,        -- UTF-8 bytes: BLOB order is byte order, as in etcd
    value           BLOB NOT NULL,        -- for a delete: the last value, so events need no lookup
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,     -- the row this one supersedes (0: none); compaction follows it
    deleted         INTEGER NOT NULL      -- 1: a tombstone
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

_LATEST_SQL = (
    "SELECT revision, value, create_revision, deleted FROM log WHERE key = ? ORDER BY revision DESC LIMIT 1"
)
_INSERT_SQL = (
    "INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_SET_META_SQL = (
    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)

_MAX_BATCH = 1000
"""Commit requests applied in one transaction at most; bounds how long one fsync makes callers wait."""
_COMPACT_CHUNK = 10_000
"""Revisions swept per compaction transaction, so commits interleave with a long compaction."""
_HISTORY_PAGE = 1000
"""Rows read per query when a watch replays history (at most half the watch queue)."""


class _Stop:
    """Queued by close(): the writer finishes what was queued before it, then exits."""


@dataclass(eq=False)
class _CommitRequest:
    ops: builtins.list[Op]
    future: asyncio.Future[builtins.list[KeyValue]]


@dataclass(eq=False)
class _CompactRequest:
    revision: int
    future: asyncio.Future[None] | None = None
    """None when the store resumes a compaction a crash interrupted: nobody waits for it."""


@dataclass(eq=False)
class _BatchOutcome:
    revision: int
    results: builtins.list[tuple[_CommitRequest, builtins.list[KeyValue] | StoreError]]
    events: builtins.list[StoreEvent] = field(default_factory=builtins.list)


class SqliteStorage(StorageBase):
    """The Storage protocol on one SQLite file (WAL, synchronous=FULL): nothing acknowledged is lost.

    Writes are group-committed by one writer thread: every commit() queued while the previous
    transaction was being fsynced goes into the next transaction, each inside its own SAVEPOINT
    so a failed precondition rolls back only its own request. Each written key gets its own
    revision. One process at a time may open a file (a lock file next to it enforces it),
    which is what lets the writer keep the revision counter in memory.

    A commit() whose caller is cancelled may still be applied (the writer cannot be recalled).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        read_connections: int = 4,
        watch_queue_limit: int = DEFAULT_WATCH_QUEUE_LIMIT,
    ) -> None:
        self._path = Path(path)
        self._read_connections = read_connections
        self._hub = WatchHub(max_pending=watch_queue_limit)
        # A history page must fit in the half of a watch queue that wait_for_room() guarantees.
        self._history_page = max(1, min(_HISTORY_PAGE, watch_queue_limit // 2))
        self._queue: queue.SimpleQueue[_CommitRequest | _CompactRequest | _Stop] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._lock_fd: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Loop-side view, advanced only when a batch is acknowledged: what watchers have been sent.
        self._revision = 0
        self._compacted = 0

    def __repr__(self) -> str:
        return f"SqliteStorage({str(self._path)!r})"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (creating if needed) the file; StoreError if another process holds it."""
        if self._loop is not None:
            raise StoreError(f"{self!r} was already started")
        self._loop = asyncio.get_running_loop()
        self._lock_fd = await asyncio.to_thread(_lock_file, self._path)
        try:
            ready: concurrent.futures.Future[tuple[int, int, int]] = concurrent.futures.Future()
            self._writer = threading.Thread(
                target=self._writer_main, args=(ready,), name="kubelite-sqlite-writer", daemon=True
            )
            self._writer.start()
            try:
                self._revision, self._compacted, cursor = await asyncio.wrap_future(ready)
            except sqlite3.Error as err:
                raise StoreError(f"cannot open the store {self._path}: {err}") from err
            for _ in range(self._read_connections):
                self._read_pool.put(await asyncio.to_thread(_connect, self._path, readonly=True))
            self._readers = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._read_connections, thread_name_prefix="kubelite-sqlite-read"
            )
        except BaseException:
            await self.close()
            raise
        if cursor < self._compacted:
            self._queue.put(_CompactRequest(self._compacted))  # finish what a crash interrupted

    async def close(self) -> None:
        """Finish queued writes, fail every watch with WatchClosedError, release the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(_Stop())
            await asyncio.to_thread(self._writer.join)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._hub.close(WatchClosedError("the store was closed"))
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, wait=True)
        while not self._read_pool.empty():
            self._read_pool.get_nowait().close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_open(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._loop is None:
            raise StoreError(f"{self!r} was not started; call start() first")
        return self._loop

    # --- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        """The newest acknowledged revision (what watchers have been sent)."""
        self._check_open()
        return self._revision

    async def compacted_revision(self) -> int:
        self._check_open()
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return await self._read(functools.partial(_get_sync, key=key))

    async def list(
        self, prefix: str, *, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """See Storage.list. A revision below the compacted one raises CompactedError; equal is fine."""
        return await self._read(
            functools.partial(_list_sync, prefix=prefix, revision=revision, start_key=start_key, limit=limit)
        )

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = self._check_open()
        return await loop.run_in_executor(self._readers, self._with_read_connection, fn)

    def _with_read_connection(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        # Runs in a read thread; the pool holds one connection per thread, so get() never waits.
        conn = self._read_pool.get()
        try:
            return fn(conn)
        except sqlite3.Error as err:
            raise StoreError(f"reading the store {self._path} failed: {err}") from err
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._read_pool.put(conn)

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, ops: Sequence[Op]) -> builtins.list[KeyValue]:
        ops = builtins.list(ops)
        validate_ops(ops)
        loop = self._check_open()
        if not ops:
            return []
        future: asyncio.Future[builtins.list[KeyValue]] = loop.create_future()
        self._queue.put(_CommitRequest(ops, future))
        return await future

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision``; returns once the rows are gone.

        Compacting at or below the current compacted revision does nothing.
        """
        loop = self._check_open()
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision <= self._compacted:
            return
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_CompactRequest(revision, future))
        await future

    # --- watch ------------------------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int = 0) -> Watch:
        """See Storage.watch. ``after_revision`` below the compacted revision raises CompactedError.

        The live subscription is registered before history is read, so no event falls between.
        """
        loop = self._check_open()
        if after_revision and after_revision < self._compacted:
            raise CompactedError(after_revision, self._compacted)
        if after_revision == 0 or after_revision >= self._revision:
            return self._hub.subscribe(prefix, max(after_revision, self._revision)).watch
        subscription = self._hub.subscribe(prefix, after_revision, backfilling=True)
        task = loop.create_task(self._backfill(subscription, prefix, after_revision, self._revision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return subscription.watch

    async def _backfill(self, subscription: HubSubscription, prefix: str, requested: int, upto: int) -> None:
        """Replay (requested, upto] from the log page by page, at the reader's pace, then go live."""
        watch = subscription.watch
        try:
            while subscription.after < upto:
                await watch.wait_for_room()
                if watch.closed:
                    return
                events = await self._read(
                    functools.partial(
                        _history_sync,
                        prefix=prefix,
                        requested=requested,
                        after=subscription.after,
                        upto=upto,
                        limit=self._history_page,
                    )
                )
                subscription.deliver(events)
                if len(events) < self._history_page:
                    break
            subscription.go_live()
        except StoreError as err:
            watch.fail(err)

    # --- writer thread ----------------------------------------------------------------------

    def _writer_main(self, ready: concurrent.futures.Future[tuple[int, int, int]]) -> None:
        try:
            conn = _connect(self._path, readonly=False)
        except sqlite3.Error as err:
            ready.set_exception(err)
            return
        try:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise sqlite3.OperationalError(f"the file system refused WAL mode (got {mode!r})")
                conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
                conn.executescript(_SCHEMA)
                heads = _read_heads(conn)
            except sqlite3.Error as err:
                ready.set_exception(err)
                return
            ready.set_result(heads)
            self._write_loop(conn, heads[0])
        finally:
            conn.close()

    def _write_loop(self, conn: sqlite3.Connection, revision: int) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch: builtins.list[_CommitRequest] = []
            compactions: builtins.list[_CompactRequest] = []
            while True:  # take everything queued while the previous transaction was fsyncing
                if isinstance(item, _Stop):
                    stop = True
                    break
                if isinstance(item, _CommitRequest):
                    batch.append(item)
                else:
                    compactions.append(item)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                revision = self._apply_batch(conn, batch, revision)
            for request in compactions:
                if not self._compact_step(conn, request):
                    self._queue.put(request)  # more to sweep; commits queued meanwhile go first
        closed = StoreError(f"{self!r} was closed before the request was applied")
        while True:
            try:
                leftover = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(leftover, _CompactRequest):
                self._to_loop(self._finish_compaction, leftover, 0, closed, True)
            elif isinstance(leftover, _CommitRequest):
                self._to_loop(self._finish_batch, _BatchOutcome(revision, [(leftover, closed)]))

    def _apply_batch(
        self, conn: sqlite3.Connection, batch: builtins.list[_CommitRequest], revision: int
    ) -> int:
        """One transaction, one fsync for the whole batch; returns the last revision written."""
        outcome = _BatchOutcome(revision, [])
        try:
            conn.execute("BEGIN IMMEDIATE")
            for request in batch:
                conn.execute("SAVEPOINT request")
                try:
                    results, events = _apply_ops(conn, request.ops, outcome.revision)
                except StoreError as err:  # a failed precondition: undo this request only
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    outcome.results.append((request, err))
                    continue
                conn.execute("RELEASE request")
                outcome.revision = events[-1].revision
                outcome.results.append((request, results))
                outcome.events.extend(events)
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = StoreError(f"writing to the store {self._path} failed: {err}")
            outcome = _BatchOutcome(revision, [(request, failed) for request in batch])
        self._to_loop(self._finish_batch, outcome)
        return outcome.revision

    def _compact_step(self, conn: sqlite3.Connection, request: _CompactRequest) -> bool:
        """Sweep one chunk of revisions; True when the compaction is complete (or failed)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            _, compacted, cursor = _read_heads(conn)
            target = max(compacted, request.revision)
            if target > compacted:
                # Readers honour the new floor before any row disappears (same transaction).
                conn.execute(_SET_META_SQL, ("compact_revision", target))
            high = min(cursor + _COMPACT_CHUNK, target)
            if high > cursor:
                # A row is superseded at s when the row written at s names it as prev_revision.
                conn.execute(
                    "DELETE FROM log WHERE revision IN (SELECT prev_revision FROM log"
                    " WHERE revision > ? AND revision <= ? AND prev_revision > 0)",
                    (cursor, high),
                )
                conn.execute(
                    "DELETE FROM log WHERE revision > ? AND revision <= ? AND deleted = 1", (cursor, high)
                )
                conn.execute(_SET_META_SQL, ("compact_cursor", high))
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = StoreError(f"compacting the store {self._path} failed: {err}")
            self._to_loop(self._finish_compaction, request, 0, failed, True)
            return True
        done = high >= target
        self._to_loop(self._finish_compaction, request, target, None, done)
        return done

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is gone: nobody is left to be told

    # --- loop-side completion ---------------------------------------------------------------

    def _finish_batch(self, outcome: _BatchOutcome) -> None:
        self._revision = max(self._revision, outcome.revision)
        for request, result in outcome.results:
            if request.future.done():  # the caller was cancelled
                continue
            if isinstance(result, StoreError):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)
        if outcome.events:
            self._hub.publish(outcome.events)

    def _finish_compaction(
        self, request: _CompactRequest, compacted: int, error: StoreError | None, done: bool
    ) -> None:
        self._compacted = max(self._compacted, compacted)
        if request.future is None or request.future.done() or not done:
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(None)


# --- helpers run in the writer or a read thread ----------------------------------------------


def _lock_file(path: Path) -> int:
    """Hold an exclusive lock on ``<path>.lock`` for as long as the store is open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"the store {path} is in use by another process; stop it or use another data directory"
        ) from None
    return fd


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; the module would otherwise guess.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _read_heads(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(current revision, compacted revision, compaction cursor) as stored.

    The current revision is max(newest row, compacted): compaction may remove the newest
    row when it is a tombstone, and the counter must never go back.
    """
    newest, compacted, cursor = conn.execute(
        "SELECT (SELECT IFNULL(MAX(revision), 0) FROM log),"
        " (SELECT IFNULL(MAX(value), 0) FROM meta WHERE name = 'compact_revision'),"
        " (SELECT IFNULL(MAX(value), 0) FROM meta WHERE name = 'compact_cursor')"
    ).fetchone()
    return max(int(newest), int(compacted)), int(compacted), int(cursor)


def _apply_ops(
    conn: sqlite3.Connection, ops: Sequence[Op], revision: int
) -> tuple[list[KeyValue], list[StoreEvent]]:
    """Write ``ops`` at revision+1, +2, ...; raise the first failed precondition's StoreError."""
    results: list[KeyValue] = []
    events: list[StoreEvent] = []
    for op in ops:
        key = op.key.encode()
        row = conn.execute(_LATEST_SQL, (key,)).fetchone()
        current = None if row is None or row[3] else KeyValue(op.key, row[1], row[2], row[0])
        revision += 1
        if isinstance(op, Create):
            if current is not None:
                raise KeyExistsError(op.key)
            conn.execute(_INSERT_SQL, (revision, key, op.value, revision, row[0] if row else 0, 0))
            kv = KeyValue(op.key, op.value, revision, revision)
            events.append(StoreEvent("PUT", kv, None))
        else:
            if current is None:
                raise KeyNotFoundError(op.key)
            if op.expected_mod_revision and op.expected_mod_revision != current.mod_revision:
                raise ConflictError(op.key, current)
            if isinstance(op, Update):
                conn.execute(
                    _INSERT_SQL, (revision, key, op.value, current.create_revision, current.mod_revision, 0)
                )
                kv = KeyValue(op.key, op.value, current.create_revision, revision)
                events.append(StoreEvent("PUT", kv, current))
            else:
                conn.execute(
                    _INSERT_SQL,
                    (revision, key, current.value, current.create_revision, current.mod_revision, 1),
                )
                kv = KeyValue(op.key, current.value, current.create_revision, revision)
                events.append(StoreEvent("DELETE", kv, current))
        results.append(kv)
    return results, events


def _get_sync(conn: sqlite3.Connection, *, key: str) -> KeyValue | None:
    row = conn.execute(_LATEST_SQL, (key.encode(),)).fetchone()
    if row is None or row[3]:
        return None
    return KeyValue(key, row[1], row[2], row[0])


def _key_range(column: str, prefix: str, after_key: str = "") -> tuple[str, list[Any]]:
    """SQL conditions (and parameters) for ``column`` under ``prefix`` and greater than ``after_key``."""
    low = prefix.encode()
    conditions, params = [f"{column} >= ?"], [low]
    high = _prefix_end(low)
    if high is not None:
        conditions.append(f"{column} < ?")
        params.append(high)
    if after_key:
        conditions.append(f"{column} > ?")
        params.append(after_key.encode())
    return " AND ".join(conditions), params


def _list_sync(
    conn: sqlite3.Connection, *, prefix: str, revision: int, start_key: str, limit: int
) -> ListResult:
    conn.execute("BEGIN")  # one snapshot for the heads, the page and the count
    head, compacted, _ = _read_heads(conn)
    if revision > head:
        raise FutureRevisionError(revision, head)
    if revision and revision < compacted:
        raise CompactedError(revision, compacted)
    at = revision or head
    # The newest row of each key at or below `at`, unless that row is a tombstone. The page walks
    # the (key, revision) index in key order with a correlated lookup per row, so LIMIT stops
    # the scan early; the count has to see every key, and a GROUP BY is faster for that.
    where, params = _key_range("l.key", prefix, start_key)
    rows = conn.execute(
        "SELECT l.key, l.value, l.create_revision, l.revision FROM log AS l"
        f" WHERE {where} AND l.revision <= ? AND l.deleted = 0 AND l.revision ="
        " (SELECT MAX(n.revision) FROM log AS n WHERE n.key = l.key AND n.revision <= ?)"
        " ORDER BY l.key LIMIT ?",
        [*params, at, at, limit + 1 if limit > 0 else -1],
    ).fetchall()
    items = [KeyValue(bytes(r[0]).decode(), r[1], r[2], r[3]) for r in rows]
    more = 0 < limit < len(items)
    remaining = 0
    if more:
        items = items[:limit]
        where, params = _key_range("key", prefix, items[-1].key)
        remaining = conn.execute(
            "SELECT COUNT(*) FROM (SELECT MAX(revision) AS revision FROM log"
            f" WHERE {where} AND revision <= ? GROUP BY key) AS m"
            " JOIN log AS l ON l.revision = m.revision WHERE l.deleted = 0",
            [*params, at],
        ).fetchone()[0]
    conn.execute("COMMIT")
    return ListResult(items=items, revision=at, more=more, remaining=remaining)


def _history_sync(
    conn: sqlite3.Connection, *, prefix: str, requested: int, after: int, upto: int, limit: int
) -> list[StoreEvent]:
    """Events under ``prefix`` with after < revision <= upto, at most one page, in revision order."""
    conn.execute("BEGIN")
    _, compacted, _ = _read_heads(conn)
    if after < compacted:  # rows this page needs may be gone
        raise CompactedError(requested, compacted)
    where, params = _key_range("l.key", prefix)
    rows = conn.execute(
        "SELECT l.revision, l.key, l.value, l.create_revision, l.prev_revision, l.deleted, p.value"
        " FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision"
        f" WHERE l.revision > ? AND l.revision <= ? AND {where} ORDER BY l.revision LIMIT ?",
        [after, upto, *params, limit],
    ).fetchall()
    conn.execute("COMMIT")
    events: list[StoreEvent] = []
    for revision, key_bytes, value, create_revision, prev_revision, deleted, prev_value in rows:
        key = bytes(key_bytes).decode()
        if deleted:
            prev = KeyValue(key, value, create_revision, prev_revision)
            events.append(StoreEvent("DELETE", KeyValue(key, value, create_revision, revision), prev))
            continue
        kv = KeyValue(key, value, create_revision, revision)
        if create_revision == revision or prev_value is None:
            events.append(StoreEvent("PUT", kv, None))
        else:
            events.append(StoreEvent("PUT", kv, KeyValue(key, prev_value, create_revision, prev_revision)))
    return events
