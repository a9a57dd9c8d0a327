"""What ``kubelite up`` will build, computed before anything is touched (pure; unit tested).

    host netns (this machine, or --host-netns)
      bridge kl-<name> 172.30.0.1/24 ──┬── veth kl-<name>-1 ═══ eth0 172.30.0.11/24  netns <name>-node1
                                       ├── veth kl-<name>-2 ═══ eth0 172.30.0.12/24  netns <name>-node2
                                       └── …
      API server on 172.30.0.1:<port> (agents) and on the host's 127.0.0.1:<port> (kubectl)
      LoadBalancer pool: the top of the node network (.200 - .254)

The plan refuses, with a sentence, ranges that overlap each other or a route the host already has.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NodePlan", "UpPlan", "make_plan", "overlapping_routes"]

IPNetwork = ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    """The Node's name; also the name of its network namespace."""
    ip: str
    host_veth: str


@dataclass(frozen=True, slots=True)
class UpPlan:
    name: str
    bridge: str
    gateway: str
    """The bridge's address: the API server listens here for the agents."""
    node_cidr: str
    cluster_cidr: str
    service_cidr: str
    lb_pool: str
    nodes: tuple[NodePlan, ...]

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.node_cidr).prefixlen

    @property
    def netns_prefix(self) -> str:
        return f"{self.name}-"


def _net(text: str, what: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a CIDR such as 10.244.0.0/16") from None
    if not isinstance(net, IPNetwork):
        raise ValueError(f"{what} {text!r}: kubelite up builds IPv4 networks only")
    return net


def make_plan(*, name: str, nodes: int, node_cidr: str, cluster_cidr: str, service_cidr: str) -> UpPlan:
    if not name or len(name) > 9 or not name.replace("-", "").isalnum() or not name[0].isalpha():
        raise ValueError(
            f"cluster name {name!r}: use 1-9 letters, digits or '-', starting with a letter "
            "(it prefixes namespace and interface names, which are short)"
        )
    if not 1 <= nodes <= 50:
        raise ValueError(f"--nodes {nodes}: choose between 1 and 50")
    nodes_net = _net(node_cidr, "--node-cidr")
    if nodes_net.num_addresses < 256 and nodes_net.num_addresses < nodes + 64:
        raise ValueError(f"--node-cidr {node_cidr} is too small for {nodes} nodes; use a /24")
    pods_net = _net(cluster_cidr, "--cluster-cidr")
    svc_net = _net(service_cidr, "--service-cidr")
    ranges = [("--node-cidr", nodes_net), ("--cluster-cidr", pods_net), ("--service-cidr", svc_net)]
    for i, (a_name, a) in enumerate(ranges):
        for b_name, b in ranges[i + 1 :]:
            if a.overlaps(b):
                raise ValueError(f"{a_name} {a} overlaps {b_name} {b}; choose ranges that do not overlap")
    hosts = list(nodes_net.hosts())
    bridge = f"kl-{name}"
    node_plans = tuple(
        NodePlan(name=f"{name}-node{i}", ip=str(hosts[9 + i]), host_veth=f"{bridge}-{i}")
        for i in range(1, nodes + 1)
    )
    top = hosts[-1]
    pool_start = hosts[min(199, len(hosts) - 16)]
    return UpPlan(
        name=name,
        bridge=bridge,
        gateway=str(hosts[0]),
        node_cidr=str(nodes_net),
        cluster_cidr=str(pods_net),
        service_cidr=str(svc_net),
        lb_pool=f"{pool_start}-{top}",
        nodes=node_plans,
    )


def overlapping_routes(plan: UpPlan, routes: Iterable[dict[str, object]]) -> list[str]:
    """Sentences for every host route (``ip -j route show table all``) that overlaps the plan's ranges.

    The default route and local/broadcast entries of the loopback are not conflicts.
    """
    ranges = [
        ("the node network (--node-cidr)", _net(plan.node_cidr, "")),
        ("the pod network (--cluster-cidr)", _net(plan.cluster_cidr, "")),
        ("the service network (--service-cidr)", _net(plan.service_cidr, "")),
    ]
    problems: list[str] = []
    for route in routes:
        dst = str(route.get("dst") or "")
        if not dst or dst == "default" or route.get("type") in ("local", "broadcast", "multicast"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if not isinstance(net, IPNetwork) or net.is_loopback:
            continue
        for what, mine in ranges:
            if net.overlaps(mine):
                dev = route.get("dev") or "?"
                problems.append(f"{what} {mine} overlaps the host's route to {dst} (dev {dev})")
    return problems
