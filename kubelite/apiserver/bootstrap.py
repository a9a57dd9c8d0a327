"""Objects every cluster starts with: the system namespaces and the ``kubernetes`` Service
(first IP of the service CIDR) with its Endpoints and EndpointSlice pointing at the API server."""

from __future__ import annotations

import ipaddress
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.meta import format_time, new_uid, now
from kubelite.api.resources import INDEX
from kubelite.apiserver.objects import encode
from kubelite.apiserver.rest import Rest
from kubelite.store.interface import Create, KeyExistsError, Update

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def _ensure(rest: Rest, api_version: str, kind: str, obj: dict[str, Any]) -> None:
    rt = INDEX.for_kind(api_version, kind)
    assert rt is not None
    try:
        await rest.create(rt, obj["metadata"].get("namespace", ""), obj)
    except StatusError as e:
        if e.code != 409:
            raise


async def _put_raw(rest: Rest, api_version: str, kind: str, obj: dict[str, Any]) -> None:
    """Write an object the API server owns, bypassing validation (its endpoint may be loopback)."""
    rt = INDEX.for_kind(api_version, kind)
    assert rt is not None
    md = obj["metadata"]
    key = rt.key(md.get("namespace"), md["name"])
    current = await rest.storage.get(key)
    md.setdefault("uid", new_uid())
    md.setdefault("creationTimestamp", format_time(now()))
    if current is None:
        try:
            await rest.storage.commit([Create(key, encode(obj))])
        except KeyExistsError:
            pass
        return
    import orjson

    old = orjson.loads(current.value)
    md["uid"] = old["metadata"].get("uid", md["uid"])
    md["creationTimestamp"] = old["metadata"].get("creationTimestamp", md["creationTimestamp"])
    if old != obj:
        await rest.storage.commit([Update(key, encode(obj), current.mod_revision)])


async def bootstrap(rest: Rest, *, service_cidr: str, advertise_address: str, port: int) -> None:
    for name in SYSTEM_NAMESPACES:
        await _ensure(
            rest, "v1", "Namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    first_ip = str(ipaddress.ip_network(service_cidr).network_address + 1)
    await _ensure(
        rest,
        "v1",
        "Service",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": first_ip,
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        },
    )
    subsets = []
    endpoints = []
    if advertise_address:
        subsets = [
            {
                "addresses": [{"ip": advertise_address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ]
        endpoints = [
            {
                "addresses": [advertise_address],
                "conditions": {"ready": True, "serving": True, "terminating": False},
            }
        ]
    await _put_raw(
        rest,
        "v1",
        "Endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": subsets,
        },
    )
    await _put_raw(
        rest,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    )
