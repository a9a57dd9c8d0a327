"""Which external IP each LoadBalancer Service gets: a MetalLB-style address pool, pure, no I/O.

kubelite plays the part MetalLB's controller plays on bare metal. The pool is a list of
ranges (``192.168.100.240-192.168.100.250``), CIDRs (``10.0.0.0/30``) and single addresses;
by default it is the top of the sandbox node network (``LoadBalancerPool.top_of``).
``LoadBalancerPool.assign(services)`` looks at the current Services only, so it needs no
memory of its own, and returns an ``AssignmentPlan``:

- a Service is ours when ``spec.type`` is LoadBalancer and ``spec.loadBalancerClass`` is unset
  or equals the pool's class (``kubelite.io/lb``); Services of another class are not touched,
  nor counted;
- an address already in a Service's ``status.loadBalancer.ingress`` and in the pool stays its
  own (stable across restarts), unless the Service now asks for a different one;
- a Service may ask for addresses with ``spec.loadBalancerIP`` (deprecated, still honoured)
  or the annotation ``metallb.io/loadBalancerIPs`` / ``metallb.universe.tf/loadBalancerIPs``
  (comma-separated, one per IP family); it gets them when they are in the pool and free,
  otherwise it stays pending with an event;
- every other Service gets the lowest free address of its IP family (``spec.ipFamilies[0]``);
- a Service that is no longer LoadBalancer but still shows a pool address in its status gets
  that status cleared, and the address is free again; addresses of deleted Services are free
  because no Service shows them;
- when the pool is exhausted the Service stays ``<pending>`` and the plan carries MetalLB's
  Warning event ``AllocationFailed``: ``Failed to allocate IP for "default/web": no
  available IPs in pool "default"``.

The status written is ``status.loadBalancer.ingress: [{ip, ipMode: VIP}]``: traffic to the
address is handled by kubelite's service proxy on the nodes, like a cloud VIP. Sharing one
address between Services (MetalLB's ``allow-shared-ip``) is not supported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_LOAD_BALANCER_CLASS = "kubelite.io/lb"
DEFAULT_POOL_NAME = "default"
DEFAULT_POOL_SIZE = 16
ANNOTATIONS_REQUESTED_IPS = ("metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs")
IP_MODE_VIP = "VIP"

EVENT_ALLOCATION_FAILED = "AllocationFailed"
EVENT_IP_ALLOCATED = "IPAllocated"
EVENT_LOAD_BALANCER_FAILED = "LoadBalancerFailed"


@dataclass(frozen=True, slots=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers."""

    first: int
    last: int
    version: int

    def __contains__(self, address: object) -> bool:
        return (
            isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and address.version == self.version
            and self.first <= int(address) <= self.last
        )

    def __str__(self) -> str:
        first, last = _to_address(self.first, self.version), _to_address(self.last, self.version)
        return str(first) if self.first == self.last else f"{first}-{last}"


