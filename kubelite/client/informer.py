"""``Informer``: a local cache of one resource kept current by list + watch, with change callbacks.

    start() ─► list ─► replace cache ─► watch from the list's resourceVersion ─► apply events
                 ▲        (diff → add/update/delete)                                   │
                 │                                                                     │
                 ├─ 410 Expired: relist at once (then with backoff) ◄──────────────────┤
                 ├─ any other error or a cut stream: relist after a jittered backoff ◄─┤
                 └─ the server ended the stream (timeout): watch again from the last rv ┘

The cache maps ``(namespace, name)`` to the newest object seen (``""`` is the namespace of
cluster-scoped objects). A relist compares the new list with the cache and calls the handlers
for the differences only, so they see one consistent history even across lost events: an
object that vanished meanwhile is reported deleted with its last known state. BOOKMARK events
only move the resourceVersion the next watch starts from.

Handlers are plain callables run in the informer's task, in event order; keep them cheap
(controllers enqueue a key and return). An exception in one is logged and does not stop the
informer. Objects handed out (handlers, ``get``, ``list``, ``by_index``) are the cache's own:
treat them as read-only and copy before changing.

Time (backoff, resync) runs on an injected :class:`~kubelite.client.workqueue.Clock`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from kubelite.api.errors import StatusError
from kubelite.api.resources import ResourceType
from kubelite.client.interface import ApiClient, Obj, WatchEvent
from kubelite.client.workqueue import Clock, LoopClock, sleep

log = logging.getLogger("kubelite.client.informer")

Key = tuple[str, str]
OnAdd = Callable[[Obj], None]
OnUpdate = Callable[[Obj, Obj], None]
OnDelete = Callable[[Obj], None]
IndexFunc = Callable[[Obj], list[str]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the n-th consecutive retry: ``initial * 2**(n-1)`` capped at ``cap``, jittered
    down by up to half, so informers that lost the server together do not return together."""

    initial: float = 0.8
    cap: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        full = min(self.initial * 2.0 ** min(max(failures - 1, 0), 32), self.cap)
        return full * (0.5 + 0.5 * rng.random())


@dataclass(frozen=True, slots=True)
class _Handler:
    on_add: OnAdd | None
    on_update: OnUpdate | None
    on_delete: OnDelete | None


