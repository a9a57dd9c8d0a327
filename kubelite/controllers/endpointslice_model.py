"""What the EndpointSlice controllers should create, update and delete: pure, no I/O.

Two planners, each returning a ``SlicePlan`` to apply with plain create / update / delete:

- ``desired_endpoint_slices``: the endpointslice controller (k8s.io/endpointslice's Reconciler)
  for a Service with a selector. Slices are grouped by address family and by the set of ports a pod
  offers (named targetPorts may resolve differently per pod); each holds at most
  ``max_per_slice`` endpoints. Churn is kept low the way Kubernetes keeps it: an endpoint stays
  in the slice it is in; changed slices are topped up first, then an unchanged slice that the
  leftovers fill best, and only then are new slices created; a slice left empty is deleted, and
  a create paired with a delete becomes an update of the doomed slice. A Service selecting
  nothing keeps exactly one empty placeholder slice per family.
- ``mirrored_slices``: the endpointslicemirroring controller, copying the Endpoints a user
  writes for a Service without a selector into slices (one per subset's ports and family).

Plans are deterministic: groups in sorted order, endpoints within a written slice sorted by
address, updates and deletes sorted by name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubelite.controllers.endpoints_model import (
    ANNOTATION_TRIGGER_TIME,
    IPV4,
    IPV6,
    LABEL_HEADLESS,
    EndpointPort,
    NodeInfo,
    ObjectReference,
    PodInfo,
    ServiceInfo,
    find_port,
    format_trigger_time,
    ip_family,
    ip_sort_key,
    normalize_ip,
    selected_pods,
    should_pod_be_in_endpoints,
    should_set_hostname,
)

Obj = dict[str, Any]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
ENDPOINTSLICE_CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MIRRORING_CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
ANNOTATION_LEADER = "control-plane.alpha.kubernetes.io/leader"
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_ENDPOINTS_PER_SLICE = 100
MAX_ENDPOINTS_PER_SUBSET = 1000
_RESERVED_LABELS = frozenset({LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS})

__all__ = [
    "ENDPOINTSLICE_CONTROLLER_NAME",
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "LABEL_SKIP_MIRROR",
    "MAX_ENDPOINTS_PER_SLICE",
    "MAX_ENDPOINTS_PER_SUBSET",
    "MIRRORING_CONTROLLER_NAME",
    "SliceEndpoint",
    "SlicePlan",
    "desired_endpoint_slices",
    "mirrored_slices",
    "service_wants_mirroring",
]

PortKey = tuple[EndpointPort, ...]
EndpointKey = tuple[tuple[str, ...], str, str, str]


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """What to write. ``to_create`` slices carry ``generateName``; ``to_update`` slices carry the
    ``name`` of the stored slice they replace; ``to_delete`` are the stored slices themselves.
    ``missing_nodes`` names nodes that pods refer to but ``nodes`` lacked: their pods were left
    out and the Service should be synced again later."""

    to_create: list[Obj] = field(default_factory=list)
    to_update: list[Obj] = field(default_factory=list)
    to_delete: list[Obj] = field(default_factory=list)
    missing_nodes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.to_create or self.to_update or self.to_delete)


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One ``endpoints[]`` entry of an EndpointSlice. None means the field is absent."""

    addresses: tuple[str, ...]
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    target_ref: ObjectReference | None = None
    node_name: str | None = None
    hostname: str | None = None
    zone: str | None = None

    @classmethod
    def from_dict(cls, ep: Mapping[str, Any]) -> SliceEndpoint:
        conditions = ep.get("conditions") or {}

        def flag(name: str) -> bool | None:
            value = conditions.get(name)
            return value if isinstance(value, bool) else None

        return cls(
            addresses=tuple(str(a) for a in ep.get("addresses") or []),
            ready=flag("ready"),
            serving=flag("serving"),
            terminating=flag("terminating"),
            target_ref=ObjectReference.from_dict(ep["targetRef"]) if ep.get("targetRef") else None,
            node_name=ep.get("nodeName") or None,
            hostname=ep.get("hostname") or None,
            zone=ep.get("zone") or None,
        )

    def to_dict(self) -> Obj:
        conditions = {"ready": self.ready, "serving": self.serving, "terminating": self.terminating}
        optional = {
            "hostname": self.hostname,
            "targetRef": self.target_ref.to_dict() if self.target_ref else None,
            "nodeName": self.node_name,
            "zone": self.zone,
        }
        return {
            "addresses": list(self.addresses),
            "conditions": {k: v for k, v in conditions.items() if v is not None},
        } | {k: v for k, v in optional.items() if v}

    @property
    def key(self) -> EndpointKey:
        """Identity across syncs (Kubernetes' endpoint hash): addresses, hostname and target;
        everything else may change in place."""
        ref = self.target_ref or ObjectReference()
        return (tuple(sorted(self.addresses)), self.hostname or "", ref.namespace, ref.name)

    def same_beyond_key(self, other: SliceEndpoint) -> bool:
        """Nothing besides the key differs either (targetRef resourceVersion aside)."""
        mine = (self.node_name, self.zone, self.ready, self.serving, self.terminating)
        theirs = (other.node_name, other.zone, other.ready, other.serving, other.terminating)
        if self.target_ref is None or other.target_ref is None:
            return mine == theirs and self.target_ref is other.target_ref
        return mine == theirs and self.target_ref.same_object(other.target_ref)

    def sort_key(self) -> tuple[Any, ...]:
        ref = self.target_ref or ObjectReference()
        return (tuple(ip_sort_key(a) for a in self.addresses), ref.namespace, ref.name, self.hostname or "")


