"""Empties a Terminating namespace and then removes it.

Kubernetes runs this as the namespace controller; kubelite keeps it beside the API server
because deleting a namespace must work before any controller runs. It deletes every
namespaced object in the namespace, waits until they are gone (pods may be held by a grace
period until their node agent confirms), and then drops the ``kubernetes`` finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import ResourceType
from kubelite.apiserver.objects import decode
from kubelite.apiserver.rest import NAMESPACES_KEY_PREFIX, DeleteOptions, Rest

log = logging.getLogger("kubelite.namespaces")
GC_FINALIZERS = frozenset({"foregroundDeletion", "orphan"})
Obj = dict[str, Any]


class NamespaceFinalizer:
    def __init__(self, rest: Rest, poll_interval: float = 0.2) -> None:
        self._rest = rest
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._poll = poll_interval
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, name: str) -> None:
        if name not in self._pending:
            self._pending.add(name)
            self._queue.put_nowait(name)

    async def _one(self, name: str) -> None:
        try:
            await self._finalize(name)
        except Exception:
            log.exception("emptying namespace %s failed; retrying", name)
            await asyncio.sleep(1)
            self._pending.discard(name)
            self.enqueue(name)
            return
        self._pending.discard(name)

    async def start(self) -> None:
        # Namespaces left Terminating by an earlier run are picked up again.
        res = await self._rest.storage.list(NAMESPACES_KEY_PREFIX)
        for kv in res.items:
            if decode(kv)["metadata"].get("deletionTimestamp"):
                self.enqueue(kv.key[len(NAMESPACES_KEY_PREFIX) :])
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # One task per namespace: a namespace waiting on a pod's grace period must not hold up others.
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                name = await self._queue.get()
                task = asyncio.create_task(self._one(name))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _finalize(self, name: str) -> None:
        rest = self._rest
        # Older served versions (v1beta1 Ingress) share their kind's storage: list each kind once.
        namespaced = [rt for rt in rest.strategies if rt.namespaced and not rt.stored_as]
        while True:
            remaining = 0
            for rt in namespaced:
                page = await rest.objects.list_page(rt, name)
                remaining += len(page.items)
                for obj in page.items:
                    if obj["metadata"].get("deletionTimestamp"):
                        await self._drop_deletion_finalizers(rt, name, obj)
                        continue
                    with contextlib.suppress(StatusError):
                        await rest.delete(
                            rt, name, obj["metadata"]["name"], DeleteOptions(propagation_policy="Background")
                        )
            if remaining == 0:
                break
            await asyncio.sleep(self._poll)
        await rest.finalize_namespace(name, [])

    async def _drop_deletion_finalizers(self, rt: ResourceType, namespace: str, obj: Obj) -> None:
        """foregroundDeletion / orphan wait for the garbage collector to handle dependents; in a
        namespace being emptied every dependent goes too, so nothing is left to wait for."""
        held = obj["metadata"].get("finalizers") or []
        if not held or not set(held) <= GC_FINALIZERS:
            return

        def drop(current: Obj) -> Obj:
            left = [f for f in current["metadata"].get("finalizers") or [] if f not in GC_FINALIZERS]
            current["metadata"]["finalizers"] = left
            return current

        with contextlib.suppress(StatusError):
            await self._rest.patch(rt, namespace, obj["metadata"]["name"], drop)
