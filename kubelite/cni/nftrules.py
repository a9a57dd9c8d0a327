"""The nftables text the plugins apply in the node's namespace (pure: strings in, strings out).

Two tables, both IPv4 (``ip`` family), both written as "create if missing, flush, refill" so that
applying the same text twice is harmless and a whole text is one nft transaction:

``table ip kubelite-cni-masq`` (``bridge`` with ``ipMasq``)::

    chain net-<hash of network name> { type nat hook postrouting priority 100; policy accept;
        ip saddr 10.244.1.0/24 ip daddr != { 10.244.1.0/24, 224.0.0.0/4 } masquerade }

  One chain per *network* (not per container): every pod of the node's subnet shares it, so it is
  written once per runner and never removed on DEL. ``ipMasqExclude`` (a kubelite extension the
  reference ignores) adds destinations that keep the pod's address, e.g. the cluster's pod CIDR.

``table ip kubelite-hostport`` (``portmap``)::

    chain hostport-masq { type nat hook postrouting priority 100; policy accept;
        meta mark & 0x2000 == 0x2000 meta mark set meta mark ^ 0x2000 masquerade }
    chain pod-<hash>-pre { type nat hook prerouting priority -100; policy accept;    # from outside
        fib daddr type local tcp dport 8080 ip saddr { 127.0.0.0/8, 10.244.1.0/24 } meta mark set ...
        fib daddr type local tcp dport 8080 dnat to 10.244.1.5:80 }
    chain pod-<hash>-out { type nat hook output priority -100; ... same rules }       # from the node

  Each container gets its own two *base* chains (keyed by a hash of network name + container id),
  so DEL deletes exactly that container's chains without rule handles. A mapping with ``hostIP``
  matches ``ip daddr HOSTIP`` instead of "any local address". Connections to a host port from the
  node's loopback, from the pod subnet (including the pod itself: hairpin) are marked and
  masqueraded, so the reply comes back through the node; 127.0.0.1 also needs ``route_localnet`` on
  the bridge, which the plugin sets. Numeric priorities: nft 1.0.6 rejects ``dstnat`` on ``output``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence

from kubelite.cni.types import IpNetwork, PortMapping

__all__ = [
    "HOSTPORT_MASQ_CHAIN",
    "HOSTPORT_TABLE",
    "MASQ_TABLE",
    "hostport_chains",
    "hostport_delete_ruleset",
    "hostport_masq_ruleset",
    "hostport_ruleset",
    "masq_chain",
    "masq_delete_ruleset",
    "masq_ruleset",
]

MASQ_TABLE = "kubelite-cni-masq"
HOSTPORT_TABLE = "kubelite-hostport"
HOSTPORT_MASQ_CHAIN = "hostport-masq"
MULTICAST = ipaddress.ip_network("224.0.0.0/4")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_SAFE = re.compile(r"[^A-Za-z0-9_.:/ -]")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _comment(text: str) -> str:
    return '"' + _SAFE.sub("_", text)[:120] + '"'


def masq_chain(network: str) -> str:
    """The masquerade chain of one network."""
    return f"net-{_digest(network)[:12]}"


def masq_ruleset(network: str, subnets: Sequence[IpNetwork], exclude: Sequence[IpNetwork] = ()) -> str:
    """Masquerade traffic from each IPv4 ``subnet`` to anywhere except the subnet itself, multicast and
    ``exclude``. Empty when there is no IPv4 subnet."""
    v4 = sorted({s for s in subnets if s.version == 4}, key=str)
    if not v4:
        return ""
    chain, t = masq_chain(network), MASQ_TABLE
    lines = [
        f"add table ip {t}",
        f"add chain ip {t} {chain} {{ type nat hook postrouting priority 100; policy accept; }}",
        f"flush chain ip {t} {chain}",
    ]
    extra = sorted({e for e in exclude if e.version == 4}, key=str)
    for subnet in v4:
        keep = ", ".join(str(n) for n in [subnet, MULTICAST, *[e for e in extra if e != subnet]])
        lines.append(
            f"add rule ip {t} {chain} ip saddr {subnet} ip daddr != {{ {keep} }} masquerade"
            f" comment {_comment('network ' + network)}"
        )
    return "\n".join(lines) + "\n"


def masq_delete_ruleset(network: str) -> str:
    """Remove one network's masquerade chain (succeeds when it is absent)."""
    chain, t = masq_chain(network), MASQ_TABLE
    return (
        f"add table ip {t}\n"
        f"add chain ip {t} {chain} {{ type nat hook postrouting priority 100; policy accept; }}\n"
        f"delete chain ip {t} {chain}\n"
    )


