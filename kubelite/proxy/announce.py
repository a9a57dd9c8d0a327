"""Which node answers ARP for which LoadBalancer IP (MetalLB's L2 mode, elected by every node alike).

For each LoadBalancer IP, the candidates are the Ready nodes (``externalTrafficPolicy: Local``:
only the Ready nodes with a ready endpoint of the Service, so the client's source address can
be kept). The winner is the candidate whose ``sha256("<node>#<ip>")`` is smallest: every agent
computes the same answer from the same Nodes and EndpointSlices without talking to the others,
and a node that goes away hands each of its IPs to a different survivor. The winner answers ARP
for the IP (:class:`kubelite.host.arp.RealArpResponder`); its service proxy rules already DNAT the
IP, so the traffic that arrives is delivered like any other external traffic.

:func:`announced_by` is pure; :class:`L2Announcer` keeps the last proxy state and Ready node set
and tells the responder when the answer changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from kubelite.host.arp import ArpResponder
from kubelite.proxy.model import ProxyState

__all__ = ["L2Announcer", "announced_by", "announcer_of", "ready_node_names"]

log = logging.getLogger(__name__)


def announcer_of(ip: str, candidates: Iterable[str]) -> str | None:
    """The elected node for ``ip`` among ``candidates`` (None when there is none)."""
    return min(candidates, key=lambda node: hashlib.sha256(f"{node}#{ip}".encode()).digest(), default=None)


def announced_by(node: str, state: ProxyState, ready_nodes: frozenset[str]) -> frozenset[str]:
    """The LoadBalancer IPs ``node`` answers for."""
    candidates: dict[str, set[str]] = {}
    for spn, sp in state.services.items():
        if not sp.load_balancer_ips:
            continue
        if sp.external_local:
            serving = {e.node_name for e in state.endpoints_of(spn) if e.ready and e.node_name} & ready_nodes
        else:
            serving = set(ready_nodes)
        for ip in sp.load_balancer_ips:
            candidates.setdefault(ip, set()).update(serving)
    return frozenset(ip for ip, nodes in candidates.items() if announcer_of(ip, nodes) == node)


def ready_node_names(nodes: Iterable[dict[str, object]]) -> frozenset[str]:
    """Names of the Node objects whose Ready condition is True."""
    ready: set[str] = set()
    for node in nodes:
        meta, status = node.get("metadata"), node.get("status")
        if not isinstance(meta, dict) or not isinstance(status, dict):
            continue
        conditions = status.get("conditions")
        for c in conditions if isinstance(conditions, list) else []:
            if isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True":
                ready.add(str(meta.get("name", "")))
    return frozenset(ready)


class L2Announcer:
    """Keeps ``responder`` answering for the IPs this node wins."""

    def __init__(self, node: str, responder: ArpResponder) -> None:
        self.node = node
        self.responder = responder
        self._state: ProxyState | None = None
        self._ready: frozenset[str] = frozenset()
        self.addresses: frozenset[str] = frozenset()

    async def update(
        self, *, state: ProxyState | None = None, ready_nodes: frozenset[str] | None = None
    ) -> None:
        if state is not None:
            self._state = state
        if ready_nodes is not None:
            self._ready = ready_nodes
        if self._state is None:
            return
        wanted = announced_by(self.node, self._state, self._ready)
        if wanted != self.addresses:
            gained, lost = sorted(wanted - self.addresses), sorted(self.addresses - wanted)
            log.info("answering ARP for %s; no longer for %s", gained or "-", lost or "-")
            await self.responder.set_addresses(wanted)
            self.addresses = wanted
