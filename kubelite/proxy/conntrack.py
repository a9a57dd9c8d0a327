"""Which UDP conntrack entries became stale between two proxy states (pure).

UDP has no connection to close: once a flow is in conntrack with its DNAT, every later datagram
follows it, even after the endpoint went away, so a client that keeps sending (DNS!) is stuck. Like
kube-proxy, after each sync the proxy deletes:

- for every endpoint a UDP service port stopped using: the flows to each of its service addresses
  (cluster IPs, external IPs, LoadBalancer IPs) DNATed to that endpoint, and its NodePort flows;
- for a UDP service port that had no endpoint and now has one: the flows to its addresses and
  NodePort that were recorded without DNAT (rejected or dropped), so clients reach the new endpoint.

:func:`stale_flows` returns filters for ``conntrack -D`` (see :mod:`kubelite.host.conntrack`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubelite.proxy.model import ProxyState, ServicePort, ServicePortName, cluster_endpoints, local_endpoints

__all__ = ["StaleFlow", "stale_flows"]


@dataclass(frozen=True, slots=True, order=True)
class StaleFlow:
    """Conntrack entries to delete: all that match every given field."""

    protocol: str = "udp"
    orig_dst: str = ""
    orig_port_dst: int = 0
    dst_nat: str = ""
    """The endpoint the flow was DNATed to; empty = any (including not DNATed)."""

    def filters(self) -> list[str]:
        args = ["-p", self.protocol]
        if self.orig_dst:
            args += ["--orig-dst", self.orig_dst]
        if self.orig_port_dst:
            args += ["--orig-port-dst", str(self.orig_port_dst)]
        if self.dst_nat:
            args += ["--dst-nat", self.dst_nat]
        return args


def _used_ips(sp: ServicePort | None, state: ProxyState) -> frozenset[str]:
    if sp is None:
        return frozenset()
    eps = state.endpoints_of(sp.name)
    used = {e.ip for e in cluster_endpoints(sp, eps)}
    if sp.has_external:
        chosen = local_endpoints(eps) if sp.external_local else cluster_endpoints(_no_internal(sp), eps)
        used.update(e.ip for e in chosen)
    return frozenset(used)


def _no_internal(sp: ServicePort) -> ServicePort:
    return ServicePort(sp.name, sp.cluster_ips, sp.port, sp.protocol, sp.target_port)


def _targets(sp: ServicePort, node_ips: Iterable[str]) -> list[tuple[str, int]]:
    """(address, port) pairs a client may have sent to; the NodePort on each node IP."""
    out = [(vip, sp.port) for vip in (*sp.cluster_ips, *sp.external_ips, *sp.load_balancer_ips)]
    if sp.node_port:
        out += [(ip, sp.node_port) for ip in node_ips]
    return out


def stale_flows(
    old: ProxyState | None, new: ProxyState, changed: frozenset[ServicePortName] | None
) -> list[StaleFlow]:
    """Flows to delete after syncing from ``old`` to ``new`` (``changed=None``: look at every port)."""
    if old is None:
        return []
    names = changed if changed is not None else frozenset(old.services) | frozenset(new.services)
    flows: set[StaleFlow] = set()
    for spn in names:
        if spn.protocol.upper() != "UDP":
            continue
        before, after = old.services.get(spn), new.services.get(spn)
        used_before, used_after = _used_ips(before, old), _used_ips(after, new)
        if before is not None:
            for ip in used_before - used_after:
                for addr, port in _targets(before, old.node_ips):
                    flows.add(StaleFlow("udp", addr, port, ip))
        if after is not None and used_after and not used_before:
            for addr, port in _targets(after, new.node_ips):
                flows.add(StaleFlow("udp", addr, port))
    return sorted(flows)
