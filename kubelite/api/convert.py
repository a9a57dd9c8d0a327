"""Conversion between served versions and the stored version of a kind.

Only Ingress has an older form kubelite still serves: ``extensions/v1beta1`` and
``networking.k8s.io/v1beta1`` (removed from Kubernetes in 1.22, but written in many
tutorials, the seeds among them). Objects are stored as ``networking.k8s.io/v1``; a client
that speaks v1beta1 gets its own form back.

    v1beta1 backend {serviceName, servicePort}  <->  v1 backend {service: {name, port: {number|name}}}
    v1beta1 spec.backend                        <->  v1 spec.defaultBackend
    v1beta1 path without pathType               ->   v1 pathType ImplementationSpecific
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]
STORED_INGRESS_VERSION = "networking.k8s.io/v1"


def _backend_to_v1(backend: Obj) -> Obj:
    out: Obj = {}
    if "resource" in backend:
        out["resource"] = backend["resource"]
    if "serviceName" in backend or "servicePort" in backend:
        port = backend.get("servicePort")
        service: Obj = {"name": backend.get("serviceName", "")}
        if isinstance(port, int):
            service["port"] = {"number": port}
        elif isinstance(port, str) and port.isdigit():
            service["port"] = {"number": int(port)}
        elif port is not None:
            service["port"] = {"name": port}
        out["service"] = service
    return out


def _backend_from_v1(backend: Obj) -> Obj:
    out: Obj = {}
    if "resource" in backend:
        out["resource"] = backend["resource"]
    service = backend.get("service")
    if isinstance(service, dict):
        out["serviceName"] = service.get("name", "")
        port = service.get("port") or {}
        if "number" in port:
            out["servicePort"] = port["number"]
        elif "name" in port:
            out["servicePort"] = port["name"]
    return out


def ingress_to_v1(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = STORED_INGRESS_VERSION
    spec = out.get("spec")
    if isinstance(spec, dict):
        if isinstance(spec.get("backend"), dict):
            spec["defaultBackend"] = _backend_to_v1(spec.pop("backend"))
        for rule in spec.get("rules") or []:
            for path in ((rule or {}).get("http") or {}).get("paths") or []:
                if isinstance(path, dict):
                    path.setdefault("pathType", "ImplementationSpecific")
                    if isinstance(path.get("backend"), dict):
                        path["backend"] = _backend_to_v1(path["backend"])
    return out


def ingress_from_v1(obj: Obj, api_version: str) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = api_version
    spec = out.get("spec")
    if isinstance(spec, dict):
        if isinstance(spec.get("defaultBackend"), dict):
            spec["backend"] = _backend_from_v1(spec.pop("defaultBackend"))
        for rule in spec.get("rules") or []:
            for path in ((rule or {}).get("http") or {}).get("paths") or []:
                if isinstance(path, dict) and isinstance(path.get("backend"), dict):
                    path["backend"] = _backend_from_v1(path["backend"])
    return out
