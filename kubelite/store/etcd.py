"""EtcdStorage: the Storage protocol on a real etcd (3.4+) through its JSON gRPC gateway.

    get/list        POST /v3/kv/range         (keys and values base64, int64s as strings)
    commit          POST /v3/kv/txn           compare mod_revision / create_revision per op;
                                              the failure branch reads every key, atomically
    compact         POST /v3/kv/compaction    physical=true: returns once the history is gone
    watch           POST /v3/watch            one streaming response per watch, newline-delimited JSON

Keys are stored as ``prefix + key``; etcd revisions are ours 1:1 (the revision is global to
the etcd cluster, so it also advances for writes outside the prefix). Only aiohttp is needed.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from kubelite.store.base import DEFAULT_WATCH_QUEUE_LIMIT, QueueWatch, StorageBase, prefix_end, validate_ops
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

_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"


class EtcdRequestError(StoreError):
    """etcd answered a request with an error (gRPC status ``code``, etcd's ``message``)."""

    def __init__(self, path: str, code: int, message: str) -> None:
        super().__init__(f"etcd refused {path}: {message} (gRPC code {code})")
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EtcdStorage(StorageBase):
    """Storage on an etcd cluster; ``endpoints`` are client URLs such as ``http://127.0.0.1:2379``.

    Requests go to the first endpoint that accepts a connection; a request whose connection
    broke after it was sent is not retried (a commit might have been applied), it raises
    StoreError. One commit is one etcd txn: all its keys share one revision, and etcd caps a
    txn at 128 ops by default (--max-txn-ops).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = "/kubelite",
        *,
        request_timeout: float = 30.0,
        watch_queue_limit: int = DEFAULT_WATCH_QUEUE_LIMIT,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStorage needs at least one endpoint URL, such as http://127.0.0.1:2379")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._preferred = 0
        # Namespacing: "/kubelite" + "/registry/pods/a" -> "/kubelite/registry/pods/a". Namespaces of
        # two clusters sharing one etcd must not be string prefixes of each other.
        self._ns = prefix.rstrip("/").encode()
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._watch_queue_limit = watch_queue_limit
        self._session: aiohttp.ClientSession | None = None
        self._watch_tasks: set[asyncio.Task[None]] = set()
        self._watches: set[QueueWatch] = set()
        self._compacted_floor = 0
        """A lower bound on etcd's compacted revision (it only grows), to shorten the search."""
        self._closed = False

    def __repr__(self) -> str:
        return f"EtcdStorage({self._endpoints!r}, prefix={self._ns.decode()!r})"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and check that etcd answers; StoreError with the endpoints otherwise."""
        if self._session is not None:
            raise StoreError(f"{self!r} was already started")
        # limit=0: every watch holds one connection for its lifetime; unary calls must not queue.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            await self.current_revision()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every watch (WatchClosedError) and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for watch in builtins.list(self._watches):
            watch.fail(WatchClosedError("the store was closed"))
        for task in self._watch_tasks:
            task.cancel()
        await asyncio.gather(*self._watch_tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- transport --------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._session is None:
            raise StoreError(f"{self!r} was not started; call start() first")
        return self._session

    async def _open(
        self, path: str, body: dict[str, Any], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """POST to the first endpoint that accepts a connection (only connect failures fail over)."""
        session = self._http()
        data = orjson.dumps(body)
        errors = []
        for attempt in range(len(self._endpoints)):
            index = (self._preferred + attempt) % len(self._endpoints)
            url = self._endpoints[index] + path
            try:
                response = await session.post(
                    url, data=data, headers={"Content-Type": "application/json"}, timeout=client_timeout
                )
            except aiohttp.ClientConnectorError as err:
                errors.append(f"{self._endpoints[index]}: {err.os_error}")
                continue
            except (aiohttp.ClientError, TimeoutError) as err:
                raise StoreError(f"etcd request {url} failed, its outcome is unknown: {err!r}") from err
            self._preferred = index
            return response
        raise StoreError(f"cannot reach etcd ({'; '.join(errors)}); is it running?")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._open(path, body, self._request_timeout)
        try:
            payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise StoreError(f"etcd request {response.url} failed, its outcome is unknown: {err!r}") from err
        finally:
            response.release()
        try:
            answer: dict[str, Any] = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise StoreError(f"etcd answered {path} with HTTP {response.status}: {payload[:200]!r}") from None
        if "error" in answer or response.status != 200:
            raise EtcdRequestError(path, int(answer.get("code", 2)), str(answer.get("message", answer)))
        return answer

    # --- conversions ------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return _b64(self._ns + key.encode())

    def _kv(self, raw: dict[str, Any]) -> KeyValue:
        return KeyValue(
            key=base64.b64decode(raw["key"])[len(self._ns) :].decode(),
            value=base64.b64decode(raw.get("value", "")),
            create_revision=int(raw.get("create_revision", 0)),
            mod_revision=int(raw.get("mod_revision", 0)),
        )

    def _event(self, raw: dict[str, Any]) -> StoreEvent:
        prev = self._kv(raw["prev_kv"]) if "prev_kv" in raw else None
        if raw.get("type") != "DELETE":
            return StoreEvent("PUT", self._kv(raw["kv"]), prev)
        deleted = self._kv(raw["kv"])  # etcd's tombstone: key and revision only
        if prev is None:  # its previous value was compacted away before etcd could read it
            return StoreEvent("DELETE", deleted, None)
        return StoreEvent(
            "DELETE", KeyValue(deleted.key, prev.value, prev.create_revision, deleted.mod_revision), prev
        )

    def _range(self, prefix: str, start_key: str = "") -> tuple[bytes, bytes]:
        low = self._ns + prefix.encode()
        high = prefix_end(low)
        if not low:  # an empty namespace and prefix: every key (etcd spells "from the start" as \0)
            low = b"\0"
        if start_key:
            low = max(low, self._ns + start_key.encode() + b"\0")  # the smallest key after start_key
        return low, (b"\0" if high is None else high)

    # --- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        answer = await self._post("/v3/kv/range", {"key": _b64(self._ns or b"\0"), "count_only": True})
        return int(answer["header"]["revision"])

    async def compacted_revision(self) -> int:
        """etcd does not report it, so find the smallest revision a range still accepts.

        Binary search, O(log n) small requests. Compaction at revision 1 is reported as 0 (the
        two cannot be told apart, and no history is missing either way).
        """
        known = self._compacted_floor
        low, high = max(known, 1), await self.current_revision()
        if low < high and await self._readable_at(low):
            high = low  # the usual case: nobody compacted since we last looked
        while low < high:
            middle = (low + high) // 2
            if await self._readable_at(middle):
                high = middle
            else:
                low = middle + 1
        if low == 1:
            return known
        self._compacted_floor = low
        return low

    async def _readable_at(self, revision: int) -> bool:
        try:
            await self._post(
                "/v3/kv/range", {"key": _b64(self._ns or b"\0"), "revision": revision, "count_only": True}
            )
        except EtcdRequestError as err:
            if _COMPACTED in err.message:
                return False
            raise
        return True

    async def get(self, key: str) -> KeyValue | None:
        answer = await self._post("/v3/kv/range", {"key": self._key(key)})
        kvs = answer.get("kvs", [])
        return self._kv(kvs[0]) if kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """See Storage.list; etcd's rule: a revision below the compacted one raises CompactedError."""
        low, high = self._range(prefix, start_key)
        body: dict[str, Any] = {"key": _b64(low), "range_end": _b64(high)}
        if revision:
            body["revision"] = revision
        if limit > 0:
            body["limit"] = limit
        try:
            answer = await self._post("/v3/kv/range", body)
        except EtcdRequestError as err:
            raise await self._translate(err, revision) from None
        items = [self._kv(raw) for raw in answer.get("kvs", [])]
        more = bool(answer.get("more", False))
        remaining = int(answer.get("count", 0)) - len(items) if more else 0
        return ListResult(items, revision or int(answer["header"]["revision"]), more, remaining)

    async def _translate(self, err: EtcdRequestError, revision: int) -> StoreError:
        if _COMPACTED in err.message:
            return CompactedError(revision, await self.compacted_revision())
        if _FUTURE in err.message:
            return FutureRevisionError(revision, await self.current_revision())
        return err

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, ops: Sequence[Op]) -> builtins.list[KeyValue]:
        """One txn: compare every precondition; on failure the txn reads every key at the same
        revision, so the error names the first op that failed without a second round trip."""
        ops = builtins.list(ops)
        validate_ops(ops)
        self._http()
        if not ops:
            return []
        compare: builtins.list[dict[str, Any]] = []
        success: builtins.list[dict[str, Any]] = []
        for op in ops:
            key = self._key(op.key)
            if isinstance(op, Create):
                compare.append({"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0})
                success.append({"request_put": {"key": key, "value": _b64(op.value)}})
                continue
            if op.expected_mod_revision:
                compare.append(
                    {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": op.expected_mod_revision}
                )
            else:
                compare.append({"key": key, "target": "CREATE", "result": "NOT_EQUAL", "create_revision": 0})
            if isinstance(op, Update):
                success.append({"request_put": {"key": key, "value": _b64(op.value), "prev_kv": True}})
            else:
                success.append({"request_delete_range": {"key": key, "prev_kv": True}})
        failure = [{"request_range": {"key": self._key(op.key)}} for op in ops]
        answer = await self._post("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure})
        responses = answer.get("responses", [])
        if not answer.get("succeeded", False):
            raise self._first_failure(ops, [r["response_range"].get("kvs", []) for r in responses])
        revision = int(answer["header"]["revision"])
        results = []
        for op, response in zip(ops, responses, strict=True):
            if isinstance(op, Create):
                results.append(KeyValue(op.key, op.value, revision, revision))
            elif isinstance(op, Update):
                prev = self._kv(response["response_put"]["prev_kv"])
                results.append(KeyValue(op.key, op.value, prev.create_revision, revision))
            else:
                prev = self._kv(response["response_delete_range"]["prev_kvs"][0])
                results.append(KeyValue(op.key, prev.value, prev.create_revision, revision))
        return results

    def _first_failure(
        self, ops: Sequence[Op], found: builtins.list[builtins.list[dict[str, Any]]]
    ) -> StoreError:
        for op, kvs in zip(ops, found, strict=True):
            current = self._kv(kvs[0]) if kvs else None
            if isinstance(op, Create):
                if current is not None:
                    return KeyExistsError(op.key)
            elif current is None:
                return KeyNotFoundError(op.key)
            elif op.expected_mod_revision and op.expected_mod_revision != current.mod_revision:
                return ConflictError(op.key, current)
        return StoreError(
            "etcd rejected the commit but every precondition holds; this is a bug, please report it"
        )

    async def compact(self, revision: int) -> None:
        """Compact etcd's whole keyspace (etcd cannot compact one prefix). Already compacted: no-op."""
        try:
            await self._post("/v3/kv/compaction", {"revision": revision, "physical": True})
        except EtcdRequestError as err:
            if _COMPACTED in err.message:
                return
            raise await self._translate(err, revision) from None
        self._compacted_floor = max(self._compacted_floor, revision)

    # --- watch ------------------------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int = 0) -> Watch:
        """See Storage.watch. Returns once etcd has registered the watch, so nothing written
        after this returns can be missed; ``after_revision`` below the compacted revision
        raises CompactedError (checked with a range at that revision: exactly etcd's rule).
        """
        if after_revision and not await self._readable_at_or_future(after_revision):
            raise CompactedError(after_revision, await self.compacted_revision())
        low, high = self._range(prefix)
        request: dict[str, Any] = {"key": _b64(low), "range_end": _b64(high), "prev_kv": True}
        if after_revision:
            request["start_revision"] = after_revision + 1
        stream_timeout = aiohttp.ClientTimeout(total=None, connect=self._request_timeout.total)
        response = await self._open("/v3/watch", {"create_request": request}, stream_timeout)
        lines = _JsonLines(response)
        try:
            first = await lines.next()
        except BaseException:
            response.close()
            raise
        if first is None or not first.get("result", {}).get("created", False):
            response.close()
            raise StoreError(f"etcd did not create the watch on {prefix!r}: {first!r}")
        watch = QueueWatch(max_pending=self._watch_queue_limit)
        task = asyncio.get_running_loop().create_task(self._pump(lines, watch, after_revision))
        self._watches.add(watch)
        self._watch_tasks.add(task)
        task.add_done_callback(self._watch_tasks.discard)
        # Not a `finally` in _pump: a task cancelled before its first step never runs its body.
        task.add_done_callback(lambda _: lines.close())
        watch.on_close(task.cancel)
        watch.on_close(lambda: self._watches.discard(watch))
        return watch

    async def _readable_at_or_future(self, revision: int) -> bool:
        try:
            return await self._readable_at(revision)
        except EtcdRequestError as err:
            if _FUTURE in err.message:
                return True  # etcd waits for a future start revision, and so do we
            raise

    async def _pump(self, lines: _JsonLines, watch: QueueWatch, after_revision: int) -> None:
        """Move events from the HTTP stream into the watch until either side ends."""
        try:
            while not watch.closed:
                message = await lines.next()
                if message is None:
                    watch.fail(WatchClosedError("etcd closed the watch stream"))
                    return
                if "error" in message:
                    watch.fail(WatchClosedError(f"etcd ended the watch: {message['error']}"))
                    return
                result = message.get("result", {})
                compacted = int(result.get("compact_revision", 0))
                if compacted:
                    watch.fail(CompactedError(after_revision, compacted))
                    return
                if result.get("canceled", False):
                    watch.fail(
                        WatchClosedError(f"etcd canceled the watch: {result.get('cancel_reason', '')}")
                    )
                    return
                events = [self._event(raw) for raw in result.get("events", [])]
                watch.push(events)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            watch.fail(WatchClosedError(f"the watch stream from etcd broke: {err!r}"))


class _JsonLines:
    """Newline-delimited JSON from a streaming response, with no limit on a line's length
    (aiohttp's readline() refuses lines over 128 KiB, and one watch message can be larger)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._buffer = bytearray()

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None at the end of the stream."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if line.strip():
                    message: dict[str, Any] = orjson.loads(line)
                    return message
                continue
            chunk = await self._response.content.readany()
            if not chunk:
                return None
            self._buffer += chunk

    def close(self) -> None:
        self._response.close()
