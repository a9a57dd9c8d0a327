"""What the kernel of one node should hold so its pods reach every other node's pods. Pure, no I/O.

Each node owns one pod CIDR (``spec.podCIDR``, a /24 by default). The overlay makes the *other*
nodes' pod CIDRs reachable, flannel-style, in one of two modes:

host-gw (one L2 segment between nodes, no encapsulation), per remote node::

    route <remote podCIDR> via <remote node IP> dev <uplink> proto 77

vxlan (any IP network between nodes), a device ``flannel.1`` (VNI 1, UDP 8472, ``nolearning``,
local = node IP, MTU = uplink MTU - 50, address ``<own podCIDR network>.0/32``, MAC = this node's
VTEP MAC) and per remote node exactly::

    route <remote podCIDR> via <remote .0> dev flannel.1 onlink proto 77
    neigh <remote .0> lladdr <remote VTEP MAC> dev flannel.1 nud permanent
    fdb   <remote VTEP MAC> dev flannel.1 dst <remote node IP> self permanent

The VTEP MAC is derived from the node IP (:func:`vtep_mac_for`: ``0e:6b`` followed by the four bytes
of the IPv4 address, a locally administered unicast MAC, distinct from the ``0a:58`` prefix that CNI
plugins derive pod MACs with), so every node can compute every other node's MAC without a write.
:func:`annotations_for` still gives the flannel-style annotations (``kubelite.io/vtep-mac``,
``kubelite.io/public-ip``) for the agent to publish; a remote node that carries them is taken at its
word (:func:`node_route_from`), which lets a node use a MAC or tunnel address of its own choosing.

Remote nodes that cannot be routed are left out and reported as :class:`Skipped` (this node
itself, a pod CIDR overlapping this node's or an earlier node's, a node IP equal to this node's, a
VTEP MAC already used by another node, and in host-gw mode a node IP outside the uplink's networks).
IPv4 only, like flannel's ``flannel.1``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubelite.host.ip import validate_ifname

__all__ = [
    "DEFAULT_VXLAN_DEVICE",
    "PUBLIC_IP_ANNOTATION",
    "ROUTE_PROTOCOL",
    "VTEP_MAC_ANNOTATION",
    "VXLAN_OVERHEAD",
    "VXLAN_PORT",
    "VXLAN_VNI",
    "Desired",
    "FdbEntry",
    "KernelState",
    "Neighbour",
    "NodeRoute",
    "Route",
    "Skipped",
    "VxlanDevice",
    "annotations_for",
    "desired_host_gw",
    "desired_vxlan",
    "node_route_from",
    "normalize_mac",
    "vtep_address",
    "vtep_annotations",
    "vtep_mac_for",
    "vxlan_device",
]

VTEP_MAC_ANNOTATION = "kubelite.io/vtep-mac"
"""Node annotation: the node's VTEP MAC (flannel keeps it in ``flannel.alpha.coreos.com/backend-data``)."""
PUBLIC_IP_ANNOTATION = "kubelite.io/public-ip"
"""Node annotation: the IP other nodes send to (flannel: ``flannel.alpha.coreos.com/public-ip``)."""

DEFAULT_VXLAN_DEVICE = "flannel.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472  # the Linux kernel's historical VXLAN port, flannel's default (IANA's is 4789)
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
ROUTE_PROTOCOL = 77
"""The ``proto`` number on every route this package adds; routes with any other protocol are never touched."""

VTEP_MAC_PREFIX = (0x0E, 0x6B)  # 0x0e: locally administered (bit 1), unicast (bit 0 clear)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalize_mac(mac: str) -> str:
    """``mac`` in lower case with colons; raises :class:`ValueError` for anything but a unicast MAC."""
    value = mac.strip().lower().replace("-", ":")
    if not _MAC.match(value):
        raise ValueError(f"{mac!r} is not a MAC address (six hex bytes such as 0e:6b:0a:00:00:01)")
    if int(value[:2], 16) & 1:
        raise ValueError(f"{mac!r} is a multicast MAC address; a VTEP needs a unicast one")
    if value == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 cannot be a VTEP MAC address")
    return value


