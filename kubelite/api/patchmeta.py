"""Patch strategies and merge keys of the built-in types kubelite serves.

These are the facts Kubernetes keeps in struct tags (``patchStrategy:"merge"
patchMergeKey:"name"`` in k8s.io/api and k8s.io/apimachinery types.go). The strategic
merge patch walks them to decide, per field, whether a list is merged by key or replaced;
the OpenAPI builder reads them to emit ``x-kubernetes-patch-strategy`` and
``x-kubernetes-patch-merge-key``.

Shape of the table::

    definition name ("io.k8s.api.core.v1.PodSpec")
      └── field name ("containers") -> FieldMeta(ref, strategy, merge_key)
                                          │
                                          └── ref: the definition of the field's value
                                              (the element type for lists), so a walk
                                              can descend: Deployment -> DeploymentSpec
                                              -> PodTemplateSpec -> PodSpec -> Container

Only fields that carry a strategy, or lead to one, are listed. A field that is absent
has no strategy: maps below it merge key by key, lists below it are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MERGE = "merge"
RETAIN_KEYS = "retainKeys"
REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """How one field of one definition takes a strategic merge patch."""

    ref: str = ""
    """OpenAPI definition of the field's value (of each element for a list); "" if none is tracked."""
    strategy: str = ""
    """As Kubernetes writes it: "", "merge", "retainKeys", "merge,retainKeys" or "replace"."""
    merge_key: str = ""
    """Key that identifies a list element (e.g. "name"); "" for lists of primitives."""

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(s for s in self.strategy.split(",") if s)

    @property
    def merges(self) -> bool:
        return MERGE in self.strategies

    @property
    def retains_keys(self) -> bool:
        return RETAIN_KEYS in self.strategies

    @property
    def replaces(self) -> bool:
        return REPLACE in self.strategies

    def openapi_extensions(self) -> dict[str, str]:
        """The ``x-kubernetes-patch-*`` vendor extensions kube-apiserver publishes for this field."""
        out: dict[str, str] = {}
        if self.merge_key:
            out["x-kubernetes-patch-merge-key"] = self.merge_key
        if self.strategy:
            out["x-kubernetes-patch-strategy"] = self.strategy
        return out


@dataclass(frozen=True, slots=True)
class PatchSchema:
    """Patch facts by definition, and the definition each served kind starts from."""

    definitions: Mapping[str, Mapping[str, FieldMeta]]
    roots: Mapping[tuple[str, str], str]
    """(apiVersion, kind) -> definition name, e.g. ("apps/v1", "Deployment")."""

    def definition_for(self, api_version: str, kind: str) -> str | None:
        return self.roots.get((api_version, kind))

    def field(self, definition: str | None, name: str) -> FieldMeta | None:
        """Facts for ``definition.name``; None when the field has no strategy and leads to none."""
        if not definition:
            return None
        return self.definitions.get(definition, {}).get(name)

    def openapi_extensions(self, definition: str, name: str) -> dict[str, str]:
        meta = self.field(definition, name)
        return meta.openapi_extensions() if meta else {}


_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."

OBJECT_META = _META + "ObjectMeta"
POD_SPEC = _CORE + "PodSpec"
POD_TEMPLATE_SPEC = _CORE + "PodTemplateSpec"


def _ref(definition: str) -> FieldMeta:
    return FieldMeta(ref=definition)


def _merge(key: str = "", ref: str = "", strategy: str = MERGE) -> FieldMeta:
    return FieldMeta(ref=ref, strategy=strategy, merge_key=key)


def _conditions(condition_definition: str = "") -> dict[str, FieldMeta]:
    return {"conditions": _merge("type", condition_definition)}


def _object(spec: str = "", status: str = "", **others: FieldMeta) -> dict[str, FieldMeta]:
    """A top-level kind: metadata always, spec and status when they lead to strategies."""
    fields = {"metadata": _ref(OBJECT_META)}
    if spec:
        fields["spec"] = _ref(spec)
    if status:
        fields["status"] = _ref(status)
    fields.update(others)
    return fields


# The list fields of core/v1 Container, shared verbatim by EphemeralContainer.
_CONTAINER_FIELDS = {
    "ports": _merge("containerPort"),
    "env": _merge("name"),
    "volumeMounts": _merge("mountPath"),
    "volumeDevices": _merge("devicePath"),
}