@dataclass(frozen=True, slots=True)
class ServiceEvent:
    """An event to record about a Service (the controller looks the object up by key)."""

    key: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A ``status.loadBalancer`` to write: ``{"ingress": [...]}``, or ``{}`` to clear it."""

    key: str
    load_balancer: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class AssignmentPlan:
    assignments: Mapping[str, tuple[str, ...]] = field(hash=False)
    """Every Service of ours that has addresses after the plan: key → addresses."""
    updates: tuple[StatusUpdate, ...] = ()
    """Status writes needed (new or changed addresses, and cleared ones); unchanged Services are absent."""
    pending: tuple[str, ...] = ()
    """Services of ours left without an address."""
    released: tuple[str, ...] = ()
    """Addresses taken off Services by this plan."""
    events: tuple[ServiceEvent, ...] = ()


def ingress_status(addresses: Iterable[str]) -> dict[str, Any]:
    return {"ingress": [{"ip": a, "ipMode": IP_MODE_VIP} for a in addresses]}


def _parse_address(text: str) -> Address:
    return ipaddress.ip_address(text.strip())


def _parse_range(text: str) -> AddressRange:
    text = text.strip()
    try:
        if "-" in text:
            start_text, end_text = text.split("-", 1)
            start, end = _parse_address(start_text), _parse_address(end_text)
            if start.version != end.version:
                raise ValueError("the two ends are of different IP families")
            if int(start) > int(end):
                raise ValueError("the first address is above the last")
            return AddressRange(int(start), int(end), start.version)
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return AddressRange(int(net.network_address), int(net.broadcast_address), net.version)
        address = _parse_address(text)
        return AddressRange(int(address), int(address), address.version)
    except ValueError as e:
        raise ValueError(
            f"invalid LoadBalancer address range {text!r}: {e}; write a range "
            "(192.168.100.240-192.168.100.250), a CIDR (10.0.0.0/30) or an address"
        ) from None


def _merge(ranges: Iterable[AddressRange]) -> tuple[AddressRange, ...]:
    merged: list[AddressRange] = []
    for r in sorted(ranges, key=lambda r: (r.version, r.first)):
        if merged and merged[-1].version == r.version and r.first <= merged[-1].last + 1:
            last = merged[-1]
            merged[-1] = AddressRange(last.first, max(last.last, r.last), r.version)
        else:
            merged.append(r)
    return tuple(merged)


def _buggy(address: int, version: int) -> bool:
    # MetalLB's avoidBuggyIPs: IPv4 addresses ending in .0 or .255 upset some old CPE firmware.
    return version == 4 and address & 0xFF in (0, 255)


@dataclass(frozen=True, slots=True)
class _Service:
    key: str
    lb: bool
    ours: bool
    family: int
    requested: tuple[str, ...]
    current: tuple[str, ...]
    creation: str


def _service(obj: Obj, lb_class: str) -> _Service:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status_lb = (obj.get("status") or {}).get("loadBalancer") or {}
    annotations = meta.get("annotations") or {}
    requested_text = next((annotations[a] for a in ANNOTATIONS_REQUESTED_IPS if annotations.get(a)), "")
    requested = tuple(r.strip() for r in str(requested_text).split(",") if r.strip())
    if not requested and spec.get("loadBalancerIP"):
        requested = (str(spec["loadBalancerIP"]).strip(),)
    families = spec.get("ipFamilies") or ["IPv4"]
    return _Service(
        key=f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}",
        lb=spec.get("type") == "LoadBalancer",
        ours=spec.get("loadBalancerClass") in (None, "", lb_class),
        family=6 if families[0] == "IPv6" else 4,
        requested=requested,
        current=tuple(
            str(i["ip"]) for i in status_lb.get("ingress") or [] if isinstance(i, Mapping) and i.get("ip")
        ),
        creation=str(meta.get("creationTimestamp") or ""),
    )


@dataclass(frozen=True, slots=True)
class LoadBalancerPool:
    """The addresses kubelite hands to LoadBalancer Services, merged and sorted (lowest first)."""

    ranges: tuple[AddressRange, ...]
    name: str = DEFAULT_POOL_NAME
    load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS
    avoid_buggy_ips: bool = False

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        name: str = DEFAULT_POOL_NAME,
        load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS,
        avoid_buggy_ips: bool = False,
    ) -> LoadBalancerPool:
        """``"192.168.100.240-192.168.100.250,10.0.0.0/30"``; raises ValueError saying what is wrong."""
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError(
                "the LoadBalancer address pool is empty; give at least one range, CIDR or address"
            )
        return cls(_merge(_parse_range(p) for p in parts), name, load_balancer_class, avoid_buggy_ips)

    @classmethod
    def top_of(
        cls,
        network: str,
        size: int = DEFAULT_POOL_SIZE,
        *,
        name: str = DEFAULT_POOL_NAME,
        load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS,
    ) -> LoadBalancerPool:
        """The ``size`` highest usable addresses of ``network`` (the broadcast address excluded):
        the default pool, from the top of the sandbox node network (e.g. 172.30.0.239-254 of a /24)."""
        net = ipaddress.ip_network(network, strict=False)
        last = int(net.broadcast_address) - (1 if net.version == 4 and net.prefixlen < 31 else 0)
        first = max(
            last - size + 1, int(net.network_address) + (1 if net.prefixlen < net.max_prefixlen - 1 else 0)
        )
        if size < 1 or first > last:
            raise ValueError(f"network {net} has no room for a LoadBalancer pool of {size} addresses")
        return cls((AddressRange(first, last, net.version),), name, load_balancer_class)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            try:
                address = _parse_address(address)
            except ValueError:
                return False
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if self.avoid_buggy_ips and _buggy(int(address), address.version):
            return False
        return any(address in r for r in self.ranges)

    @property
    def size(self) -> int:
        return sum(r.last - r.first + 1 for r in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)

    def lowest_free(self, version: int, used: set[int]) -> str | None:
        """The lowest address of the family not in ``used`` (integers), or None when none is left."""
        for r in self.ranges:
            if r.version != version:
                continue
            candidate = r.first
            while candidate <= r.last and (
                candidate in used or (self.avoid_buggy_ips and _buggy(candidate, version))
            ):
                candidate += 1
            if candidate <= r.last:
                return str(_to_address(candidate, version))
        return None

    def assign(self, services: Iterable[Obj]) -> AssignmentPlan:
        """What to write on the Services so that each of ours has a pool address (see the module doc)."""
        return _Assigner(self, [_service(s, self.load_balancer_class) for s in services]).run()


class _Assigner:
    """One assignment pass: keep valid addresses, honour requests, then fill from the pool."""

    def __init__(self, pool: LoadBalancerPool, services: list[_Service]) -> None:
        self.pool = pool
        # Oldest first, so that when two Services claim one address the older one keeps it.
        self.services = sorted(services, key=lambda s: (s.creation, s.key))
        self.owner: dict[int, str] = {}
        self.assignments: dict[str, tuple[str, ...]] = {}
        self.updates: list[StatusUpdate] = []
        self.pending: list[str] = []
        self.released: list[str] = []
        self.events: list[ServiceEvent] = []

    def run(self) -> AssignmentPlan:
        ours = [s for s in self.services if s.ours]
        for svc in ours:
            if not svc.lb:
                self._clear_if_ours(svc)
        candidates = [s for s in ours if s.lb]
        for svc in candidates:
            self._keep(svc)
        for svc in candidates:
            if svc.key not in self.assignments and svc.requested:
                self._requested(svc)
        for svc in candidates:
            if svc.key not in self.assignments and not svc.requested:
                self._from_pool(svc)
        for svc in candidates:
            if svc.key not in self.assignments:
                self.pending.append(svc.key)
        return AssignmentPlan(
            self.assignments,
            tuple(self.updates),
            tuple(self.pending),
            tuple(self.released),
            tuple(self.events),
        )

    def _clear_if_ours(self, svc: _Service) -> None:
        mine = [ip for ip in svc.current if ip in self.pool]
        if mine:
            self.updates.append(StatusUpdate(svc.key, {}))
            self.released.extend(mine)

    def _keep(self, svc: _Service) -> None:
        """Phase 1: an address already in the status stays, if it is still valid for this Service."""
        if not svc.current:
            return
        wanted = svc.requested or svc.current
        if len(svc.current) == 1 and svc.current == wanted and svc.current[0] in self.pool:
            address = _parse_address(svc.current[0])
            if address.version == svc.family and int(address) not in self.owner:
                self.owner[int(address)] = svc.key
                self.assignments[svc.key] = svc.current
                return
        # Taken off: another address was requested, the pool changed, or an older Service holds it.
        self.released.extend(ip for ip in svc.current if ip in self.pool)
        self.updates.append(StatusUpdate(svc.key, {}))

    def _requested(self, svc: _Service) -> None:
        """Phase 2: the address a Service asks for (of its own family), if it is in the pool and free."""
        try:
            addresses = [_parse_address(r) for r in svc.requested]
        except ValueError as e:
            self._fail(svc, EVENT_LOAD_BALANCER_FAILED, f"invalid requested loadbalancer IPs: {e}")
            return
        # One address per Service: of a dual-stack request, the one of the Service's primary family.
        mine = [a for a in addresses if a.version == svc.family] or addresses[:1]
        address = mine[0]
        if address not in self.pool:
            self._fail(
                svc,
                EVENT_ALLOCATION_FAILED,
                f'Failed to allocate IP for "{svc.key}": "{address}" is not allowed in config',
            )
            return
        holder = self.owner.get(int(address))
        if holder is not None:
            self._fail(
                svc,
                EVENT_ALLOCATION_FAILED,
                f'Failed to allocate IP for "{svc.key}": "{address}" is already in use by {holder}',
            )
            return
        self._assign(svc, str(address))

    def _from_pool(self, svc: _Service) -> None:
        """Phase 3: the lowest free address of the Service's family."""
        address = self.pool.lowest_free(svc.family, set(self.owner))
        if address is None:
            self._fail(
                svc,
                EVENT_ALLOCATION_FAILED,
                f'Failed to allocate IP for "{svc.key}": no available IPs in pool "{self.pool.name}"',
            )
            return
        self._assign(svc, address)

    def _assign(self, svc: _Service, address: str) -> None:
        self.owner[int(_parse_address(address))] = svc.key
        self.assignments[svc.key] = (address,)
        # A Service whose status was cleared in phase 1 gets the new address in the same write.
        self.updates = [u for u in self.updates if u.key != svc.key]
        self.updates.append(StatusUpdate(svc.key, ingress_status([address])))
        self.events.append(ServiceEvent(svc.key, "Normal", EVENT_IP_ALLOCATED, f'Assigned IP ["{address}"]'))

    def _fail(self, svc: _Service, reason: str, message: str) -> None:
        self.events.append(ServiceEvent(svc.key, "Warning", reason, message))


def _to_address(value: int, version: int) -> Address:
    # ipaddress.ip_address(int) would read a small IPv6 integer as IPv4.
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
