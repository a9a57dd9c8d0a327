"""What the service proxy must do, as data: service ports, their endpoints, and what changed.

Pure (no kernel, no API client). The proxy's informers hand Service and EndpointSlice objects to a
:class:`ChangeTracker`; at each sync it yields a :class:`ProxyState` (everything) and the set of
:class:`ServicePortName` that changed since the last sync, so back ends can rewrite only those
(kube-proxy's ``ServiceChangeTracker`` / ``EndpointsChangeTracker``, in one small class).

Endpoint selection follows kube-proxy's ``CategorizeEndpoints``: ready endpoints; if none is
ready, serving-and-terminating ones (so connections drain); with a Local traffic policy only this
node's. Back ends call :func:`cluster_endpoints` / :func:`local_endpoints` and never re-implement it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChangeTracker",
    "Endpoint",
    "ProxyState",
    "ServicePort",
    "ServicePortName",
    "chain_suffix",
    "cluster_endpoints",
    "endpoints_from_slices",
    "local_endpoints",
    "service_ports",
]

Obj = dict[str, Any]
DEFAULT_AFFINITY_SECONDS = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True, order=True)
class ServicePortName:
    namespace: str
    name: str
    port: str
    """The port's name ("" for a single unnamed port)."""
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


def chain_suffix(spn: ServicePortName, extra: str = "") -> str:
    """kube-proxy's 16 characters: base32(sha256(service port name + protocol [+ extra]))."""
    digest = hashlib.sha256(f"{spn}{spn.protocol.lower()}{extra}".encode()).digest()
    return base64.b32encode(digest).decode()[:16]


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: ServicePortName
    cluster_ips: tuple[str, ...]
    """Empty for headless and ExternalName services (nothing to program)."""
    port: int
    protocol: str
    target_port: int | str
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_seconds: int = 0
    """ClientIP session affinity timeout; 0 = no affinity."""
    external_local: bool = False
    """externalTrafficPolicy: Local (NodePort, external and LoadBalancer IPs; source IP kept)."""
    internal_local: bool = False
    """internalTrafficPolicy: Local (ClusterIP)."""
    health_check_node_port: int = 0
    source_ranges: tuple[str, ...] = ()
    """loadBalancerSourceRanges (normalized CIDRs): only these clients may use the LoadBalancer IPs."""

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    is_local: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything the back end programs on this node."""

    services: Mapping[ServicePortName, ServicePort]
    endpoints: Mapping[ServicePortName, tuple[Endpoint, ...]]
    node_ips: tuple[str, ...] = ()
    """This node's addresses: NodePorts answer on each."""
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    """Pod CIDR: traffic from outside it to a service is masqueraded (kube-proxy --cluster-cidr)."""

    def endpoints_of(self, spn: ServicePortName) -> tuple[Endpoint, ...]:
        return self.endpoints.get(spn, ())


