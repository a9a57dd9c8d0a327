"""The overlay contract the agent uses, and the one factory that picks a mode.

The agent runs inside its node's network namespace (``netns=None``); tests and ``kubelite up`` pass
a namespace name instead. The agent's loop::

    overlay = make_overlay("vxlan", local, uplink="eth0", netns=None, ip=RealIp())
    await overlay.setup()
    ...  # on every change of the Node list (added, removed, podCIDR assigned):
    await overlay.sync([r for n in nodes if (r := node_route_from(n)) is not None])
    ...  # on shutdown, if the node leaves the cluster:
    await overlay.teardown()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

from kubelite.host.ip import IpRunner, RealIp
from kubelite.overlay.applier import BridgeRunner, real_bridge
from kubelite.overlay.hostgw import HostGwOverlay
from kubelite.overlay.model import DEFAULT_VXLAN_DEVICE, ROUTE_PROTOCOL, NodeRoute
from kubelite.overlay.vxlan import VxlanOverlay

__all__ = ["Overlay", "OverlayKind", "make_overlay"]

OverlayKind = Literal["vxlan", "host-gw"]


@runtime_checkable
class Overlay(Protocol):
    """Node-to-node pod routes on one node.

    - ``setup()`` prepares the node (the VXLAN device; for host-gw it reads the uplink's network);
      call it once before ``sync`` and again to repair.
    - ``sync(remotes)`` converges to "every routable remote node's pod CIDR is reachable"; it is
      idempotent, the local node may be in ``remotes`` (it is ignored), unroutable nodes are logged
      and skipped, and it starts no process when nothing changed since the last call. It raises
      :class:`~kubelite.overlay.applier.OverlayError` when the kernel refused a change; the next
      call reads the kernel back and retries.
    - ``teardown()`` removes everything ``setup``/``sync`` added; idempotent.
    """

    kind: str

    async def setup(self) -> None: ...

    async def sync(self, remotes: Sequence[NodeRoute]) -> None: ...

    async def teardown(self) -> None: ...


def make_overlay(
    kind: OverlayKind,
    local: NodeRoute,
    *,
    uplink: str,
    netns: str | None,
    ip: IpRunner,
    bridge: BridgeRunner | None = None,
    device: str = DEFAULT_VXLAN_DEVICE,
    protocol: int = ROUTE_PROTOCOL,
    resync_seconds: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Overlay:
    """The overlay of ``kind`` for the node ``local``.

    ``bridge`` runs iproute2's ``bridge`` (FDB entries); by default it is the real binary when
    ``ip`` is a :class:`~kubelite.host.ip.RealIp`. With any other ``ip`` (a fake) pass one too.
    ``resync_seconds`` is how often ``sync`` reads the kernel back even when nothing changed.
    """
    if bridge is None:
        if not isinstance(ip, RealIp):
            raise ValueError("make_overlay needs a bridge runner when ip is not RealIp: pass bridge=FakeIp()")
        bridge = real_bridge(ip.timeout)
    if kind == "vxlan":
        return VxlanOverlay(
            local,
            uplink=uplink,
            netns=netns,
            ip=ip,
            bridge=bridge,
            device=device,
            protocol=protocol,
            resync_seconds=resync_seconds,
            clock=clock,
        )
    if kind == "host-gw":
        return HostGwOverlay(
            local,
            uplink=uplink,
            netns=netns,
            ip=ip,
            bridge=bridge,
            protocol=protocol,
            resync_seconds=resync_seconds,
            clock=clock,
        )
    raise ValueError(f"unknown overlay kind {kind!r}: use 'vxlan' or 'host-gw'")
