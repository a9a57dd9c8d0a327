"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns the server returns, so the columns and the cell text below are what users see.
They follow kube-apiserver's printers (kubernetes/kubernetes
``pkg/printers/internalversion/printers.go``) kind by kind; a kind without a printer gets
the generic table of ``k8s.io/apiserver/pkg/registry/rest/table.go``: Name, Created At.

Like kube-apiserver, rows always carry the wide (priority 1) cells; kubectl hides those
columns unless ``-o wide``. Objects are the JSON dicts the API serves (v1 wire format).

Shape of a table::

    Table ── metadata (resourceVersion, continue, remainingItemCount of the list)
      ├── columnDefinitions [{name, type, format, description, priority}]   (null when no_headers)
      └── rows [{cells [...], conditions? [...], object: PartialObjectMetadata | object | null}]

A watch sends one single-row Table per event; kube-apiserver includes the column
definitions in the first event only (``watchEmbeddedEncoder`` sets ``NoHeaders`` after
it), so callers pass ``no_headers=True`` from the second event on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from kubelite.api.resources import ResourceType
from kubelite.apiserver.humanize import (
    InvalidSelectorError,
    age,
    format_label_selector,
    format_labels,
    human_duration,
    join_host_port,
    label_selector_string,
    list_with_more,
    parse_time,
)

Obj = Mapping[str, Any]
Row = tuple[list[Any], list[dict[str, str]] | None]
RowFunc = Callable[[Obj, datetime], Row]

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")
TABLE_API_VERSION = "meta.k8s.io/v1"
NONE = "<none>"


# ── column definitions ────────────────────────────────────────────────────────────────


def _doc(model: str, json_name: str) -> str:
    """The API field documentation kube-apiserver uses (``SwaggerDoc()``), from the official client."""
    try:
        from kubernetes.client import models  # the OpenAPI builder imports it anyway
    except ImportError:  # pragma: no cover - kubernetes is a declared dependency
        return ""
    cls = getattr(models, model, None)
    fields = getattr(cls, "model_fields", None)
    attribute_map = getattr(cls, "attribute_map", None)
    if not isinstance(fields, Mapping) or not isinstance(attribute_map, Mapping):
        return ""
    for attr, name in attribute_map.items():
        if name == json_name and attr in fields:
            return str(getattr(fields[attr], "description", None) or "")
    return ""


Doc = str | tuple[str, str]
"""A description, or the (client model, JSON field) whose documentation it is."""
ColumnSpec = tuple[str, str, Doc, int]
"""(name, type, description, priority); "Name" and "Age" columns are added by _columns."""

# The generated client drops the documentation of fields whose type is another object:
# those descriptions are written out here.
_CONTAINERS = ("Containers", "string", "Names of each container in the template.", 1)
_IMAGES = ("Images", "string", "Images referenced by each container in the template.", 1)
_SELECTOR = "Label selector for pods. It must match the pod template's labels."
_NAME: ColumnSpec = ("Name", "string", ("V1ObjectMeta", "name"), 0)
_AGE: ColumnSpec = ("Age", "string", ("V1ObjectMeta", "creationTimestamp"), 0)
_NODE_ADDRESSES = ("V1NodeStatus", "addresses")

