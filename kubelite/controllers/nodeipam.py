"""Node IPAM: a pod CIDR for every node, from the cluster CIDR.

    Node informer ── added, deleted, podCIDRs changed ──► one key ("nodes")
    sync: allocate_pod_cidrs(cluster CIDR, mask, every node) ─┬─► merge patch spec.podCIDR / podCIDRs
                                                              └─► CIDRNotAvailable event per node left
                                                                  without one (once per node)

The computation is ``nodeipam_model.allocate_pod_cidrs`` over all nodes at once, so nothing is
remembered across restarts: a node's podCIDR is on the node, and blocks in use are read back
from the nodes. Blocks this controller wrote that the informer has not shown yet are counted as
the node's (an "assumed" podCIDR), so a sync that runs ahead of the cache never hands out a
block twice. As kube-controller-manager's RangeAllocator, the CIDRNotAvailable event is a
Normal one from component ``cidrAllocator``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController
from kubelite.controllers.events import EventRecorder
from kubelite.controllers.nodeipam_model import (
    EVENT_COMPONENT,
    CidrExhausted,
    allocate_pod_cidrs,
    cidr_not_available_event,
    node_pod_cidrs,
    pod_cidr_patch,
)

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerOptions

log = logging.getLogger("kubelite.controllers.nodeipam")

Obj = dict[str, Any]
NODES = INDEX.by_kind[("v1", "Node")]
ALL_NODES = "nodes"
"""The one queue key: every sync looks at every node."""
CONFLICT_RETRY = 0.1
"""Seconds before a sync whose write met a 409 runs again, from a fresher cache."""


class NodeIpamController(QueueController):
    name = "node-ipam-controller"
    workers = 1

    def __init__(self, client: ApiClient, informers: InformerFactory, options: ControllerOptions) -> None:
        super().__init__(client, informers)
        self.cluster_cidr = options.cluster_cidr
        self.node_mask_size = options.node_cidr_mask
        allocate_pod_cidrs(self.cluster_cidr, self.node_mask_size, [])  # a bad option fails here, not later
        self.recorder = EventRecorder(client, EVENT_COMPONENT)
        self.nodes = informers.informer(NODES)
        self._assumed: dict[str, str] = {}
        """node name → the podCIDR written to it, until the informer shows one."""
        self._reported: set[str] = set()
        """Nodes told CIDRNotAvailable since they last had a podCIDR."""
        self.nodes.add_handler(self._changed, self._updated, self._deleted)

    def _changed(self, _node: Obj) -> None:
        self.queue.add(ALL_NODES)

    def _updated(self, old: Obj, new: Obj) -> None:
        if node_pod_cidrs(old) != node_pod_cidrs(new):
            self.queue.add(ALL_NODES)

    def _deleted(self, node: Obj) -> None:
        name = _name(node)
        self._assumed.pop(name, None)
        self._reported.discard(name)
        self.queue.add(ALL_NODES)  # its block is free for a node still waiting

    def _current_nodes(self) -> list[Obj]:
        """The cached nodes, oldest first, with the podCIDRs written but not yet seen filled in."""
        nodes: list[Obj] = []
        for node in self.nodes.list():
            name = _name(node)
            if node_pod_cidrs(node):
                self._assumed.pop(name, None)
            elif name in self._assumed:
                spec = {**(node.get("spec") or {}), **pod_cidr_patch(self._assumed[name])["spec"]}
                node = {**node, "spec": spec}
            nodes.append(node)
        return sorted(nodes, key=lambda n: (str(n["metadata"].get("creationTimestamp") or ""), _name(n)))

    async def sync(self, key: str) -> None:
        try:
            allocated = allocate_pod_cidrs(self.cluster_cidr, self.node_mask_size, self._current_nodes())
            exhausted: list[str] = []
        except CidrExhausted as e:
            allocated, exhausted = e.allocated, e.nodes
            if any(name not in self._reported for name in exhausted):
                log.warning("%s", e)
        for name, cidr in allocated.items():
            if not await self._assign(name, cidr):
                self.queue.add_after(key, CONFLICT_RETRY)
        for name in exhausted:
            node = self.nodes.get(None, name)
            if node is not None and name not in self._reported:
                self._reported.add(name)
                event = cidr_not_available_event(name)
                await self.recorder.event(node, event.type, event.reason, event.message)

    async def _assign(self, name: str, cidr: str) -> bool:
        """Write ``cidr`` on the node; False if a concurrent write got in the way (try again)."""
        self._assumed[name] = cidr
        try:
            await self.client.patch(NODES, None, name, pod_cidr_patch(cidr))
        except StatusError as e:
            self._assumed.pop(name, None)
            if e.code == 404:
                return True  # deleted meanwhile: nothing to do
            if e.code == 409:
                log.info("node %s: podCIDR %s not written: %s; retrying", name, cidr, e)
                return False
            raise
        self._reported.discard(name)
        log.info("node %s: podCIDR %s", name, cidr)
        return True


def _name(node: Obj) -> str:
    return str((node.get("metadata") or {}).get("name") or "")