def vtep_mac_for(node_ip: str) -> str:
    """The VTEP MAC of a node: ``0e:6b`` followed by the four bytes of its IPv4 address."""
    packed = ipaddress.IPv4Address(node_ip).packed
    return ":".join(f"{b:02x}" for b in (*VTEP_MAC_PREFIX, *packed))


def vtep_address(pod_cidr: str) -> str:
    """The VTEP address: the network address of a pod CIDR (``10.244.1.0/24`` -> ``10.244.1.0``)."""
    return str(ipaddress.IPv4Network(pod_cidr, strict=False).network_address)


@dataclass(frozen=True, slots=True)
class NodeRoute:
    """One node as the overlay sees it: its name, the IP other nodes reach it at, and its pod CIDR.

    ``vtep_mac`` is the MAC its VXLAN device uses; ``None`` means the derived one
    (:func:`vtep_mac_for`). Addresses are normalized on construction; a value that is not an IPv4
    address, network or unicast MAC raises :class:`ValueError` saying which.
    """

    name: str
    node_ip: str
    pod_cidr: str
    vtep_mac: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node needs a name")
        try:
            node_ip = str(ipaddress.IPv4Address(self.node_ip))
        except ValueError:
            raise ValueError(f"node {self.name}: {self.node_ip!r} is not an IPv4 address") from None
        try:
            pod_cidr = ipaddress.IPv4Network(self.pod_cidr, strict=True).with_prefixlen
        except ValueError:
            raise ValueError(
                f"node {self.name}: pod CIDR {self.pod_cidr!r} is not an IPv4 network such as 10.244.1.0/24"
            ) from None
        object.__setattr__(self, "node_ip", node_ip)
        object.__setattr__(self, "pod_cidr", pod_cidr)
        if self.vtep_mac is not None:
            object.__setattr__(self, "vtep_mac", normalize_mac(self.vtep_mac))

    @property
    def mac(self) -> str:
        """The VTEP MAC in use: the given one, else the one derived from the node IP."""
        return self.vtep_mac if self.vtep_mac is not None else vtep_mac_for(self.node_ip)

    @property
    def vtep_ip(self) -> str:
        """The VTEP address: the network address of the pod CIDR (flannel's ``.0``)."""
        return vtep_address(self.pod_cidr)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr)


def annotations_for(local: NodeRoute) -> dict[str, str]:
    """The annotations the agent publishes on its Node so other nodes find its tunnel end."""
    return {VTEP_MAC_ANNOTATION: local.mac, PUBLIC_IP_ANNOTATION: local.node_ip}


def vtep_annotations(node_ip: str, vtep_mac: str | None = None) -> dict[str, str]:
    """:func:`annotations_for` before the node has a pod CIDR (at registration): only the IP is needed."""
    ip = str(ipaddress.IPv4Address(node_ip))
    mac = normalize_mac(vtep_mac) if vtep_mac is not None else vtep_mac_for(ip)
    return {VTEP_MAC_ANNOTATION: mac, PUBLIC_IP_ANNOTATION: ip}


def _ipv4_or_none(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        return None


def _ipv4_cidr(spec: Mapping[str, Any]) -> str | None:
    candidates: list[object] = [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])]
    for value in candidates:
        if not isinstance(value, str):
            continue
        try:
            return ipaddress.IPv4Network(value, strict=True).with_prefixlen
        except ValueError:
            continue
    return None


