"""The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.

    Deployment ─────────────────────────────────┐
    ReplicaSet ── its controller (ownerReference)┼─► queue of Deployments ─► sync: claim ReplicaSets,
                  or, for an orphan, every ─────┘      deployment_plan, then write:
                  Deployment whose selector matches      1. the new ReplicaSet (POST)
    Pod (deleted) ─► its ReplicaSet's Deployment         2. ReplicaSets resized / re-annotated (PUT)
                     (Recreate waits for old pods)       3. old ReplicaSets beyond revisionHistoryLimit
                                                         4. the Deployment's revision annotation
                                                         5. the Deployment's status (status subresource)

What to do is ``deployment_model``'s: one step per pass, as Kubernetes makes it. The controller
needs no expectations: every ReplicaSet write carries the cached resourceVersion (a stale cache
gets 409 and looks again shortly) and the new ReplicaSet's name is fixed by its template's hash
(a second create is AlreadyExists). Each resize is reported as a ``ScalingReplicaSet`` Event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.controllers.deployment_model import DeploymentPlan, deployment_plan, hash_collision
from kubelite.controllers.podcontrol import (
    PODS,
    REPLICASETS,
    ChildEvents,
    adopt,
    namespace_of,
    owner_key,
    owner_selector,
    release,
    resource_version,
    retry_if_stale,
    still_adoptable,
    write_status,
)
from kubelite.controllers.workloads_model import (
    REVISION_ANNOTATION,
    InvalidSpecError,
    OwnerInfo,
    claim,
    object_name,
    spec_replicas,
)

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerOptions

log = logging.getLogger("kubelite.controllers.deployment")
Obj = dict[str, Any]
DEPLOYMENTS = INDEX.by_kind[("apps/v1", "Deployment")]


class DeploymentController(QueueController):
    name = "deployment-controller"
    workers = 4

    def __init__(
        self, client: ApiClient, informers: InformerFactory, options: ControllerOptions | None = None
    ) -> None:
        super().__init__(client, informers)
        self.deployments = informers.informer(DEPLOYMENTS)
        self.replicasets = informers.informer(REPLICASETS)
        self.pods = informers.informer(PODS)
        self.deployments.add_handler(self.enqueue, lambda _old, new: self.enqueue(new), self.enqueue)
        self.rs_events = ChildEvents(self.deployments, "Deployment", self.queue)
        self.replicasets.add_handler(self.rs_events.added, self.rs_events.updated, self.rs_events.deleted)
        self.pods.add_handler(None, None, self._pod_deleted)

    # --- events → keys ---

    def _owner_key(self, rs: Obj) -> str | None:
        return owner_key(self.deployments, rs, "Deployment")

    def _pod_deleted(self, pod: Obj) -> None:
        """A Recreate rollout starts the new ReplicaSet once every old pod is gone."""
        rs_key = owner_key(self.replicasets, pod, "ReplicaSet")
        if rs_key is None:
            return
        rs = self.replicasets.get(*split_key(rs_key))
        key = self._owner_key(rs) if rs is not None else None
        if key is None:
            return
        deploy = self.deployments.get(*split_key(key))
        strategy = ((deploy or {}).get("spec") or {}).get("strategy") or {}
        if strategy.get("type") == "Recreate":
            self.queue.add(key)

    # --- sync ---

    async def sync(self, key: str) -> None:
        await retry_if_stale(self.queue.add_after, key, self._sync(key))

    async def _sync(self, key: str) -> None:
        ns, name = split_key(key)
        deploy = self.deployments.get(ns, name)
        if deploy is None:
            return
        if owner_selector(deploy) is None:
            # Selecting every pod (or unreadable): Kubernetes leaves it alone and says so.
            message = "This deployment is selecting all pods. A non-empty selector is required."
            await self.recorder.event(deploy, "Warning", "SelectingAll", message)
            status = {**(deploy.get("status") or {}), "observedGeneration": _generation(deploy)}
            await write_status(self.client, DEPLOYMENTS, deploy, status)
            return
        replicasets = await self._claim(deploy)
        recreate = ((deploy.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate"
        try:
            plan = deployment_plan(deploy, replicasets, self.pods.list(ns) if recreate else None)
        except InvalidSpecError as e:
            await self.recorder.event(deploy, "Warning", "InvalidSpec", str(e))
            return
        if not await self._apply(key, deploy, replicasets, plan):
            return
        if plan.revision is not None:
            patch = {
                "metadata": {
                    "resourceVersion": resource_version(deploy),
                    "annotations": {REVISION_ANNOTATION: plan.revision},
                }
            }
            deploy = await self.client.patch(DEPLOYMENTS, ns, name, patch)
        await write_status(self.client, DEPLOYMENTS, deploy, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _claim(self, deploy: Obj) -> list[Obj]:
        """getReplicaSetsForDeployment: the ReplicaSets it controls once orphans matching its
        selector are adopted and those it no longer selects are released."""
        selector = owner_selector(deploy)
        candidates = self.replicasets.list(namespace_of(deploy))
        if selector is None:
            return []
        result = claim(OwnerInfo.from_object(deploy, "Deployment"), candidates, selector)
        owned = set(result.owned)
        if result.adopt:
            if await still_adoptable(self.client, DEPLOYMENTS, deploy):
                await adopt(self.client, deploy, "Deployment", candidates, result.adopt)
            else:
                owned -= set(result.adopt)
        await release(self.client, deploy, "Deployment", candidates, result.release)
        return [rs for rs in candidates if object_name(rs) in owned]

    async def _apply(self, key: str, deploy: Obj, replicasets: list[Obj], plan: DeploymentPlan) -> bool:
        """Write the plan's ReplicaSets; False when the pass must stop here (a name taken)."""
        ns = namespace_of(deploy)
        sizes = {object_name(rs): spec_replicas(rs) for rs in replicasets}
        if plan.create is not None:
            if not await self._create(deploy, plan.create):
                return False
            sizes[object_name(plan.create)] = 0
        for rs in plan.update:
            await self.client.update(REPLICASETS, ns, rs)
        for rs_name in plan.delete:
            try:
                await self.client.delete(REPLICASETS, ns, rs_name)
            except StatusError as e:
                if e.code != 404:
                    raise
        for rs_name, replicas in plan.scales:
            was = sizes.get(rs_name, 0)
            sizes[rs_name] = replicas
            if replicas != was:
                direction = "up" if replicas > was else "down"
                message = f"Scaled {direction} replica set {rs_name} to {replicas} from {was}"
                await self.recorder.event(deploy, "Normal", "ScalingReplicaSet", message)
        return True

    async def _create(self, deploy: Obj, rs: Obj) -> bool:
        """POST the new ReplicaSet. A name already taken is either ours (the cache lags: its add
        event brings us back) or a hash collision: ``status.collisionCount`` grows so the next
        pass picks another name."""
        ns = namespace_of(deploy)
        try:
            await self.client.create(REPLICASETS, ns, rs)
            return True
        except StatusError as e:
            if e.code != 409:
                raise
        try:
            existing = await self.client.get(REPLICASETS, ns, object_name(rs))
        except StatusError as e:
            if e.code != 404:
                raise
            self.enqueue(deploy)  # gone again already: try once more
            return False
        if hash_collision(deploy, existing):
            status = dict(deploy.get("status") or {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            log.info("%s: replica set name %s is taken; collisionCount %d", object_key(deploy),
                     object_name(rs), status["collisionCount"])  # fmt: skip
            await write_status(self.client, DEPLOYMENTS, deploy, status)
        return False


def _generation(obj: Obj) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)
