"""PodManager: turns the node's pods (from an informer) into PodWorkers, and writes their status.

Status writes are coalesced: a worker only marks itself dirty; one writer task sends at most one
PATCH per pod per round, and skips a write when the status did not change, so a pod that starts
five containers at once costs one or two writes, not ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from kubelite.agent.pods import PODS, AgentContext, PodWorker
from kubelite.agent.sandbox import Sandbox, stop_pause
from kubelite.api.errors import StatusError
from kubelite.client.informer import Informer

__all__ = ["PodManager"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_TERMINAL = ("Succeeded", "Failed")


def _comparable(status: Obj) -> str:
    """The status without heartbeat-like timestamps, to tell a real change from a rewrite."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("lastProbeTime",)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(status), sort_keys=True)


class PodManager:
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.workers: dict[str, PodWorker] = {}
        self.informer = Informer(ctx.client, PODS, None, field_selector=f"spec.nodeName={ctx.node_name}")
        self._dirty: dict[str, PodWorker] = {}
        self._wake = asyncio.Event()
        self._written: dict[str, str] = {}
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- start / stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.cleanup_leftovers()
        self._writer = asyncio.create_task(self._write_loop(), name="pod-status-writer")
        self.informer.add_handler(self._added, self._updated, self._deleted)
        await self.informer.start()
        await self.informer.wait_synced()

    async def stop(self, *, kill_pods: bool, grace: float = 2.0) -> None:
        await self.informer.stop()
        if kill_pods:
            await asyncio.gather(
                *(w.terminate(grace, final_delete=False) for w in list(self.workers.values())),
                return_exceptions=True,
            )
        for task in list(self._tasks):
            task.cancel()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def cleanup_leftovers(self) -> None:
        """Remove sandboxes an earlier run of this agent left (pause processes, CNI, namespaces)."""
        pods_dir = self.ctx.pods_dir
        pods_dir.mkdir(parents=True, exist_ok=True)
        for directory in sorted(pods_dir.iterdir()):
            sandbox = Sandbox.load(directory)
            if sandbox is not None:
                log.info(
                    "removing the sandbox of %s/%s left by an earlier run", sandbox.namespace, sandbox.name
                )
                await stop_pause(sandbox.pause_pid)
                if sandbox.netns:
                    with contextlib.suppress(Exception):
                        await self.ctx.network.teardown(sandbox, {}, [])
            await asyncio.to_thread(_rmtree, directory)
        prefix = self.ctx.netns_prefix + "-"
        for name in await self.ctx.ip.list_netns():
            if name.startswith(prefix):
                with contextlib.suppress(Exception):
                    await self.ctx.ip.delete_netns(name)

    # --- informer events ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _added(self, pod: Obj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        if uid in self.workers:
            self._updated(pod, pod)
            return
        if (pod.get("status") or {}).get("phase") in _TERMINAL:
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                self._spawn(self._final_delete(pod))
            return
        worker = PodWorker(self.ctx, pod, self._mark_dirty)
        self.workers[uid] = worker
        worker.start()
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._updated(pod, pod)

    def _updated(self, _old: Obj, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        worker = self.workers.get(str(meta.get("uid", "")))
        if worker is None:
            self._added(pod)
            return
        worker.update(pod)
        if meta.get("deletionTimestamp") and not worker.terminating.is_set():
            grace = meta.get("deletionGracePeriodSeconds")
            if not isinstance(grace, int):
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            self._spawn(self._terminate(worker, float(grace), final_delete=True))

    def _deleted(self, pod: Obj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        worker = self.workers.get(uid)
        if worker is not None:
            self._spawn(self._terminate(worker, 1.0, final_delete=False, forget=True))

    async def _terminate(
        self, worker: PodWorker, grace: float, *, final_delete: bool, forget: bool = False
    ) -> None:
        try:
            await worker.terminate(grace, final_delete=final_delete)
            if forget or final_delete:
                self.workers.pop(worker.uid, None)
                self._dirty.pop(worker.uid, None)
                self._written.pop(worker.uid, None)
                await worker.forget()
        except Exception:
            log.exception("pod %s/%s: termination failed", worker.namespace, worker.name)

    async def _final_delete(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        with contextlib.suppress(StatusError):
            await self.ctx.client.delete(
                PODS,
                meta.get("namespace"),
                str(meta.get("name")),
                grace_period_seconds=0,
                precondition_uid=str(meta.get("uid", "")),
            )

    # --- status ---------------------------------------------------------------------------------

    def _mark_dirty(self, worker: PodWorker) -> None:
        self._dirty[worker.uid] = worker
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.01)  # let a burst of changes of one pod land in one write
            batch, self._dirty = self._dirty, {}
            await asyncio.gather(*(self._write(w) for w in batch.values()), return_exceptions=True)

    async def _write(self, worker: PodWorker) -> None:
        if worker.uid not in self.workers:
            return
        status = worker.status()
        key = _comparable(status)
        if self._written.get(worker.uid) == key:
            return
        try:
            updated = await self.ctx.client.patch(
                PODS, worker.namespace, worker.name, {"status": status}, subresource="status"
            )
            self._written[worker.uid] = key
            if str((updated.get("metadata") or {}).get("uid")) == worker.uid:
                worker.update(updated)
        except StatusError as exc:
            if exc.code != 404:
                log.warning("pod %s/%s: status write failed: %s", worker.namespace, worker.name, exc)
                self._mark_dirty(worker)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
