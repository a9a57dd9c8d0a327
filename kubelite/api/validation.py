"""Validation of object metadata and of each kind's fields, in Kubernetes' wording.

Each ``validate_<kind>`` takes the already-defaulted object and returns field causes; an empty
list means valid. They are pure: the registry calls them on create and update.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from kubelite.api import fielderrors as fe
from kubelite.api.errors import Cause
from kubelite.api.meta import (
    validate_dns1035_label,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_path_segment_name,
)
from kubelite.api.selectors import validate_label_key, validate_label_value

Obj = dict[str, Any]
NameValidator = Callable[[str], list[str]]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def validate_metadata(obj: Obj, *, namespaced: bool, name_rule: NameValidator) -> list[Cause]:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        return [fe.required("metadata")]
    causes: list[Cause] = []
    name = md.get("name", "")
    if not name:
        causes.append(fe.required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        causes.append(fe.invalid("metadata.name", name, "must be a string"))
    else:
        for msg in name_rule(name) + validate_path_segment_name(name):
            causes.append(fe.invalid("metadata.name", name, msg))
    ns = md.get("namespace", "")
    if namespaced:
        if not ns:
            causes.append(fe.required("metadata.namespace"))
        else:
            for msg in validate_dns1123_label(ns):
                causes.append(fe.invalid("metadata.namespace", ns, msg))
    elif ns:
        causes.append(fe.forbidden("metadata.namespace", "not allowed on this type"))
    causes += validate_labels(md.get("labels"), "metadata.labels")
    causes += _validate_annotations(md.get("annotations"))
    causes += _validate_owner_references(md.get("ownerReferences"))
    for i, f in enumerate(md.get("finalizers") or []):
        if not isinstance(f, str) or not f:
            causes.append(fe.invalid(f"metadata.finalizers[{i}]", f, "must be a qualified name"))
        elif "/" not in f and f not in ("kubernetes", "orphan", "foregroundDeletion"):
            causes.append(
                fe.invalid(
                    f"metadata.finalizers[{i}]",
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return causes


def validate_labels(labels: object, path: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [fe.invalid(path, labels, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    for k, v in labels.items():
        for msg in validate_label_key(k):
            causes.append(fe.invalid(path, k, msg))
        if not isinstance(v, str):
            causes.append(fe.invalid(f"{path}.{k}", v, "label values must be strings"))
            continue
        for msg in validate_label_value(v):
            causes.append(fe.invalid(path, v, msg))
    return causes


def _validate_annotations(annotations: object) -> list[Cause]:
    if annotations is None:
        return []
    path = "metadata.annotations"
    if not isinstance(annotations, dict):
        return [fe.invalid(path, annotations, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    total = 0
    for k, v in annotations.items():
        for msg in validate_label_key(k):
            causes.append(fe.invalid(path, k, msg))
        if not isinstance(v, str):
            causes.append(fe.invalid(f"{path}.{k}", v, "annotation values must be strings"))
            continue
        total += len(k) + len(v)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(fe.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def _validate_owner_references(refs: object) -> list[Cause]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [fe.invalid("metadata.ownerReferences", refs, "must be a list")]
    causes: list[Cause] = []
    controllers = 0
    for i, ref in enumerate(refs):
        p = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            causes.append(fe.invalid(p, ref, "must be an object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(fe.required(f"{p}.{key}", f"{key} must not be empty"))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        causes.append(
            fe.invalid("metadata.ownerReferences", refs, "Only one reference can have Controller set to true")
        )
    return causes


# --- per kind -----------------------------------------------------------------------------------


def _validate_service(obj: Obj) -> list[Cause]:
    from kubelite.api.service import validate_service_spec

    return validate_service_spec(obj)


def _validate_namespace(obj: Obj) -> list[Cause]:
    return []


def _validate_config_data(
    obj: Obj, fields: tuple[str, ...], *, base64_fields: tuple[str, ...] = ()
) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for fld in fields:
        data = obj.get(fld)
        if data is None:
            continue
        if not isinstance(data, dict):
            causes.append(fe.invalid(fld, data, "must be a map of string keys to string values"))
            continue
        for k, v in data.items():
            if len(k) > DNS_SUBDOMAIN_MAX or not _CONFIG_KEY.match(k):
                causes.append(
                    fe.invalid(
                        f"{fld}[{k}]",
                        k,
                        "a valid config key must consist of alphanumeric characters, "
                        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                        "validation is '[-._a-zA-Z0-9]+')",
                    )
                )
            if k in seen:
                causes.append(fe.invalid(f"{fld}[{k}]", k, "duplicate of key present in another data field"))
            seen.add(k)
            if not isinstance(v, str):
                causes.append(fe.invalid(f"{fld}[{k}]", v, "must be a string"))
            elif fld in base64_fields:
                try:
                    base64.b64decode(v, validate=True)
                except binascii.Error:
                    causes.append(
                        fe.invalid(f"{fld}[{k}]", "<secret contents redacted>", "illegal base64 data")
                    )
    return causes


DNS_SUBDOMAIN_MAX = 253


def _validate_configmap(obj: Obj) -> list[Cause]:
    return _validate_config_data(obj, ("data", "binaryData"), base64_fields=("binaryData",))


def _validate_secret(obj: Obj) -> list[Cause]:
    causes = _validate_config_data(obj, ("data",), base64_fields=("data",))
    stype = obj.get("type", "Opaque")
    data = obj.get("data") or {}
    if stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                causes.append(fe.required(f"data[{key}]"))
    return causes


def _validate_pod_spec(spec: object, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [fe.required(path)]
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(fe.required(f"{path}.containers"))
        return causes
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            cp = f"{path}.{group}[{i}]"
            if not isinstance(c, dict):
                causes.append(fe.invalid(cp, c, "must be an object"))
                continue
            name = c.get("name", "")
            if not name:
                causes.append(fe.required(f"{cp}.name"))
            else:
                for msg in validate_dns1123_label(name):
                    causes.append(fe.invalid(f"{cp}.name", name, msg))
                if name in names:
                    causes.append(fe.duplicate(f"{cp}.name", name))
                names.add(name)
            if not c.get("image"):
                causes.append(fe.required(f"{cp}.image"))
            causes += _validate_container_ports(c.get("ports") or [], f"{cp}.ports")
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(fe.not_supported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    dns = spec.get("dnsPolicy", "ClusterFirst")
    valid_dns = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if dns not in valid_dns:
        causes.append(fe.not_supported(f"{path}.dnsPolicy", dns, valid_dns))
    if dns == "None" and not (spec.get("dnsConfig") or {}).get("nameservers"):
        causes.append(
            fe.required(
                f"{path}.dnsConfig.nameservers",
                "must provide at least one DNS nameserver when DNS policy is None",
            )
        )
    hostname = spec.get("hostname")
    if hostname:
        for msg in validate_dns1123_label(hostname):
            causes.append(fe.invalid(f"{path}.hostname", hostname, msg))
    subdomain = spec.get("subdomain")
    if subdomain:
        for msg in validate_dns1123_label(subdomain):
            causes.append(fe.invalid(f"{path}.subdomain", subdomain, msg))
    return causes


def _validate_container_ports(ports: list[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, p in enumerate(ports):
        pp = f"{path}[{i}]"
        if not isinstance(p, dict):
            causes.append(fe.invalid(pp, p, "must be an object"))
            continue
        cport = p.get("containerPort")
        if not isinstance(cport, int) or not 1 <= cport <= 65535:
            causes.append(fe.invalid(f"{pp}.containerPort", cport, "must be between 1 and 65535, inclusive"))
        hport = p.get("hostPort")
        if hport is not None and (not isinstance(hport, int) or not 0 <= hport <= 65535):
            causes.append(fe.invalid(f"{pp}.hostPort", hport, "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            causes.append(fe.not_supported(f"{pp}.protocol", proto, ["SCTP", "TCP", "UDP"]))
        name = p.get("name")
        if name and (len(name) > 15 or not _IANA_SVC_NAME.match(name) or not re.search("[a-z]", name)):
            causes.append(
                fe.invalid(
                    f"{pp}.name",
                    name,
                    "must be no more than 15 characters and be an IANA "
                    "service name (lower case alphanumerics and '-', with at least one letter)",
                )
            )
    return causes


def _validate_pod(obj: Obj) -> list[Cause]:
    return _validate_pod_spec(obj.get("spec"), "spec")


def _validate_workload(obj: Obj, *, needs_replicas: bool) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    tlabels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(fe.required("spec.selector"))
        causes.append(fe.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    else:
        from kubelite.api.selectors import SelectorError, selector_from_label_selector

        try:
            sel = selector_from_label_selector(selector)
        except SelectorError as e:
            causes.append(fe.invalid("spec.selector", selector, str(e)))
        else:
            if not sel.matches(tlabels):
                causes.append(
                    fe.invalid(
                        "spec.template.metadata.labels",
                        tlabels,
                        "`selector` does not match template `labels`",
                    )
                )
    replicas = spec.get("replicas", 1)
    if needs_replicas and (not isinstance(replicas, int) or replicas < 0):
        causes.append(fe.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    causes += validate_labels(tlabels, "spec.template.metadata.labels")
    causes += _validate_pod_spec(template.get("spec"), "spec.template.spec")
    return causes


def _validate_endpoints(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for i, subset in enumerate(obj.get("subsets") or []):
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(subset.get(key) or []):
                path = f"subsets[{i}].{key}[{j}].ip"
                causes += _non_special_ip(path, (addr or {}).get("ip", ""))
        for j, port in enumerate(subset.get("ports") or []):
            pnum = (port or {}).get("port")
            if not isinstance(pnum, int) or not 1 <= pnum <= 65535:
                causes.append(
                    fe.invalid(
                        f"subsets[{i}].ports[{j}].port", pnum, "must be between 1 and 65535, inclusive"
                    )
                )
    return causes


def _non_special_ip(path: str, ip: str) -> list[Cause]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return [fe.invalid(path, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    if addr.is_unspecified:
        return [fe.invalid(path, ip, "may not be unspecified (0.0.0.0)")]
    if addr.is_loopback:
        return [fe.invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)")]
    if addr.is_link_local:
        return [fe.invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")]
    if addr in ipaddress.ip_network("224.0.0.0/24") or addr in ipaddress.ip_network("ff02::/16"):
        return [
            fe.invalid(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        ]
    return []


def _validate_endpointslice(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    atype = obj.get("addressType")
    if atype not in ("IPv4", "IPv6", "FQDN"):
        causes.append(fe.not_supported("addressType", atype, ["FQDN", "IPv4", "IPv6"]))
    for i, ep in enumerate(obj.get("endpoints") or []):
        addrs = (ep or {}).get("addresses") or []
        if not addrs:
            causes.append(fe.required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        for j, a in enumerate(addrs):
            if atype in ("IPv4", "IPv6"):
                causes += _non_special_ip(f"endpoints[{i}].addresses[{j}]", a)
    return causes


def _validate_ingress(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not spec.get("rules") and not spec.get("defaultBackend"):
        causes.append(fe.invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    for i, rule in enumerate(spec.get("rules") or []):
        host = (rule or {}).get("host", "")
        if host:
            check = host[2:] if host.startswith("*.") else host
            for msg in validate_dns1123_subdomain(check):
                causes.append(fe.invalid(f"spec.rules[{i}].host", host, msg))
        http = (rule or {}).get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            causes.append(fe.required(f"spec.rules[{i}].http.paths"))
        for j, p in enumerate(paths):
            pp = f"spec.rules[{i}].http.paths[{j}]"
            ptype = p.get("pathType")
            if ptype is None:
                causes.append(fe.required(f"{pp}.pathType", "pathType must be specified"))
            elif ptype not in ("Exact", "Prefix", "ImplementationSpecific"):
                causes.append(
                    fe.not_supported(f"{pp}.pathType", ptype, ["Exact", "ImplementationSpecific", "Prefix"])
                )
            path = p.get("path", "")
            if ptype in ("Exact", "Prefix") and not str(path).startswith("/"):
                causes.append(fe.invalid(f"{pp}.path", path, "must be an absolute path"))
            causes += _validate_backend(p.get("backend"), f"{pp}.backend")
    if spec.get("defaultBackend") is not None:
        causes += _validate_backend(spec.get("defaultBackend"), "spec.defaultBackend")
    return causes


def _validate_backend(backend: object, path: str) -> list[Cause]:
    if not isinstance(backend, dict):
        return [fe.required(path)]
    svc = backend.get("service")
    if svc is None and backend.get("resource") is None:
        return [fe.invalid(path, backend, "one backend (service or resource) must be specified")]
    if svc is not None:
        causes: list[Cause] = []
        if not svc.get("name"):
            causes.append(fe.required(f"{path}.service.name"))
        port = svc.get("port") or {}
        if ("number" in port) == ("name" in port):
            causes.append(
                fe.invalid(f"{path}.service.port", port, "cannot set both port name & port number")
                if port
                else fe.required(f"{path}.service.port", "port name or number is required")
            )
        return causes
    return []


def _validate_ingressclass(obj: Obj) -> list[Cause]:
    controller = (obj.get("spec") or {}).get("controller", "")
    if not controller:
        return [fe.required("spec.controller")]
    return []


def _validate_event(obj: Obj) -> list[Cause]:
    inv = obj.get("involvedObject")
    if not isinstance(inv, dict):
        return [fe.required("involvedObject")]
    ns = (obj.get("metadata") or {}).get("namespace", "")
    if inv.get("namespace") and ns and inv.get("namespace") != ns:
        return [
            fe.invalid("involvedObject.namespace", inv.get("namespace"), "does not match event.namespace")
        ]
    return []


def _validate_lease(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    secs = spec.get("leaseDurationSeconds")
    if secs is not None and (not isinstance(secs, int) or secs <= 0):
        return [fe.invalid("spec.leaseDurationSeconds", secs, "must be greater than 0")]
    return []


def _validate_node(obj: Obj) -> list[Cause]:
    return []


def _none(obj: Obj) -> list[Cause]:
    return []


# kind -> (name rule, spec validator)
KIND_RULES: dict[str, tuple[NameValidator, Callable[[Obj], list[Cause]]]] = {
    "Namespace": (validate_dns1123_label, _validate_namespace),
    "Node": (validate_dns1123_subdomain, _validate_node),
    "Pod": (validate_dns1123_subdomain, _validate_pod),
    "Service": (validate_dns1035_label, _validate_service),
    "Endpoints": (validate_dns1123_subdomain, _validate_endpoints),
    "ConfigMap": (validate_dns1123_subdomain, _validate_configmap),
    "Secret": (validate_dns1123_subdomain, _validate_secret),
    "Event": (validate_dns1123_subdomain, _validate_event),
    "ServiceAccount": (validate_dns1123_subdomain, _none),
    "EndpointSlice": (validate_dns1123_subdomain, _validate_endpointslice),
    "Deployment": (validate_dns1123_subdomain, lambda o: _validate_workload(o, needs_replicas=True)),
    "ReplicaSet": (validate_dns1123_subdomain, lambda o: _validate_workload(o, needs_replicas=True)),
    "DaemonSet": (validate_dns1123_subdomain, lambda o: _validate_workload(o, needs_replicas=False)),
    "Ingress": (validate_dns1123_subdomain, _validate_ingress),
    "IngressClass": (validate_dns1123_subdomain, _validate_ingressclass),
    "Lease": (validate_dns1123_subdomain, _validate_lease),
}


def validate_object(obj: Obj, kind: str, *, namespaced: bool) -> list[Cause]:
    name_rule, spec_rule = KIND_RULES.get(kind, (validate_dns1123_subdomain, _none))
    causes = validate_metadata(obj, namespaced=namespaced, name_rule=name_rule)
    return causes + spec_rule(obj)
