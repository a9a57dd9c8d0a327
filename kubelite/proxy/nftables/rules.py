"""The nftables text of the proxy (pure: a :class:`ProxyState` in, ``nft -f -`` text out).

One table, ``ip kubelite-proxy``. A packet costs one verdict-map lookup whatever the number of
services; endpoints are chosen inside the service's own chain, so a service port without session
affinity is exactly **one** chain (no chain per endpoint, no anonymous set)::

    nat-prerouting / nat-output (nat, priority -100) -> services:
        ip daddr . meta l4proto . th dport vmap @service-ips          # ClusterIP, externalIP, LB IP
        ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports
    svc-<hash>   cluster path: ``meta mark set numgen random mod N`` (the draw, in the mark's low 12
                 bits), mark 0x4000 for masquerade when the source is outside the cluster CIDR, then
                 ``meta mark & 0xfff == i meta l4proto tcp dnat to ip:port`` per endpoint
    ext-<hash>   external path (NodePort, externalIPs, LB IPs): Cluster policy marks for masquerade
                 and picks among all endpoints; Local policy keeps the source, picks among this
                 node's endpoints, sends pod sources to the cluster path, drops when none is local
    sep-<hash> + set aff-<hash>   only with ClientIP affinity: one chain and one dynamic set (with the
                 affinity timeout) per endpoint; ``ip saddr @aff-X goto sep-X`` before the random pick
    nat-postrouting (priority 100): masquerade marked packets (mark 0x4000, cleared), and hairpin
                 packets (``ct status dnat ip saddr . ip daddr @hairpin``: a pod reaching itself)
    filter-prerouting / filter-output (filter, priority -10, after DNAT), new connections only
                 (prerouting, not forward: a node without a route to the service CIDR must still reject):
        @no-endpoint-services / @no-endpoint-nodeports -> reject (TCP reset / ICMP port unreachable),
        or drop under a Local policy with endpoints elsewhere; other service-CIDR addresses -> reject

The draw overwrites the packet mark of new service connections (postrouting clears 0x4000 only).
Anonymous numgen maps would avoid that, but the kernel allocates each anonymous set's name by
scanning the table's sets: 10,000 services then took 39 s to load instead of 1.4 s.

A *full* sync replaces the whole table in one transaction (``add table; delete table; table {...}``):
established connections survive (conntrack keeps their NAT), but affinity memory starts anew. A
*partial* sync touches only the changed service ports' map elements, chains and sets
(:func:`partial_ruleset`), also one transaction. Hook priorities are numeric: nft 1.0.6 rejects
``dstnat`` on the output hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kubelite.proxy.model import (
    Endpoint,
    ProxyState,
    ServicePort,
    ServicePortName,
    chain_suffix,
    cluster_endpoints,
    local_endpoints,
)

__all__ = [
    "FAMILY",
    "MASQ_MARK",
    "TABLE",
    "ServiceRules",
    "all_service_rules",
    "delete_ruleset",
    "full_ruleset",
    "hairpin_ips",
    "partial_ruleset",
    "service_rules",
]

FAMILY = "ip"
TABLE = "kubelite-proxy"
MASQ_MARK = 0x4000
REJECT_CHAIN = "reject-chain"
_T = f"{FAMILY} {TABLE}"
_MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports")
_MAP_TYPES = {
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
_MARK_MASQ = f"meta mark set meta mark | {MASQ_MARK:#x}"
_MASQ_MARKED = f"meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark ^ {MASQ_MARK:#x}"
_PICK_MASK = 0xFFF  # the random draw; room for 4096 endpoints per service port


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """Everything one service port contributes to the table.

    ``chains`` maps a chain name to its rules (in order, dependencies first), ``sets`` an affinity
    set's name to its timeout in seconds, ``elements`` one of the four dispatch maps to its
    ``key : verdict`` pairs.
    """

    chains: Mapping[str, tuple[str, ...]]
    sets: Mapping[str, int]
    elements: Mapping[str, Mapping[str, str]]


def _usable(eps: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """The endpoints any traffic may use (cluster_endpoints with the internal policy ignored)."""
    return cluster_endpoints(_ANY, eps)


_ANY = ServicePort(ServicePortName("", "", ""), (), 0, "TCP", 0)


def _choose(
    sp: ServicePort,
    eps: Sequence[Endpoint],
    chains: dict[str, tuple[str, ...]],
    sets: dict[str, int],
    masq: Sequence[str] = (),
) -> list[str]:
    """Rules that DNAT to one of ``eps``, with the ``masq`` rules placed after the random draw.

    The draw is written into the low bits of the packet mark (``meta mark set numgen random mod
    N``) and the endpoints compare it: no anonymous set per service, whose allocation makes the
    kernel's cost grow with the square of the number of services. With affinity, each endpoint gets
    a chain and a dynamic set (added to ``chains`` / ``sets``).
    """
    proto = sp.protocol.lower()
    rules = [f"meta mark set numgen random mod {len(eps)}"] if len(eps) > 1 else []
    rules.extend(masq)
    targets = [f"meta l4proto {proto} dnat to {e.ip}:{e.port}" for e in eps]
    if sp.affinity_seconds:
        for i, e in enumerate(eps):
            suffix = chain_suffix(sp.name, f"{e.address}/{sp.affinity_seconds}")
            sep, aff = f"sep-{suffix}", f"aff-{suffix}"
            sets[aff] = sp.affinity_seconds
            chains[sep] = (f"update @{aff} {{ ip saddr }} {targets[i]}",)
            rules.append(f"ip saddr @{aff} goto {sep}")
            targets[i] = f"goto {sep}"
    last = len(targets) - 1
    rules.extend(
        target if i == last else f"meta mark & {_PICK_MASK:#x} == {i} {target}"
        for i, target in enumerate(targets)
    )
    return rules


def service_rules(sp: ServicePort, eps: Sequence[Endpoint], cluster_cidr: str) -> ServiceRules:
    """What one service port needs: its chains, affinity sets and dispatch-map elements."""
    proto = sp.protocol.lower()
    suffix = chain_suffix(sp.name)
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, int] = {}
    elements: dict[str, dict[str, str]] = {name: {} for name in _MAPS}
    usable = _usable(eps)
    reject = f"goto {REJECT_CHAIN}"

    cluster = cluster_endpoints(sp, eps)
    svc = f"svc-{suffix}"
    if cluster:
        masq = [f"ip saddr != {cluster_cidr} {_MARK_MASQ}"]
        chains[svc] = tuple(_choose(sp, cluster, chains, sets, masq))
    for vip in sp.cluster_ips:
        key = f"{vip} . {proto} . {sp.port}"
        if cluster:
            elements["service-ips"][key] = f"goto {svc}"
        else:
            elements["no-endpoint-services"][key] = "drop" if usable else reject

    if sp.has_external:
        external_keys = [f"{vip} . {proto} . {sp.port}" for vip in (*sp.external_ips, *sp.load_balancer_ips)]
        nodeport_key = f"{proto} . {sp.node_port}" if sp.node_port else ""
        if usable:
            ext = f"ext-{suffix}"
            if sp.external_local:
                # Source kept; pods (and hairpin) still reach every endpoint through the cluster path.
                rules = [f"ip saddr {cluster_cidr} goto {svc}"] if cluster else []
                local = local_endpoints(eps)
                rules += _choose(sp, local, chains, sets) if local else ["drop"]
            else:
                rules = _choose(sp, usable, chains, sets, [_MARK_MASQ])
            chains[ext] = tuple(rules)
            for key in external_keys:
                elements["service-ips"][key] = f"goto {ext}"
            if nodeport_key:
                elements["service-nodeports"][nodeport_key] = f"goto {ext}"
        else:
            for key in external_keys:
                elements["no-endpoint-services"][key] = reject
            if nodeport_key:
                elements["no-endpoint-nodeports"][nodeport_key] = reject
    # Endpoint chains first: the service chains refer to them.
    ordered = dict(sorted(chains.items(), key=lambda kv: not kv[0].startswith("sep-")))
    return ServiceRules(ordered, sets, {k: v for k, v in elements.items() if v})


def hairpin_ips(endpoints: Iterable[Sequence[Endpoint]]) -> frozenset[str]:
    """Every endpoint address: a connection DNATed back to its own source is masqueraded."""
    return frozenset(e.ip for eps in endpoints for e in eps)


def _set_decl(name: str, timeout: int) -> str:
    return f"set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def _base_chains(state: ProxyState) -> list[str]:
    """The fixed part of the table: hooks, dispatch, reject and masquerade."""
    nat_hook = "type nat hook {} priority {}; policy accept;"
    filter_hook = "type filter hook {} priority -10; policy accept;"
    return [
        f"chain {REJECT_CHAIN} {{\nmeta l4proto tcp reject with tcp reset\nreject\n}}",
        "chain services {\nip daddr . meta l4proto . th dport vmap @service-ips\n"
        "ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports\n}",
        f"chain nat-prerouting {{\n{nat_hook.format('prerouting', -100)}\njump services\n}}",
        f"chain nat-output {{\n{nat_hook.format('output', -100)}\njump services\n}}",
        f"chain nat-postrouting {{\n{nat_hook.format('postrouting', 100)}\n"
        f"{_MASQ_MARKED} masquerade fully-random\n"
        "ct status dnat ip saddr . ip daddr @hairpin masquerade\n}",
        "chain endpoints-check {\nip daddr . meta l4proto . th dport vmap @no-endpoint-services\n"
        "ip daddr @node-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n"
        f"ip daddr {state.service_cidr} goto {REJECT_CHAIN}\n}}",
        *(
            f"chain filter-{hook} {{\n{filter_hook.format(hook)}\nct state new jump endpoints-check\n}}"
            for hook in ("prerouting", "output")
        ),
    ]


def full_ruleset(state: ProxyState, rules: Mapping[ServicePortName, ServiceRules] | None = None) -> str:
    """The whole table, replacing whatever is there, in one transaction.

    ``rules`` are the per-service rules when the caller already computed them (``service_rules``
    for every service port of ``state``).
    """
    if rules is None:
        rules = all_service_rules(state)
    out = [f"add table {_T}", f"delete table {_T}", f"table {_T} {{"]
    node_ips = _elements(state.node_ips)
    out.append(f"set node-ips {{ type ipv4_addr;{f' elements = {{ {node_ips} }};' if node_ips else ''} }}")
    hairpin = _elements(f"{ip} . {ip}" for ip in sorted(hairpin_ips(state.endpoints.values())))
    out.append(
        f"set hairpin {{ type ipv4_addr . ipv4_addr;{f' elements = {{ {hairpin} }};' if hairpin else ''} }}"
    )
    maps: dict[str, list[str]] = {name: [] for name in _MAPS}
    for sr in rules.values():
        for name, timeout in sr.sets.items():
            out.append(_set_decl(name, timeout))
        for chain, body in sr.chains.items():
            out.append(f"chain {chain} {{\n" + "\n".join(body) + "\n}")
        for name, elems in sr.elements.items():
            maps[name].extend(f"{k} : {v}" for k, v in elems.items())
    out.extend(_base_chains(state)[:1])
    for name in _MAPS:
        listed = f" elements = {{ {_elements(maps[name])} }};" if maps[name] else ""
        out.append(f"map {name} {{ type {_MAP_TYPES[name]};{listed} }}")
    out.extend(_base_chains(state)[1:])
    out.append("}")
    return "\n".join(out) + "\n"


def all_service_rules(state: ProxyState) -> dict[ServicePortName, ServiceRules]:
    return {
        spn: service_rules(sp, state.endpoints_of(spn), state.cluster_cidr)
        for spn, sp in sorted(state.services.items())
        if sp.cluster_ips
    }


def partial_ruleset(
    old: Mapping[ServicePortName, ServiceRules],
    new: Mapping[ServicePortName, ServiceRules],
    changed: Iterable[ServicePortName],
    old_hairpin: frozenset[str] = frozenset(),
    new_hairpin: frozenset[str] = frozenset(),
) -> str:
    """Only what changed, in one transaction, assuming the kernel holds ``old``.

    Order matters inside the transaction: stale map elements go first (they refer to chains), then
    new sets and chains, then rules, then new elements, and last the chains and sets nobody uses.
    """
    empty = ServiceRules({}, {}, {})
    del_elems: dict[str, list[str]] = {}
    add_elems: dict[str, list[str]] = {}
    add_sets: dict[str, int] = {}
    write_chains: dict[str, tuple[str, ...]] = {}
    gone_chains: list[str] = []
    gone_sets: list[str] = []
    for spn in sorted(set(changed)):
        before, after = old.get(spn, empty), new.get(spn, empty)
        for name in _MAPS:
            b, a = before.elements.get(name, {}), after.elements.get(name, {})
            for key, verdict in b.items():
                if a.get(key) != verdict:
                    del_elems.setdefault(name, []).append(key)
            for key, verdict in a.items():
                if b.get(key) != verdict:
                    add_elems.setdefault(name, []).append(f"{key} : {verdict}")
        for sname, timeout in after.sets.items():
            if sname not in before.sets:
                add_sets[sname] = timeout
        gone_sets.extend(s for s in before.sets if s not in after.sets)
        for chain, body in after.chains.items():
            if before.chains.get(chain) != body:
                write_chains[chain] = body
        gone_chains.extend(c for c in before.chains if c not in after.chains)
    out: list[str] = []
    for name, keys in del_elems.items():
        out.append(f"delete element {_T} {name} {{ {_elements(keys)} }}")
    for ip in sorted(old_hairpin - new_hairpin):
        out.append(f"delete element {_T} hairpin {{ {ip} . {ip} }}")
    out.extend(f"add {_set_decl(name, t).replace('set ', f'set {_T} ', 1)}" for name, t in add_sets.items())
    out.extend(f"add chain {_T} {c}" for c in write_chains)
    for chain, body in write_chains.items():
        out.append(f"flush chain {_T} {chain}")
        out.extend(f"add rule {_T} {chain} {rule}" for rule in body)
    for name, items in add_elems.items():
        out.append(f"add element {_T} {name} {{ {_elements(items)} }}")
    added = sorted(new_hairpin - old_hairpin)
    if added:
        out.append(f"add element {_T} hairpin {{ {_elements(f'{ip} . {ip}' for ip in added)} }}")
    for chain in gone_chains:
        out.append(f"flush chain {_T} {chain}")
    out.extend(f"delete chain {_T} {c}" for c in gone_chains)
    out.extend(f"delete set {_T} {s}" for s in gone_sets)
    return "\n".join(out) + "\n" if out else ""


def delete_ruleset() -> str:
    """Remove the table (and nothing else); harmless when it is not there."""
    return f"add table {_T}\ndelete table {_T}\n"
