"""A container's environment, computed the way the kubelet does it (pure: no API calls, no kernel).

    (namespace, ServiceInfo) pairs ──services_for_pod──► the pod's services ──service_env──► FOO_SERVICE_HOST
    container + pod + ConfigMaps/Secrets (callables) ──container_env──► [(name, value), …]

Contract of :func:`container_env`, in the kubelet's order (``makeEnvironmentVariables``):

1. ``envFrom`` entries in order: every key of the ConfigMap / Secret, with ``prefix``; a later
   source overwrites an earlier one. A missing source is skipped when ``optional``.
2. ``env`` entries in order: ``value`` is expanded (``$(VAR)``) against the variables defined so
   far, then the service variables; otherwise ``valueFrom`` is resolved (configMapKeyRef,
   secretKeyRef, fieldRef, resourceFieldRef). ``env`` overrides ``envFrom``.
3. Service variables fill in every name not already set (the container's own env wins).

Missing non-optional sources raise :class:`EnvSourceError` with the kubelet's message; the agent
shows it as the container's ``Waiting`` reason ``CreateContainerConfigError``.

``resourceFieldRef`` without a limit falls back to the node's allocatable (``node_allocatable``;
when not given: the host's CPU count, physical memory and 10Gi of ephemeral storage, the same
figures the agent reports in the Node's status), as the kubelet's ``defaultPodLimitsForDownwardAPI``.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "CREATE_CONTAINER_CONFIG_ERROR",
    "EnvSourceError",
    "ServiceInfo",
    "container_env",
    "expand",
    "expand_command",
    "host_allocatable",
    "parse_quantity",
    "service_env",
    "service_info",
    "services_for_pod",
]

Obj = Mapping[str, Any]

CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
# Services whose variables every pod gets from the default namespace, even without service links.
MASTER_SERVICES = frozenset({"kubernetes"})


class EnvSourceError(Exception):
    """A ConfigMap, Secret, key or field the container needs is missing or invalid."""

    def __init__(self, message: str, reason: str = CREATE_CONTAINER_CONFIG_ERROR) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- service variables -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the environment needs of a Service: ports are ``(name, port, protocol)``."""

    name: str
    cluster_ip: str
    ports: tuple[tuple[str, int, str], ...] = ()


def service_info(svc: Obj) -> tuple[str, ServiceInfo]:
    """``(namespace, ServiceInfo)`` from a Service API object."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    ports = tuple(
        (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
        for p in spec.get("ports") or []
    )
    info = ServiceInfo(
        name=str(meta.get("name", "")), cluster_ip=str(spec.get("clusterIP") or ""), ports=ports
    )
    return str(meta.get("namespace", "")), info


def _ip_set(cluster_ip: str) -> bool:
    return cluster_ip not in ("", "None")


def services_for_pod(
    pod_namespace: str, services: Iterable[tuple[str, ServiceInfo]], enable_service_links: bool
) -> list[ServiceInfo]:
    """The services whose variables a pod in ``pod_namespace`` sees (kubelet ``getServiceEnvVarMap``).

    ``services`` are ``(namespace, ServiceInfo)`` pairs. The pod gets ``default/kubernetes`` always,
    and every service of its own namespace when ``enable_service_links`` (the API default); a
    service in the pod's namespace wins over ``default/kubernetes`` of the same name. Services
    without a ClusterIP (headless, ExternalName, not yet allocated) are left out. Sorted by name.
    """
    chosen: dict[str, ServiceInfo] = {}
    for namespace, svc in services:
        if not _ip_set(svc.cluster_ip):
            continue
        if namespace == "default" and svc.name in MASTER_SERVICES:
            chosen.setdefault(svc.name, svc)
        elif namespace == pod_namespace and enable_service_links:
            chosen[svc.name] = svc
    return [chosen[name] for name in sorted(chosen)]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_env(services: Sequence[ServiceInfo]) -> dict[str, str]:
    """Docker-links style variables (kubelet ``envvars.FromServices``), in the kubelet's order.

    For service ``foo-bar`` at 10.0.0.11 with ports ``http`` 80/TCP and 53/UDP::

        FOO_BAR_SERVICE_HOST=10.0.0.11   FOO_BAR_SERVICE_PORT=80   FOO_BAR_SERVICE_PORT_HTTP=80
        FOO_BAR_PORT=tcp://10.0.0.11:80
        FOO_BAR_PORT_80_TCP=tcp://10.0.0.11:80  …_PROTO=tcp  …_PORT=80  …_ADDR=10.0.0.11
        FOO_BAR_PORT_53_UDP=udp://10.0.0.11:53  …
    """
    out: dict[str, str] = {}
    for svc in services:
        if not _ip_set(svc.cluster_ip):
            continue
        prefix = _env_name(svc.name)
        ip = svc.cluster_ip
        out[f"{prefix}_SERVICE_HOST"] = ip
        if not svc.ports:
            continue
        out[f"{prefix}_SERVICE_PORT"] = str(svc.ports[0][1])
        for port_name, port, _proto in svc.ports:
            if port_name:
                out[f"{prefix}_SERVICE_PORT_{_env_name(port_name)}"] = str(port)
        for i, (_name, port, proto) in enumerate(svc.ports):
            proto = proto or "TCP"
            url = f"{proto.lower()}://{_host_port(ip, port)}"
            if i == 0:
                out[f"{prefix}_PORT"] = url
            base = f"{prefix}_PORT_{port}_{proto.upper()}"
            out[base] = url
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(port)
            out[f"{base}_ADDR"] = ip
    return out


# --- $(VAR) expansion ----------------------------------------------------------------------------


def _read_reference(text: str, start: int) -> tuple[str, bool, int]:
    """After a ``$`` at ``start - 1``: (text read, is a variable name, characters consumed)."""
    first = text[start]
    if first == "$":
        return "$", False, 1  # "$$" is an escaped "$"
    if first == "(":
        end = text.find(")", start + 1)
        if end != -1:
            return text[start + 1 : end], True, end - start + 1
        return "$(", False, 1  # incomplete reference: keep it
    return "$" + first, False, 1


def expand(text: str, lookup: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` is a literal ``$``; unknown names stay as written.

    The same algorithm as ``third_party/forked/golang/expansion``: ``$$(A)`` → ``$(A)``,
    ``$(MISSING)`` → ``$(MISSING)``, ``$A`` and ``${A}`` are left alone, values are not re-expanded.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_reference(text, cursor + 1)
            if is_var:
                value = lookup.get(read)
                out.append(value if value is not None else f"$({read})")
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand_command(
    command: Sequence[str], args: Sequence[str], env: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """``command`` and ``args`` with ``$(VAR)`` expanded against the container's final environment."""
    return [expand(c, env) for c in command], [expand(a, env) for a in args]