# --- reading stored slices -----------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(_meta(obj).get("labels") or {})


def _port_key(ports: Iterable[EndpointPort]) -> PortKey:
    return tuple(sorted(ports))


def _slice_port_key(obj: Mapping[str, Any]) -> PortKey:
    return _port_key(EndpointPort.from_dict(p) for p in obj.get("ports") or [])


def _slice_endpoints(obj: Mapping[str, Any]) -> list[SliceEndpoint]:
    return [SliceEndpoint.from_dict(e) for e in obj.get("endpoints") or []]


def _managed_slices(slices: Iterable[Mapping[str, Any]], controller: str, service: str | None) -> list[Obj]:
    """The stored slices this controller manages (for ``service``), by name."""
    mine = [
        dict(s)
        for s in slices
        if _labels(s).get(LABEL_MANAGED_BY) == controller
        and (service is None or _labels(s).get(LABEL_SERVICE_NAME) == service)
    ]
    return sorted(mine, key=_name)


def _set_trigger_time(meta: Obj, trigger: str | None) -> None:
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    if trigger is not None:
        annotations[ANNOTATION_TRIGGER_TIME] = trigger
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)


def _slice_prefix(name: str) -> str:
    # "<name>-" unless that would be too long for a DNS subdomain.
    return f"{name}-" if len(name) < 253 else name