_COLUMNS: Mapping[tuple[str, str], tuple[ColumnSpec, ...]] = MappingProxyType(
    {
        ("", "Pod"): (
            _NAME,
            ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            ("Status", "string", "The aggregate status of the containers in this pod.", 0),
            (
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted"
                " and when the last container in this pod has restarted.",
                0,
            ),
            _AGE,
            ("IP", "string", ("V1PodStatus", "podIP"), 1),
            ("Node", "string", ("V1PodSpec", "nodeName"), 1),
            ("Nominated Node", "string", ("V1PodStatus", "nominatedNodeName"), 1),
            ("Readiness Gates", "string", ("V1PodSpec", "readinessGates"), 1),
        ),
        ("", "Service"): (
            _NAME,
            ("Type", "string", ("V1ServiceSpec", "type"), 0),
            ("Cluster-IP", "string", ("V1ServiceSpec", "clusterIP"), 0),
            ("External-IP", "string", ("V1ServiceSpec", "externalIPs"), 0),
            ("Port(s)", "string", ("V1ServiceSpec", "ports"), 0),
            _AGE,
            ("Selector", "string", ("V1ServiceSpec", "selector"), 1),
        ),
        ("", "Endpoints"): (_NAME, ("Endpoints", "string", ("V1Endpoints", "subsets"), 0), _AGE),
        ("", "Node"): (
            _NAME,
            ("Status", "string", "The status of the node", 0),
            ("Roles", "string", "The roles of the node", 0),
            _AGE,
            ("Version", "string", ("V1NodeSystemInfo", "kubeletVersion"), 0),
            ("Internal-IP", "string", _NODE_ADDRESSES, 1),
            ("External-IP", "string", _NODE_ADDRESSES, 1),
            ("OS-Image", "string", ("V1NodeSystemInfo", "osImage"), 1),
            ("Kernel-Version", "string", ("V1NodeSystemInfo", "kernelVersion"), 1),
            ("Container-Runtime", "string", ("V1NodeSystemInfo", "containerRuntimeVersion"), 1),
        ),
        ("", "Namespace"): (_NAME, ("Status", "string", "The status of the namespace", 0), _AGE),
        ("", "ConfigMap"): (_NAME, ("Data", "string", ("V1ConfigMap", "data"), 0), _AGE),
        ("", "Secret"): (
            _NAME,
            ("Type", "string", ("V1Secret", "type"), 0),
            ("Data", "string", ("V1Secret", "data"), 0),
            _AGE,
        ),
        ("", "Event"): (
            ("Last Seen", "string", ("CoreV1Event", "lastTimestamp"), 0),
            ("Type", "string", ("CoreV1Event", "type"), 0),
            ("Reason", "string", ("CoreV1Event", "reason"), 0),
            ("Object", "string", "The object that this event is about.", 0),
            ("Subobject", "string", ("V1ObjectReference", "fieldPath"), 1),
            ("Source", "string", "The component reporting this event.", 1),
            ("Message", "string", ("CoreV1Event", "message"), 0),
            ("First Seen", "string", ("CoreV1Event", "firstTimestamp"), 1),
            ("Count", "string", ("CoreV1Event", "count"), 1),
            ("Name", "string", ("V1ObjectMeta", "name"), 1),
        ),
        ("", "ServiceAccount"): (_NAME, ("Secrets", "string", ("V1ServiceAccount", "secrets"), 0), _AGE),
        ("discovery.k8s.io", "EndpointSlice"): (
            _NAME,
            ("AddressType", "string", ("V1EndpointSlice", "addressType"), 0),
            ("Ports", "string", ("V1EndpointSlice", "ports"), 0),
            ("Endpoints", "string", ("V1EndpointSlice", "endpoints"), 0),
            _AGE,
        ),
        ("apps", "Deployment"): (
            _NAME,
            ("Ready", "string", "Number of the pod with ready state", 0),
            ("Up-to-date", "string", ("V1DeploymentStatus", "updatedReplicas"), 0),
            ("Available", "string", ("V1DeploymentStatus", "availableReplicas"), 0),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            ("Selector", "string", _SELECTOR, 1),
        ),
        ("apps", "ReplicaSet"): (
            _NAME,
            ("Desired", "integer", ("V1ReplicaSetSpec", "replicas"), 0),
            ("Current", "integer", ("V1ReplicaSetStatus", "replicas"), 0),
            ("Ready", "integer", ("V1ReplicaSetStatus", "readyReplicas"), 0),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            ("Selector", "string", _SELECTOR, 1),
        ),
        ("apps", "DaemonSet"): (
            _NAME,
            ("Desired", "integer", ("V1DaemonSetStatus", "desiredNumberScheduled"), 0),
            ("Current", "integer", ("V1DaemonSetStatus", "currentNumberScheduled"), 0),
            ("Ready", "integer", ("V1DaemonSetStatus", "numberReady"), 0),
            ("Up-to-date", "integer", ("V1DaemonSetStatus", "updatedNumberScheduled"), 0),
            ("Available", "integer", ("V1DaemonSetStatus", "numberAvailable"), 0),
            ("Node Selector", "string", ("V1PodSpec", "nodeSelector"), 0),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            ("Selector", "string", _SELECTOR, 1),
        ),
        ("networking.k8s.io", "Ingress"): (
            _NAME,
            (
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
                0,
            ),
            (
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
                0,
            ),
            ("Address", "string", "Address is a list containing ingress points for the load-balancer", 0),
            ("Ports", "string", "Ports of TLS configurations that open", 0),
            _AGE,
        ),
        ("networking.k8s.io", "IngressClass"): (
            _NAME,
            ("Controller", "string", "Controller that is responsible for handling this class", 0),
            ("Parameters", "string", "A reference to a resource with additional parameters", 0),
            _AGE,
        ),
        ("coordination.k8s.io", "Lease"): (
            _NAME,
            ("Holder", "string", ("V1LeaseSpec", "holderIdentity"), 0),
            _AGE,
        ),
    }
)
_DEFAULT_COLUMNS: tuple[ColumnSpec, ...] = (
    _NAME,
    ("Created At", "date", ("V1ObjectMeta", "creationTimestamp"), 0),
)


