"""What the Endpoints controller should write for a Service: pure, no I/O.

API objects arrive as small frozen types (``PodInfo``, ``ServiceInfo``, ``NodeInfo``);
``desired_endpoints`` turns a Service and its pods into the core/v1 Endpoints object that
Kubernetes' endpoints controller (pkg/controller/endpoint) would write, and
``endpoints_changed`` says whether the one stored needs that write.

The pod rules here are shared with ``endpointslice_model``, as Kubernetes shares them
through k8s.io/endpointslice/util:

- a pod is an endpoint when it has an IP and is not Succeeded/Failed; a terminating pod
  (deletionTimestamp set) only when the caller includes terminating pods;
- a named targetPort is looked up in the pod's container ports (and restartable init
  containers) with the same protocol, so two pods may serve one Service port on two numbers;
- ``hostname`` is published when the pod sets ``spec.hostname`` and its ``spec.subdomain``
  names the Service.

Endpoints group addresses like Kubernetes' ``RepackSubsets``: one subset per set of ports
that the same addresses offer, ready ``addresses`` apart from ``notReadyAddresses``. The
order of subsets, addresses and ports is deterministic (ports by name, addresses by IP then
pod UID), so two computations of the same state compare equal as whole objects.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubelite.api.selectors import selector_from_map

Obj = dict[str, Any]

LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
OVER_CAPACITY_TRUNCATED = "truncated"
MAX_ENDPOINTS_ADDRESSES = 1000
"""An Endpoints object holds at most this many addresses; the rest are cut (EndpointSlices scale)."""

IPV4 = "IPv4"
IPV6 = "IPv6"

__all__ = [
    "ANNOTATION_OVER_CAPACITY",
    "ANNOTATION_TRIGGER_TIME",
    "IPV4",
    "IPV6",
    "LABEL_HEADLESS",
    "LABEL_ZONE",
    "MAX_ENDPOINTS_ADDRESSES",
    "OVER_CAPACITY_TRUNCATED",
    "ContainerPort",
    "EndpointPort",
    "NodeInfo",
    "ObjectReference",
    "PodInfo",
    "ServiceInfo",
    "ServicePort",
    "desired_endpoints",
    "endpoints_changed",
    "find_port",
    "format_trigger_time",
    "ip_family",
    "ip_sort_key",
    "normalize_ip",
    "selected_pods",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
]


# --- what arrives ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """One ``ports[]`` entry of a container: what a named targetPort resolves against."""

    name: str
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The parts of a Pod that decide whether and how it is an endpoint."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    ips: tuple[str, ...] = ()
    node_name: str = ""
    hostname: str = ""
    subdomain: str = ""
    phase: str = ""
    ready: bool = False
    """The Ready condition is True."""
    deleting: bool = False
    """``metadata.deletionTimestamp`` is set: the pod is terminating."""
    container_ports: tuple[ContainerPort, ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodInfo:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ips = tuple(
            str(p["ip"]) for p in status.get("podIPs") or [] if isinstance(p, Mapping) and p.get("ip")
        )
        if not ips and status.get("podIP"):
            ips = (str(status["podIP"]),)
        ready = any(
            isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        # Restartable init containers (sidecars) serve ports too; regular containers come first.
        containers = list(spec.get("containers") or [])
        containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        ports = tuple(
            ContainerPort(
                str(p.get("name") or ""), int(p.get("containerPort") or 0), str(p.get("protocol") or "TCP")
            )
            for c in containers
            for p in c.get("ports") or []
        )
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            ips=ips,
            node_name=str(spec.get("nodeName") or ""),
            hostname=str(spec.get("hostname") or ""),
            subdomain=str(spec.get("subdomain") or ""),
            phase=str(status.get("phase") or ""),
            ready=ready,
            deleting=meta.get("deletionTimestamp") is not None,
            container_ports=ports,
        )

    @property
    def terminal(self) -> bool:
        """Succeeded or Failed: every container has stopped for good."""
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One ``spec.ports[]`` entry; ``target_port`` is a number or a container port name."""

    name: str
    port: int
    protocol: str = "TCP"
    target_port: int | str = 0
    app_protocol: str | None = None

    @classmethod
    def from_dict(cls, port: Mapping[str, Any]) -> ServicePort:
        number = int(port.get("port") or 0)
        target = port.get("targetPort")
        # Kubernetes defaults a missing (or zero) targetPort to the port itself.
        target_port: int | str = number if target in (None, 0, "") else target
        if not isinstance(target_port, int | str):
            target_port = number
        app = port.get("appProtocol")
        return cls(
            name=str(port.get("name") or ""),
            port=number,
            protocol=str(port.get("protocol") or "TCP"),
            target_port=target_port,
            app_protocol=str(app) if app else None,
        )


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """The parts of a Service the endpoint controllers read."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    selector: Mapping[str, str] | None = field(default=None, hash=False)
    """None when the Service has no selector: its Endpoints are the user's to write."""
    ports: tuple[ServicePort, ...] = ()
    publish_not_ready_addresses: bool = False
    cluster_ip: str = ""
    type: str = "ClusterIP"
    ip_families: tuple[str, ...] = ()
    deleting: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ServiceInfo:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            # An empty map does not survive a round trip through the API (omitempty): no selector.
            selector={str(k): str(v) for k, v in selector.items()} if selector else None,
            ports=tuple(ServicePort.from_dict(p) for p in spec.get("ports") or [] if isinstance(p, Mapping)),
            publish_not_ready_addresses=bool(spec.get("publishNotReadyAddresses")),
            cluster_ip=str(spec.get("clusterIP") or ""),
            type=str(spec.get("type") or "ClusterIP"),
            ip_families=tuple(str(f) for f in spec.get("ipFamilies") or []),
            deleting=meta.get("deletionTimestamp") is not None,
        )

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def ip_set(self) -> bool:
        """A ClusterIP is allocated (neither headless nor still empty)."""
        return self.cluster_ip not in ("", "None")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What endpoints publish about a pod's node: its zone."""

    name: str
    zone: str = ""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> NodeInfo:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return cls(name=str(meta.get("name") or ""), zone=str(labels.get(LABEL_ZONE) or ""))


