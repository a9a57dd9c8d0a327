"""What the iptables rules should be: a ProxyState as ``iptables-restore --noflush`` input. Pure.

The layout is kube-proxy's iptables mode (``pkg/proxy/iptables/proxier.go``):

nat table::

    PREROUTING, OUTPUT -> KUBE-SERVICES     per cluster / external / LoadBalancer IP:port -> chain,
                                            last: node IPs -> KUBE-NODEPORTS
    KUBE-NODEPORTS                          per nodePort -> KUBE-EXT-<h>
    KUBE-EXT-<h>    external traffic: cluster policy: mark for masquerade, -> KUBE-SVC-<h>;
                    local policy: pods -> KUBE-SVC-<h>, node-local sources masqueraded -> KUBE-SVC-<h>,
                    everything else -> KUBE-SVL-<h> (client source IP kept)
    KUBE-SVC-<h>    all usable endpoints; first rule masquerades a cluster IP reached from outside
                    the pod CIDR; ClientIP affinity (``-m recent --rcheck``) then
                    ``-m statistic --mode random --probability 1/(n-i)``, last rule unconditional
    KUBE-SVL-<h>    the same over this node's endpoints (a Local traffic policy), no masquerade
    KUBE-SEP-<h>    one endpoint: hairpin masquerade (``-s <ip>``), local pod bridge masquerade, DNAT
    KUBE-FW-<h>     a LoadBalancer IP with loadBalancerSourceRanges: ``-s <range> -j KUBE-EXT-<h>`` per
                    range, then KUBE-MARK-DROP (``--or-mark 0x8000``), which filter KUBE-PROXY-FIREWALL
                    (from INPUT, FORWARD and OUTPUT) drops
    KUBE-MARK-MASQ  ``--or-mark 0x4000``;  POSTROUTING -> KUBE-POSTROUTING masquerades marked packets

filter table: KUBE-SERVICES (from FORWARD and OUTPUT) and KUBE-EXTERNAL-SERVICES (from INPUT and
FORWARD) REJECT service ports with no usable endpoint (DROP when a Local policy leaves none on this
node but there are some elsewhere); KUBE-FORWARD accepts marked and established traffic;
KUBE-NODEPORTS accepts health-check node ports.

``<h>`` is :func:`kubelite.proxy.model.chain_suffix` (SEP chains hash the endpoint address too).

Partial sync (kube-proxy's, GA in 1.28): the input always rewrites the shared chains (nat
KUBE-SERVICES, KUBE-NODEPORTS, KUBE-MARK-MASQ, KUBE-POSTROUTING, the whole filter table's KUBE-
chains) but only the per-service chains of the changed service ports; chains that existed and are
no longer wanted are flushed and deleted (``-X``). Declaring ``:CHAIN - [0:0]`` in a ``--noflush``
restore creates or flushes exactly that chain, so unchanged chains are left alone.

Without ``br_netfilter`` (a global setting this project never touches) a reply from a pod to
another pod on the same bridge is bridged, not routed, so it would skip the un-DNAT: SEP chains of
this node's endpoints therefore masquerade traffic that came in on the pod bridge
(:attr:`RuleOptions.pod_bridge`), as hairpin traffic is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
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
    "JUMPS",
    "MASQ_MARK",
    "JumpRule",
    "RuleOptions",
    "Ruleset",
    "build_rules",
    "chains_in_save",
    "cleanup_rules",
    "port_rules",
]

MASQ_MARK = "0x4000"
DROP_MARK = "0x8000"
NAT_SHARED = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-MARK-DROP", "KUBE-POSTROUTING")
FILTER_SHARED = (
    "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"
)  # fmt: skip
PER_SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-SEP-", "KUBE-FW-")


@dataclass(frozen=True, slots=True)
class JumpRule:
    """A rule in a built-in chain that hands packets to our chains (inserted with ``iptables -I``)."""

    table: str
    chain: str
    args: tuple[str, ...]

    def line(self) -> str:
        return " ".join(["-A", self.chain, *_quote(self.args)])


def _jump(table: str, chain: str, comment: str, target: str, *match: str) -> JumpRule:
    return JumpRule(table, chain, (*match, "-m", "comment", "--comment", comment, "-j", target))


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMPS: tuple[JumpRule, ...] = (
    *(
        _jump("filter", chain, "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL", *_NEW)
        for chain in ("INPUT", "FORWARD", "OUTPUT")
    ),
    _jump("filter", "INPUT", "kubernetes health check service ports", "KUBE-NODEPORTS"),
    _jump(
        "filter", "INPUT", "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES", *_NEW
    ),
    _jump("filter", "FORWARD", "kubernetes forwarding rules", "KUBE-FORWARD"),
    _jump("filter", "FORWARD", "kubernetes service portals", "KUBE-SERVICES", *_NEW),
    _jump(
        "filter", "FORWARD", "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES", *_NEW
    ),
    _jump("filter", "OUTPUT", "kubernetes service portals", "KUBE-SERVICES", *_NEW),
    _jump("nat", "PREROUTING", "kubernetes service portals", "KUBE-SERVICES"),
    _jump("nat", "OUTPUT", "kubernetes service portals", "KUBE-SERVICES"),
    _jump("nat", "POSTROUTING", "kubernetes postrouting rules", "KUBE-POSTROUTING"),
)


@dataclass(frozen=True, slots=True)
class RuleOptions:
    pod_bridge: str | None = "cni0"
    """The node's pod bridge: traffic entering on it to a local endpoint is masqueraded (see above)."""
    random_fully: bool = True
    """``MASQUERADE --random-fully`` (as kube-proxy, avoids source port collisions)."""


