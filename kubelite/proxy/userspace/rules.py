"""The nftables rules of the userspace back end, as text (pure: no kernel, no sockets).

One table, ``ip kubelite-userspace``, whose only job is to steer a service's packets into the local
listener that proxies it (kube-proxy userspace mode's ``REDIRECT`` rules, in nftables)::

    map service-ips        { ipv4_addr . inet_proto . inet_service : verdict }  cluster, external, LB IPs
    map service-nodeports  { inet_proto . inet_service : verdict }              NodePorts
    map filter-ips, filter-nodeports   the same keys, for service ports that reject or drop
    set node-ips           { ipv4_addr }                                        this node's addresses
    chain nat-prerouting   type nat hook prerouting priority -100   -> dispatch
    chain nat-output       type nat hook output priority -100       -> dispatch
    chain dispatch         ip daddr . meta l4proto . th dport vmap @service-ips
                           ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports
    chain filter-prerouting, filter-output   type filter priority -110 -> filter-dispatch (ct state new)
    chain svc-<hash>       meta l4proto tcp redirect to :<cluster listener>   | reject (TCP: with tcp reset)
    chain ext-<hash>       (externalTrafficPolicy Local only) redirect to :<local-only listener> | drop
    chain fw-<hash>        (loadBalancerSourceRanges) ``ip saddr <range> return`` per range, then drop;
                           LB IPs reach it through ``filter-ips``

nat chains reach a service chain through the ``service-*`` maps when it redirects; filter chains
through the ``filter-*`` maps when it rejects or drops (a ``reject`` inside a nat chain only drops).

``<hash>`` is kube-proxy's :func:`~kubelite.proxy.model.chain_suffix`. A service port's rules are one
:class:`ServiceRules` (its chains and its map elements), so a partial sync deletes that service's
old elements, refills its chains and adds its new elements, leaving every other service untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubelite.proxy.model import ServicePort, ServicePortName, chain_suffix

__all__ = [
    "CLUSTER",
    "EXTERNAL",
    "PROTOCOLS",
    "TABLE",
    "Element",
    "ServiceRules",
    "full_ruleset",
    "partial_ruleset",
    "service_rules",
]

TABLE = "kubelite-userspace"
CLUSTER = "cluster"
EXTERNAL = "external"
PROTOCOLS = ("TCP", "UDP")
"""What the userspace proxy carries (no SCTP: Python's asyncio has no SCTP transport)."""


@dataclass(frozen=True, slots=True)
class Element:
    map: str
    key: str
    verdict: str

    def text(self) -> str:
        return f"{self.key} : {self.verdict}"


@dataclass(frozen=True, slots=True)
class ServiceRules:
    chains: tuple[tuple[str, tuple[str, ...]], ...]
    """``(chain name, rules)`` pairs."""
    elements: tuple[Element, ...]


def _reject(proto: str) -> str:
    # A TCP reset is built as a new packet routed from scratch, so it also works from prerouting
    # for a service address that is not local; UDP gets ICMP port unreachable.
    return "meta l4proto tcp reject with tcp reset" if proto == "tcp" else "reject"


def _target(proto: str, port: int | None, empty: str) -> tuple[str, ...]:
    if port is None:
        return (empty,)
    return (f"meta l4proto {proto} redirect to :{port}",)


def service_rules(
    sp: ServicePort, listeners: Mapping[str, int], *, has_cluster: bool, has_local: bool
) -> ServiceRules | None:
    """The rules for one service port. ``listeners`` maps :data:`CLUSTER` / :data:`EXTERNAL` to the
    listener ports; ``has_cluster`` / ``has_local`` say whether usable endpoints exist (for cluster
    traffic and, under externalTrafficPolicy Local, on this node). ``None`` for an unsupported protocol.

    Redirects are nat-map elements; reject and drop are filter-map elements (``reject`` does nothing
    useful in a nat chain: the packet is silently dropped)."""
    if sp.protocol not in PROTOCOLS:
        return None
    proto = sp.protocol.lower()
    suffix = chain_suffix(sp.name)
    svc = f"svc-{suffix}"
    cluster_port = listeners.get(CLUSTER) if has_cluster else None
    chains: list[tuple[str, tuple[str, ...]]] = [(svc, _target(proto, cluster_port, _reject(proto)))]
    ext, ext_redirects = svc, cluster_port is not None
    if sp.external_local and sp.has_external:
        ext = f"ext-{suffix}"
        local_port = listeners.get(EXTERNAL) if has_local else None
        chains.append((ext, _target(proto, local_port, "drop")))
        ext_redirects = local_port is not None
    ips, nodeports = ("service-ips", "service-nodeports"), ("filter-ips", "filter-nodeports")
    svc_maps = ips if cluster_port is not None else nodeports
    ext_maps = ips if ext_redirects else nodeports
    elements = [Element(svc_maps[0], f"{ip} . {proto} . {sp.port}", f"goto {svc}") for ip in sp.cluster_ips]
    fenced = set(sp.load_balancer_ips) if sp.source_ranges else set()
    if fenced:
        # loadBalancerSourceRanges: other clients are dropped in the filter hook, before any redirect.
        fw = f"fw-{suffix}"
        allowed = "return" if ext_redirects else f"goto {ext}"
        chains.append((fw, (*(f"ip saddr {cidr} {allowed}" for cidr in sp.source_ranges), "drop")))
    for ip in (*sp.external_ips, *sp.load_balancer_ips):
        key = f"{ip} . {proto} . {sp.port}"
        if ip in fenced:
            elements.append(Element("filter-ips", key, f"goto fw-{suffix}"))
            if not ext_redirects:
                continue
        elements.append(Element(ext_maps[0], key, f"goto {ext}"))
    if sp.node_port:
        elements.append(Element(ext_maps[1], f"{proto} . {sp.node_port}", f"goto {ext}"))
    # The same address and port may be listed twice (e.g. an external IP equal to an LB IP).
    unique = tuple(dict.fromkeys(elements))
    return ServiceRules(tuple(chains), unique)


def _base(node_ips: Iterable[str]) -> list[str]:
    t = f"ip {TABLE}"
    lines = [
        f"add table {t}",
        f"add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; }}",
        f"add set {t} node-ips {{ type ipv4_addr ; }}",
        f"add chain {t} dispatch",
        f"add rule {t} dispatch ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} dispatch ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports",
        f"add map {t} filter-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map {t} filter-nodeports {{ type inet_proto . inet_service : verdict ; }}",
        f"add chain {t} filter-dispatch",
        f"add rule {t} filter-dispatch ct state new ip daddr . meta l4proto . th dport vmap @filter-ips",
        f"add rule {t} filter-dispatch ct state new ip daddr @node-ips"
        " meta l4proto . th dport vmap @filter-nodeports",
        f"add chain {t} filter-prerouting {{ type filter hook prerouting priority -110 ; }}",
        f"add rule {t} filter-prerouting jump filter-dispatch",
        f"add chain {t} filter-output {{ type filter hook output priority -110 ; }}",
        f"add rule {t} filter-output jump filter-dispatch",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add rule {t} nat-prerouting jump dispatch",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add rule {t} nat-output jump dispatch",
    ]
    ips = sorted(set(node_ips))
    if ips:
        lines.append(f"add element {t} node-ips {{ {', '.join(ips)} }}")
    return lines


def _add(rules: ServiceRules) -> tuple[list[str], list[str]]:
    """(chain lines, element lines) that create one service's rules."""
    t = f"ip {TABLE}"
    chains: list[str] = []
    for name, body in rules.chains:
        chains += [f"add chain {t} {name}", f"flush chain {t} {name}"]
        chains += [f"add rule {t} {name} {rule}" for rule in body]
    elements = [f"add element {t} {e.map} {{ {e.text()} }}" for e in rules.elements]
    return chains, elements


def full_ruleset(node_ips: Iterable[str], services: Mapping[ServicePortName, ServiceRules]) -> str:
    """Everything, replacing whatever the table held (one nft transaction)."""
    t = f"ip {TABLE}"
    lines = [f"add table {t}", f"delete table {t}", *_base(node_ips)]
    for spn in sorted(services):
        chains, elements = _add(services[spn])
        lines += chains + elements
    return "\n".join(lines) + "\n"


def partial_ruleset(
    old: Mapping[ServicePortName, ServiceRules], new: Mapping[ServicePortName, ServiceRules | None]
) -> str:
    """Only the service ports in ``new``: their old elements go, their chains are refilled, chains
    they no longer need are deleted (after the elements that jumped to them)."""
    t = f"ip {TABLE}"
    deletes: list[str] = []
    adds: list[str] = []
    drops: list[str] = []
    for spn in sorted(new):
        before, after = old.get(spn), new[spn]
        if before == after:
            continue
        kept = {name for name, _ in after.chains} if after is not None else set()
        if before is not None:
            deletes += [f"delete element {t} {e.map} {{ {e.key} }}" for e in before.elements]
            drops += [f"delete chain {t} {name}" for name, _ in before.chains if name not in kept]
        if after is not None:
            chains, elements = _add(after)
            adds += chains + elements
    lines = deletes + adds + drops
    return "\n".join(lines) + "\n" if lines else ""