# --- shared pieces of the output ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectReference:
    """A ``targetRef``. Equality that matters to the controllers ignores ``resource_version``."""

    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    api_version: str = ""
    resource_version: str = ""
    field_path: str = ""

    _FIELDS = (
        ("kind", "kind"),
        ("namespace", "namespace"),
        ("name", "name"),
        ("uid", "uid"),
        ("apiVersion", "api_version"),
        ("resourceVersion", "resource_version"),
        ("fieldPath", "field_path"),
    )

    @classmethod
    def for_pod(cls, pod: PodInfo) -> ObjectReference:
        return cls(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid)

    @classmethod
    def from_dict(cls, ref: Mapping[str, Any]) -> ObjectReference:
        return cls(**{attr: str(ref.get(key) or "") for key, attr in cls._FIELDS})

    def to_dict(self) -> Obj:
        return {key: getattr(self, attr) for key, attr in self._FIELDS if getattr(self, attr)}

    def same_object(self, other: ObjectReference | None) -> bool:
        """Equal but for resourceVersion, which changes on every pod write."""
        return other is not None and self.to_dict() | {"resourceVersion": ""} == other.to_dict() | {
            "resourceVersion": ""
        }


@dataclass(frozen=True, slots=True, order=True)
class EndpointPort:
    """A port as Endpoints subsets and EndpointSlices publish it (number already resolved)."""

    name: str
    port: int
    protocol: str = "TCP"
    app_protocol: str = ""

    @classmethod
    def from_dict(cls, port: Mapping[str, Any]) -> EndpointPort:
        return cls(
            name=str(port.get("name") or ""),
            port=int(port.get("port") or 0),
            protocol=str(port.get("protocol") or "TCP"),
            app_protocol=str(port.get("appProtocol") or ""),
        )

    def to_dict(self, *, always_name: bool = False) -> Obj:
        """The API form; EndpointSlices always carry ``name`` (possibly ""), Endpoints omit it empty."""
        out: Obj = {"name": self.name} if self.name or always_name else {}
        out |= {"port": self.port, "protocol": self.protocol}
        if self.app_protocol:
            out["appProtocol"] = self.app_protocol
        return out


