"""From desired and observed overlay state to ``ip -batch`` and ``bridge -batch`` lines. Pure, no I/O.

Ownership (what this package may change or delete, and nothing else):

- routes in the main table whose protocol is :data:`~kubelite.overlay.model.ROUTE_PROTOCOL` (77):
  every route this package adds carries ``proto 77``, so a read of ``ip route show proto 77``
  finds exactly ours, and ``ip route del ... proto 77`` can never remove a route somebody else
  added (the kernel matches the protocol on delete). The node's own routes (``proto kernel`` for
  its subnets, the default route, pod routes on ``cni0``) are never touched. A desired pod CIDR that
  already has a route of another protocol is a *conflict*: it is reported and left alone.
- permanent neighbours and FDB entries on the VXLAN device (``flannel.1``): the device is created
  by this package with ``nolearning``, so every such entry on it is ours.

:func:`plan_changes` compares by key (route: destination; neighbour: address; FDB: MAC) and emits
``replace`` for a changed entry, ``add``/``replace`` for a new one and ``del`` for one no longer
desired, in an order that never leaves a route pointing at a missing neighbour for long:
FDB first (one ``bridge`` batch), then route deletions, neighbour deletions, neighbour
replacements and route additions (one ``ip`` batch). A new route uses ``route add`` (not
``replace``), so a route this package did not know of makes the batch fail instead of being
silently taken over; the caller then re-reads the kernel, which shows it as a conflict.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelite.overlay.model import (
    ROUTE_PROTOCOL,
    FdbEntry,
    KernelState,
    Neighbour,
    Route,
    VxlanDevice,
    normalize_mac,
)

__all__ = [
    "Plan",
    "device_lines",
    "device_matches",
    "fdb_lines",
    "foreign_destinations",
    "parse_fdb",
    "parse_neighbours",
    "parse_routes",
    "plan_changes",
    "route_del_line",
    "route_line",
]

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run to go from the observed state to the desired one.

    ``result`` is the state the kernel holds once both batches succeeded (the desired state less
    the conflicting routes); ``conflicts`` are sentences for the log.
    """

    ip_lines: tuple[str, ...] = ()
    bridge_lines: tuple[str, ...] = ()
    result: KernelState = field(default_factory=KernelState)
    conflicts: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ip_lines and not self.bridge_lines


# --------------------------------------------------------------------------- observed state


def _network(dst: object) -> str | None:
    if not isinstance(dst, str):
        return None
    if dst == "default":
        return "0.0.0.0/0"
    try:
        return ipaddress.IPv4Network(dst, strict=False).with_prefixlen
    except ValueError:
        return None