def object_key(obj: Obj) -> Key:
    md = obj.get("metadata") or {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


class Informer:
    def __init__(
        self,
        client: ApiClient,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resync_seconds: float | None = None,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        watch_timeout: tuple[int, int] = (300, 600),
        rng: random.Random | None = None,
    ) -> None:
        """``watch_timeout``: each watch asks the server to end it after a random number of seconds
        in this range, so connections are renewed and a silently dead one is noticed."""
        self.client = client
        self.rt = rt
        self.namespace = namespace if rt.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self._clock: Clock = clock or LoopClock()
        self._backoff = backoff or Backoff()
        self._watch_timeout = watch_timeout
        self._rng = rng or random.Random()
        self._items: dict[Key, Obj] = {}
        self._handlers: list[_Handler] = []
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[Key]]] = {}
        self._rv = ""
        self._synced = asyncio.Event()
        self._settled = asyncio.Event()  # synced, or stopped before it could sync
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._watch_progressed = False
        self.lists = 0
        """How many lists this informer made (the first one plus every relist)."""

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("this informer is already started")
        self._started = True
        if not self._synced.is_set():
            self._settled.clear()
        what = f"informer {self.rt.group_resource}"
        self._tasks.append(asyncio.create_task(self._run(), name=what))
        if self.resync_seconds:
            self._tasks.append(asyncio.create_task(self._resync(self.resync_seconds), name=what + " resync"))

    async def stop(self) -> None:
        """Cancel the list/watch and resync tasks and wait for them; the cache stays readable."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._settled.set()

    async def wait_synced(self) -> None:
        """Return once the first list is in the cache (and its adds were delivered)."""
        if not self._started:
            raise RuntimeError("start() the informer before waiting for it to sync")
        await self._settled.wait()
        if not self._synced.is_set():
            raise RuntimeError(f"the {self.rt.group_resource} informer was stopped before its first list")

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str:
        """The revision the cache reflects (where the next watch starts)."""
        return self._rv

    # --- reads and handlers ---------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self._items.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> builtins.list[Obj]:
        if namespace is None:
            return list(self._items.values())
        return [obj for (ns, _), obj in self._items.items() if ns == namespace]

    def add_handler(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> None:
        """Register callbacks; objects already in the cache are delivered to ``on_add`` at once."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in list(self._items.values()):
                self._call(on_add, obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index objects by ``fn(obj)`` (any number of values each); look them up with ``by_index``."""
        if name in self._indexers:
            raise ValueError(f"the informer already has an index named {name!r}")
        self._indexers[name] = fn
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index(name, key, obj)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        index = self._indices.get(name)
        if index is None:
            raise KeyError(f"the informer has no index named {name!r}; add it with add_index")
        return [self._items[key] for key in sorted(index.get(value, ()))]

    # --- the cache ------------------------------------------------------------------------------

    def _index(self, name: str, key: Key, obj: Obj) -> None:
        for value in self._indexers[name](obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: Key, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _put(self, key: Key, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index(name, key, obj)
        return old

    def _remove(self, key: Key) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("a %s informer handler failed", self.rt.group_resource)

    def _added(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _updated(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _deleted(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _replace(self, items: builtins.list[Obj]) -> None:
        """Make the cache equal ``items``, telling the handlers what changed."""
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self._items if k not in fresh]:
            gone = self._remove(key)
            if gone is not None:
                self._deleted(gone)
        for key, obj in fresh.items():
            old = self._put(key, obj)
            if old is None:
                self._added(obj)
            elif _rv(old) != _rv(obj):
                self._updated(old, obj)

    def _apply(self, event: WatchEvent) -> None:
        if event.type != "BOOKMARK":
            obj = event.object
            key = object_key(obj)
            if event.type == "DELETED":
                if self._remove(key) is not None:
                    self._deleted(obj)
            else:
                old = self._put(key, obj)
                if old is None:
                    self._added(obj)
                else:
                    self._updated(old, obj)
        if event.resource_version:
            self._rv = event.resource_version

    # --- list and watch -------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        need_list = True
        try:
            while True:
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    failures = 0  # the server ended the stream: watch again from where it stopped
                    continue
                except StatusError as e:
                    expired = e.code == 410
                    if expired:
                        log.info("%s watch expired (%s); relisting", self.rt.group_resource, e)
                    else:
                        log.warning("%s list/watch failed: %s; relisting", self.rt.group_resource, e)
                except Exception as e:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # stop() was called and a client turned the cancellation into an error
                    expired = False
                    log.warning(
                        "%s list/watch failed: %s; relisting", self.rt.group_resource, e or type(e).__name__
                    )
                need_list = True
                failures = 1 if self._watch_progressed else failures + 1
                self._watch_progressed = False
                if not (expired and failures == 1):
                    await sleep(self._clock, self._backoff.delay(failures, self._rng))
        finally:
            self._settled.set()

    async def _list(self) -> None:
        result = await self.client.list(
            self.rt, self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        self.lists += 1
        self._replace(result.items)
        self._rv = result.resource_version
        if not self._synced.is_set():
            self._synced.set()
            self._settled.set()

    async def _watch(self) -> None:
        low, high = self._watch_timeout
        stream = self.client.watch(
            self.rt,
            self.namespace,
            resource_version=self._rv,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=self._rng.randint(low, high),
        )
        try:
            async for event in stream:
                self._watch_progressed = True
                self._apply(event)
        finally:
            await stream.aclose()

    async def _resync(self, seconds: float) -> None:
        """Every ``seconds``, ``on_update(obj, obj)`` for every cached object (client-go's resync)."""
        await self._synced.wait()
        while True:
            await sleep(self._clock, seconds)
            for obj in list(self._items.values()):
                self._updated(obj, obj)


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
