"""The ReplicaSet controller: keeps ``spec.replicas`` pods running for every ReplicaSet.

    ReplicaSet ─────────────────────────────┐
    Pod ── its controller (ownerReference) ─┼─► queue of ReplicaSets ─► sync: claim, create / delete, status
           or, for an orphan, every ───────┘        (replicaset_model decides; this module writes)
           ReplicaSet whose selector matches

What to do is ``replicaset_model``'s; this module maps informer events to ReplicaSet keys and
applies the plan: adoption and release patches, pod creations in slow-start batches (1, 2, 4 ...,
stopping at the first failure, as Kubernetes does so a quota error costs one request, not 500),
deletions, the status through the status subresource when it changed, and Events.

``Expectations`` remembers what a sync asked for until the informer has seen it: a sync that
runs before the new pods reach the cache must not create them again. The DaemonSet controller
uses it too; it and the other shared pieces are in ``podcontrol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubelite.api.meta import format_time, now
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.controllers.podcontrol import (
    PODS,
    REPLICASETS,
    ChildEvents,
    Expectations,
    PodManagementError,
    adopt,
    create_pods,
    delete_pods,
    namespace_of,
    release,
    retry_if_stale,
    still_adoptable,
    uid_of,
    write_status,
)
from kubelite.controllers.replicaset_model import replicaset_diff, replicaset_status
from kubelite.controllers.workloads_model import (
    controller_uid,
)

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerOptions

Obj = dict[str, Any]


class ReplicaSetController(QueueController):
    name = "replicaset-controller"
    workers = 4

    def __init__(
        self, client: ApiClient, informers: InformerFactory, options: ControllerOptions | None = None
    ) -> None:
        super().__init__(client, informers)
        self.replicasets = informers.informer(REPLICASETS)
        self.pods = informers.informer(PODS)
        self.expectations = Expectations()
        self.replicasets.add_handler(self.enqueue, lambda _old, new: self.enqueue(new), self._rs_deleted)
        self.pod_events = ChildEvents(self.replicasets, "ReplicaSet", self.queue, self.expectations)
        self.pods.add_handler(self.pod_events.added, self.pod_events.updated, self.pod_events.deleted)

    # --- events → keys ---

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(object_key(rs))
        self.enqueue(rs)

    # --- sync ---

    async def sync(self, key: str) -> None:
        await retry_if_stale(self.queue.add_after, key, self._sync(key))

    async def _sync(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.replicasets.get(ns, name)
        if rs is None:
            self.expectations.forget(key)
            return
        pods = self.pods.list(ns)
        plan = replicaset_diff(rs, pods, related_pods=self._related_pods(rs, pods))
        if plan.adopt and await still_adoptable(self.client, REPLICASETS, rs):
            await adopt(self.client, rs, "ReplicaSet", pods, plan.adopt)
        await release(self.client, rs, "ReplicaSet", pods, plan.release)
        failure: str | None = None
        if self.expectations.satisfied(key) and (plan.create or plan.delete):
            by_name = {pod["metadata"]["name"]: pod for pod in pods}
            failure = await self._manage(key, rs, plan.create, [by_name[n] for n in plan.delete])
        status = with_replica_failure(replicaset_status(rs, pods), failure, bool(plan.create))
        await write_status(self.client, REPLICASETS, rs, status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
        if failure is not None:
            raise PodManagementError(f"ReplicaSet {key}: {failure}")  # the queue retries with backoff

    async def _manage(self, key: str, rs: Obj, create: tuple[Obj, ...], delete: list[Obj]) -> str | None:
        """Create or delete pods (one of the two); a failure's message, or None."""
        self.expectations.expect(key, creates=len(create), deletes=[uid_of(p) for p in delete])
        if create:
            return await create_pods(self.client, self.recorder, self.expectations, key, rs, list(create))
        return await delete_pods(self.client, self.recorder, self.expectations, key, rs, delete)

    def _related_pods(self, rs: Obj, pods: list[Obj]) -> list[Obj] | None:
        """The pods of the ReplicaSet's siblings (same Deployment), to spread a scale-down."""
        owner = controller_uid(rs)
        if owner is None:
            return None
        siblings = {uid_of(r) for r in self.replicasets.list(namespace_of(rs)) if controller_uid(r) == owner}
        return [p for p in pods if controller_uid(p) in siblings]


# --- what the workload controllers share ----------------------------------------------------------


def with_replica_failure(status: Obj, failure: str | None, creating: bool) -> Obj:
    """The ReplicaFailure condition: set (FailedCreate / FailedDelete) while managing pods fails,
    removed once it succeeds, as the ReplicaSet controller's calculateStatus keeps it."""
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    current = next((c for c in status.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
    if failure is not None:
        if current is not None:
            return status
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": format_time(now()),
                "reason": "FailedCreate" if creating else "FailedDelete",
                "message": failure,
            }
        )
    elif current is None:
        return status
    result = dict(status)
    if conditions:
        result["conditions"] = conditions
    else:
        result.pop("conditions", None)
    return result
