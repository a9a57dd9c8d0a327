"""The DaemonSet controller: one pod on every node that should run one.

    DaemonSet ───────────────────────────────┐
    Pod ── its controller (ownerReference) ──┼─► queue of DaemonSets ─► sync: claim, create / delete,
           or, for an orphan, every ─────────┤       one rolling-update step, status
           DaemonSet whose selector matches  │     (daemonset_model decides; this module writes)
    Node ── labels, taints, readiness ───────┘ (every DaemonSet: which nodes qualify may change)

Pods are created without ``spec.nodeName`` but pinned by node affinity to their node, so the
scheduler binds them (Kubernetes since 1.12). Creations and deletions go through the same
``Expectations`` and slow-start batches as the ReplicaSet controller's.

Not done yet: ControllerRevisions (so ``kubectl rollout history|undo daemonset`` has nothing to
show) and the per-node backoff before replacing a pod that keeps failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.controllers.daemonset_model import daemonset_plan
from kubelite.controllers.podcontrol import (
    PODS,
    ChildEvents,
    Expectations,
    PodManagementError,
    adopt,
    create_pods,
    delete_pods,
    release,
    retry_if_stale,
    still_adoptable,
    uid_of,
    write_status,
)

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerOptions

Obj = dict[str, Any]
DAEMONSETS = INDEX.by_kind[("apps/v1", "DaemonSet")]
NODES = INDEX.by_kind[("v1", "Node")]


class DaemonSetController(QueueController):
    name = "daemonset-controller"
    workers = 2

    def __init__(
        self, client: ApiClient, informers: InformerFactory, options: ControllerOptions | None = None
    ) -> None:
        super().__init__(client, informers)
        self.daemonsets = informers.informer(DAEMONSETS)
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.expectations = Expectations()
        self.daemonsets.add_handler(self.enqueue, lambda _old, new: self.enqueue(new), self._ds_deleted)
        self.pod_events = ChildEvents(self.daemonsets, "DaemonSet", self.queue, self.expectations)
        self.pods.add_handler(self.pod_events.added, self.pod_events.updated, self.pod_events.deleted)
        self.nodes.add_handler(self._node_changed, self._node_updated, self._node_changed)

    # --- events → keys ---

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.forget(object_key(ds))
        self.enqueue(ds)

    def _node_changed(self, _node: Obj) -> None:
        for ds in self.daemonsets.list():
            self.enqueue(ds)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _node_view(old) != _node_view(new):
            self._node_changed(new)

    # --- sync ---

    async def sync(self, key: str) -> None:
        await retry_if_stale(self.queue.add_after, key, self._sync(key))

    async def _sync(self, key: str) -> None:
        ns, name = split_key(key)
        ds = self.daemonsets.get(ns, name)
        if ds is None:
            self.expectations.forget(key)
            return
        pods = self.pods.list(ns)
        plan = daemonset_plan(ds, self.nodes.list(), pods)
        if plan.adopt and await still_adoptable(self.client, DAEMONSETS, ds):
            await adopt(self.client, ds, "DaemonSet", pods, plan.adopt)
        await release(self.client, ds, "DaemonSet", pods, plan.release)
        failures: list[str | None] = []
        if self.expectations.satisfied(key) and (plan.create or plan.delete):
            by_name = {pod["metadata"]["name"]: pod for pod in pods}
            doomed = [by_name[n] for n in plan.delete if n in by_name]
            self.expectations.expect(key, creates=len(plan.create), deletes=[uid_of(p) for p in doomed])
            # Deletions first: a rolling update without surge frees the node before the new pod.
            failures = [
                await delete_pods(self.client, self.recorder, self.expectations, key, ds, doomed),
                await create_pods(self.client, self.recorder, self.expectations, key, ds, list(plan.create)),
            ]
        await write_status(self.client, DAEMONSETS, ds, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
        if any(failures):
            raise PodManagementError(f"DaemonSet {key}: {'; '.join(f for f in failures if f)}")


def _node_view(node: Obj) -> Any:
    """What of a Node decides whether a daemon pod belongs there (not heartbeats)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    ready = [
        c.get("status")
        for c in (node.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready"
    ]
    return (meta.get("labels"), spec.get("taints"), spec.get("unschedulable"), ready)
