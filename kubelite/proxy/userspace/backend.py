"""The userspace proxy back end (mode ``"userspace"``): a listener per service port, nft redirects to it.

For every service port (TCP or UDP) this back end opens a listener on the node, ``0.0.0.0:<random
port>``, served by a :class:`~.proxier.TcpProxy` or :class:`~.proxier.UdpProxy` whose
:class:`~.schedulers.Balancer` holds the port's usable endpoints (``model.cluster_endpoints``).
With ``externalTrafficPolicy: Local`` a second listener holds only this node's endpoints and
serves the NodePort, external and LoadBalancer addresses. The nft table ``ip kubelite-userspace``
(see :mod:`.rules`) redirects ClusterIP:port, nodeIP:nodePort, externalIP:port and LB-IP:port to the
listener, in prerouting (traffic from pods and from outside) and output (the node's own processes).

What follows from proxying in userspace, as kube-proxy's userspace mode did:
- every proxied connection leaves from the node, so endpoints always see a node address: that is
  the masquerade (and hairpin works); the client source IP is never kept, even with
  externalTrafficPolicy Local (which still limits the choice to local endpoints, and drops when
  there is none);
- a service port without usable endpoints gets ``reject`` (ICMP port unreachable: connection
  refused) instead of a redirect; with a Local policy and no local endpoint, external traffic is dropped;
- when a UDP service port gains endpoints after having none, conntrack entries towards its
  addresses are deleted, so a client that was refused is not stuck with a stale entry; UDP
  sessions to endpoints that went away are closed, so the next datagram picks a live one.

A sync touches only the ``changed`` service ports' listeners, balancers and rules; ``None`` rewrites
the whole table (listeners that still serve a port keep their port number).
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubelite.host.conntrack import ConntrackRunner, RealConntrack
from kubelite.host.netns import socket_in_netns
from kubelite.host.nft import NftRunner, RealNft
from kubelite.proxy.conntrack import StaleFlow
from kubelite.proxy.model import (
    Endpoint,
    ProxyState,
    ServicePort,
    ServicePortName,
    cluster_endpoints,
    local_endpoints,
)
from kubelite.proxy.userspace.proxier import (
    DIAL_TIMEOUTS,
    UDP_IDLE_TIMEOUT,
    SocketFactory,
    TcpProxy,
    UdpProxy,
    plain_socket,
)
from kubelite.proxy.userspace.rules import (
    CLUSTER,
    EXTERNAL,
    PROTOCOLS,
    TABLE,
    ServiceRules,
    full_ruleset,
    partial_ruleset,
    service_rules,
)
from kubelite.proxy.userspace.schedulers import Balancer, Destination, make_scheduler

__all__ = ["UserspaceBackend"]


@dataclass
class _Listener:
    protocol: str
    port: int
    balancer: Balancer
    proxy: TcpProxy | UdpProxy


@dataclass(kw_only=True)
class UserspaceBackend:
    """:class:`~kubelite.proxy.backend.ProxyBackend` proxying in this process.

    ``netns`` is where listeners are opened, endpoints dialled and rules written (``None``: the
    namespace this process runs in, as in the agent). ``scheduler`` is an ipvsadm name (rr, wrr,
    lc, wlc, sh, dh, sed, nq). ``weights`` optionally maps an endpoint ``ip:port`` to its weight
    (Kubernetes endpoints have none: 1). ``listen_ip`` is the listeners' address (0.0.0.0 so
    redirected packets to any local address arrive).
    """

    netns: str | None = None
    scheduler: str = "rr"
    nft: NftRunner | None = None
    udp_idle_timeout: float = UDP_IDLE_TIMEOUT
    dial_timeouts: tuple[float, ...] = DIAL_TIMEOUTS
    weights: dict[str, int] = field(default_factory=dict)
    listen_ip: str = "0.0.0.0"
    conntrack: ConntrackRunner = field(default_factory=RealConntrack)
    mode: str = "userspace"
    _listeners: dict[tuple[ServicePortName, str], _Listener] = field(default_factory=dict)
    _rules: dict[ServicePortName, ServiceRules] = field(default_factory=dict)
    _had_endpoints: dict[ServicePortName, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        make_scheduler(self.scheduler)  # a wrong name fails here, with the list of valid ones
        if self.nft is None:
            self.nft = RealNft()

    # --- sockets -------------------------------------------------------------------------------

    def _sockets(self) -> SocketFactory:
        if self.netns is None:
            return plain_socket
        return functools.partial(socket_in_netns, self.netns)

    async def _listen_socket(self, protocol: str) -> socket.socket:
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        sock = await self._sockets()(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen_ip, 0))
        except OSError:
            sock.close()
            raise
        return sock

    # --- listeners -----------------------------------------------------------------------------

    def _destinations(self, eps: Sequence[Endpoint]) -> list[Destination]:
        return [Destination(e.address, self.weights.get(e.address, 1)) for e in eps]

    async def _open(self, sp: ServicePort) -> _Listener:
        balancer = Balancer(make_scheduler(self.scheduler), sp.affinity_seconds)
        sock = await self._listen_socket(sp.protocol)
        port = int(sock.getsockname()[1])
        proxy: TcpProxy | UdpProxy
        if sp.protocol == "TCP":
            proxy = TcpProxy(balancer, self._sockets(), self.dial_timeouts)
        else:
            proxy = UdpProxy(balancer, self._sockets(), self.udp_idle_timeout)
        try:
            await proxy.start(sock)
        except BaseException:
            sock.close()
            raise
        return _Listener(sp.protocol, port, balancer, proxy)

    async def _close(self, key: tuple[ServicePortName, str]) -> None:
        listener = self._listeners.pop(key, None)
        if listener is not None:
            await listener.proxy.stop()

    async def _reconcile(self, spn: ServicePortName, sp: ServicePort | None, state: ProxyState) -> None:
        """Open, update or close the listeners of one service port."""
        wanted: dict[str, tuple[Endpoint, ...]] = {}
        if sp is not None and sp.protocol in PROTOCOLS:
            eps = state.endpoints_of(spn)
            wanted[CLUSTER] = cluster_endpoints(sp, eps)
            if sp.external_local and sp.has_external:
                wanted[EXTERNAL] = local_endpoints(eps)
        for scope in (CLUSTER, EXTERNAL):
            key = (spn, scope)
            current = self._listeners.get(key)
            if scope not in wanted or sp is None:
                await self._close(key)
                continue
            if current is not None and current.protocol != sp.protocol:
                await self._close(key)
                current = None
            if current is None:
                current = self._listeners[key] = await self._open(sp)
            before = {d.key for d in current.balancer.destinations}
            current.balancer.set_affinity(sp.affinity_seconds)
            current.balancer.set_destinations(self._destinations(wanted[scope]))
            gone = before - {d.key for d in current.balancer.destinations}
            if gone and isinstance(current.proxy, UdpProxy):
                current.proxy.drop_endpoints(gone)

    def listener_port(self, spn: ServicePortName, scope: str = CLUSTER) -> int | None:
        """The local port proxying ``spn`` (for tests and diagnostics)."""
        listener = self._listeners.get((spn, scope))
        return listener.port if listener is not None else None

    # --- sync ----------------------------------------------------------------------------------

    def _rules_for(self, spn: ServicePortName, state: ProxyState) -> ServiceRules | None:
        sp = state.services.get(spn)
        if sp is None:
            return None
        ports = {
            scope: listener.port
            for scope in (CLUSTER, EXTERNAL)
            if (listener := self._listeners.get((spn, scope))) is not None
        }
        eps = state.endpoints_of(spn)
        return service_rules(
            sp,
            ports,
            has_cluster=bool(cluster_endpoints(sp, eps)),
            has_local=bool(local_endpoints(eps)),
        )

    async def sync(self, state: ProxyState, changed: frozenset[ServicePortName] | None) -> None:
        assert self.nft is not None
        everything = set(state.services) | {spn for spn, _ in self._listeners}
        spns = everything if changed is None else set(changed)
        for spn in sorted(spns):
            await self._reconcile(spn, state.services.get(spn), state)
        fresh = {spn: self._rules_for(spn, state) for spn in spns}
        if changed is None:
            rules = {spn: r for spn, r in fresh.items() if r is not None}
            await self.nft.apply(full_ruleset(state.node_ips, rules), netns=self.netns)
            self._rules = rules
        else:
            text = partial_ruleset(self._rules, fresh)
            await self.nft.apply(text, netns=self.netns)
            for spn, r in fresh.items():
                if r is None:
                    self._rules.pop(spn, None)
                else:
                    self._rules[spn] = r
        await self._clear_stale_udp(state, spns)

    async def _clear_stale_udp(self, state: ProxyState, spns: set[ServicePortName]) -> None:
        """UDP service ports that just gained endpoints: delete conntrack entries to their addresses."""
        for spn in sorted(spns):
            sp = state.services.get(spn)
            if sp is None:
                self._had_endpoints.pop(spn, None)
                continue
            has = bool(cluster_endpoints(sp, state.endpoints_of(spn)))
            had = self._had_endpoints.get(spn, False)
            self._had_endpoints[spn] = has
            if sp.protocol != "UDP" or not has or had:
                continue
            flows = [
                StaleFlow("udp", ip, sp.port)
                for ip in (*sp.cluster_ips, *sp.external_ips, *sp.load_balancer_ips)
            ]
            if sp.node_port:
                flows.append(StaleFlow("udp", "", sp.node_port))
            for flow in flows:
                await self.conntrack.delete(flow.filters(), netns=self.netns)

    async def cleanup(self) -> None:
        assert self.nft is not None
        for key in list(self._listeners):
            await self._close(key)
        self._rules.clear()
        self._had_endpoints.clear()
        await self.nft.apply(f"add table ip {TABLE}\ndelete table ip {TABLE}\n", netns=self.netns)