# --- the rules every endpoint controller shares ---------------------------------------------------


def normalize_ip(text: str) -> str | None:
    """The canonical form of an IP (an IPv4-mapped IPv6 address counts as IPv4); None if invalid."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def ip_family(text: str) -> str | None:
    """``IPv4`` or ``IPv6`` (the EndpointSlice addressType), or None for an invalid address."""
    ip = normalize_ip(text)
    if ip is None:
        return None
    return IPV6 if ":" in ip else IPV4


def ip_sort_key(text: str) -> tuple[int, int, str]:
    """Numeric order, IPv4 before IPv6; anything unparsable last, by text."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (addr.version, int(addr), text)


def selected_pods(service: ServiceInfo, pods: Iterable[PodInfo]) -> list[PodInfo]:
    """The pods of the Service's namespace its selector matches; none without a selector."""
    if service.selector is None:
        return []
    selector = selector_from_map(service.selector)
    return [p for p in pods if p.namespace == service.namespace and selector.matches(p.labels)]


def should_pod_be_in_endpoints(pod: PodInfo, *, include_terminating: bool) -> bool:
    """Kubernetes' ShouldPodBeInEndpoints: an IP, not terminal, terminating only if asked for."""
    if pod.terminal or not pod.ips:
        return False
    return include_terminating or not pod.deleting


def should_set_hostname(pod: PodInfo, service: ServiceInfo) -> bool:
    """Publish ``hostname`` when the pod names itself under this Service's subdomain."""
    return bool(pod.hostname) and pod.subdomain == service.name and pod.namespace == service.namespace


def find_port(pod: PodInfo, port: ServicePort) -> int | None:
    """The pod's number for a Service port: the targetPort itself, or the named container port
    with the same protocol. None when the pod has no such port (it then serves no such port)."""
    if isinstance(port.target_port, int):
        return port.target_port
    for cp in pod.container_ports:
        if cp.name == port.target_port and cp.protocol == port.protocol:
            return cp.container_port
    return None


def format_trigger_time(t: datetime) -> str:
    """RFC 3339 with trimmed nanoseconds in UTC, as Go's ``time.RFC3339Nano``; naive means UTC."""
    t = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    return text + "Z"


# --- Endpoints --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Address:
    ip: str
    target_ref: ObjectReference
    node_name: str = ""
    hostname: str = ""

    @property
    def key(self) -> tuple[str, str]:
        # Repacking de-duplicates by IP + UID, as two pods may share an IP (hostNetwork).
        return (self.ip, self.target_ref.uid)

    def sort_key(self) -> tuple[tuple[int, int, str], str]:
        return (ip_sort_key(self.ip), self.target_ref.uid)

    def to_dict(self) -> Obj:
        out: Obj = {"ip": self.ip}
        if self.hostname:
            out["hostname"] = self.hostname
        if self.node_name:
            out["nodeName"] = self.node_name
        out["targetRef"] = self.target_ref.to_dict()
        return out


@dataclass(slots=True)
class _Subset:
    addresses: list[_Address]
    not_ready: list[_Address]
    ports: list[EndpointPort]

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.ports,
            [a.sort_key() for a in self.addresses],
            [a.sort_key() for a in self.not_ready],
        )

    def to_dict(self) -> Obj:
        out: Obj = {}
        if self.addresses:
            out["addresses"] = [a.to_dict() for a in self.addresses]
        if self.not_ready:
            out["notReadyAddresses"] = [a.to_dict() for a in self.not_ready]
        if self.ports:
            out["ports"] = [p.to_dict() for p in self.ports]
        return out