def hostport_chains(network: str, container_id: str) -> tuple[str, str]:
    """(prerouting chain, output chain) of one container."""
    key = _digest(network, container_id)[:16]
    return f"pod-{key}-pre", f"pod-{key}-out"


def _chain_decl(chain: str, hook: str, priority: int) -> str:
    return (
        f"add chain ip {HOSTPORT_TABLE} {chain} "
        f"{{ type nat hook {hook} priority {priority}; policy accept; }}"
    )


def hostport_masq_ruleset(mark_bit: int = 13) -> str:
    """The shared chain that masquerades marked host-port connections (write it once per node).

    Rewriting it flushes a rule, and an nft transaction that deletes anything waits for an RCU grace
    period (~15 ms here), so callers write it once and remember that they did.
    """
    t, mark = HOSTPORT_TABLE, f"0x{1 << mark_bit:x}"
    return (
        "\n".join(
            [
                f"add table ip {t}",
                _chain_decl(HOSTPORT_MASQ_CHAIN, "postrouting", 100),
                f"flush chain ip {t} {HOSTPORT_MASQ_CHAIN}",
                f"add rule ip {t} {HOSTPORT_MASQ_CHAIN} meta mark & {mark} == {mark} "
                f"meta mark set meta mark ^ {mark} masquerade",
            ]
        )
        + "\n"
    )


def hostport_ruleset(
    network: str,
    container_id: str,
    pod: ipaddress.IPv4Interface,
    mappings: Sequence[PortMapping],
    *,
    snat: bool = True,
    mark_bit: int = 13,
) -> str:
    """DNAT ``hostIP:hostPort/proto`` (or any local address) to ``pod.ip:containerPort``.

    IPv6 ``hostIP`` mappings are skipped (the table is IPv4). Applying the text replaces whatever this
    container had before. Marked connections are masqueraded by :func:`hostport_masq_ruleset`.
    """
    t = HOSTPORT_TABLE
    pre, out = hostport_chains(network, container_id)
    mark = f"0x{1 << mark_bit:x}"
    lines = [
        f"add table ip {t}",
        _chain_decl(pre, "prerouting", -100),
        _chain_decl(out, "output", -100),
        f"flush chain ip {t} {pre}",
        f"flush chain ip {t} {out}",
    ]
    sources = ", ".join(str(n) for n in sorted({LOOPBACK, pod.network}, key=str))
    comment = _comment(f"{network} {container_id}")
    for m in mappings:
        if m.host_ip and ipaddress.ip_address(m.host_ip).version != 4:
            continue
        match = f"ip daddr {m.host_ip}" if m.host_ip else "fib daddr type local"
        port = f"{m.protocol} dport {m.host_port}"
        for chain in (pre, out):
            if snat:
                lines.append(
                    f"add rule ip {t} {chain} {match} {port} ip saddr {{ {sources} }} "
                    f"meta mark set meta mark | {mark} comment {comment}"
                )
            target = f"{pod.ip}:{m.container_port}"
            lines.append(f"add rule ip {t} {chain} {match} {port} dnat to {target} comment {comment}")
    return "\n".join(lines) + "\n"


def hostport_delete_ruleset(network: str, container_id: str) -> str:
    """Remove one container's chains (succeeds when they are absent)."""
    pre, out = hostport_chains(network, container_id)
    return (
        "\n".join(
            [
                f"add table ip {HOSTPORT_TABLE}",
                _chain_decl(pre, "prerouting", -100),
                _chain_decl(out, "output", -100),
                f"delete chain ip {HOSTPORT_TABLE} {pre}",
                f"delete chain ip {HOSTPORT_TABLE} {out}",
            ]
        )
        + "\n"
    )
