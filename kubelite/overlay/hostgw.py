"""host-gw: plain routes to the other nodes' pod CIDRs via their node IPs (flannel's ``host-gw``).

No encapsulation and no device: per remote node one ``route <podCIDR> via <node IP> dev <uplink>
proto 77``. It needs every node on one L2 segment, so :meth:`HostGwOverlay.setup` reads the
uplink's IPv4 networks and :meth:`~HostGwOverlay.sync` skips (and logs) a node outside them instead
of failing the whole batch with ``Nexthop has invalid gateway``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from kubelite.host.ip import IpRunner, validate_ifname
from kubelite.host.netns import in_netns
from kubelite.overlay.applier import BridgeRunner, OverlayError, StateSync, log_skipped, missing_uplink
from kubelite.overlay.model import ROUTE_PROTOCOL, NodeRoute, Skipped, desired_host_gw

__all__ = ["HostGwOverlay"]


class HostGwOverlay:
    """The host-gw overlay of one node (see :class:`kubelite.overlay.manager.Overlay`)."""

    kind = "host-gw"

    def __init__(
        self,
        local: NodeRoute,
        *,
        uplink: str,
        netns: str | None,
        ip: IpRunner,
        bridge: BridgeRunner,
        protocol: int = ROUTE_PROTOCOL,
        resync_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.uplink = validate_ifname(uplink)
        self.netns = netns
        self.ip = ip
        self.state = StateSync(
            node=local.name,
            ip=ip,
            bridge=bridge,
            netns=netns,
            device=None,
            protocol=protocol,
            resync_seconds=resync_seconds,
            clock=clock,
        )
        self.skipped: tuple[Skipped, ...] = ()
        self.uplink_networks: tuple[str, ...] = ()

    async def setup(self) -> None:
        """Learn the uplink's IPv4 networks (the L2 segment next hops must be on)."""
        entries = [a for a in await self.ip.addresses(self.netns) if a.get("ifname") == self.uplink]
        if not entries:
            raise missing_uplink(self.local.name, self.uplink, self.local.node_ip, self.netns)
        networks = tuple(
            f"{info['local']}/{info['prefixlen']}"
            for info in entries[0].get("addr_info", [])
            if info.get("family") == "inet" and "local" in info and "prefixlen" in info
        )
        if not networks:
            raise OverlayError(
                f"node {self.local.name}: the uplink {self.uplink} has no IPv4 address"
                f"{in_netns(self.netns)}; "
                "host-gw routes need a next hop on it: give it the node IP first"
            )
        self.uplink_networks = networks
        self.state.invalidate()

    async def sync(self, remotes: Sequence[NodeRoute]) -> None:
        """Converge to one route per routable remote node; cheap when nothing changed."""
        desired = desired_host_gw(
            self.local, remotes, uplink=self.uplink, uplink_networks=self.uplink_networks
        )
        log_skipped(self.local.name, self.skipped, desired.skipped)
        self.skipped = desired.skipped
        await self.state.converge(desired.state)

    def invalidate(self) -> None:
        """Make the next :meth:`sync` read the kernel back (e.g. after a restart of the node's network)."""
        self.state.invalidate()

    async def teardown(self) -> None:
        """Delete every route this package added (``proto 77``); idempotent."""
        await self.state.remove_all(with_device=False)
