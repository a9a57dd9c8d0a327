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

from kubelite.api.errors import StatusError
from kubelite.apiserver.objects import decode
from kubelite.apiserver.rest import NAMESPACES_KEY_PREFIX, DeleteOptions, Rest

log = logging.getLogger("kubelite.namespaces")


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
        while True:
            name = await self._queue.get()
            try:
                await self._finalize(name)
            except Exception:
                log.exception("emptying namespace %s failed; retrying", name)
                await asyncio.sleep(1)
                self._pending.discard(name)
                self.enqueue(name)
                continue
            self._pending.discard(name)

    async def _finalize(self, name: str) -> None:
        rest = self._rest
        namespaced = [rt for rt in rest.strategies if rt.namespaced]
        while True:
            remaining = 0
            for rt in namespaced:
                page = await rest.objects.list_page(rt, name)
                remaining += len(page.items)
                for obj in page.items:
                    if obj["metadata"].get("deletionTimestamp"):
                        continue
                    with contextlib.suppress(StatusError):
                        await rest.delete(
                            rt, name, obj["metadata"]["name"], DeleteOptions(propagation_policy="Background")
                        )
            if remaining == 0:
                break
            await asyncio.sleep(self._poll)
        await rest.finalize_namespace(name, [])