def node_route_from(node: Mapping[str, Any]) -> NodeRoute | None:
    """A Node API object as a :class:`NodeRoute`, or ``None`` while it has no IPv4 pod CIDR or address.

    The node IP is the ``kubelite.io/public-ip`` annotation when it holds an IPv4 address, else the
    first IPv4 ``InternalIP``, else the first IPv4 ``ExternalIP``. A valid ``kubelite.io/vtep-mac``
    annotation is used as the VTEP MAC; a missing or malformed one means the derived MAC.
    """
    meta = node.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    cidr = _ipv4_cidr(node.get("spec") or {})
    if cidr is None:
        return None
    annotations = meta.get("annotations") or {}
    node_ip = _ipv4_or_none(annotations.get(PUBLIC_IP_ANNOTATION))
    if node_ip is None:
        addresses = (node.get("status") or {}).get("addresses") or []
        for wanted in ("InternalIP", "ExternalIP"):
            node_ip = next(
                (
                    ip
                    for a in addresses
                    if isinstance(a, Mapping)
                    and a.get("type") == wanted
                    and (ip := _ipv4_or_none(a.get("address")))
                ),
                None,
            )
            if node_ip is not None:
                break
    if node_ip is None:
        return None
    mac: str | None = None
    raw_mac = annotations.get(VTEP_MAC_ANNOTATION)
    if isinstance(raw_mac, str):
        try:
            mac = normalize_mac(raw_mac)
        except ValueError:
            mac = None
    return NodeRoute(name, node_ip, cidr, mac)


# --------------------------------------------------------------------------- kernel state


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """A route in the main table to another node's pod CIDR (always with this package's protocol)."""

    dst: str
    via: str
    dev: str | None = None
    onlink: bool = False


@dataclass(frozen=True, slots=True, order=True)
class Neighbour:
    """A permanent neighbour (ARP) entry: ``ip`` is at ``mac`` on ``dev``."""

    ip: str
    mac: str
    dev: str


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """A VXLAN forwarding entry: frames for ``mac`` on ``dev`` are sent to the node at ``dst``."""

    mac: str
    dst: str
    dev: str


@dataclass(frozen=True, slots=True)
class KernelState:
    """The entries this package owns on one node (desired, last applied, or read back)."""

    routes: frozenset[Route] = frozenset()
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A remote node left out of the desired state, and why (a sentence for the log)."""

    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class Desired:
    """The desired kernel state, the remote nodes it covers, and the ones it had to leave out."""

    state: KernelState
    nodes: tuple[NodeRoute, ...] = ()
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True, slots=True)
class VxlanDevice:
    """The VXLAN device of the local node, as ``ip link add ... type vxlan`` should create it."""

    name: str
    vni: int
    port: int
    local_ip: str
    uplink: str
    mtu: int
    mac: str
    address: str  # "<own podCIDR network>/32"


def vxlan_device(
    local: NodeRoute,
    *,
    uplink: str,
    uplink_mtu: int,
    name: str = DEFAULT_VXLAN_DEVICE,
    vni: int = VXLAN_VNI,
    port: int = VXLAN_PORT,
) -> VxlanDevice:
    """The device for ``local``: MTU is the uplink's minus the 50 bytes of VXLAN encapsulation."""
    if not 0 < vni < 1 << 24:
        raise ValueError(f"VXLAN VNI {vni} is out of range; use 1 to 16777215")
    if not 0 < port < 1 << 16:
        raise ValueError(f"VXLAN UDP port {port} is out of range; use 1 to 65535")
    mtu = uplink_mtu - VXLAN_OVERHEAD
    if mtu < 576:
        raise ValueError(
            f"uplink {uplink} has MTU {uplink_mtu}, too small for VXLAN (needs at least "
            f"{576 + VXLAN_OVERHEAD}); raise its MTU or use host-gw"
        )
    return VxlanDevice(
        name=validate_ifname(name),
        vni=vni,
        port=port,
        local_ip=local.node_ip,
        uplink=validate_ifname(uplink),
        mtu=mtu,
        mac=local.mac,
        address=f"{local.vtep_ip}/32",
    )


