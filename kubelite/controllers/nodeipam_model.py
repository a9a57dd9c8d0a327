"""Which pod CIDR each node gets: the node IPAM range allocator, pure, no I/O.

Kubernetes' kube-controller-manager (pkg/controller/nodeipam, ``RangeAllocator``) carves the
cluster CIDR (``--cluster-cidr``, kubelite's default 10.244.0.0/16) into blocks of
``--node-cidr-mask-size`` (default /24) and writes one into ``spec.podCIDR`` /
``spec.podCIDRs`` of every node that has none. The rules kept here:

- a node that already has a podCIDR keeps it, and its block is never handed to another node
  (also when it lies only partly in the cluster CIDR, or spans several blocks);
- blocks overlapping the service CIDR are never handed out (``filterOutServiceRange``);
- nodes without a podCIDR get the lowest free block, in the order given. (Upstream keeps a
  rotating cursor in memory; a computation from the current nodes alone takes the lowest,
  which is also what upstream does on a fresh cluster.)
- when no block is left, the node stays without one and Kubernetes records a Normal event
  ``CIDRNotAvailable`` ("Node n3 status is now: CIDRNotAvailable") from component
  ``cidrAllocator``; here that is ``CidrExhausted``, carrying what could still be assigned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK_SIZE = 24
EVENT_REASON_CIDR_NOT_AVAILABLE = "CIDRNotAvailable"
EVENT_COMPONENT = "cidrAllocator"
_MAX_IPV6_SUBNET_BITS = 16
"""Upstream refuses IPv6 node masks more than 16 bits longer than the cluster mask (its bitmap)."""


class CidrExhausted(Exception):
    """The cluster CIDR has no free block for some nodes.

    ``allocated`` holds the blocks that could be assigned (apply them anyway); ``nodes`` names
    the nodes left without one, in order.
    """

    def __init__(self, cluster_cidr: str, nodes: list[str], allocated: dict[str, str]) -> None:
        self.cluster_cidr = cluster_cidr
        self.nodes = nodes
        self.allocated = allocated
        names = ", ".join(nodes)
        super().__init__(
            f"no pod CIDR is left in the cluster CIDR {cluster_cidr} for node(s) {names}: every block is "
            "in use; widen --cluster-cidr or use a longer node CIDR mask size"
        )


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """An event about a Node, as kube-controller-manager's RecordNodeStatusChange writes it."""

    node: str
    type: str
    reason: str
    message: str


def cidr_not_available_event(node: str) -> NodeEvent:
    return NodeEvent(
        node,
        "Normal",
        EVENT_REASON_CIDR_NOT_AVAILABLE,
        f"Node {node} status is now: {EVENT_REASON_CIDR_NOT_AVAILABLE}",
    )


def pod_cidr_patch(cidr: str) -> dict[str, Any]:
    """The merge patch a node gets: ``spec.podCIDR`` and ``spec.podCIDRs`` (single stack)."""
    return {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}


def node_pod_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [str(c) for c in spec.get("podCIDRs") or [] if c]
    if not cidrs and spec.get("podCIDR"):
        cidrs = [str(spec["podCIDR"])]
    return cidrs


def _node_name(node: Obj) -> str:
    return str((node.get("metadata") or {}).get("name") or "")


def _parse_network(text: str, what: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as e:
        raise ValueError(f"invalid {what} {text!r}: {e}") from None


class _Blocks:
    """The node blocks of one cluster CIDR, as a set of used indexes."""

    def __init__(self, cluster: Network, mask: int) -> None:
        self.cluster = cluster
        self.mask = mask
        self.size = 1 << (cluster.max_prefixlen - mask)
        self.count = 1 << (mask - cluster.prefixlen)
        self.used: set[int] = set()

    def occupy(self, net: Network) -> None:
        """Mark every block ``net`` overlaps as used; a network outside the cluster CIDR is ignored."""
        if net.version != self.cluster.version or not net.overlaps(self.cluster):
            return
        base = int(self.cluster.network_address)
        first = max(int(net.network_address), base)
        last = min(int(net.broadcast_address), int(self.cluster.broadcast_address))
        self.used.update(range((first - base) // self.size, (last - base) // self.size + 1))

    def allocate(self) -> Network | None:
        index = next((i for i in range(self.count) if i not in self.used), None)
        if index is None:
            return None
        self.used.add(index)
        address = ipaddress.ip_address(int(self.cluster.network_address) + index * self.size)
        return ipaddress.ip_network(f"{address}/{self.mask}")


def allocate_pod_cidrs(
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
    node_mask_size: int = DEFAULT_NODE_MASK_SIZE,
    nodes: Iterable[Obj] = (),
    *,
    service_cidr: str | None = None,
) -> dict[str, str]:
    """The pod CIDR to write on each node that has none: ``{node name: "10.244.1.0/24"}``.

    Nodes that already have one are left out of the result (they keep theirs). Raises
    ``ValueError`` for a malformed cluster CIDR or an impossible mask size, and
    ``CidrExhausted`` (with the partial result) when some nodes cannot get a block.
    """
    cluster = _parse_network(cluster_cidr, "cluster CIDR")
    if not cluster.prefixlen <= node_mask_size <= cluster.max_prefixlen:
        raise ValueError(
            f"node CIDR mask size {node_mask_size} does not fit cluster CIDR {cluster}: it must be between "
            f"{cluster.prefixlen} and {cluster.max_prefixlen}"
        )
    if cluster.version == 6 and node_mask_size - cluster.prefixlen > _MAX_IPV6_SUBNET_BITS:
        raise ValueError(
            f"node CIDR mask size {node_mask_size} is more than {_MAX_IPV6_SUBNET_BITS} bits longer than "
            f"the cluster CIDR {cluster}; use a mask size of at most "
            f"{cluster.prefixlen + _MAX_IPV6_SUBNET_BITS}"
        )
    blocks = _Blocks(cluster, node_mask_size)
    if service_cidr:
        blocks.occupy(_parse_network(service_cidr, "service CIDR"))
    nodes = list(nodes)
    waiting: list[str] = []
    for node in nodes:
        cidrs = node_pod_cidrs(node)
        if not cidrs:
            waiting.append(_node_name(node))
        for cidr in cidrs:
            try:
                blocks.occupy(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                continue  # garbage in a node's podCIDR blocks nothing; upstream refuses to start
    allocated: dict[str, str] = {}
    exhausted: list[str] = []
    for name in dict.fromkeys(waiting):
        block = blocks.allocate()
        if block is None:
            exhausted.append(name)
        else:
            allocated[name] = str(block)
    if exhausted:
        raise CidrExhausted(str(cluster), exhausted, allocated)
    return allocated