@dataclass(frozen=True, slots=True)
class Ruleset:
    text: str
    """``iptables-restore --noflush`` input (filter, then nat)."""
    nat_chains: frozenset[str]
    """Every per-service nat chain the state needs (what exists after the restore)."""
    rewritten: frozenset[str] = frozenset()
    """The per-service chains this input declares (flushes and refills)."""
    deleted: frozenset[str] = frozenset()


@dataclass(slots=True)
class PortRules:
    """The rules one service port contributes (lines without ``-A CHAIN``), by chain."""

    nat_services: list[str] = field(default_factory=list)
    nat_nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    filter_nodeports: list[str] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)


def _quote(args: Iterable[str]) -> list[str]:
    return [f'"{a}"' if (" " in a or not a) else a for a in args]


def _proto(sp: ServicePort) -> str:
    p = sp.protocol.lower()
    return f"-p {p} -m {p}"


def _prob(n_left: int) -> str:
    return f"{1.0 / n_left:0.10f}"


def sep_chain(spn: ServicePortName, ep: Endpoint) -> str:
    return "KUBE-SEP-" + chain_suffix(spn, ep.address)


def port_rules(
    sp: ServicePort, eps: tuple[Endpoint, ...], state: ProxyState, options: RuleOptions
) -> PortRules:
    """Everything one service port needs (kube-proxy's per-service loop body)."""
    out = PortRules()
    spn, suffix, proto = sp.name, chain_suffix(sp.name), _proto(sp)
    svc, svl, ext = f"KUBE-SVC-{suffix}", f"KUBE-SVL-{suffix}", f"KUBE-EXT-{suffix}"
    name = str(spn)

    all_eps = cluster_endpoints(dataclasses.replace(sp, internal_local=False), eps)
    local_eps = local_endpoints(eps)
    internal_eps = cluster_endpoints(sp, eps)
    external_eps = local_eps if sp.external_local else all_eps
    internal_chain = svl if sp.internal_local else svc
    external_chain = svl if sp.external_local else svc
    uses_svc = bool(all_eps) and (not sp.internal_local or sp.has_external)
    uses_svl = bool(local_eps) and (sp.internal_local or sp.external_local)
    uses_ext = sp.has_external and bool(external_eps)

    # Local policy with endpoints only elsewhere: drop (the client may retry another node).
    internal_block = "DROP" if sp.internal_local and all_eps else "REJECT"
    external_block = "DROP" if sp.external_local and all_eps else "REJECT"

    for ip in sp.cluster_ips:
        dest = f"-d {ip}/32 {proto} --dport {sp.port}"
        if internal_eps:
            out.nat_services.append(f'-m comment --comment "{name} cluster IP" {dest} -j {internal_chain}')
        else:
            why = "has no local endpoints" if internal_block == "DROP" else "has no endpoints"
            out.filter_services.append(f'-m comment --comment "{name} {why}" {dest} -j {internal_block}')
    firewall = f"KUBE-FW-{suffix}" if sp.source_ranges and sp.load_balancer_ips and uses_ext else ""
    for kind, ips in (("external IP", sp.external_ips), ("loadbalancer IP", sp.load_balancer_ips)):
        for ip in ips:
            dest = f"-d {ip}/32 {proto} --dport {sp.port}"
            if uses_ext:
                target = firewall if firewall and kind == "loadbalancer IP" else ext
                out.nat_services.append(f'-m comment --comment "{name} {kind}" {dest} -j {target}')
            else:
                out.filter_external.append(f'-m comment --comment "{name} {kind}" {dest} -j {external_block}')
    if sp.node_port:
        dest = f"{proto} --dport {sp.node_port}"
        if uses_ext:
            out.nat_nodeports.append(f'-m comment --comment "{name}" {dest} -j {ext}')
        else:
            out.filter_external.append(
                f'-m comment --comment "{name} nodePort" -m addrtype --dst-type LOCAL {dest} '
                f"-j {external_block}"
            )
    if sp.health_check_node_port:
        out.filter_nodeports.append(
            f'-m comment --comment "{name} health check node port" -p tcp -m tcp '
            f"--dport {sp.health_check_node_port} -j ACCEPT"
        )

    if uses_ext:
        rules: list[str] = []
        if sp.external_local:
            rules.append(
                f'-m comment --comment "pod traffic for {name} external destinations" '
                f"-s {state.cluster_cidr} -j {svc}"
            )
            rules.append(
                f'-m comment --comment "masquerade LOCAL traffic for {name} external destinations" '
                "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            )
            rules.append(
                f'-m comment --comment "route LOCAL traffic for {name} external destinations" '
                f"-m addrtype --src-type LOCAL -j {svc}"
            )
        else:
            rules.append(
                f'-m comment --comment "masquerade traffic for {name} external destinations" '
                "-j KUBE-MARK-MASQ"
            )
        rules.append(f"-j {external_chain}")
        out.chains[ext] = rules
    if firewall:
        out.chains[firewall] = [
            *(
                f'-m comment --comment "{name} loadbalancer IP" -s {cidr} -j {ext}'
                for cidr in sp.source_ranges
            ),
            f'-m comment --comment "{name} loadbalancer IP" -j KUBE-MARK-DROP',
        ]
    if uses_svc:
        masq = [
            f'-m comment --comment "{name} cluster IP" -d {ip}/32 {proto} --dport {sp.port} '
            f"! -s {state.cluster_cidr} -j KUBE-MARK-MASQ"
            for ip in sp.cluster_ips
        ]
        out.chains[svc] = masq + _balance(sp, all_eps)
    if uses_svl:
        out.chains[svl] = _balance(sp, local_eps)
    used = {e.address: e for e in (*(all_eps if uses_svc else ()), *(local_eps if uses_svl else ()))}
    for ep in used.values():
        out.chains[sep_chain(spn, ep)] = _endpoint(sp, ep, options)
    return out


def _balance(sp: ServicePort, eps: tuple[Endpoint, ...]) -> list[str]:
    name, rules = str(sp.name), []
    if sp.affinity_seconds:
        for ep in eps:
            sep = sep_chain(sp.name, ep)
            rules.append(
                f'-m comment --comment "{name} -> {ep.address}" -m recent --name {sep} '
                f"--mask 255.255.255.255 --rsource --rcheck --seconds {sp.affinity_seconds} --reap -j {sep}"
            )
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = sep_chain(sp.name, ep)
        stat = f"-m statistic --mode random --probability {_prob(n - i)} " if i < n - 1 else ""
        rules.append(f'-m comment --comment "{name} -> {ep.address}" {stat}-j {sep}')
    return rules


def _endpoint(sp: ServicePort, ep: Endpoint, options: RuleOptions) -> list[str]:
    name, proto = str(sp.name), sp.protocol.lower()
    rules = [f'-m comment --comment "{name}" -s {ep.ip}/32 -j KUBE-MARK-MASQ']
    if ep.is_local and options.pod_bridge:
        rules.append(f'-m comment --comment "{name} same bridge" -i {options.pod_bridge} -j KUBE-MARK-MASQ')
    recent = (
        f"-m recent --name {sep_chain(sp.name, ep)} --mask 255.255.255.255 --rsource --set "
        if sp.affinity_seconds
        else ""
    )
    rules.append(
        f'-m comment --comment "{name}" -p {proto} {recent}-m {proto} -j DNAT --to-destination {ep.address}'
    )
    return rules


def _nat_shared(state: ProxyState, options: RuleOptions) -> dict[str, list[str]]:
    masq = "-j MASQUERADE --random-fully" if options.random_fully else "-j MASQUERADE"
    return {
        "KUBE-MARK-MASQ": [f"-j MARK --or-mark {MASQ_MARK}"],
        "KUBE-MARK-DROP": [f"-j MARK --or-mark {DROP_MARK}"],
        "KUBE-POSTROUTING": [
            f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
            f"-j MARK --xor-mark {MASQ_MARK}",
            f'-m comment --comment "kubernetes service traffic requiring SNAT" {masq}',
        ],
    }


def build_rules(
    state: ProxyState,
    *,
    changed: frozenset[ServicePortName] | None = None,
    existing: Iterable[str] = (),
    options: RuleOptions | None = None,
) -> Ruleset:
    """The restore input for ``state``; ``changed=None`` declares every chain (a full sync).

    ``existing`` are the per-service nat chains present now (from the previous sync, or read with
    ``iptables-save``); those no longer wanted are flushed and deleted.
    """
    options = options or RuleOptions()
    nat_services: list[str] = []
    nat_nodeports: list[str] = []
    filt: dict[str, list[str]] = {c: [] for c in FILTER_SHARED}
    chains: dict[str, list[str]] = {}
    rewrite: set[str] = set()
    for spn in sorted(state.services):
        sp = state.services[spn]
        pr = port_rules(sp, state.endpoints_of(spn), state, options)
        nat_services += pr.nat_services
        nat_nodeports += pr.nat_nodeports
        filt["KUBE-SERVICES"] += pr.filter_services
        filt["KUBE-EXTERNAL-SERVICES"] += pr.filter_external
        filt["KUBE-NODEPORTS"] += pr.filter_nodeports
        chains.update(pr.chains)
        if changed is None or spn in changed:
            rewrite.update(pr.chains)
    filt["KUBE-PROXY-FIREWALL"] = [
        '-m comment --comment "kubernetes load balancer firewall: source not allowed" '
        f"-m mark --mark {DROP_MARK}/{DROP_MARK} -j DROP"
    ]
    filt["KUBE-FORWARD"] = [
        '-m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        '-m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    # The NodePort dispatch is the last rule of KUBE-SERVICES (after every exact IP:port).
    if state.node_ips:
        nat_services += [
            f'-m comment --comment "kubernetes service nodeports" -d {ip}/32 -j KUBE-NODEPORTS'
            for ip in state.node_ips
        ]
    else:
        nat_services.append(
            '-m comment --comment "kubernetes service nodeports" '
            "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
        )
    stale = sorted(c for c in set(existing) - set(chains) if c.startswith(PER_SERVICE_PREFIXES))
    nat = {"KUBE-SERVICES": nat_services, "KUBE-NODEPORTS": nat_nodeports, **_nat_shared(state, options)}

    lines = ["*filter"]
    lines += [f":{c} - [0:0]" for c in FILTER_SHARED]
    for c in FILTER_SHARED:
        lines += [f"-A {c} {r}" for r in filt[c]]
    lines += ["COMMIT", "*nat"]
    ordered = sorted(rewrite)
    lines += [f":{c} - [0:0]" for c in (*NAT_SHARED, *ordered, *stale)]
    for c in NAT_SHARED:
        lines += [f"-A {c} {r}" for r in nat[c]]
    for c in ordered:
        lines += [f"-A {c} {r}" for r in chains[c]]
    lines += [f"-X {c}" for c in stale]
    lines += ["COMMIT", ""]
    return Ruleset(
        text="\n".join(lines),
        nat_chains=frozenset(chains),
        rewritten=frozenset(rewrite),
        deleted=frozenset(stale),
    )


def cleanup_rules(nat_chains: Iterable[str]) -> str:
    """Restore input that empties and deletes every KUBE- chain we own (jump rules removed first)."""
    nat = sorted({*NAT_SHARED, *(c for c in nat_chains if c.startswith(PER_SERVICE_PREFIXES))})
    lines = ["*filter", *(f":{c} - [0:0]" for c in FILTER_SHARED), *(f"-X {c}" for c in FILTER_SHARED)]
    lines += ["COMMIT", "*nat", *(f":{c} - [0:0]" for c in nat), *(f"-X {c}" for c in nat), "COMMIT", ""]
    return "\n".join(lines)


def chains_in_save(text: str) -> frozenset[str]:
    """Per-service chain names declared in ``iptables-save -t nat`` output."""
    return frozenset(
        line[1:].split()[0]
        for line in text.splitlines()
        if line.startswith(":") and line[1:].startswith(PER_SERVICE_PREFIXES)
    )