_DEFINITIONS: dict[str, dict[str, FieldMeta]] = {
    OBJECT_META: {
        "finalizers": _merge(),
        "ownerReferences": _merge("uid"),
    },
    # core/v1
    _CORE + "Pod": _object(POD_SPEC, _CORE + "PodStatus"),
    POD_TEMPLATE_SPEC: _object(POD_SPEC),
    POD_SPEC: {
        "volumes": _merge("name", strategy="merge,retainKeys"),
        "initContainers": _merge("name", _CORE + "Container"),
        "containers": _merge("name", _CORE + "Container"),
        "ephemeralContainers": _merge("name", _CORE + "EphemeralContainer"),
        "imagePullSecrets": _merge("name"),
        "hostAliases": _merge("ip"),
        "topologySpreadConstraints": _merge("topologyKey"),
        "schedulingGates": _merge("name"),
        "resourceClaims": _merge("name", strategy="merge,retainKeys"),
    },
    _CORE + "Container": dict(_CONTAINER_FIELDS),
    _CORE + "EphemeralContainer": dict(_CONTAINER_FIELDS),
    _CORE + "PodStatus": {
        **_conditions(),
        "podIPs": _merge("ip"),
        "hostIPs": _merge("ip"),
        "resourceClaimStatuses": _merge("name", strategy="merge,retainKeys"),
        # The status lists themselves are atomic; the ref is for the OpenAPI facts below.
        "containerStatuses": _ref(_CORE + "ContainerStatus"),
        "initContainerStatuses": _ref(_CORE + "ContainerStatus"),
        "ephemeralContainerStatuses": _ref(_CORE + "ContainerStatus"),
    },
    _CORE + "ContainerStatus": {
        "volumeMounts": _merge("mountPath"),
        "allocatedResourcesStatus": _merge("name"),
    },
    _CORE + "Service": _object(_CORE + "ServiceSpec", _CORE + "ServiceStatus"),
    _CORE + "ServiceSpec": {"ports": _merge("port")},
    _CORE + "ServiceStatus": _conditions(_META + "Condition"),
    _CORE + "Namespace": _object(status=_CORE + "NamespaceStatus"),
    _CORE + "NamespaceStatus": _conditions(),
    _CORE + "Node": _object(_CORE + "NodeSpec", _CORE + "NodeStatus"),
    _CORE + "NodeSpec": {"podCIDRs": _merge()},
    _CORE + "NodeStatus": {**_conditions(), "addresses": _merge("type")},
    _CORE + "ServiceAccount": _object(secrets=_merge("name")),
    _CORE + "Endpoints": _object(),
    _CORE + "ConfigMap": _object(),
    _CORE + "Secret": _object(),
    _CORE + "Event": _object(),
    # apps/v1
    _APPS + "Deployment": _object(_APPS + "DeploymentSpec", _APPS + "DeploymentStatus"),
    _APPS + "DeploymentSpec": {
        "template": _ref(POD_TEMPLATE_SPEC),
        "strategy": FieldMeta(strategy=RETAIN_KEYS),
    },
    _APPS + "DeploymentStatus": _conditions(),
    _APPS + "ReplicaSet": _object(_APPS + "ReplicaSetSpec", _APPS + "ReplicaSetStatus"),
    _APPS + "ReplicaSetSpec": {"template": _ref(POD_TEMPLATE_SPEC)},
    _APPS + "ReplicaSetStatus": _conditions(),
    _APPS + "DaemonSet": _object(_APPS + "DaemonSetSpec", _APPS + "DaemonSetStatus"),
    _APPS + "DaemonSetSpec": {"template": _ref(POD_TEMPLATE_SPEC)},
    _APPS + "DaemonSetStatus": _conditions(),
    # Kinds whose only strategic fields are in ObjectMeta.
    "io.k8s.api.discovery.v1.EndpointSlice": _object(),
    "io.k8s.api.networking.v1.Ingress": _object(),
    "io.k8s.api.networking.v1.IngressClass": _object(),
    "io.k8s.api.coordination.v1.Lease": _object(),
}

_ROOTS: dict[tuple[str, str], str] = {
    ("v1", kind): _CORE + kind
    for kind in (
        "Pod",
        "Service",
        "Endpoints",
        "ConfigMap",
        "Secret",
        "Namespace",
        "Node",
        "Event",
        "ServiceAccount",
    )
}
_ROOTS.update({("apps/v1", kind): _APPS + kind for kind in ("Deployment", "ReplicaSet", "DaemonSet")})
_ROOTS.update(
    {
        ("discovery.k8s.io/v1", "EndpointSlice"): "io.k8s.api.discovery.v1.EndpointSlice",
        ("networking.k8s.io/v1", "Ingress"): "io.k8s.api.networking.v1.Ingress",
        ("networking.k8s.io/v1", "IngressClass"): "io.k8s.api.networking.v1.IngressClass",
        ("coordination.k8s.io/v1", "Lease"): "io.k8s.api.coordination.v1.Lease",
    }
)

BUILTIN = PatchSchema(definitions=_DEFINITIONS, roots=_ROOTS)
"""The facts for every built-in kind kubelite serves. Treat as read-only."""


def definition_for_kind(api_version: str, kind: str) -> str | None:
    """``("apps/v1", "Deployment")`` -> ``"io.k8s.api.apps.v1.Deployment"``; None for unknown kinds."""
    return BUILTIN.definition_for(api_version, kind)


def field_meta(definition: str | None, name: str) -> FieldMeta | None:
    """Patch facts of one field of a built-in definition, or None if it has none."""
    return BUILTIN.field(definition, name)


def openapi_patch_extensions(definition: str, name: str) -> dict[str, str]:
    """``{"x-kubernetes-patch-strategy": ..., "x-kubernetes-patch-merge-key": ...}`` for one field."""
    return BUILTIN.openapi_extensions(definition, name)
