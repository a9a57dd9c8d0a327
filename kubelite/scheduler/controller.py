"""The scheduling loop: binds each pending pod to the node ``scoring.schedule`` picks.

    Pod informer ─┬─ pending pods (no nodeName, ours, not finished or deleting) ──► queue of "ns/name"
                  └─ bound pods ──► SchedulerCache: the pods on each node, plus the pods this
                                    scheduler bound that the informer has not shown bound yet
    Node informer ── node added or changed ───┐
    a bound pod deleted or finished ──────────┴─► every unschedulable pod back into the queue
                                                   (once what is left of its backoff has passed)

    sync("ns/name"): schedule(pod, nodes, cache.pods_on_nodes())
        ├─ a node ─► assume it in the cache ─► POST pods/name/binding ─► Normal "Scheduled" event
        └─ none ───► Warning "FailedScheduling" event and PodScheduled=False (reason Unschedulable)
                     through pods/status, both carrying the model's message

As in kube-scheduler: one pod is scheduled at a time (one worker), so every decision sees every
earlier one; a pod that fits nowhere waits in an "unschedulable" set until the cluster changes
(not before its backoff, 1 s doubling to 10 s, has passed) or for at most five minutes. The
pure part (filters, scores, the message texts) is ``predicates`` and ``scoring``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from kubelite.api.errors import StatusError
from kubelite.api.meta import format_time, now
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient
from kubelite.client.workqueue import Clock, LoopClock, WorkQueue
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.scheduler.predicates import NodeInfo, PodSpecInfo, pods_by_node
from kubelite.scheduler.scoring import schedule

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerOptions

log = logging.getLogger("kubelite.scheduler")

Obj = dict[str, Any]
PODS = INDEX.by_kind[("v1", "Pod")]
NODES = INDEX.by_kind[("v1", "Node")]

SCHEDULER_NAME = "default-scheduler"
INITIAL_BACKOFF = 1.0
"""kube-scheduler's podInitialBackoffSeconds."""
MAX_BACKOFF = 10.0
"""kube-scheduler's podMaxBackoffSeconds."""
UNSCHEDULABLE_TIMEOUT = 300.0
"""kube-scheduler's podMaxInUnschedulablePodsDuration: an unschedulable pod is retried at least this often."""

CONFLICT_RETRY = 0.1
"""Seconds before a binding that met a 409 is tried again."""
STATUS_WRITE_ATTEMPTS = 3

REASON_SCHEDULED = "Scheduled"
REASON_FAILED_SCHEDULING = "FailedScheduling"
REASON_UNSCHEDULABLE = "Unschedulable"


class SchedulerCache:
    """The pods that occupy nodes, as scheduling must count them.

    Bound pods come from the informer. A pod this scheduler has just bound is *assumed* on its
    node from the moment it is picked until the informer shows it bound (or the binding fails),
    so the next pod never sees that node emptier than it is (two pods never get one hostPort).
    """

    def __init__(self) -> None:
        self._bound: dict[str, PodSpecInfo] = {}
        self._assumed: dict[str, PodSpecInfo] = {}

    def observe(self, pod: PodSpecInfo) -> None:
        """The informer's view of a pod (added or updated)."""
        if pod.node_name:
            self._assumed.pop(pod.key, None)
        if occupies_node(pod):
            self._bound[pod.key] = pod
        else:
            self._bound.pop(pod.key, None)

    def remove(self, key: str) -> None:
        self._bound.pop(key, None)
        self._assumed.pop(key, None)

    def assume(self, pod: PodSpecInfo, node: str) -> None:
        self._assumed[pod.key] = dataclasses.replace(pod, node_name=node)

    def forget(self, key: str) -> None:
        """The binding of an assumed pod failed: it occupies nothing."""
        self._assumed.pop(key, None)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def pods_on_nodes(self) -> dict[str, list[PodSpecInfo]]:
        assumed = [p for key, p in self._assumed.items() if key not in self._bound]
        return pods_by_node([*self._bound.values(), *assumed])


@dataclasses.dataclass(frozen=True, slots=True)
class _Attempts:
    failures: int
    retry_at: float
    """Loop time before which a cluster change does not bring the pod back (its backoff)."""


