"""Service defaulting and validation (core/v1 Service), as kube-apiserver does them.

Allocation of ClusterIPs and NodePorts is not here: it needs the store and lives in
``kubelite.apiserver.allocators``. This module is pure.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kubelite.api import fielderrors as fe
from kubelite.api.errors import Cause
from kubelite.api.meta import validate_dns1123_label, validate_dns1123_subdomain

Obj = dict[str, Any]

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def default_service(obj: Obj) -> None:
    """Fill the fields Kubernetes defaults, in place. Allocation-dependent fields are left alone."""
    spec = obj.setdefault("spec", {})
    stype = spec.setdefault("type", "ClusterIP")
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        if "targetPort" not in port and "port" in port:
            port["targetPort"] = port["port"]
    if stype == "ExternalName":
        return
    affinity = spec.setdefault("sessionAffinity", "None")
    if affinity == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        cfg.setdefault("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if stype in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]


def default_service_families(obj: Obj) -> None:
    """After allocation: ipFamilies / ipFamilyPolicy as a single-stack IPv4 cluster reports them."""
    spec = obj.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if not spec.get("ipFamilies"):
        spec["ipFamilies"] = ["IPv4"]


def is_headless(spec: Obj) -> bool:
    return spec.get("clusterIP") == "None"


def validate_service_spec(obj: Obj) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    causes: list[Cause] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        causes.append(fe.not_supported("spec.type", stype, SERVICE_TYPES))
        return causes
    ports = spec.get("ports") or []
    headless = is_headless(spec)
    if stype == "ExternalName":
        causes += _validate_external_name(spec)
    elif not ports and not headless:
        causes.append(fe.required("spec.ports"))
    causes += _validate_ports(spec, ports, stype)
    causes += _validate_cluster_ips(spec, stype)
    if headless and stype in ("NodePort", "LoadBalancer"):
        causes.append(
            fe.invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {stype} services")
        )
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        causes.append(fe.not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    elif affinity == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if not isinstance(timeout, int) or not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
            causes.append(
                fe.invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}",
                )
            )
    elif spec.get("sessionAffinityConfig"):
        causes.append(
            fe.invalid(
                "spec.sessionAffinityConfig",
                spec["sessionAffinityConfig"],
                "must not be set when session affinity is None",
            )
        )
    for key, allowed in (
        ("externalTrafficPolicy", ("Cluster", "Local")),
        ("internalTrafficPolicy", ("Cluster", "Local")),
    ):
        val = spec.get(key)
        if val is not None and val not in allowed:
            causes.append(fe.not_supported(f"spec.{key}", val, allowed))
    if spec.get("externalTrafficPolicy") and stype not in ("NodePort", "LoadBalancer"):
        causes.append(
            fe.invalid(
                "spec.externalTrafficPolicy",
                spec["externalTrafficPolicy"],
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            )
        )
    for i, ip in enumerate(spec.get("externalIPs") or []):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            causes.append(
                fe.invalid(
                    f"spec.externalIPs[{i}]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            )
    selector = spec.get("selector")
    if selector is not None and not isinstance(selector, dict):
        causes.append(fe.invalid("spec.selector", selector, "must be a map of labels"))
    ranges = spec.get("loadBalancerSourceRanges")
    if ranges and stype != "LoadBalancer":
        causes.append(
            fe.forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
        )
    for i, cidr in enumerate(ranges if isinstance(ranges, list) else []):
        try:
            ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            why = "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "
            causes.append(fe.invalid(f"spec.loadBalancerSourceRanges[{i}]", cidr, why))
    hc = spec.get("healthCheckNodePort")
    if hc and not needs_health_check(spec):
        causes.append(
            fe.invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )
        )
    elif hc is not None and (isinstance(hc, bool) or not isinstance(hc, int) or not 0 <= hc <= 65535):
        causes.append(fe.invalid("spec.healthCheckNodePort", hc, "must be between 1 and 65535, inclusive"))
    return causes


def needs_health_check(spec: Obj) -> bool:
    """A LoadBalancer Service with externalTrafficPolicy Local gets a health check node port."""
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _validate_external_name(spec: Obj) -> list[Cause]:
    name = spec.get("externalName", "")
    if not name:
        return [fe.required("spec.externalName")]
    check = name[:-1] if name.endswith(".") else name
    causes = [fe.invalid("spec.externalName", name, msg) for msg in validate_dns1123_subdomain(check)]
    if spec.get("clusterIP") and spec.get("clusterIP") != "None":
        causes.append(fe.forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    return causes


def _validate_ports(spec: Obj, ports: list[Any], stype: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    seen: set[tuple[str, int]] = set()
    require_names = len(ports) > 1
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(fe.invalid(p, port, "must be an object"))
            continue
        name = port.get("name", "")
        if require_names and not name:
            causes.append(fe.required(f"{p}.name"))
        elif name:
            for msg in validate_dns1123_label(name):
                causes.append(fe.invalid(f"{p}.name", name, msg))
            if name in names:
                causes.append(fe.duplicate(f"{p}.name", name))
            names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            causes.append(fe.invalid(f"{p}.port", number, "must be between 1 and 65535, inclusive"))
            continue
        proto = port.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            causes.append(fe.not_supported(f"{p}.protocol", proto, PROTOCOLS))
        key = (proto, number)
        if key in seen:
            causes.append(fe.duplicate(p, {"port": number, "protocol": proto}))
        seen.add(key)
        causes += _validate_target_port(port.get("targetPort", number), f"{p}.targetPort")
        node_port = port.get("nodePort")
        if node_port:
            if stype not in ("NodePort", "LoadBalancer"):
                causes.append(fe.forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            elif not isinstance(node_port, int) or not 1 <= node_port <= 65535:
                causes.append(
                    fe.invalid(f"{p}.nodePort", node_port, "must be between 1 and 65535, inclusive")
                )
    return causes


def _validate_target_port(target: object, path: str) -> list[Cause]:
    if isinstance(target, bool):
        return [fe.invalid(path, target, "must be a port number or name")]
    if isinstance(target, int):
        if not 1 <= target <= 65535:
            return [fe.invalid(path, target, "must be between 1 and 65535, inclusive")]
        return []
    if isinstance(target, str):
        if (
            len(target) > 15
            or not _IANA_SVC_NAME.match(target)
            or "--" in target
            or not re.search("[a-z]", target)
        ):
            return [
                fe.invalid(
                    path,
                    target,
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
                    if not _IANA_SVC_NAME.match(target)
                    else "must be no more than 15 characters and contain at least one letter (a-z)",
                )
            ]
        return []
    return [fe.invalid(path, target, "must be a port number or name")]


def _validate_cluster_ips(spec: Obj, stype: str) -> list[Cause]:
    causes: list[Cause] = []
    cip = spec.get("clusterIP", "")
    cips = spec.get("clusterIPs") or []
    if stype == "ExternalName":
        return causes
    if cip and cips and cips[0] != cip:
        causes.append(fe.invalid("spec.clusterIPs", cips, "first value must match `clusterIP`"))
    if "None" in cips and len(cips) > 1:
        causes.append(fe.invalid("spec.clusterIPs", cips, "'None' must be the first and only value"))
    families: set[int] = set()
    for i, ip in enumerate(cips):
        if ip in ("None", ""):
            continue
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            causes.append(
                fe.invalid(f"spec.clusterIPs[{i}]", ip, "must be empty, 'None', or a valid IP address")
            )
            continue
        if addr.version in families:
            causes.append(
                fe.invalid("spec.clusterIPs", cips, "may specify no more than one IP for each IP family")
            )
        families.add(addr.version)
    return causes


def validate_service_update(old: Obj, new: Obj) -> list[Cause]:
    """Rules that compare the new object with the stored one (clusterIP is immutable, ...)."""
    causes: list[Cause] = []
    ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
    otype, ntype = ospec.get("type", "ClusterIP"), nspec.get("type", "ClusterIP")
    if "ExternalName" in (otype, ntype):
        return causes
    ocip, ncip = ospec.get("clusterIP", ""), nspec.get("clusterIP", "")
    if ocip and ncip != ocip:
        causes.append(fe.invalid("spec.clusterIPs[0]", ncip or [], "may not change once set"))
    both = needs_health_check(ospec) and needs_health_check(nspec)
    if both and nspec.get("healthCheckNodePort") != ospec.get("healthCheckNodePort"):
        causes.append(fe.forbidden("spec.healthCheckNodePort", "field is immutable"))
    return causes