def _select(local: NodeRoute, remotes: Iterable[NodeRoute]) -> tuple[list[NodeRoute], list[Skipped]]:
    """The remotes that can be routed, in name order (so a conflict always loses the same way)."""
    kept: list[NodeRoute] = []
    skipped: list[Skipped] = []
    seen_names: set[str] = set()
    for node in sorted(remotes, key=lambda n: (n.name, n.node_ip, n.pod_cidr)):
        if node.name == local.name:
            continue  # the local node is in every Node list; not an error
        if node.name in seen_names:
            skipped.append(Skipped(node.name, f"node {node.name} is listed twice; only the first is routed"))
            continue
        reason = _conflict(local, node, kept)
        if reason is not None:
            skipped.append(Skipped(node.name, reason))
            continue
        seen_names.add(node.name)
        kept.append(node)
    return kept, skipped


def _conflict(local: NodeRoute, node: NodeRoute, kept: Sequence[NodeRoute]) -> str | None:
    if node.network.overlaps(local.network):
        return (
            f"node {node.name}'s pod CIDR {node.pod_cidr} overlaps this node's ({local.pod_cidr}); "
            "fix the Node's spec.podCIDR"
        )
    if node.node_ip == local.node_ip:
        return (
            f"node {node.name} has this node's IP {node.node_ip}; fix its InternalIP or public-ip annotation"
        )
    for other in kept:
        if node.network.overlaps(other.network):
            return (
                f"node {node.name}'s pod CIDR {node.pod_cidr} overlaps node {other.name}'s "
                f"({other.pod_cidr}); fix the Node's spec.podCIDR"
            )
    return None


def desired_host_gw(
    local: NodeRoute,
    remotes: Iterable[NodeRoute],
    *,
    uplink: str | None = None,
    uplink_networks: Sequence[str] = (),
) -> Desired:
    """host-gw: one route per remote node, via its node IP (on ``uplink`` when given).

    ``uplink_networks`` are the networks of the uplink's addresses (``172.31.0.11/24`` style is
    fine); when given, a remote node outside all of them is skipped, because a host-gw route needs
    the next hop on the same L2 segment.
    """
    if uplink is not None:
        validate_ifname(uplink)
    networks = [ipaddress.IPv4Interface(n).network for n in uplink_networks]
    kept, skipped = _select(local, remotes)
    routes: set[Route] = set()
    routed: list[NodeRoute] = []
    for node in kept:
        if networks and not any(ipaddress.IPv4Address(node.node_ip) in n for n in networks):
            where = ", ".join(str(n) for n in networks)
            skipped.append(
                Skipped(
                    node.name,
                    f"node {node.name}'s IP {node.node_ip} is not on this node's uplink network ({where}); "
                    "host-gw needs every node on one L2 segment: use the vxlan overlay instead",
                )
            )
            continue
        routes.add(Route(node.pod_cidr, node.node_ip, uplink))
        routed.append(node)
    return Desired(KernelState(routes=frozenset(routes)), tuple(routed), tuple(skipped))


def desired_vxlan(
    local: NodeRoute, remotes: Iterable[NodeRoute], *, device: str = DEFAULT_VXLAN_DEVICE
) -> Desired:
    """vxlan: per remote node a route via its ``.0`` onlink, a permanent neighbour and an FDB entry."""
    validate_ifname(device)
    kept, skipped = _select(local, remotes)
    routes: set[Route] = set()
    neighbours: set[Neighbour] = set()
    fdb: set[FdbEntry] = set()
    macs: dict[str, str] = {local.mac: local.name}
    routed: list[NodeRoute] = []
    for node in kept:
        owner = macs.get(node.mac)
        if owner is not None:
            skipped.append(
                Skipped(
                    node.name,
                    f"node {node.name}'s VTEP MAC {node.mac} is also node {owner}'s; "
                    f"fix its {VTEP_MAC_ANNOTATION} annotation",
                )
            )
            continue
        macs[node.mac] = node.name
        routes.add(Route(node.pod_cidr, node.vtep_ip, device, onlink=True))
        neighbours.add(Neighbour(node.vtep_ip, node.mac, device))
        fdb.add(FdbEntry(node.mac, node.node_ip, device))
        routed.append(node)
    state = KernelState(frozenset(routes), frozenset(neighbours), frozenset(fdb))
    return Desired(state, tuple(routed), tuple(skipped))