def _endpoints_family(service: ServiceInfo, pod: PodInfo) -> str:
    """The one family an Endpoints object carries: the Service's primary one."""
    if service.ip_families:
        return service.ip_families[0]
    if service.ip_set:
        return ip_family(service.cluster_ip) or IPV4
    # Headless without families (an old API server): the pod's primary IP decides.
    return ip_family(pod.ips[0]) or IPV4


def _pod_address(service: ServiceInfo, pod: PodInfo) -> _Address | None:
    family = _endpoints_family(service, pod)
    ip = next((ip for ip in map(normalize_ip, pod.ips) if ip and ip_family(ip) == family), None)
    if ip is None:
        return None
    hostname = pod.hostname if should_set_hostname(pod, service) else ""
    return _Address(ip, ObjectReference.for_pod(pod), node_name=pod.node_name, hostname=hostname)


def _repack(entries: Iterable[tuple[_Address, EndpointPort | None, bool]]) -> list[_Subset]:
    """Kubernetes' RepackSubsets: one subset per distinct set of (address, ready) offering ports.

    ``None`` as a port stands for "no ports" (a headless Service without ports)."""
    first_seen: dict[tuple[str, str], _Address] = {}
    by_port: dict[EndpointPort | None, dict[tuple[str, str], bool]] = {}
    for address, port, ready in entries:
        key = first_seen.setdefault(address.key, address).key
        readiness = by_port.setdefault(port, {})
        # Not ready wins: an address is ready for a port only if every mention says so.
        readiness[key] = readiness.get(key, True) and ready
    ports_by_members: dict[frozenset[tuple[tuple[str, str], bool]], list[EndpointPort | None]] = {}
    for port, readiness in by_port.items():
        ports_by_members.setdefault(frozenset(readiness.items()), []).append(port)
    subsets = []
    for members, ports in ports_by_members.items():
        ready_addresses = sorted((first_seen[k] for k, r in members if r), key=_Address.sort_key)
        not_ready = sorted((first_seen[k] for k, r in members if not r), key=_Address.sort_key)
        subsets.append(_Subset(ready_addresses, not_ready, sorted(p for p in ports if p is not None)))
    return sorted(subsets, key=_Subset.sort_key)


def _truncate(subsets: list[_Subset]) -> bool:
    """Cut to MAX_ENDPOINTS_ADDRESSES, keeping ready addresses first and each subset's share;
    True if anything was cut (Kubernetes' truncateEndpoints)."""
    total_ready = sum(len(s.addresses) for s in subsets)
    total_not_ready = sum(len(s.not_ready) for s in subsets)
    if total_ready + total_not_ready <= MAX_ENDPOINTS_ADDRESSES:
        return False
    cut_ready = total_ready > MAX_ENDPOINTS_ADDRESSES
    budget = MAX_ENDPOINTS_ADDRESSES if cut_ready else MAX_ENDPOINTS_ADDRESSES - total_ready
    total = total_ready if cut_ready else total_not_ready
    left = budget
    for s in subsets:
        share = len(s.addresses) if cut_ready else len(s.not_ready)
        keep = min(math.ceil(share / total * budget), left)
        if cut_ready:
            s.addresses, s.not_ready = s.addresses[:keep], []
            left -= len(s.addresses)
        else:
            s.not_ready = s.not_ready[:keep]
            left -= len(s.not_ready)
    return True