def _usable(eps: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    ready = tuple(e for e in eps if e.ready)
    if ready:
        return ready
    return tuple(e for e in eps if e.serving and e.terminating)


def cluster_endpoints(sp: ServicePort, eps: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """Endpoints for ClusterIP traffic (internalTrafficPolicy applied)."""
    if sp.internal_local:
        return _usable([e for e in eps if e.is_local])
    return _usable(eps)


def local_endpoints(eps: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """This node's usable endpoints (externalTrafficPolicy: Local)."""
    return _usable([e for e in eps if e.is_local])


def _ips(values: Iterable[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        try:
            addr = ipaddress.ip_address(str(v))
        except ValueError:
            continue
        if addr.version == 4:
            out.append(str(addr))
    return tuple(out)


def service_ports(svc: Mapping[str, Any]) -> list[ServicePort]:
    """The service ports a proxy programs for one Service (none for headless / ExternalName)."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    cluster_ips = _ips(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    if stype == "ExternalName" or not cluster_ips:
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        affinity = int(cfg) if isinstance(cfg, int) and cfg > 0 else DEFAULT_AFFINITY_SECONDS
    lb_ips = _ips(
        i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    )
    external = stype in ("NodePort", "LoadBalancer")
    out = []
    for p in spec.get("ports") or []:
        spn = ServicePortName(
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(p.get("name") or ""),
            str(p.get("protocol") or "TCP"),
        )
        out.append(
            ServicePort(
                name=spn,
                cluster_ips=cluster_ips,
                port=int(p.get("port") or 0),
                protocol=spn.protocol,
                target_port=p.get("targetPort")
                if p.get("targetPort") not in (None, "", 0)
                else int(p.get("port") or 0),
                node_port=int(p.get("nodePort") or 0) if external else 0,
                external_ips=_ips(spec.get("externalIPs") or []),
                load_balancer_ips=lb_ips if stype == "LoadBalancer" else (),
                affinity_seconds=affinity,
                external_local=spec.get("externalTrafficPolicy") == "Local"
                and (external or bool(spec.get("externalIPs"))),
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
                source_ranges=_source_ranges(spec, meta) if stype == "LoadBalancer" else (),
            )
        )
    return out


SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


def _source_ranges(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, ...]:
    """``spec.loadBalancerSourceRanges``, else the older annotation (comma separated), as CIDRs.

    Entries that are not IPv4 CIDRs are skipped (the API server refuses them in the field)."""
    raw: Any = spec.get("loadBalancerSourceRanges") or []
    if not raw:
        annotation = str((meta.get("annotations") or {}).get(SOURCE_RANGES_ANNOTATION) or "")
        raw = [part for part in annotation.split(",") if part.strip()]
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            net = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            continue
        if net.version == 4 and str(net) not in out:
            out.append(str(net))
    return tuple(out)


def endpoints_from_slices(
    slices: Iterable[Mapping[str, Any]], node_name: str
) -> dict[ServicePortName, tuple[Endpoint, ...]]:
    """Endpoints per service port from EndpointSlices (IPv4 slices), deduplicated across slices."""
    found: dict[ServicePortName, dict[tuple[str, int], Endpoint]] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        meta = sl.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            continue
        for port in sl.get("ports") or []:
            number = port.get("port")
            if not isinstance(number, int):
                continue
            spn = ServicePortName(
                str(meta.get("namespace", "")),
                service,
                str(port.get("name") or ""),
                str(port.get("protocol") or "TCP"),
            )
            bucket = found.setdefault(spn, {})
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                ready = cond.get("ready") is not False
                serving = cond.get("serving") if cond.get("serving") is not None else ready
                node = str(ep.get("nodeName") or "")
                for ip in _ips(ep.get("addresses") or []):
                    bucket[(ip, number)] = Endpoint(
                        ip=ip,
                        port=number,
                        ready=ready,
                        serving=bool(serving),
                        terminating=cond.get("terminating") is True,
                        node_name=node,
                        is_local=bool(node) and node == node_name,
                    )
    return {spn: tuple(sorted(b.values(), key=lambda e: (e.ip, e.port))) for spn, b in found.items()}


@dataclass
class ChangeTracker:
    """Services and EndpointSlices as they arrive; ``take()`` = (state, changed service ports).

    ``changed`` is None when a full sync is due (first sync, node IPs changed, or forced).
    """

    node_name: str
    node_ips: tuple[str, ...] = ()
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    _services: dict[tuple[str, str], list[ServicePort]] = field(default_factory=dict)
    _slices: dict[tuple[str, str], Obj] = field(default_factory=dict)
    _endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = field(default_factory=dict)
    _changed: set[ServicePortName] = field(default_factory=set)
    _dirty_services: set[tuple[str, str]] = field(default_factory=set)
    _full: bool = True

    def pending(self) -> bool:
        return self._full or bool(self._changed) or bool(self._dirty_services)

    def force_full(self) -> None:
        self._full = True

    def set_node_ips(self, ips: Sequence[str]) -> None:
        if tuple(ips) != self.node_ips:
            self.node_ips = tuple(ips)
            self._full = True

    def service(self, svc: Mapping[str, Any] | None, key: tuple[str, str]) -> None:
        """A Service was added/updated (``svc``) or deleted (``None``)."""
        old = self._services.pop(key, [])
        new = service_ports(svc) if svc is not None else []
        if new:
            self._services[key] = new
        if {(p.name, p) for p in old} != {(p.name, p) for p in new}:
            self._changed.update(p.name for p in old)
            self._changed.update(p.name for p in new)

    def slice(self, sl: Mapping[str, Any] | None, key: tuple[str, str], service: str) -> None:
        """An EndpointSlice was added/updated or deleted; ``service`` is its service-name label."""
        if sl is None:
            self._slices.pop(key, None)
        else:
            self._slices[key] = dict(sl)
        self._dirty_services.add((key[0], service))

    def _recompute(self, svc_key: tuple[str, str]) -> None:
        ns, name = svc_key
        slices = [
            s
            for (sns, _n), s in self._slices.items()
            if sns == ns and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name
        ]
        fresh = endpoints_from_slices(slices, self.node_name)
        stale = [spn for spn in self._endpoints if spn.namespace == ns and spn.name == name]
        for spn in stale:
            if spn not in fresh:
                del self._endpoints[spn]
                self._changed.add(spn)
        for spn, eps in fresh.items():
            if self._endpoints.get(spn) != eps:
                self._endpoints[spn] = eps
                self._changed.add(spn)

    def take(self) -> tuple[ProxyState, frozenset[ServicePortName] | None]:
        for svc_key in self._dirty_services:
            self._recompute(svc_key)
        self._dirty_services.clear()
        services = {p.name: p for ports in self._services.values() for p in ports}
        state = ProxyState(
            services=services,
            endpoints=dict(self._endpoints),
            node_ips=self.node_ips,
            service_cidr=self.service_cidr,
            cluster_cidr=self.cluster_cidr,
        )
        changed: frozenset[ServicePortName] | None = None if self._full else frozenset(self._changed)
        self._changed.clear()
        self._full = False
        return state, changed
