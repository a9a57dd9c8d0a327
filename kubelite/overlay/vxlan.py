"""vxlan: flannel's VXLAN backend (``flannel.1``, VNI 1, UDP 8472, no learning, static L2/L3 entries).

:meth:`VxlanOverlay.setup` makes the device exactly :func:`~kubelite.overlay.model.vxlan_device`
(created when absent; created again when its VNI, local IP, port, uplink or learning differ; MTU,
MAC and addresses fixed in place; the name is reserved for this package). :meth:`~VxlanOverlay.sync`
then keeps, per remote node, the onlink route, the permanent neighbour and the FDB entry.
:meth:`~VxlanOverlay.teardown` deletes our routes and the device (its neighbours and FDB go with it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubelite.host.ip import HostCommandError, IpRunner, validate_ifname
from kubelite.host.netns import in_netns
from kubelite.overlay.applier import (
    BridgeRunner,
    OverlayError,
    StateSync,
    load_json,
    log_skipped,
    missing_uplink,
)
from kubelite.overlay.diff import device_lines
from kubelite.overlay.model import (
    DEFAULT_VXLAN_DEVICE,
    ROUTE_PROTOCOL,
    VXLAN_PORT,
    VXLAN_VNI,
    NodeRoute,
    Skipped,
    VxlanDevice,
    desired_vxlan,
    vxlan_device,
)

__all__ = ["VxlanOverlay"]

log = logging.getLogger(__name__)


class VxlanOverlay:
    """The VXLAN overlay of one node (see :class:`kubelite.overlay.manager.Overlay`)."""

    kind = "vxlan"

    def __init__(
        self,
        local: NodeRoute,
        *,
        uplink: str,
        netns: str | None,
        ip: IpRunner,
        bridge: BridgeRunner,
        device: str = DEFAULT_VXLAN_DEVICE,
        vni: int = VXLAN_VNI,
        port: int = VXLAN_PORT,
        protocol: int = ROUTE_PROTOCOL,
        resync_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.uplink = validate_ifname(uplink)
        self.device_name = validate_ifname(device)
        self.vni = vni
        self.port = port
        self.netns = netns
        self.ip = ip
        self.state = StateSync(
            node=local.name,
            ip=ip,
            bridge=bridge,
            netns=netns,
            device=device,
            protocol=protocol,
            resync_seconds=resync_seconds,
            clock=clock,
        )
        self.device: VxlanDevice | None = None
        self.skipped: tuple[Skipped, ...] = ()

    async def _links(self) -> dict[str, dict[str, Any]]:
        links = load_json(
            await self.ip.run(["-d", "-j", "link", "show"], netns=self.netns), "ip -d -j link show"
        )
        return {str(link.get("ifname")): link for link in links}

    async def setup(self) -> None:
        """Create or repair the VXLAN device; the next :meth:`sync` reads the kernel back."""
        links = await self._links()
        uplink = links.get(self.uplink)
        if uplink is None:
            raise missing_uplink(self.local.name, self.uplink, self.local.node_ip, self.netns)
        spec = vxlan_device(
            self.local,
            uplink=self.uplink,
            uplink_mtu=int(uplink.get("mtu", 1500)),
            name=self.device_name,
            vni=self.vni,
            port=self.port,
        )
        addresses = await self.ip.addresses(self.netns)
        local_ips = {
            info.get("local")
            for entry in addresses
            for info in entry.get("addr_info", [])
            if isinstance(info, dict)
        }
        if self.local.node_ip not in local_ips:
            log.warning(
                "overlay on node %s: the node IP %s is not an address here%s; VXLAN packets will use it "
                "as their source anyway",
                self.local.name,
                self.local.node_ip,
                in_netns(self.netns),
            )
        own: list[dict[str, Any]] = next(
            (a.get("addr_info", []) for a in addresses if a.get("ifname") == spec.name), []
        )
        lines = device_lines(spec, links.get(spec.name), own)
        if lines:
            try:
                await self.ip.batch(lines, netns=self.netns)
            except HostCommandError as exc:
                raise OverlayError(
                    f"node {self.local.name}: could not create the VXLAN device {spec.name}"
                    f"{in_netns(self.netns)}: "
                    f"`{exc.command}` failed: {exc.stderr}; check that the kernel has the vxlan module and "
                    f"that UDP port {spec.port} is not taken by another VXLAN device"
                ) from exc
        self.device = spec
        self.state.invalidate()

    async def sync(self, remotes: Sequence[NodeRoute]) -> None:
        """Converge to route + neighbour + FDB per routable remote node; cheap when nothing changed."""
        if self.device is None:
            raise OverlayError(f"node {self.local.name}: call setup() before sync() on the vxlan overlay")
        desired = desired_vxlan(self.local, remotes, device=self.device_name)
        log_skipped(self.local.name, self.skipped, desired.skipped)
        self.skipped = desired.skipped
        await self.state.converge(desired.state)

    def invalidate(self) -> None:
        """Make the next :meth:`sync` read the kernel back."""
        self.state.invalidate()

    async def teardown(self) -> None:
        """Delete our routes and the VXLAN device; idempotent."""
        present = self.device_name in await self._links()
        extra = [f"link del {self.device_name}"] if present else []
        await self.state.remove_all(extra, with_device=False)
        self.device = None