def _subsets(service: ServiceInfo, pods: Iterable[PodInfo]) -> list[_Subset]:
    tolerate_unready = service.publish_not_ready_addresses
    entries: list[tuple[_Address, EndpointPort | None, bool]] = []
    for pod in selected_pods(service, pods):
        if not should_pod_be_in_endpoints(pod, include_terminating=tolerate_unready):
            continue
        address = _pod_address(service, pod)
        if address is None:
            continue
        ready = tolerate_unready or pod.ready
        if not service.ports:
            if service.headless:  # headless Services may have no ports: addresses only
                entries.append((address, None, ready))
            continue
        for sp in service.ports:
            number = find_port(pod, sp)
            if number is not None:
                entries.append(
                    (address, EndpointPort(sp.name, number, sp.protocol, sp.app_protocol or ""), ready)
                )
    return _repack(entries)


def desired_endpoints(
    service: ServiceInfo,
    pods: Iterable[PodInfo],
    *,
    now: datetime | None,
    current: Mapping[str, Any] | None = None,
) -> Obj | None:
    """The core/v1 Endpoints the endpoints controller keeps for ``service``.

    ``pods`` may be any superset of the Service's pods (other namespaces and labels are
    ignored). ``now`` is the last-change trigger time, the time of the newest pod or Service
    change this sync answers, written as ``endpoints.kubernetes.io/last-change-trigger-time``;
    None removes that annotation. Given the stored object as ``current``, its metadata
    (resourceVersion, other annotations) is kept so the result can be written back as is.

    Returns None when the controller leaves the Service's Endpoints alone: a Service without a
    selector (the user writes them) or of type ExternalName.
    """
    if service.type == "ExternalName" or service.selector is None:
        return None
    subsets = _subsets(service, pods)
    truncated = _truncate(subsets)

    meta: Obj = copy.deepcopy(dict(current.get("metadata") or {})) if current else {}
    meta["name"] = service.name
    meta["namespace"] = service.namespace
    labels = dict(service.labels)
    if service.ip_set:
        labels.pop(LABEL_HEADLESS, None)
    else:
        labels[LABEL_HEADLESS] = ""
    meta["labels"] = labels
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    annotations.pop(ANNOTATION_OVER_CAPACITY, None)
    if now is not None:
        annotations[ANNOTATION_TRIGGER_TIME] = format_trigger_time(now)
    if truncated:
        annotations[ANNOTATION_OVER_CAPACITY] = OVER_CAPACITY_TRUNCATED
    meta["annotations"] = annotations
    for key in ("labels", "annotations"):
        if not meta[key]:
            del meta[key]

    obj: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
    if subsets:
        obj["subsets"] = [s.to_dict() for s in subsets]
    return obj


def _comparable_subsets(obj: Mapping[str, Any]) -> list[Obj]:
    """Subsets with API defaults filled and targetRef resourceVersions dropped."""

    def address(a: Mapping[str, Any]) -> Obj:
        out = {k: v for k, v in a.items() if v not in (None, "") and k != "targetRef"}
        if a.get("targetRef"):
            out["targetRef"] = ObjectReference.from_dict(a["targetRef"]).to_dict()
            out["targetRef"].pop("resourceVersion", None)
        return out

    result = []
    for s in obj.get("subsets") or []:
        result.append(
            {
                "addresses": [address(a) for a in s.get("addresses") or []],
                "notReadyAddresses": [address(a) for a in s.get("notReadyAddresses") or []],
                "ports": [EndpointPort.from_dict(p).to_dict() for p in s.get("ports") or []],
            }
        )
    return result


def endpoints_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether ``current`` must be rewritten to ``desired``: its subsets, labels or over-capacity
    annotation differ. A different trigger time alone is no reason to write (as in Kubernetes)."""
    if current is None:
        return True
    cur_meta = current.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    if dict(cur_meta.get("labels") or {}) != dict(want_meta.get("labels") or {}):
        return True
    cur_cap = (cur_meta.get("annotations") or {}).get(ANNOTATION_OVER_CAPACITY)
    want_cap = (want_meta.get("annotations") or {}).get(ANNOTATION_OVER_CAPACITY)
    return cur_cap != want_cap or _comparable_subsets(current) != _comparable_subsets(desired)
