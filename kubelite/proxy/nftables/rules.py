"""The nftables text of the proxy (pure: a :class:`ProxyState` in, ``nft -f -`` text out).

One table, ``ip kubelite-proxy``. A new connection costs one verdict-map lookup to find its
service and one data-map lookup to find its endpoint, whatever the number of services; a service
port without session affinity has **no chain of its own**::

    nat-prerouting / nat-output (nat, priority -100) -> services:
        ip daddr . meta l4proto . th dport vmap @service-ips          # ClusterIP, externalIP, LB IP
        ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports
    shared pickers, one per (path, protocol, endpoint count), used by every service port alike:
      cluster-tcp-3    masquerade mark 0x4000 when the source is outside the cluster CIDR, then
                       ``dnat ip addr . port to ip daddr . th dport . numgen random mod 3 map
                       @cluster-tcp-endpoints``: the draw is the last field of the key
      external-tcp-N   externalIPs / LB IPs, Cluster policy: always masquerade, @external-tcp-endpoints
      external-local-tcp-L-C   Local policy: pod sources goto external-cluster-tcp-C (every
                       endpoint, @external-cluster-tcp-endpoints); others pick among the L local
                       endpoints, source kept; ``drop`` when L is 0
      nodeport-*       the same three for NodePorts, keyed ``th dport . draw``
    endpoint maps, one per path and protocol: ``<front door> . <draw> : <endpoint ip> . <port>``
    svc-/ext-<hash>, sep-<hash> + set aff-<hash>   only with ClientIP affinity: per service port,
                 the draw goes to the mark's low 12 bits, one chain and one dynamic set (with the
                 affinity timeout) per endpoint; ``ip saddr @aff-X goto sep-X`` before the draw
    nat-postrouting (priority 100): masquerade marked packets (mark 0x4000, cleared), and hairpin
                 packets (``ct status dnat ip saddr . ip daddr @hairpin``: a pod reaching itself)
    firewall-prerouting / firewall-output (filter, priority -110, before DNAT): new connections to a
                 LoadBalancer IP with loadBalancerSourceRanges go through ``@firewall-ips`` to the
                 service's ``fw-<hash>`` chain: ``ip saddr <range> return`` per range, then ``drop``
    filter-prerouting / filter-output (filter, priority -10, after DNAT), new connections only
                 (prerouting, not forward: a node without a route to the service CIDR must still reject):
        @no-endpoint-services / @no-endpoint-nodeports -> reject (TCP reset / ICMP port unreachable),
        or drop under a Local policy with endpoints elsewhere; other service-CIDR addresses -> reject

Why shared pickers: every transaction that adds a DNAT rule or a ``goto`` element makes the
kernel validate every chain reachable from the table's base chains (twice here: prerouting and
output). With a chain per service that walk dominated a one-service change at 10,000 services
(~40 of 70 ms); with pickers shared by count it walks a handful of hot chains. Adding a service
is then map elements only. Why not one shared endpoint map bound by 10,000 per-service rules:
the kernel walks a map's elements on every new binding, which is quadratic (19 s to load).
Anonymous sets per service are out for the same kind of reason (the kernel scans set names to
allocate each one: 39 s for 10,000).

A *full* sync replaces the whole table in one transaction (``add table; delete table; table {...}``):
established connections survive (conntrack keeps their NAT, and the ``kubelite-proxy-keep`` table's
empty nat chains keep the kernel translating them even while the main table is gone), but affinity
memory starts anew. A
*partial* sync touches only the changed service ports' map elements (and affinity chains and
sets), also one transaction; :class:`Refs` counts which shared pickers and hairpin addresses are
in use, so a partial sync never scans the other services. Hook priorities are numeric: nft
1.0.6 rejects ``dstnat`` on the output hook.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    "KEEP_TABLE",
    "MASQ_MARK",
    "TABLE",
    "Refs",
    "ServiceRules",
    "all_service_rules",
    "count_refs",
    "delete_ruleset",
    "full_ruleset",
    "partial_ruleset",
    "service_rules",
]

FAMILY = "ip"
TABLE = "kubelite-proxy"
KEEP_TABLE = "kubelite-proxy-keep"
"""Empty nat chains on every hook, in a table of their own (see :func:`keep_table`)."""
MASQ_MARK = 0x4000
REJECT_CHAIN = "reject-chain"
_T = f"{FAMILY} {TABLE}"
_VIP_KEY = "ip daddr . th dport"
_PORT_KEY = "th dport"
_PROTOCOLS = ("tcp", "udp", "sctp")
_VERDICT_MAPS = {
    "firewall-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
_PATH_KEYS = {
    "cluster": _VIP_KEY,
    "external": _VIP_KEY,
    "external-cluster": _VIP_KEY,
    "nodeport": _PORT_KEY,
    "nodeport-cluster": _PORT_KEY,
}
# One endpoint map per path and protocol: nft 1.0.6 cannot add a rule that uses a map whose data
# is typed by ``th dport`` ("conflicting protocols"), so the data is typed by the protocol's dport.
_ENDPOINT_MAPS = {
    f"{path}-{proto}-endpoints": (key, proto) for path, key in _PATH_KEYS.items() for proto in _PROTOCOLS
}
_MAPS = (*_VERDICT_MAPS, *_ENDPOINT_MAPS)
_MARK_MASQ = f"meta mark set meta mark | {MASQ_MARK:#x}"
_MASQ_MARKED = f"meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark ^ {MASQ_MARK:#x}"
_PICK_MASK = 0xFFF  # the affinity draw; room for 4096 endpoints per service port
_Chain = tuple[str, tuple[str, ...]]  # a chain's name and rules


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """Everything one service port contributes to the table.

    ``elements`` maps each of the verdict and endpoint maps to its ``key : value`` pairs;
    ``shared`` names the shared picker chains it sends traffic to (with their rules, dependencies
    first); ``chains`` and ``sets`` are its own chains and affinity sets (timeout in seconds),
    empty without session affinity or source ranges; ``hairpin`` the endpoint addresses it may
    DNAT to.
    """

    elements: Mapping[str, Mapping[str, str]]
    shared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sets: Mapping[str, int] = field(default_factory=dict)
    hairpin: frozenset[str] = frozenset()


@dataclass
class Refs:
    """How many service ports use each shared chain and each hairpin address (what the kernel holds)."""

    chains: Counter[str] = field(default_factory=Counter)
    hairpin: Counter[str] = field(default_factory=Counter)


def count_refs(rules: Iterable[ServiceRules]) -> Refs:
    refs = Refs()
    for sr in rules:
        refs.chains.update(sr.shared.keys())
        refs.hairpin.update(sr.hairpin)
    return refs


def _usable(eps: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """The endpoints any traffic may use (cluster_endpoints with the internal policy ignored)."""
    return cluster_endpoints(_ANY, eps)


_ANY = ServicePort(ServicePortName("", "", ""), (), 0, "TCP", 0)


def _dnat_from_map(proto: str, path: str, n: int) -> str:
    key = _PATH_KEYS[path]
    endpoint_map = f"{path}-{proto}-endpoints"
    return f"meta l4proto {proto} dnat ip addr . port to {key} . numgen random mod {n} map @{endpoint_map}"


@functools.lru_cache(maxsize=4096)
def _picker(kind: str, proto: str, n: int, cluster: int, cluster_cidr: str) -> tuple[_Chain, ...]:
    """A shared picker chain and the chains it needs: ``((name, rules), ...)``, dependencies first.

    ``kind`` is ``cluster``, ``external`` or ``nodeport`` (pick among ``n``, masquerading as the
    path requires), ``external-local`` or ``nodeport-local`` (``n`` local endpoints for
    outside sources, ``cluster`` endpoints for pod sources), or ``external-cluster`` /
    ``nodeport-cluster`` (the pod-source path of the Local ones).
    """
    name = f"{kind}-{proto}-{n}"
    rules: tuple[str, ...]
    if kind == "cluster":
        rules = (f"ip saddr != {cluster_cidr} {_MARK_MASQ}", _dnat_from_map(proto, kind, n))
    elif kind in ("external", "nodeport"):
        rules = (_MARK_MASQ, _dnat_from_map(proto, kind, n))
    elif kind.endswith("-cluster"):
        rules = (_dnat_from_map(proto, kind, n),)
    else:
        base = kind.removesuffix("-local")
        name = f"{kind}-{proto}-{n}-{cluster}"
        deps = _picker(f"{base}-cluster", proto, cluster, 0, cluster_cidr) if cluster else ()
        to_pods = (f"ip saddr {cluster_cidr} goto {deps[0][0]}",) if deps else ()
        local = _dnat_from_map(proto, base, n) if n else "drop"
        return (*deps, (name, (*to_pods, local)))
    return ((name, rules),)


def _choose(
    sp: ServicePort,
    eps: Sequence[Endpoint],
    chains: dict[str, tuple[str, ...]],
    sets: dict[str, int],
    masq: Sequence[str] = (),
) -> list[str]:
    """Rules of an affinity service's own chain that DNAT to one of ``eps``.

    The draw is written into the low bits of the packet mark (``meta mark set numgen random mod
    N``) and the endpoints compare it; each endpoint gets a chain and a dynamic set that remembers
    its clients (added to ``chains`` / ``sets``), tried before the draw.
    """
    proto = sp.protocol.lower()
    rules = [f"meta mark set numgen random mod {len(eps)}"] if len(eps) > 1 else []
    rules.extend(masq)
    targets = []
    for e in eps:
        suffix = chain_suffix(sp.name, f"{e.address}/{sp.affinity_seconds}")
        sep, aff = f"sep-{suffix}", f"aff-{suffix}"
        sets[aff] = sp.affinity_seconds
        chains[sep] = (f"update @{aff} {{ ip saddr }} meta l4proto {proto} dnat to {e.ip}:{e.port}",)
        rules.append(f"ip saddr @{aff} goto {sep}")
        targets.append(f"goto {sep}")
    last = len(targets) - 1
    rules.extend(
        target if i == last else f"meta mark & {_PICK_MASK:#x} == {i} {target}"
        for i, target in enumerate(targets)
    )
    return rules


def _affinity_paths(
    sp: ServicePort, eps: Sequence[Endpoint], cluster_cidr: str
) -> tuple[dict[str, tuple[str, ...]], dict[str, int], str, str]:
    """Own chains and sets of an affinity service port, and its cluster and external verdicts."""
    suffix = chain_suffix(sp.name)
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, int] = {}
    cluster, usable = cluster_endpoints(sp, eps), _usable(eps)
    svc, ext = f"svc-{suffix}", f"ext-{suffix}"
    if cluster:
        chains[svc] = tuple(_choose(sp, cluster, chains, sets, [f"ip saddr != {cluster_cidr} {_MARK_MASQ}"]))
    if sp.has_external and usable:
        if sp.external_local:
            rules = [f"ip saddr {cluster_cidr} goto {svc}"] if cluster else []
            local = local_endpoints(eps)
            rules += _choose(sp, local, chains, sets) if local else ["drop"]
        else:
            rules = _choose(sp, usable, chains, sets, [_MARK_MASQ])
        chains[ext] = tuple(rules)
    # Endpoint chains first: the service chains refer to them.
    ordered = dict(sorted(chains.items(), key=lambda kv: not kv[0].startswith("sep-")))
    return ordered, sets, f"goto {svc}", f"goto {ext}"


def service_rules(sp: ServicePort, eps: Sequence[Endpoint], cluster_cidr: str) -> ServiceRules:
    """What one service port needs: dispatch and endpoint map elements, the pickers they use."""
    proto = sp.protocol.lower()
    elements: dict[str, dict[str, str]] = {name: {} for name in _MAPS}
    shared: dict[str, tuple[str, ...]] = {}
    usable, cluster = _usable(eps), cluster_endpoints(sp, eps)
    reject = f"goto {REJECT_CHAIN}"
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, int] = {}
    to_cluster = to_external = ""
    if sp.affinity_seconds:
        chains, sets, to_cluster, to_external = _affinity_paths(sp, eps, cluster_cidr)
    if sp.source_ranges and sp.load_balancer_ips:
        firewall = f"fw-{chain_suffix(sp.name)}"
        chains[firewall] = (*(f"ip saddr {cidr} return" for cidr in sp.source_ranges), "drop")
        for vip in sp.load_balancer_ips:
            elements["firewall-ips"][f"{vip} . {proto} . {sp.port}"] = f"goto {firewall}"

    def pick(kind: str, n: int, c: int = 0) -> str:
        if sp.affinity_seconds:
            return to_external
        picked = _picker(kind, proto, n, c, cluster_cidr)
        shared.update(picked)
        return f"goto {picked[-1][0]}"

    def fill(path: str, front: str, chosen: Sequence[Endpoint]) -> None:
        if not sp.affinity_seconds:
            into = elements[f"{path}-{proto}-endpoints"]
            into.update((f"{front} . {i}", f"{e.ip} . {e.port}") for i, e in enumerate(chosen))

    for vip in sp.cluster_ips:
        key = f"{vip} . {proto} . {sp.port}"
        if cluster:
            verdict = to_cluster if sp.affinity_seconds else pick("cluster", len(cluster))
            elements["service-ips"][key] = verdict
            fill("cluster", f"{vip} . {sp.port}", cluster)
        else:
            elements["no-endpoint-services"][key] = "drop" if usable else reject

    if sp.has_external:
        fronts = [
            ("external", f"{vip} . {proto} . {sp.port}", f"{vip} . {sp.port}")
            for vip in (*sp.external_ips, *sp.load_balancer_ips)
        ]
        if sp.node_port:
            fronts.append(("nodeport", f"{proto} . {sp.node_port}", str(sp.node_port)))
        for base, key, front in fronts:
            verdict_map, no_endpoint = (
                ("service-ips", "no-endpoint-services")
                if base == "external"
                else ("service-nodeports", "no-endpoint-nodeports")
            )
            if not usable:
                elements[no_endpoint][key] = reject
            elif sp.external_local:
                local = local_endpoints(eps)
                elements[verdict_map][key] = pick(f"{base}-local", len(local), len(cluster))
                fill(base, front, local)
                fill(f"{base}-cluster", front, cluster)
            else:
                elements[verdict_map][key] = pick(base, len(usable))
                fill(base, front, usable)
    return ServiceRules(
        {k: v for k, v in elements.items() if v}, shared, chains, sets, frozenset(e.ip for e in eps)
    )


def _set_decl(name: str, timeout: int) -> str:
    return f"set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"


def _map_decl(name: str, items: Sequence[str]) -> str:
    listed = f" elements = {{ {_elements(items)} }};" if items else ""
    if name in _VERDICT_MAPS:
        return f"map {name} {{ type {_VERDICT_MAPS[name]};{listed} }}"
    key, proto = _ENDPOINT_MAPS[name]
    return f"map {name} {{ typeof {key} . numgen random mod 2 : ip daddr . {proto} dport;{listed} }}"


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def _chain(name: str, rules: Sequence[str]) -> str:
    return f"chain {name} {{\n" + "\n".join(rules) + "\n}"


def _base_chains(state: ProxyState) -> list[str]:
    """The fixed part of the table: hooks, dispatch, reject and masquerade."""
    nat_hook = "type nat hook {} priority {}; policy accept;"
    filter_hook = "type filter hook {} priority -10; policy accept;"
    firewall_hook = "type filter hook {} priority -110; policy accept;"  # before DNAT
    return [
        *(
            f"chain firewall-{hook} {{\n{firewall_hook.format(hook)}\n"
            "ct state new ip daddr . meta l4proto . th dport vmap @firewall-ips\n}"
            for hook in ("prerouting", "output")
        ),
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


def full_ruleset(
    state: ProxyState,
    rules: Mapping[ServicePortName, ServiceRules] | None = None,
    refs: Refs | None = None,
) -> str:
    """The whole table, replacing whatever is there, in one transaction.

    ``rules`` are the per-service rules and ``refs`` their :func:`count_refs` when the caller
    already computed them (``service_rules`` for every service port of ``state``).
    """
    if rules is None:
        rules = all_service_rules(state)
    if refs is None:
        refs = count_refs(rules.values())
    out = [f"add table {_T}", f"delete table {_T}", f"table {_T} {{"]
    node_ips = _elements(state.node_ips)
    out.append(f"set node-ips {{ type ipv4_addr;{f' elements = {{ {node_ips} }};' if node_ips else ''} }}")
    hairpin = _elements(f"{ip} . {ip}" for ip in sorted(refs.hairpin))
    out.append(
        f"set hairpin {{ type ipv4_addr . ipv4_addr;{f' elements = {{ {hairpin} }};' if hairpin else ''} }}"
    )
    out.append(_chain(REJECT_CHAIN, ("meta l4proto tcp reject with tcp reset", "reject")))
    shared: dict[str, tuple[str, ...]] = {}
    maps: dict[str, list[str]] = {name: [] for name in _MAPS}
    for sr in rules.values():
        shared.update(sr.shared)
        for name, timeout in sr.sets.items():
            out.append(_set_decl(name, timeout))
        out.extend(_chain(chain, body) for chain, body in sr.chains.items())
        for name, elems in sr.elements.items():
            maps[name].extend(f"{k} : {v}" for k, v in elems.items())
    out.extend(_chain(name, body) for name, body in shared.items())
    out.extend(_map_decl(name, maps[name]) for name in _MAPS)
    out.extend(_base_chains(state))
    out.append("}")
    out.append(keep_table())
    return "\n".join(out) + "\n"


def keep_table() -> str:
    """Empty nat base chains on the four nat hooks, in their own table (one line, additive).

    Established connections keep their NAT in conntrack, but the kernel only translates their
    packets at hooks where some nat chain is registered, and only tracks connections while some
    rule uses conntrack (here a ``ct state`` match that decides nothing). Without this table,
    deleting or flushing ``ip kubelite-proxy`` (an admin, a ``nft flush table``) would leave every
    established service connection un-NATed until the next sync; with it they carry on, and the
    proxy's resync restores the rest.
    """
    hooks = ("prerouting", "input", "output", "postrouting")
    # The ``ct state`` match does nothing but hold conntrack: nat chains alone do not.
    chains = " ".join(
        f"chain {h} {{ type nat hook {h} priority 100; policy accept; ct state new; }};" for h in hooks
    )
    return f"table {FAMILY} {KEEP_TABLE} {{ {chains} }}"


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
    refs: Refs,
) -> str:
    """Only what changed, in one transaction, assuming the kernel holds ``old`` (counted in ``refs``).

    ``refs`` is updated in place to count ``new``. Order matters inside the transaction: stale
    map elements go first (they refer to chains), then new sets and chains, then rules, then new
    elements, and last the chains and sets nobody uses.
    """
    empty = ServiceRules({})
    del_elems: dict[str, list[str]] = {}
    add_elems: dict[str, list[str]] = {}
    add_sets: dict[str, int] = {}
    write_chains: dict[str, tuple[str, ...]] = {}
    gone_chains: list[str] = []
    gone_sets: list[str] = []
    before_chains, before_hairpin = set(refs.chains), set(refs.hairpin)
    shared_bodies: dict[str, tuple[str, ...]] = {}
    for spn in sorted(set(changed)):
        before, after = old.get(spn, empty), new.get(spn, empty)
        for name in _MAPS:
            b, a = before.elements.get(name, {}), after.elements.get(name, {})
            for key, value in b.items():
                if a.get(key) != value:
                    del_elems.setdefault(name, []).append(key)
            for key, value in a.items():
                if b.get(key) != value:
                    add_elems.setdefault(name, []).append(f"{key} : {value}")
        for sname, timeout in after.sets.items():
            if sname not in before.sets:
                add_sets[sname] = timeout
        gone_sets.extend(s for s in before.sets if s not in after.sets)
        for chain, body in after.chains.items():
            if before.chains.get(chain) != body:
                write_chains[chain] = body
        gone_chains.extend(c for c in before.chains if c not in after.chains)
        refs.chains.subtract(before.shared.keys())
        refs.chains.update(after.shared.keys())
        shared_bodies.update(after.shared)
        refs.hairpin.subtract(before.hairpin)
        refs.hairpin.update(after.hairpin)
    for counter in (refs.chains, refs.hairpin):
        for key in [k for k, v in counter.items() if v <= 0]:
            del counter[key]
    new_shared = {c: body for c, body in shared_bodies.items() if c in refs.chains and c not in before_chains}
    write_chains = {**new_shared, **write_chains}
    gone_chains.extend(sorted(before_chains - set(refs.chains)))
    out: list[str] = []
    for name, keys in del_elems.items():
        out.append(f"delete element {_T} {name} {{ {_elements(keys)} }}")
    for ip in sorted(before_hairpin - set(refs.hairpin)):
        out.append(f"delete element {_T} hairpin {{ {ip} . {ip} }}")
    out.extend(f"add {_set_decl(name, t).replace('set ', f'set {_T} ', 1)}" for name, t in add_sets.items())
    out.extend(f"add chain {_T} {c}" for c in write_chains)
    for chain, body in write_chains.items():
        out.append(f"flush chain {_T} {chain}")
        out.extend(f"add rule {_T} {chain} {rule}" for rule in body)
    for name, items in add_elems.items():
        out.append(f"add element {_T} {name} {{ {_elements(items)} }}")
    added = sorted(set(refs.hairpin) - before_hairpin)
    if added:
        out.append(f"add element {_T} hairpin {{ {_elements(f'{ip} . {ip}' for ip in added)} }}")
    for chain in gone_chains:
        out.append(f"flush chain {_T} {chain}")
    out.extend(f"delete chain {_T} {c}" for c in gone_chains)
    out.extend(f"delete set {_T} {s}" for s in gone_sets)
    return "\n".join(out) + "\n" if out else ""


def delete_ruleset() -> str:
    """Remove both tables (and nothing else); harmless when they are not there."""
    keep = f"{FAMILY} {KEEP_TABLE}"
    return f"add table {_T}\ndelete table {_T}\nadd table {keep}\ndelete table {keep}\n"
