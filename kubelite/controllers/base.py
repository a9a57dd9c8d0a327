"""What every controller shares: informers shared per resource type, a work queue of keys,
workers that call ``sync(key)``, and an event recorder.

    informers (list + watch, one per resource type, shared) ──handlers──► queue of "ns/name"
                                                                             │
                                                         workers ◄───────────┘
                                                            │ sync(key): read caches, compute, write
                                                            └─ failure ─► rate-limited requeue

A controller only reads through informer caches and only writes through the ApiClient, so it
runs the same in the server process (LocalClient) or anywhere else (HttpClient).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kubelite.api.resources import ResourceType
from kubelite.client.informer import Informer
from kubelite.client.interface import ApiClient
from kubelite.client.workqueue import WorkQueue, run_workers
from kubelite.controllers.events import EventRecorder

Obj = dict[str, Any]


def object_key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace", "")
    return f"{ns}/{md.get('name', '')}" if ns else str(md.get("name", ""))


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


class InformerFactory:
    """One cluster-wide informer per resource type, created on first use and shared."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._informers: dict[ResourceType, Informer] = {}
        self._started = False

    def informer(self, rt: ResourceType) -> Informer:
        """The shared informer for ``rt``; ask for every one you need before ``start``."""
        if self._started:
            raise RuntimeError("informers must be requested before the factory starts")
        found = self._informers.get(rt)
        if found is None:
            found = Informer(self.client, rt)
            self._informers[rt] = found
        return found

    async def start(self) -> None:
        self._started = True
        for informer in self._informers.values():
            await informer.start()
        await asyncio.gather(*(i.wait_synced() for i in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))


class QueueController:
    """A controller driven by a queue of object keys. Subclasses set up handlers and ``sync``."""

    name = "controller"
    workers = 2

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        self.client = client
        self.informers = informers
        self.queue: WorkQueue[str] = WorkQueue()
        self.recorder = EventRecorder(client, self.name)
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(run_workers(self.queue, self.sync, self.workers))

    async def stop(self) -> None:
        self.queue.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
