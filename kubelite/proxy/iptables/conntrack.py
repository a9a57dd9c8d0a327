"""Stale UDP conntrack entries: which to delete after a sync (pure), and a small ``conntrack -D`` runner.

UDP has no connection to close: while a conntrack entry lives, a client's packets keep going to the
endpoint the first packet was DNAT-ed to, even after it is gone. So after each sync, as kube-proxy
does (``pkg/proxy/conntrack``), we delete:

- for every UDP service port, per endpoint that is no longer usable: the entries from each of the
  service's destinations (cluster, external, LoadBalancer IPs; the node port) NAT-ed to it;
- for a UDP service port that had no usable endpoint and now has some: every entry to its
  destinations (a client could have an entry that was not NAT-ed at all).

This is the iptables back end's own minimal version (the nftables helper's ``kubelite.proxy.conntrack``
did not exist when it was written); ``conntrack -D`` exits 1 when nothing matched, which is fine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Protocol

from kubelite.host.nft import netns_argv
from kubelite.host.run import run_tool
from kubelite.proxy.model import ProxyState, ServicePort, cluster_endpoints, local_endpoints

__all__ = ["ConntrackRunner", "FakeConntrack", "RealConntrack", "StaleFlow", "stale_udp_flows"]


@dataclass(frozen=True, slots=True, order=True)
class StaleFlow:
    """UDP entries to delete: original destination IP (None = any), port, and NAT-ed endpoint IP."""

    orig_dst: str | None
    port: int
    dst_nat: str | None = None

    def argv(self) -> list[str]:
        args = ["-D", "-p", "udp"]
        if self.orig_dst:
            args += ["--orig-dst", self.orig_dst]
        args += ["--orig-port-dst", str(self.port)]
        if self.dst_nat:
            args += ["--dst-nat", self.dst_nat]
        return args


def _usable_ips(sp: ServicePort, state: ProxyState) -> set[str]:
    eps = state.endpoints_of(sp.name)
    return {e.ip for e in (*cluster_endpoints(sp, eps), *local_endpoints(eps))}


def _destinations(sp: ServicePort) -> list[tuple[str | None, int]]:
    out: list[tuple[str | None, int]] = [(ip, sp.port) for ip in sp.cluster_ips]
    out += [(ip, sp.port) for ip in (*sp.external_ips, *sp.load_balancer_ips)]
    if sp.node_port:
        out.append((None, sp.node_port))
    return out


def stale_udp_flows(old: ProxyState | None, new: ProxyState) -> list[StaleFlow]:
    """The UDP entries to delete after moving from ``old`` to ``new`` (sorted, no duplicates)."""
    flows: set[StaleFlow] = set()
    for spn, sp in new.services.items():
        if sp.protocol != "UDP":
            continue
        now = _usable_ips(sp, new)
        old_sp = old.services.get(spn) if old else None
        before = _usable_ips(old_sp, old) if (old and old_sp) else set()
        if now and not before:
            flows.update(StaleFlow(ip, port) for ip, port in _destinations(sp))
        for gone in sorted(before - now):
            flows.update(StaleFlow(ip, port, gone) for ip, port in _destinations(sp))
    if old:
        for spn, sp in old.services.items():
            if sp.protocol == "UDP" and spn not in new.services:
                for gone in sorted(_usable_ips(sp, old)):
                    flows.update(StaleFlow(ip, port, gone) for ip, port in _destinations(sp))
    return sorted(flows, key=lambda f: (f.orig_dst or "", f.port, f.dst_nat or ""))


class ConntrackRunner(Protocol):
    async def delete(self, flow: StaleFlow, *, netns: str | None = None) -> None:
        """Delete matching entries; nothing matching is not an error."""
        ...


class RealConntrack:
    """Runs ``conntrack -D ...`` (conntrack-tools), through ``nsenter --net=`` for a namespace."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.binary = shutil.which("conntrack") or "/usr/sbin/conntrack"
        self.nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self.timeout = timeout

    async def delete(self, flow: StaleFlow, *, netns: str | None = None) -> None:
        argv = [*netns_argv(netns, self.nsenter), self.binary, *flow.argv()]
        rc, _out, err = await run_tool(argv, seconds=self.timeout)
        # Exit 1 with "0 flow entries have been deleted" just means nothing matched.
        if rc not in (0, 1):
            raise RuntimeError(
                f"conntrack {' '.join(flow.argv())} failed (exit {rc}): {err.strip()}; "
                "is conntrack-tools installed?"
            )


@dataclass
class FakeConntrack:
    deleted: list[tuple[str | None, StaleFlow]] = field(default_factory=list)

    async def delete(self, flow: StaleFlow, *, netns: str | None = None) -> None:
        self.deleted.append((netns, flow))
