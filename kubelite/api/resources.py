"""The resource types kubelite serves: what discovery, routing, storage keys and kubectl see.

One ``ResourceType`` per (group, version, plural). The API server, the OpenAPI builder,
the Table printer and the storage layer all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS_ALL
    storage_name: str = ""
    """Where objects live in the store: /registry/<storage_name>/... (defaults to the plural)."""
    has_status: bool = field(default=False)
    stored_as: str = ""
    """For an older served version: the apiVersion objects are stored in (and converted to)."""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def group_resource(self) -> str:
        """``services`` or ``deployments.apps``: how Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def store_prefix(self) -> str:
        return f"/registry/{self.storage_name or self.group_resource}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.store_prefix}{namespace}/{name}"
        return f"{self.store_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.store_prefix}{namespace}/"
        return self.store_prefix


def _r(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    verbs: tuple[str, ...] = VERBS_ALL,
    stored_as: str = "",
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        categories=cats,
        subresources=sub,
        verbs=verbs,
        has_status="status" in sub,
        stored_as=stored_as,
        storage_name=f"{plural}.{stored_as.split('/')[0]}" if stored_as else "",
    )


RESOURCES: tuple[ResourceType, ...] = (
    _r(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short=("ns",),
        sub=("status",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    _r("", "v1", "Node", "nodes", namespaced=False, short=("no",), sub=("status", "proxy")),
    _r(
        "",
        "v1",
        "Pod",
        "pods",
        short=("po",),
        cats=("all",),
        sub=("status", "log", "exec", "attach", "portforward", "proxy", "binding"),
    ),
    _r(
        "",
        "v1",
        "Service",
        "services",
        short=("svc",),
        cats=("all",),
        sub=("status", "proxy"),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    _r("", "v1", "Endpoints", "endpoints", short=("ep",)),
    _r("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "Event", "events", short=("ev",)),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",)),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _r("apps", "v1", "Deployment", "deployments", short=("deploy",), cats=("all",), sub=("status", "scale")),
    _r("apps", "v1", "ReplicaSet", "replicasets", short=("rs",), cats=("all",), sub=("status", "scale")),
    _r("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), cats=("all",), sub=("status",)),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",), sub=("status",)),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    # Listed (always empty) so kubectl's unknown-kind check gets its answer; custom resources are
    # not served yet, and writes are refused with a sentence saying so.
    _r(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short=("crd", "crds"),
        cats=("api-extensions",),
        verbs=("get", "list", "watch"),
    ),
    # Older Ingress versions the seeds use, converted to and from networking.k8s.io/v1.
    # Listed last so kubectl's `get ingress` keeps resolving to networking.k8s.io/v1.
    _r(
        "networking.k8s.io",
        "v1beta1",
        "Ingress",
        "ingresses",
        short=("ing",),
        sub=("status",),
        stored_as="networking.k8s.io/v1",
    ),
    _r(
        "extensions",
        "v1beta1",
        "Ingress",
        "ingresses",
        short=("ing",),
        sub=("status",),
        stored_as="networking.k8s.io/v1",
    ),
)


@dataclass(frozen=True, slots=True)
class ResourceIndex:
    """Lookups over RESOURCES by the names requests and manifests use."""

    by_path: dict[tuple[str, str, str], ResourceType]
    by_kind: dict[tuple[str, str], ResourceType]

    @classmethod
    def build(cls, resources: tuple[ResourceType, ...] = RESOURCES) -> ResourceIndex:
        return cls(
            by_path={(r.group, r.version, r.plural): r for r in resources},
            by_kind={(r.group_version, r.kind): r for r in resources},
        )

    def resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.by_path.get((group, version, plural))

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self.by_kind.get((api_version, kind))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions in preference order, in the order groups first appear."""
        out: dict[str, list[str]] = {}
        for r in self.by_path.values():
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self.by_path.values() if r.group == group and r.version == version]


INDEX = ResourceIndex.build()