def _controller_ref(kind: str, name: str, uid: str) -> Obj:
    """An ownerReference to a core/v1 object that controls the slice (garbage collection)."""
    return {
        "apiVersion": "v1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# --- the endpointslice controller ----------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """A slice being planned: a stored one (``base``) being changed, or a new one."""

    address_type: str
    ports: list[EndpointPort]
    endpoints: list[SliceEndpoint]
    base: Obj | None = None
    labels: dict[str, str] | None = None
    """Labels to write; None keeps the stored slice's."""
    name: str = ""

    def __post_init__(self) -> None:
        if self.base is not None:
            self.name = _name(self.base)


def _service_slice_labels(service: ServiceInfo, current: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The labels a slice of ``service`` carries, and whether ``current`` differs from the Service's
    own labels (reserved keys aside, as Kubernetes' setEndpointSliceLabels compares them)."""
    own = {k: v for k, v in service.labels.items() if k not in _RESERVED_LABELS}
    changed = {k: v for k, v in current.items() if k not in _RESERVED_LABELS} != own
    labels = dict(own)
    if not service.ip_set:
        labels[LABEL_HEADLESS] = ""
    labels[LABEL_SERVICE_NAME] = service.name
    labels[LABEL_MANAGED_BY] = ENDPOINTSLICE_CONTROLLER_NAME
    return labels, changed


def _address_types(service: ServiceInfo) -> list[str]:
    families = sorted({f for f in service.ip_families if f in (IPV4, IPV6)})
    if families:
        return families
    if service.ip_set:
        return [ip_family(service.cluster_ip) or IPV4]
    return [IPV4, IPV6]  # headless on an API server that does not set ipFamilies


def _owned_by(obj: Mapping[str, Any], service: ServiceInfo) -> bool:
    return any(
        o.get("uid", "") == service.uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
        for o in _meta(obj).get("ownerReferences") or []
    )


def _endpoint_ports(service: ServiceInfo, pod: PodInfo) -> list[EndpointPort]:
    ports = []
    for sp in service.ports:
        number = find_port(pod, sp)
        if number is not None:
            ports.append(EndpointPort(sp.name, number, sp.protocol, sp.app_protocol or ""))
    return ports


def _pod_endpoint(pod: PodInfo, service: ServiceInfo, address_type: str, zone: str | None) -> SliceEndpoint:
    serving = pod.ready
    terminating = pod.deleting
    # A terminating pod is never "ready" unless the Service publishes not-ready addresses.
    ready = service.publish_not_ready_addresses or (serving and not terminating)
    addresses = tuple(ip for ip in map(normalize_ip, pod.ips) if ip and ip_family(ip) == address_type)
    return SliceEndpoint(
        addresses=addresses,
        ready=ready,
        serving=serving,
        terminating=terminating,
        target_ref=ObjectReference.for_pod(pod),
        node_name=pod.node_name or None,
        hostname=pod.hostname if should_set_hostname(pod, service) else None,
        zone=zone,
    )


def _slice_to_fill(candidates: list[_Draft], count: int, max_per_slice: int) -> _Draft | None:
    """The slice closest to full once ``count`` endpoints join it (Kubernetes' getSliceToFill)."""
    best, best_room = None, max_per_slice
    for draft in candidates:
        room = max_per_slice - (count + len(draft.endpoints))
        if 0 <= room < best_room:
            best, best_room = draft, room
            if room == 0:
                break
    return best


def _reconcile_ports(
    service: ServiceInfo,
    existing: list[Obj],
    desired: dict[EndpointKey, SliceEndpoint],
    ports: list[EndpointPort],
    address_type: str,
    max_per_slice: int,
) -> tuple[list[_Draft], list[_Draft], list[Obj]]:
    """Kubernetes' reconcileByPortMapping for one group: (creates, updates, deletes)."""
    wanted = dict(desired)
    drafts: dict[str, _Draft] = {}
    unchanged: list[str] = []
    updating: list[str] = []
    deletes: list[Obj] = []
    # 1. Keep wanted endpoints where they are; drop the rest; note what changed.
    for stored in existing:
        current = _slice_endpoints(stored)
        kept, endpoint_changed = [], False
        for ep in current:
            want = wanted.pop(ep.key, None)
            if want is not None:
                kept.append(want)
                endpoint_changed |= not want.same_beyond_key(ep)
        labels, labels_changed = _service_slice_labels(service, _labels(stored))
        name = _name(stored)
        if endpoint_changed or len(kept) != len(current):
            if not kept:
                deletes.append(stored)
                continue
            drafts[name] = _Draft(address_type, ports, kept, base=stored, labels=labels)
            updating.append(name)
        else:
            drafts[name] = _Draft(
                address_type, ports, current, base=stored, labels=labels if labels_changed else None
            )
            (updating if labels_changed else unchanged).append(name)

    pending = sorted(wanted.values(), key=SliceEndpoint.sort_key, reverse=True)  # pop() = smallest
    # 2. Top up the slices being written anyway, fullest first.
    for name in sorted(updating, key=lambda n: (-len(drafts[n].endpoints), n)):
        draft = drafts[name]
        while pending and len(draft.endpoints) < max_per_slice:
            draft.endpoints.append(pending.pop())
    # 3. Fit the rest into the unchanged slice they fill best, else into new slices.
    creates: list[_Draft] = []
    new_labels, _ = _service_slice_labels(service, {})
    while pending:
        target = None
        if len(pending) < max_per_slice and unchanged:
            target = _slice_to_fill([drafts[n] for n in unchanged], len(pending), max_per_slice)
        if target is None:
            target = _Draft(address_type, ports, [], labels=new_labels)
        while pending and len(target.endpoints) < max_per_slice:
            target.endpoints.append(pending.pop())
        if target.base is None:
            creates.append(target)
        else:
            unchanged.remove(target.name)
            updating.append(target.name)
    return creates, [drafts[n] for n in updating], deletes


def _is_placeholder(stored: Mapping[str, Any], service: ServiceInfo, address_type: str) -> bool:
    labels, _ = _service_slice_labels(service, {})
    return (
        _meta(stored).get("namespace", service.namespace) == service.namespace
        and _labels(stored) == labels
        and stored.get("addressType") == address_type
        and not stored.get("endpoints")
        and not stored.get("ports")
    )


def _reconcile_address_type(
    service: ServiceInfo,
    pods: list[PodInfo],
    existing: list[Obj],
    address_type: str,
    max_per_slice: int,
    nodes: Mapping[str, NodeInfo] | None,
    missing_nodes: set[str],
) -> tuple[list[_Draft], list[_Draft], list[Obj]]:
    deletes: list[Obj] = []
    existing_by_ports: dict[PortKey, list[Obj]] = {}
    for stored in existing:
        if _owned_by(stored, service):
            existing_by_ports.setdefault(_slice_port_key(stored), []).append(stored)
        else:  # e.g. left by an earlier Service of the same name
            deletes.append(stored)

    desired: dict[PortKey, dict[EndpointKey, SliceEndpoint]] = {}
    ports_of: dict[PortKey, list[EndpointPort]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=True):
            continue
        ports = _endpoint_ports(service, pod)
        key = _port_key(ports)
        group = desired.setdefault(key, {})
        ports_of.setdefault(key, ports)
        zone = None
        if nodes is not None:
            node = nodes.get(pod.node_name)
            if node is None and not service.publish_not_ready_addresses:
                missing_nodes.add(pod.node_name)
                continue
            if node is not None and node.zone:
                zone = node.zone
        endpoint = _pod_endpoint(pod, service, address_type, zone)
        if endpoint.addresses:
            group[endpoint.key] = endpoint

    creates: list[_Draft] = []
    updates: list[_Draft] = []
    for key in sorted(desired):
        c, u, d = _reconcile_ports(
            service, existing_by_ports.get(key, []), desired[key], ports_of[key], address_type, max_per_slice
        )
        creates += c
        updates += u
        deletes += d
    for key in sorted(existing_by_ports):
        if key not in desired:
            deletes += existing_by_ports[key]

    # A Service selecting nothing still has one (empty) slice per family.
    if len(existing) == len(deletes) and not creates:
        if len(deletes) == 1 and _is_placeholder(deletes[0], service, address_type):
            deletes = []
        else:
            creates.append(_Draft(address_type, [], [], labels=_service_slice_labels(service, {})[0]))

    # A create paired with a delete becomes an update of the slice that would go.
    for stored in sorted(deletes, key=_name):
        if not creates:
            break
        if stored.get("addressType") == address_type and _owned_by(stored, service):
            recycled = creates.pop()
            recycled.name = _name(stored)
            updates.append(recycled)
            deletes.remove(stored)
    return creates, updates, deletes


def _render_service_slice(draft: _Draft, service: ServiceInfo, trigger: str | None) -> Obj:
    if draft.base is not None:
        obj = copy.deepcopy(draft.base)
    else:
        metadata: Obj = {"generateName": _slice_prefix(service.name), "namespace": service.namespace}
        if draft.name:  # a new slice recycling a stored one's name
            metadata["name"] = draft.name
        metadata["ownerReferences"] = [_controller_ref("Service", service.name, service.uid)]
        obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": metadata,
            "addressType": draft.address_type,
            "ports": [p.to_dict(always_name=True) for p in draft.ports],
        }
    meta = obj.setdefault("metadata", {})
    if draft.labels is not None:
        meta["labels"] = dict(draft.labels)
    _set_trigger_time(meta, trigger)
    obj["endpoints"] = [e.to_dict() for e in sorted(draft.endpoints, key=SliceEndpoint.sort_key)]
    return obj


def desired_endpoint_slices(
    service: ServiceInfo,
    pods: Iterable[PodInfo],
    existing_slices: Iterable[Mapping[str, Any]],
    *,
    max_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
    now: datetime | None,
    nodes: Mapping[str, NodeInfo] | None = None,
) -> SlicePlan:
    """Plan the Service's EndpointSlices from whatever is stored now (so a deleted slice is
    simply created again).

    ``pods`` may be a superset of the Service's pods; ``existing_slices`` may include slices
    other controllers manage (ignored). ``now`` is the last-change trigger time stamped on every
    slice written (None removes it). With ``nodes`` (by name) endpoints carry their node's zone
    and, as in Kubernetes, pods on unknown nodes are left out (reported in ``missing_nodes``)
    unless the Service publishes not-ready addresses. A Service without a selector or of type
    ExternalName gets an empty plan: its slices are not this controller's business.
    """
    if service.type == "ExternalName" or service.selector is None:
        return SlicePlan()
    existing = _managed_slices(existing_slices, ENDPOINTSLICE_CONTROLLER_NAME, service.name)
    families = _address_types(service)
    selected = selected_pods(service, pods)
    creates: list[_Draft] = []
    updates: list[_Draft] = []
    deletes = [s for s in existing if s.get("addressType") not in families]
    missing_nodes: set[str] = set()
    for address_type in families:
        of_type = [s for s in existing if s.get("addressType") == address_type]
        c, u, d = _reconcile_address_type(
            service, selected, of_type, address_type, max_per_slice, nodes, missing_nodes
        )
        creates += c
        updates += u
        deletes += d
    if service.deleting:
        creates = []  # don't race the garbage collector
    trigger = format_trigger_time(now) if now is not None else None
    return SlicePlan(
        to_create=[_render_service_slice(d, service, trigger) for d in creates],
        to_update=[_render_service_slice(d, service, trigger) for d in sorted(updates, key=lambda d: d.name)],
        to_delete=sorted(deletes, key=_name),
        missing_nodes=tuple(sorted(missing_nodes)),
    )


# --- the endpointslicemirroring controller -------------------------------------------------------


def service_wants_mirroring(service: ServiceInfo | None) -> bool:
    """Whether a Service's Endpoints are mirrored: it exists and has no selector."""
    return service is not None and service.selector is None


def _skip_mirror(endpoints: Mapping[str, Any]) -> bool:
    meta = _meta(endpoints)
    return (meta.get("labels") or {}).get(LABEL_SKIP_MIRROR) == "true" or ANNOTATION_LEADER in (
        meta.get("annotations") or {}
    )


def _mirrored_annotations(endpoints: Mapping[str, Any]) -> dict[str, str]:
    annotations = dict(_meta(endpoints).get("annotations") or {})
    annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    annotations.pop(ANNOTATION_LAST_APPLIED, None)
    return annotations


def _address_to_endpoint(address: Mapping[str, Any], ready: bool) -> SliceEndpoint | None:
    ip = normalize_ip(str(address.get("ip") or ""))
    if ip is None:
        return None
    return SliceEndpoint(
        addresses=(ip,),
        ready=ready,
        target_ref=ObjectReference.from_dict(address["targetRef"]) if address.get("targetRef") else None,
        node_name=address.get("nodeName") or None,
        hostname=address.get("hostname") or None,
    )


def _mirror_unchanged(
    stored: Obj, desired: dict[EndpointKey, SliceEndpoint], endpoints: Mapping[str, Any]
) -> bool:
    matches = 0
    for ep in _slice_endpoints(stored):
        want = desired.get(ep.key)
        if want is None or not want.same_beyond_key(ep):
            return False
        matches += 1
    labels = {k: v for k, v in _labels(stored).items() if k not in (LABEL_MANAGED_BY, LABEL_SERVICE_NAME)}
    return (
        matches == len(desired)
        and labels == dict(_meta(endpoints).get("labels") or {})
        and dict(_meta(stored).get("annotations") or {}) == _mirrored_annotations(endpoints)
    )


def _mirrored_slice(
    endpoints: Mapping[str, Any],
    ports: list[EndpointPort],
    address_type: str,
    members: list[SliceEndpoint],
    name: str,
) -> Obj:
    meta = _meta(endpoints)
    ep_name = str(meta.get("name") or "")
    labels = dict(meta.get("labels") or {})
    labels[LABEL_SERVICE_NAME] = ep_name
    labels[LABEL_MANAGED_BY] = MIRRORING_CONTROLLER_NAME
    metadata: Obj = {"name": name} if name else {"generateName": _slice_prefix(ep_name)}
    metadata |= {"namespace": str(meta.get("namespace") or ""), "labels": labels}
    if annotations := _mirrored_annotations(endpoints):
        metadata["annotations"] = annotations
    metadata["ownerReferences"] = [_controller_ref("Endpoints", ep_name, str(meta.get("uid") or ""))]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": address_type,
        "endpoints": [e.to_dict() for e in sorted(members, key=SliceEndpoint.sort_key)],
        "ports": [p.to_dict(always_name=True) for p in ports],
    }


def mirrored_slices(
    endpoints: Mapping[str, Any] | None,
    existing_slices: Iterable[Mapping[str, Any]],
    *,
    max_per_subset: int = MAX_ENDPOINTS_PER_SUBSET,
) -> SlicePlan:
    """Plan the slices mirroring a user's core/v1 Endpoints.

    Pass None when there is nothing to mirror — the Endpoints or its Service is gone, or the
    Service has a selector (see ``service_wants_mirroring``) — and every mirrored slice in
    ``existing_slices`` is deleted; the same happens for Endpoints labelled
    ``endpointslice.kubernetes.io/skip-mirror: "true"`` or holding a leader-election record.
    Each subset becomes at most one slice per address family, of at most ``max_per_subset``
    addresses (ready first); invalid IPs are skipped.
    """
    name = _name(endpoints) if endpoints is not None else None
    existing = _managed_slices(existing_slices, MIRRORING_CONTROLLER_NAME, name)
    if endpoints is None or _skip_mirror(endpoints):
        return SlicePlan(to_delete=existing)

    desired: dict[tuple[str, PortKey], dict[EndpointKey, SliceEndpoint]] = {}
    ports_of: dict[tuple[str, PortKey], list[EndpointPort]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = [EndpointPort.from_dict(p) for p in subset.get("ports") or []]
        for family in (IPV4, IPV6):
            desired.setdefault((family, _port_key(ports)), {})
            ports_of[(family, _port_key(ports))] = ports
        added = 0
        for addresses, ready in ((subset.get("addresses"), True), (subset.get("notReadyAddresses"), False)):
            for address in addresses or []:
                if added >= max_per_subset:
                    break
                endpoint = _address_to_endpoint(address, ready)
                if endpoint is not None:
                    desired[(ip_family(endpoint.addresses[0]) or IPV4, _port_key(ports))][endpoint.key] = (
                        endpoint
                    )
                    added += 1

    existing_by_key: dict[tuple[str, PortKey], list[Obj]] = {}
    for stored in existing:
        existing_by_key.setdefault((str(stored.get("addressType")), _slice_port_key(stored)), []).append(
            stored
        )

    creates: list[Obj] = []
    updates: list[Obj] = []
    deletes: list[Obj] = []
    for key in sorted(desired):
        stored_group = existing_by_key.get(key, [])
        wanted = desired[key]
        if not wanted:
            deletes += stored_group
            continue
        if stored_group:
            deletes += stored_group[1:]
            if _mirror_unchanged(stored_group[0], wanted, endpoints):
                continue
        members = sorted(wanted.values(), key=SliceEndpoint.sort_key)[:max_per_subset]
        first_name = _name(stored_group[0]) if stored_group else ""
        mirrored = _mirrored_slice(endpoints, ports_of[key], key[0], members, first_name)
        (updates if first_name else creates).append(mirrored)
    for key in sorted(existing_by_key):
        if key not in desired:
            deletes += existing_by_key[key]

    # Recycle: a create and a delete of the same family become one update.
    for stored in sorted(deletes, key=_name):
        match = next((c for c in creates if c["addressType"] == stored.get("addressType")), None)
        if match is not None:
            creates.remove(match)
            deletes.remove(stored)
            match["metadata"]["name"] = _name(stored)
            updates.append(match)
    if _meta(endpoints).get("deletionTimestamp") is not None:
        creates = []
    return SlicePlan(
        to_create=creates,
        to_update=sorted(updates, key=_name),
        to_delete=sorted(deletes, key=_name),
    )