def _ipv4(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def parse_routes(items: Iterable[Json]) -> frozenset[Route]:
    """Unicast IPv4 routes from ``ip -j route show table main proto 77`` (they are all ours)."""
    routes: set[Route] = set()
    for item in items:
        if item.get("type", "unicast") != "unicast":
            continue
        dst = _network(item.get("dst"))
        if dst is None:
            continue
        flags = item.get("flags") or []
        dev = item.get("dev")
        routes.add(
            Route(
                dst,
                _ipv4(item.get("gateway")) or "",
                dev if isinstance(dev, str) else None,
                onlink="onlink" in flags,
            )
        )
    return frozenset(routes)


def foreign_destinations(main_table: Iterable[Json], owned: Iterable[Json]) -> frozenset[str]:
    """Destinations that have a route in the main table that is not one of ``owned``.

    Counted rather than filtered by protocol name, so it works whatever ``/etc/iproute2/rt_protos``
    calls protocol 77.
    """
    counts = Counter(d for item in main_table if (d := _network(item.get("dst"))) is not None)
    counts.subtract(d for item in owned if (d := _network(item.get("dst"))) is not None)
    return frozenset(dst for dst, n in counts.items() if n > 0)


def parse_neighbours(items: Iterable[Json], dev: str) -> frozenset[Neighbour]:
    """Permanent IPv4 neighbours from ``ip -j neigh show dev DEV``."""
    result: set[Neighbour] = set()
    for item in items:
        state = item.get("state") or []
        if "PERMANENT" not in state:
            continue
        address = _ipv4(item.get("dst"))
        mac = item.get("lladdr")
        if address is None or not isinstance(mac, str):
            continue
        result.add(Neighbour(address, mac.lower(), dev))
    return frozenset(result)


def parse_fdb(items: Iterable[Json], dev: str) -> frozenset[FdbEntry]:
    """Unicast entries with an IPv4 destination from ``bridge -j fdb show dev DEV``."""
    result: set[FdbEntry] = set()
    for item in items:
        dst = _ipv4(item.get("dst"))
        mac = item.get("mac")
        if dst is None or not isinstance(mac, str):
            continue
        try:
            result.add(FdbEntry(normalize_mac(mac), dst, dev))
        except ValueError:
            continue  # the all-zeros default destination or a multicast entry: not ours
    return frozenset(result)


# --------------------------------------------------------------------------- command lines


def route_line(verb: str, route: Route, protocol: int = ROUTE_PROTOCOL) -> str:
    """``route add|replace DST via GW [dev DEV] [onlink] proto P``."""
    parts = ["route", verb, route.dst, "via", route.via]
    if route.dev is not None:
        parts += ["dev", route.dev]
    if route.onlink:
        parts.append("onlink")
    parts += ["proto", str(protocol)]
    return " ".join(parts)


def route_del_line(route: Route, protocol: int = ROUTE_PROTOCOL) -> str:
    """``route del DST [via GW] [dev DEV] proto P``: the protocol makes the kernel spare foreign routes."""
    parts = ["route", "del", route.dst]
    if route.via:
        parts += ["via", route.via]
    if route.dev is not None:
        parts += ["dev", route.dev]
    parts += ["proto", str(protocol)]
    return " ".join(parts)


def _neigh_replace(n: Neighbour) -> str:
    return f"neigh replace {n.ip} lladdr {n.mac} dev {n.dev} nud permanent"


def _neigh_del(n: Neighbour) -> str:
    return f"neigh del {n.ip} dev {n.dev}"


def _fdb_replace(f: FdbEntry) -> str:
    return f"fdb replace {f.mac} dev {f.dev} dst {f.dst} self permanent"


def _fdb_del(f: FdbEntry) -> str:
    return f"fdb del {f.mac} dev {f.dev} dst {f.dst} self"


def _route_key(r: Route) -> tuple[str, str, str, bool]:
    return (r.dst, r.via, r.dev or "", r.onlink)


def _route_changes(
    desired: frozenset[Route], observed: frozenset[Route], foreign: frozenset[str], protocol: int
) -> tuple[list[str], list[str], frozenset[Route], list[str]]:
    """(deletions, additions, routes in place afterwards, conflict sentences)."""
    conflicts = [
        f"route to {r.dst} not added: the node already has a route to it that kubelite did not add; "
        "remove that route or give the node another podCIDR"
        for r in sorted(desired, key=_route_key)
        if r.dst in foreign
    ]
    wanted = {r.dst: r for r in desired if r.dst not in foreign}
    by_dst: dict[str, list[Route]] = defaultdict(list)
    for r in observed:
        by_dst[r.dst].append(r)
    deletions: list[str] = []
    additions: list[str] = []
    for r in sorted(observed, key=_route_key):
        want = wanted.get(r.dst)
        if want == r:
            continue
        if want is not None and len(by_dst[r.dst]) == 1:
            continue  # changed in place by "route replace" below
        deletions.append(route_del_line(r, protocol))
    for dst, want in sorted(wanted.items()):
        present = by_dst.get(dst, [])
        if want in present:
            continue
        verb = "replace" if len(present) == 1 else "add"
        additions.append(route_line(verb, want, protocol))
    return deletions, additions, frozenset(wanted.values()), conflicts


def plan_changes(
    desired: KernelState,
    observed: KernelState,
    *,
    protocol: int = ROUTE_PROTOCOL,
    foreign: frozenset[str] = frozenset(),
) -> Plan:
    """The batches that turn ``observed`` into ``desired``; empty when they are equal.

    ``foreign`` are destinations with a route this package does not own
    (:func:`foreign_destinations`); desired routes to them are reported, not added.
    """
    route_dels, route_adds, routes, conflicts = _route_changes(
        desired.routes, observed.routes, foreign, protocol
    )

    wanted_neigh = {(n.ip, n.dev): n for n in desired.neighbours}
    neigh_dels = [_neigh_del(n) for n in sorted(observed.neighbours) if (n.ip, n.dev) not in wanted_neigh]
    neigh_adds = [_neigh_replace(n) for n in sorted(desired.neighbours) if n not in observed.neighbours]

    bridge_lines = fdb_lines(desired.fdb, observed.fdb)
    ip_lines = (*route_dels, *neigh_dels, *neigh_adds, *route_adds)
    result = KernelState(routes, desired.neighbours, desired.fdb)
    return Plan(tuple(ip_lines), tuple(bridge_lines), result, tuple(conflicts))


def fdb_lines(desired: frozenset[FdbEntry], observed: frozenset[FdbEntry]) -> list[str]:
    """FDB deletions, then replacements. A VXLAN MAC may have several destinations; we want one."""
    wanted = {(f.mac, f.dev): f for f in desired}
    observed_by_key: dict[tuple[str, str], list[FdbEntry]] = defaultdict(list)
    for f in observed:
        observed_by_key[(f.mac, f.dev)].append(f)
    deletions: list[str] = []
    for f in sorted(observed):
        key = (f.mac, f.dev)
        if wanted.get(key) == f:
            continue
        if key in wanted and len(observed_by_key[key]) == 1:
            continue  # "fdb replace" changes the one destination in place
        deletions.append(_fdb_del(f))
    additions = [_fdb_replace(f) for f in sorted(desired) if f not in observed]
    return [*deletions, *additions]


# --------------------------------------------------------------------------- the VXLAN device


def device_matches(link: Json, device: VxlanDevice) -> bool:
    """Whether an existing link (``ip -d -j link show``) is the VXLAN device we would create.

    MTU, MAC and addresses are fixed in place; anything else (kind, VNI, local IP, port, uplink,
    learning) needs the device to be created again.
    """
    info = link.get("linkinfo") or {}
    data = info.get("info_data") or {}
    return (
        info.get("info_kind") == "vxlan"
        and data.get("id") == device.vni
        and data.get("local") == device.local_ip
        and data.get("port") == device.port
        and data.get("link") == device.uplink
        and data.get("learning") is False
    )


def _add_device(device: VxlanDevice) -> list[str]:
    return [
        f"link add {device.name} mtu {device.mtu} address {device.mac} type vxlan id {device.vni} "
        f"local {device.local_ip} dev {device.uplink} dstport {device.port} nolearning",
        f"addr add {device.address} dev {device.name}",
        f"link set dev {device.name} up",
    ]


def device_lines(device: VxlanDevice, link: Json | None, addresses: Iterable[Json] = ()) -> list[str]:
    """``ip -batch`` lines that make the VXLAN device exactly ``device`` (none when it already is).

    ``link`` is the device's entry from ``ip -d -j link show`` (``None`` when absent); ``addresses``
    its ``addr_info`` items from ``ip -j addr show``. Other IPv4 addresses on it are removed.
    """
    if link is None:
        return _add_device(device)
    if not device_matches(link, device):
        return [f"link del {device.name}", *_add_device(device)]
    lines: list[str] = []
    if link.get("mtu") != device.mtu:
        lines.append(f"link set dev {device.name} mtu {device.mtu}")
    if str(link.get("address", "")).lower() != device.mac:
        lines.append(f"link set dev {device.name} address {device.mac}")
    have: set[str] = set()
    for info in addresses:
        if info.get("family") != "inet":
            continue
        local, prefix = info.get("local"), info.get("prefixlen")
        cidr = f"{local}/{prefix}"
        have.add(cidr)
        if cidr != device.address:
            lines.append(f"addr del {cidr} dev {device.name}")
    if device.address not in have:
        lines.append(f"addr add {device.address} dev {device.name}")
    if "UP" not in (link.get("flags") or []):
        lines.append(f"link set dev {device.name} up")
    return lines
