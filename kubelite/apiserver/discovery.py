"""Discovery documents: /api, /apis, per group-version resource lists, and aggregated discovery.

kubectl 1.27-1.29 ask for ``apidiscovery.k8s.io/v2beta1`` aggregated discovery, 1.30+ for
``v2``; older flows read ``/api`` + ``/apis`` + one ``APIResourceList`` per group-version.
All of them are built from the one resource table in ``kubelite.api.resources``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubelite.api.resources import ResourceIndex, ResourceType

Obj = dict[str, Any]

# Subresource -> (group, version, kind, verbs) of what it answers with.
_SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "log": ("", "v1", "Pod", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
    "proxy": ("", "v1", "", ("create", "delete", "get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
}


def _sub_kind(rt: ResourceType, sub: str) -> tuple[str, str, str, tuple[str, ...]]:
    group, version, kind, verbs = _SUBRESOURCES[sub]
    if sub == "status":
        return rt.group, rt.version, rt.kind, verbs
    if sub == "proxy":
        kind = f"{rt.kind}ProxyOptions"
    return group, version, kind, verbs


def _storage_hash(rt: ResourceType) -> str:
    import base64

    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(index: ResourceIndex) -> Obj:
    groups = [_group_entry(g, vs) for g, vs in index.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(index: ResourceIndex, group: str) -> Obj | None:
    versions = index.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def api_resource_list(index: ResourceIndex, group: str, version: str) -> Obj | None:
    resources = index.in_group_version(group, version)
    if not resources:
        return None
    out: list[Obj] = []
    for rt in resources:
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            "storageVersionHash": _storage_hash(rt),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        out.append(entry)
        for sub in rt.subresources:
            g, v, kind, verbs = _sub_kind(rt, sub)
            sub_entry: Obj = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": list(verbs),
            }
            if g != rt.group or (v and v != rt.version):
                sub_entry["group"], sub_entry["version"] = g, v
            out.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _discovery_resource(rt: ResourceType) -> Obj:
    res: Obj = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        res["shortNames"] = list(rt.short_names)
    if rt.categories:
        res["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        g, v, kind, verbs = _sub_kind(rt, sub)
        subs.append(
            {
                "subresource": sub,
                "responseKind": {"group": g, "version": v or rt.version, "kind": kind},
                "verbs": list(verbs),
            }
        )
    if subs:
        res["subresources"] = subs
    return res


def aggregated(index: ResourceIndex, *, legacy: bool, version: str) -> Obj:
    """APIGroupDiscoveryList for /api (legacy=True: the core group) or /apis (every named group)."""
    items: list[Obj] = []
    for group, versions in index.group_versions().items():
        if bool(group) == legacy:
            continue
        item: Obj = {"metadata": {"creationTimestamp": None}, "versions": []}
        if group:
            item["metadata"]["name"] = group
        for v in versions:
            item["versions"].append(
                {
                    "version": v,
                    "resources": [_discovery_resource(rt) for rt in index.in_group_version(group, v)],
                    "freshness": "Current",
                }
            )
        items.append(item)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def discovery_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