def _columns(specs: tuple[ColumnSpec, ...]) -> list[dict[str, Any]]:
    columns = []
    for name, type_, doc, priority in specs:
        text = doc if isinstance(doc, str) else _doc(*doc)
        fmt = "name" if (name, doc) == ("Name", _NAME[2]) else ""
        columns.append(
            {"name": name, "type": type_, "format": fmt, "description": text, "priority": priority}
        )
    return columns


# ── helpers shared by the printers ────────────────────────────────────────────────────


def _get(obj: Obj | None, *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _age(obj: Obj, now: datetime) -> str:
    return age(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _layout_containers(containers: Any) -> tuple[str, str]:
    items = _list(containers)
    names = ",".join(str(_get(c, "name") or "") for c in items)
    images = ",".join(str(_get(c, "image") or "") for c in items)
    return names, images


# ── Pod ───────────────────────────────────────────────────────────────────────────────

_POD_SUCCEEDED = {
    "type": "Completed",
    "status": "True",
    "reason": "Succeeded",
    "message": "The pod has completed successfully.",
}
_POD_FAILED = {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}


def _later(current: datetime | None, status: Any) -> datetime | None:
    """The later of ``current`` and the status' lastState.terminated.finishedAt."""
    finished = parse_time(_get(status, "lastState", "terminated", "finishedAt"))
    if finished is not None and (current is None or current < finished):
        return finished
    return current


def _has_condition(status: Obj, type_: str) -> bool | None:
    """True/False for the first condition of ``type_``; None if there is none."""
    for condition in _list(status.get("conditions")):
        if _get(condition, "type") == type_:
            return bool(_get(condition, "status") == "True")
    return None


def _pod_row(pod: Obj, now: datetime) -> Row:
    spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
    init_specs = _list(spec.get("initContainers"))
    restartable = {_get(c, "name") for c in init_specs if _get(c, "restartPolicy") == "Always"}
    total = len(_list(spec.get("containers"))) + sum(
        1 for c in init_specs if _get(c, "restartPolicy") == "Always"
    )
    restarts = restartable_restarts = ready = 0
    last_restart: datetime | None = None
    last_restartable: datetime | None = None

    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    for condition in _list(status.get("conditions")):
        if _get(condition, "type") == "PodScheduled" and _get(condition, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for i, container in enumerate(_list(status.get("initContainerStatuses"))):
        restarts += _int(_get(container, "restartCount"))
        last_restart = _later(last_restart, container)
        is_restartable = _get(container, "name") in restartable
        if is_restartable:
            restartable_restarts += _int(_get(container, "restartCount"))
            last_restartable = _later(last_restartable, container)
        terminated, waiting = _get(container, "state", "terminated"), _get(container, "state", "waiting")
        if terminated is not None and _int(_get(terminated, "exitCode")) == 0:
            continue
        if is_restartable and _get(container, "started") is True:
            ready += 1 if _get(container, "ready") is True else 0
            continue
        if terminated is not None:
            if _get(terminated, "reason"):
                reason = f"Init:{_get(terminated, 'reason')}"
            elif _int(_get(terminated, "signal")):
                reason = f"Init:Signal:{_int(_get(terminated, 'signal'))}"
            else:
                reason = f"Init:ExitCode:{_int(_get(terminated, 'exitCode'))}"
        elif waiting is not None and _get(waiting, "reason") and _get(waiting, "reason") != "PodInitializing":
            reason = f"Init:{_get(waiting, 'reason')}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _has_condition(status, "Initialized"):
        restarts, last_restart = restartable_restarts, last_restartable
        has_running = False
        for container in reversed(_list(status.get("containerStatuses"))):
            restarts += _int(_get(container, "restartCount"))
            last_restart = _later(last_restart, container)
            terminated, waiting = _get(container, "state", "terminated"), _get(container, "state", "waiting")
            if waiting is not None and _get(waiting, "reason"):
                reason = str(_get(waiting, "reason"))
            elif terminated is not None and _get(terminated, "reason"):
                reason = str(_get(terminated, "reason"))
            elif terminated is not None:
                signal = _int(_get(terminated, "signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(_get(terminated, 'exitCode'))}"
            elif _get(container, "ready") is True and _get(container, "state", "running") is not None:
                has_running = True
                ready += 1
        # A pod whose containers completed but one of which is still running is not "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(status, "Ready") else "NotReady"

    deleting = bool(_get(pod, "metadata", "deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = _list(status.get("podIPs"))
    pod_ip = _get(pod_ips[0], "ip") if pod_ips else status.get("podIP")
    gates = _list(spec.get("readinessGates"))
    readiness_gates = NONE
    if gates:
        true_gates = sum(1 for g in gates if _has_condition(status, str(_get(g, "conditionType"))))
        readiness_gates = f"{true_gates}/{len(gates)}"
    cells = [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip or NONE,
        spec.get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        readiness_gates,
    ]
    conditions = {"Succeeded": [_POD_SUCCEEDED], "Failed": [_POD_FAILED]}.get(phase)
    return cells, [dict(c) for c in conditions] if conditions else None


# ── Service, Endpoints, EndpointSlice, Ingress ────────────────────────────────────────


def _load_balancer_ips(status: Any) -> str:
    """``loadBalancerStatusStringer`` with wide=true (the server never truncates)."""
    found = set()
    for ingress in _list(_get(status, "ingress")):
        ip, hostname = _get(ingress, "ip"), _get(ingress, "hostname")
        if ip:
            found.add(str(ip))
        elif hostname:
            found.add(str(hostname))
    return ",".join(sorted(found))


def service_external_ip(svc: Obj) -> str:
    """The EXTERNAL-IP cell: external IPs, load-balancer ingress, "<pending>", "<none>", or externalName."""
    spec = _dict(svc.get("spec"))
    svc_type = spec.get("type") or "ClusterIP"
    external_ips = [str(ip) for ip in _list(spec.get("externalIPs"))]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or NONE
    if svc_type == "LoadBalancer":
        lb_ips = _load_balancer_ips(_get(svc, "status", "loadBalancer"))
        if external_ips:
            return ",".join([*(lb_ips.split(",") if lb_ips else []), *external_ips])
        return lb_ips or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def service_ports(ports: Any) -> str:
    """The PORT(S) cell: ``80/TCP`` or ``80:30036/TCP`` (with a node port), comma separated."""
    pieces = []
    for port in _list(ports):
        protocol = _get(port, "protocol") or "TCP"
        node_port = _int(_get(port, "nodePort"))
        number = _get(port, "port")
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}")
    return ",".join(pieces)


def _service_row(svc: Obj, now: datetime) -> Row:
    spec = _dict(svc.get("spec"))
    cluster_ips = _list(spec.get("clusterIPs")) or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    cells = [
        _name(svc),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else NONE,
        service_external_ip(svc),
        service_ports(spec.get("ports")) or NONE,
        _age(svc, now),
        format_labels(spec.get("selector")),
    ]
    return cells, None


def format_endpoints(endpoints: Obj, limit: int = 3) -> str:
    """``formatEndpoints``: "ip:port" for every address and port, the first three, then "+ N more..."."""
    subsets = _list(endpoints.get("subsets"))
    if not subsets:
        return NONE
    items: list[str] = []
    more = False
    count = 0
    for subset in subsets:
        addresses = [str(_get(a, "ip") or "") for a in _list(_get(subset, "addresses"))]
        ports = _list(_get(subset, "ports"))
        # Headless services may have no ports: list bare addresses.
        pairs: list[list[str]] = [addresses] if not ports else []
        for port in ports:
            pairs.append([join_host_port(a, _get(port, "port")) for a in addresses])
        for group in pairs:
            count += len(group)
            for item in group:
                if len(items) == limit:
                    more = True
                    break
                items.append(item)
    text = ",".join(items)
    return f"{text} + {count - limit} more..." if more else text


def _endpoints_row(ep: Obj, now: datetime) -> Row:
    return [_name(ep), format_endpoints(ep), _age(ep, now)], None


def _endpointslice_row(eps: Obj, now: datetime, limit: int = 3) -> Row:
    ports: list[str] = []
    more, count = False, 0
    for port in _list(eps.get("ports")):
        if len(ports) < limit:
            number, name = _get(port, "port"), _get(port, "name")
            ports.append(str(number) if number is not None else (str(name) if name is not None else "*"))
        elif len(ports) == limit:
            more = True
        count += 1
    port_text = list_with_more(ports, more, count, limit)
    addresses: list[str] = []
    more, count = False, 0
    for endpoint in _list(eps.get("endpoints")):
        for address in _list(_get(endpoint, "addresses")):
            if len(addresses) < limit:
                addresses.append(str(address))
            elif len(addresses) == limit:
                more = True
            count += 1
    address_text = list_with_more(addresses, more, count, limit)
    return [_name(eps), str(eps.get("addressType") or ""), port_text, address_text, _age(eps, now)], None


def _format_hosts(rules: Any, limit: int = 3) -> str:
    rules = _list(rules)
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == limit:
            more = True
        if not more and _get(rule, "host"):
            hosts.append(str(_get(rule, "host")))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - limit} more..." if more else text


def _ingress_row(ing: Obj, now: datetime) -> Row:
    spec = _dict(ing.get("spec"))
    cells = [
        _name(ing),
        spec.get("ingressClassName") or NONE,
        _format_hosts(spec.get("rules")),
        _load_balancer_ips(_get(ing, "status", "loadBalancer")),
        "80, 443" if _list(spec.get("tls")) else "80",
        _age(ing, now),
    ]
    return cells, None


def _ingressclass_row(ic: Obj, now: datetime) -> Row:
    params = _get(ic, "spec", "parameters")
    text = NONE
    if isinstance(params, Mapping):
        text = str(params.get("kind") or "")
        if params.get("apiGroup") is not None:
            text += f".{params['apiGroup']}"
        text += f"/{params.get('name') or ''}"
    return [_name(ic), str(_get(ic, "spec", "controller") or ""), text, _age(ic, now)], None


# ── Node, Namespace, config, events, workloads, leases ────────────────────────────────


def _node_row(node: Obj, now: datetime) -> Row:
    status = _dict(node.get("status"))
    ready = _has_condition(status, "Ready")
    states = ["Unknown" if ready is None else ("Ready" if ready else "NotReady")]
    if _get(node, "spec", "unschedulable") is True:
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _dict(_get(node, "metadata", "labels")).items():
        if key.startswith("node-role.kubernetes.io/") and key.removeprefix("node-role.kubernetes.io/"):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = _dict(status.get("nodeInfo"))

    def address(type_: str) -> str:
        for a in _list(status.get("addresses")):
            if _get(a, "type") == type_:
                return str(_get(a, "address") or "")
        return NONE

    cells = [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or NONE,
        _age(node, now),
        str(info.get("kubeletVersion") or ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]
    return cells, None


def _event_row(ev: Obj, now: datetime) -> Row:
    first = age(ev["firstTimestamp"], now) if ev.get("firstTimestamp") else age(ev.get("eventTime"), now)
    last = age(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = _int(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, Mapping):
        last = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events written through events.k8s.io carry no count
    involved = _dict(ev.get("involvedObject"))
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = _dict(ev.get("source"))
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    cells = [
        last,
        str(ev.get("type") or ""),
        str(ev.get("reason") or ""),
        target,
        str(involved.get("fieldPath") or ""),
        f"{component}, {instance}" if instance else str(component),
        str(ev.get("message") or "").strip(),
        first,
        count,
        _name(ev),
    ]
    return cells, None


def _deployment_row(d: Obj, now: datetime) -> Row:
    spec, status = _dict(d.get("spec")), _dict(d.get("status"))
    try:
        selector = label_selector_string(spec.get("selector"))
    except InvalidSelectorError:
        selector = "<invalid>"
    names, images = _layout_containers(_get(spec, "template", "spec", "containers"))
    cells = [
        _name(d),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(d, now),
        names,
        images,
        selector,
    ]
    return cells, None


def _replicaset_row(rs: Obj, now: datetime) -> Row:
    spec, status = _dict(rs.get("spec")), _dict(rs.get("status"))
    names, images = _layout_containers(_get(spec, "template", "spec", "containers"))
    cells = [
        _name(rs),
        _int(spec.get("replicas"), 1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(rs, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]
    return cells, None


def _daemonset_row(ds: Obj, now: datetime) -> Row:
    spec, status = _dict(ds.get("spec")), _dict(ds.get("status"))
    names, images = _layout_containers(_get(spec, "template", "spec", "containers"))
    cells = [
        _name(ds),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        format_labels(_get(spec, "template", "spec", "nodeSelector")),
        _age(ds, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]
    return cells, None


def _namespace_row(ns: Obj, now: datetime) -> Row:
    return [_name(ns), str(_get(ns, "status", "phase") or ""), _age(ns, now)], None


def _configmap_row(cm: Obj, now: datetime) -> Row:
    return [_name(cm), len(_dict(cm.get("data"))) + len(_dict(cm.get("binaryData"))), _age(cm, now)], None


def _secret_row(s: Obj, now: datetime) -> Row:
    return [_name(s), str(s.get("type") or "Opaque"), len(_dict(s.get("data"))), _age(s, now)], None


def _serviceaccount_row(sa: Obj, now: datetime) -> Row:
    return [_name(sa), len(_list(sa.get("secrets"))), _age(sa, now)], None


def _lease_row(lease: Obj, now: datetime) -> Row:
    return [_name(lease), str(_get(lease, "spec", "holderIdentity") or ""), _age(lease, now)], None


def _default_row(obj: Obj, now: datetime) -> Row:
    created = parse_time(_get(obj, "metadata", "creationTimestamp"))
    text = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else "0001-01-01T00:00:00Z"
    return [_name(obj), text], None


# ── the table ─────────────────────────────────────────────────────────────────────────

_ROWS: Mapping[tuple[str, str], RowFunc] = MappingProxyType(
    {
        ("", "Pod"): _pod_row,
        ("", "Service"): _service_row,
        ("", "Endpoints"): _endpoints_row,
        ("", "Node"): _node_row,
        ("", "Namespace"): _namespace_row,
        ("", "ConfigMap"): _configmap_row,
        ("", "Secret"): _secret_row,
        ("", "Event"): _event_row,
        ("", "ServiceAccount"): _serviceaccount_row,
        ("discovery.k8s.io", "EndpointSlice"): _endpointslice_row,
        ("apps", "Deployment"): _deployment_row,
        ("apps", "ReplicaSet"): _replicaset_row,
        ("apps", "DaemonSet"): _daemonset_row,
        ("networking.k8s.io", "Ingress"): _ingress_row,
        ("networking.k8s.io", "IngressClass"): _ingressclass_row,
        ("coordination.k8s.io", "Lease"): _lease_row,
    }
)


def _key(rt: ResourceType) -> tuple[str, str]:
    """Printers belong to kinds, whatever the version; extensions/v1beta1 held apps and networking kinds."""
    if rt.group == "extensions":
        for group in ("apps", "networking.k8s.io"):
            if (group, rt.kind) in _ROWS:
                return group, rt.kind
    return rt.group, rt.kind


def has_printer(rt: ResourceType) -> bool:
    """Whether ``rt`` has dedicated columns (otherwise: the generic Name, Created At)."""
    return _key(rt) in _ROWS


def table_columns(rt: ResourceType) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` kube-apiserver sends for ``rt`` (wide columns have priority 1)."""
    return _columns(_COLUMNS.get(_key(rt), _DEFAULT_COLUMNS))


def _row_object(rt: ResourceType, obj: Obj, include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        full = dict(obj)
        full.setdefault("apiVersion", rt.api_version)
        full.setdefault("kind", rt.kind)
        return full
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": dict(_dict(obj.get("metadata"))),
    }


def to_table(
    rt: ResourceType,
    objects: list[dict[str, Any]],
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    list_meta: dict[str, Any] | None = None,
    no_headers: bool = False,
) -> dict[str, Any]:
    """The ``meta.k8s.io/v1`` Table for ``objects`` of type ``rt``.

    ``include_object`` is the request's ``includeObject`` ("" means "Metadata"): each row's
    ``object`` is a PartialObjectMetadata, the full object, or null. ``list_meta`` becomes the
    table's metadata (the list's resourceVersion/continue/remainingItemCount; for a single
    GET pass the object's resourceVersion). ``no_headers`` leaves ``columnDefinitions`` null,
    as kube-apiserver does for every watch event after the first. Raises ValueError for an
    unknown ``include_object``: the request is a 400 Bad Request.
    """
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise ValueError(
            f'includeObject must be one of "None", "Metadata" or "Object", not {include_object!r}'
        )
    row_func = _ROWS.get(_key(rt), _default_row)
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for obj in objects:
        cells, conditions = row_func(obj, now)
        row: dict[str, Any] = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        row["object"] = _row_object(rt, obj, mode)
        rows.append(row)
    metadata = {
        k: v
        for k, v in (list_meta or {}).items()
        if k in ("resourceVersion", "continue", "remainingItemCount") and v not in (None, "")
    }
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": None if no_headers else table_columns(rt),
        "rows": rows,
    }