# --- quantities (resourceFieldRef) ------------------------------------------------------------------

_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$"
)


def parse_quantity(value: object) -> Fraction:
    """A resource quantity ("500m", "1Gi", "2", "1e3", 3) as an exact number; ValueError otherwise."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a resource quantity (examples: 500m, 2, 128Mi, 1G)")
    number = Fraction(m.group(1))
    if m.group(3) is not None:
        return number * Fraction(10) ** int(m.group(3))
    return number * _SUFFIXES[m.group(2) or ""]


def host_allocatable() -> dict[str, str]:
    """This machine's CPU count and memory, as the agent reports them in its Node's allocatable."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        memory = 0
    return {"cpu": str(os.cpu_count() or 1), "memory": str(memory), "ephemeral-storage": "10Gi"}


def _ceil_div(a: Fraction, b: Fraction) -> int:
    return math.ceil(a / b)


def _resource_value(ref: Obj, pod: Obj, container: Obj, allocatable: Mapping[str, str] | None) -> str:
    target = container
    if other := ref.get("containerName"):
        spec = pod.get("spec") or {}
        found = [
            c
            for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
            if c.get("name") == other
        ]
        if not found:
            raise EnvSourceError(f"container {other} not found in pod {_pod_name(pod)}")
        target = found[0]
    resource = str(ref.get("resource") or "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise EnvSourceError(f"unsupported container resource : {resource}")
    resources = target.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    try:
        divisor = parse_quantity(ref.get("divisor") or "1")
        if kind == "limits":
            raw = limits.get(name)
            if raw is None:  # no limit: the node's allocatable, like defaultPodLimitsForDownwardAPI
                raw = (allocatable if allocatable is not None else host_allocatable()).get(name, 0)
        else:
            # The API defaults requests to limits; a resource with neither is requested as 0.
            raw = requests.get(name, limits.get(name, 0))
        value = parse_quantity(raw)
    except ValueError as exc:
        raise EnvSourceError(f"resourceFieldRef {resource}: {exc}") from None
    if divisor <= 0:
        divisor = Fraction(1)
    if name == "cpu":
        return str(_ceil_div(Fraction(math.ceil(value * 1000)), Fraction(math.ceil(divisor * 1000))))
    return str(_ceil_div(Fraction(math.ceil(value)), Fraction(math.ceil(divisor))))


# --- fieldRef ------------------------------------------------------------------------------------

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def _pod_name(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _field_value(path: str, pod: Obj, *, node_ip: str, pod_ip: str, pod_ips: Sequence[str]) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": node_ip,
        "status.hostIPs": node_ip,
        "status.podIP": pod_ips[0] if pod_ips else pod_ip,
        "status.podIPs": ",".join(pod_ips) if pod_ips else pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    m = _SUBSCRIPT.match(path)
    if m is not None:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise EnvSourceError(f"unsupported fieldPath: {path}")


# --- ConfigMaps and Secrets --------------------------------------------------------------------


def _secret_data(secret: Obj) -> dict[str, str]:
    """A Secret's values: ``data`` is base64 (decoded here); ``stringData`` is plain and wins."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            raw = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise EnvSourceError(f"secret key {key} does not hold base64 data") from None
        # Bytes that are not UTF-8 survive the round trip to the process environment.
        out[str(key)] = raw.decode("utf-8", "surrogateescape")
    for key, value in (secret.get("stringData") or {}).items():
        out[str(key)] = str(value)
    return out


def _configmap_data(cm: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (cm.get("data") or {}).items()}


class _Sources:
    """Fetches each ConfigMap / Secret once per container, with the kubelet's errors."""

    def __init__(
        self, namespace: str, config_maps: Callable[[str], Obj | None], secrets: Callable[[str], Obj | None]
    ) -> None:
        self.namespace = namespace
        self._fetch = {"ConfigMap": config_maps, "Secret": secrets}
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    def get(self, kind: str, name: str) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            obj = self._fetch[kind](name)
            if obj is None:
                self._cache[key] = None
            else:
                self._cache[key] = _secret_data(obj) if kind == "Secret" else _configmap_data(obj)
        return self._cache[key]

    def require(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        data = self.get(kind, name)
        if data is None and not optional:
            raise EnvSourceError(f'{kind.lower()} "{name}" not found')
        return data

    def key(self, kind: str, ref: Obj) -> str | None:
        name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
        optional = bool(ref.get("optional"))
        data = self.require(kind, name, optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            raise EnvSourceError(f"couldn't find key {key} in {kind} {self.namespace}/{name}")
        return data[key]


def _usable_name(name: str) -> bool:
    # The process environment cannot carry these; everything else the API accepted is passed on.
    return bool(name) and "=" not in name and "\0" not in name


def container_env(
    container: Obj,
    pod: Obj,
    *,
    service_vars: Mapping[str, str],
    config_maps: Callable[[str], Obj | None],
    secrets: Callable[[str], Obj | None],
    node_ip: str,
    pod_ip: str,
    pod_ips: Sequence[str],
    node_allocatable: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The container's environment as ``(name, value)`` pairs (see the module docstring).

    ``config_maps`` / ``secrets`` return the API object (a dict with ``data``) for a name in the
    pod's namespace, or None when it does not exist. Raises :class:`EnvSourceError`.
    """
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    sources = _Sources(namespace, config_maps, secrets)
    env: dict[str, str] = {}

    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = src.get(field)
            if not ref:
                continue
            data = sources.require(kind, str(ref.get("name") or ""), bool(ref.get("optional")))
            for key, value in (data or {}).items():
                if _usable_name(prefix + key):
                    env[prefix + key] = value

    lookup = ChainMap(env, dict(service_vars))
    for var in container.get("env") or []:
        name = str(var.get("name") or "")
        value = var.get("value")
        if value:
            env[name] = expand(str(value), lookup)
            continue
        value_from = var.get("valueFrom")
        if not value_from:
            env[name] = ""
            continue
        resolved: str | None
        if ref := value_from.get("fieldRef"):
            resolved = _field_value(
                str(ref.get("fieldPath") or ""), pod, node_ip=node_ip, pod_ip=pod_ip, pod_ips=pod_ips
            )
        elif ref := value_from.get("resourceFieldRef"):
            resolved = _resource_value(ref, pod, container, node_allocatable)
        elif ref := value_from.get("configMapKeyRef"):
            resolved = sources.key("ConfigMap", ref)
        elif ref := value_from.get("secretKeyRef"):
            resolved = sources.key("Secret", ref)
        else:
            raise EnvSourceError(
                f"env var {name} has a valueFrom this agent does not know: {sorted(value_from)}"
            )
        if resolved is None:  # an optional source that is missing: the variable is not set
            continue
        env[name] = resolved

    pairs = list(env.items())
    pairs.extend((k, v) for k, v in service_vars.items() if k not in env)
    return pairs