class SchedulerController(QueueController):
    """Binds pending pods whose ``schedulerName`` is default-scheduler (or unset) to nodes."""

    name = SCHEDULER_NAME
    workers = 1  # one decision at a time: each sees the ones before it

    def __init__(
        self,
        client: ApiClient,
        informers: InformerFactory,
        options: ControllerOptions | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(client, informers)
        self._clock: Clock = clock or LoopClock()
        self.queue = WorkQueue(clock=self._clock)
        self.cache = SchedulerCache()
        self._unschedulable: dict[str, _Attempts] = {}
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(self._node_added, self._node_updated)

    # --- informer events ------------------------------------------------------------------------

    def _pod_added(self, pod: Obj) -> None:
        self.cache.observe(PodSpecInfo.from_object(pod))
        if wants_scheduling(pod):
            self.queue.add(object_key(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        before, after = PodSpecInfo.from_object(old), PodSpecInfo.from_object(new)
        self.cache.observe(after)
        if occupies_node(before) and not occupies_node(after):
            self._move_all_unschedulable()  # it finished: its node has room again
        key = object_key(new)
        if not wants_scheduling(new):
            self._unschedulable.pop(key, None)
            return
        if key in self._unschedulable and before == after:
            return  # nothing scheduling looks at changed (our own PodScheduled=False write, say)
        self._requeue(key)

    def _pod_deleted(self, pod: Obj) -> None:
        info = PodSpecInfo.from_object(pod)
        key = object_key(pod)
        self.cache.remove(key)
        self._unschedulable.pop(key, None)
        if occupies_node(info):
            self._move_all_unschedulable()

    def _node_added(self, _node: Obj) -> None:
        self._move_all_unschedulable()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        # Heartbeats change nothing scheduling looks at; labels, taints, readiness and capacity do.
        if NodeInfo.from_object(old) != NodeInfo.from_object(new):
            self._move_all_unschedulable()

    def _requeue(self, key: str) -> None:
        """Queue ``key`` now, or when its backoff ends if it is still backing off."""
        attempts = self._unschedulable.get(key)
        delay = attempts.retry_at - self._clock.now() if attempts is not None else 0.0
        self.queue.add_after(key, delay)

    def _move_all_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self._requeue(key)

    # --- scheduling one pod ---------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(ns, name)
        if pod is None or not wants_scheduling(pod) or self.cache.is_assumed(key):
            return
        info = PodSpecInfo.from_object(pod)
        nodes = sorted((NodeInfo.from_object(n) for n in self.nodes.list()), key=lambda n: n.name)
        decision = schedule(info, nodes, self.cache.pods_on_nodes())
        if decision.node is None:
            await self._failed(key, pod, decision.message)
        else:
            await self._bind(key, pod, info, decision.node, decision.message)

    async def _bind(self, key: str, pod: Obj, info: PodSpecInfo, node: str, message: str) -> None:
        self.cache.assume(info, node)
        ns, name = split_key(key)
        try:
            await bind_pod(self.client, ns, name, node)
        except StatusError as e:
            self.cache.forget(key)
            if e.code == 404:
                return  # deleted meanwhile
            if e.code == 409:
                # Bound by someone else (the informer will show it, and the retry is a no-op), or a
                # write raced ours: try again shortly either way.
                log.info("binding %s to %s: %s; retrying", key, node, e)
                self.queue.add_after(key, CONFLICT_RETRY)
                return
            raise
        self._unschedulable.pop(key, None)
        log.debug("bound %s to %s", key, node)
        await self.recorder.event(pod, "Normal", REASON_SCHEDULED, message)

    async def _failed(self, key: str, pod: Obj, message: str) -> None:
        previous = self._unschedulable.get(key)
        failures = previous.failures + 1 if previous is not None else 1
        backoff = min(INITIAL_BACKOFF * 2.0 ** (failures - 1), MAX_BACKOFF)
        # Recorded before the writes below, whose echo from the informer must not requeue the pod.
        self._unschedulable[key] = _Attempts(failures, self._clock.now() + backoff)
        self.queue.add_after(key, UNSCHEDULABLE_TIMEOUT)
        log.debug("%s is unschedulable: %s", key, message)
        await self.recorder.event(pod, "Warning", REASON_FAILED_SCHEDULING, message)
        await self._mark_unschedulable(pod, message)

    async def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        """PodScheduled=False, reason Unschedulable, through pods/status (skipped when already so)."""
        conditions = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "PodScheduled"), {})
        if (current.get("status"), current.get("reason"), current.get("message")) == (
            "False",
            REASON_UNSCHEDULABLE,
            message,
        ):
            return
        # The transition time moves only when the status does, as podutil.UpdatePodCondition keeps it.
        since = current.get("lastTransitionTime") if current.get("status") == "False" else None
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": REASON_UNSCHEDULABLE,
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": since or format_time(now()),
        }
        md = pod.get("metadata") or {}
        patch = {"metadata": {"uid": md.get("uid")}, "status": {"conditions": [condition]}}
        ns, name = md.get("namespace"), md.get("name", "")
        for attempt in range(STATUS_WRITE_ATTEMPTS):
            try:
                await self.client.patch(PODS, ns, name, patch, patch_type="strategic", subresource="status")
                return
            except StatusError as e:
                if e.code == 404:
                    return
                # 409: replaced by a pod of the same name (the uid precondition), or a write raced ours.
                if e.code != 409 or attempt == STATUS_WRITE_ATTEMPTS - 1:
                    raise


def wants_scheduling(pod: Obj) -> bool:
    """Whether this scheduler should place ``pod``: unbound, ours, not finished, not being deleted.

    Pods with scheduling gates wait until the gates are removed, as upstream.
    """
    md, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName") in (None, "", SCHEDULER_NAME)
        and status.get("phase") not in ("Succeeded", "Failed")
        and not md.get("deletionTimestamp")
        and not spec.get("schedulingGates")
    )


def occupies_node(pod: PodSpecInfo) -> bool:
    return bool(pod.node_name) and not pod.terminal


def binding(pod: str, node: str) -> Obj:
    """The v1 Binding ``POST pods/{pod}/binding`` takes."""
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


async def bind_pod(client: ApiClient, namespace: str, pod: str, node: str) -> None:
    """``POST /api/v1/namespaces/{namespace}/pods/{pod}/binding``: 409 if the pod is already bound."""
    await client.create_subresource(PODS, namespace, pod, "binding", binding(pod, node))
