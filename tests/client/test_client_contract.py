"""The ApiClient contract, run against HttpClient and LocalClient on one real server each.

Both must give the same objects and the same StatusErrors (code and reason) for the same calls.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from client_fixtures import *  # noqa: F403  (the fixtures)
from client_helpers import (
    CONFIGMAPS,
    NAMESPACES,
    WaitCompacted,
    closing,
    configmap,
    next_change,
    raises,
    resource,
)

from kubelite.client.interface import ApiClient

DEPLOYMENTS = resource("apps/v1", "Deployment")
CRDS = resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
INGRESS_V1 = resource("networking.k8s.io/v1", "Ingress")
INGRESS_BETA = resource("extensions/v1beta1", "Ingress")


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1"},
                        {"name": "sidecar", "image": "busybox:1"},
                    ]
                },
            },
        },
    }


# --- CRUD -----------------------------------------------------------------------------------------


async def test_create_get_update_delete(client: ApiClient, namespace: str) -> None:
    sent = configmap("cm", {"a": "1"})
    original = copy.deepcopy(sent)
    created = await client.create(CONFIGMAPS, namespace, sent)
    assert sent == original, "create must not change the caller's object"
    md = created["metadata"]
    assert (md["name"], md["namespace"], created["data"]) == ("cm", namespace, {"a": "1"})
    assert md["uid"] and int(md["resourceVersion"]) > 0

    got = await client.get(CONFIGMAPS, namespace, "cm")
    assert got == created

    got["data"]["a"] = "2"
    updated = await client.update(CONFIGMAPS, namespace, got)
    assert updated["data"] == {"a": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(md["resourceVersion"])

    deleted = await client.delete(CONFIGMAPS, namespace, "cm")
    assert deleted["metadata"]["uid"] == md["uid"]
    await raises(404, "NotFound", client.get(CONFIGMAPS, namespace, "cm"))


async def test_results_are_independent_copies(client: ApiClient, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, namespace, configmap("cm", {"a": "1"}))
    created["data"]["a"] = "changed"
    got = await client.get(CONFIGMAPS, namespace, "cm")
    assert got["data"] == {"a": "1"}
    got["data"]["a"] = "changed"
    assert (await client.get(CONFIGMAPS, namespace, "cm"))["data"] == {"a": "1"}
    listed = await client.list(CONFIGMAPS, namespace)
    listed.items[0]["data"]["a"] = "changed"
    assert (await client.list(CONFIGMAPS, namespace)).items[0]["data"] == {"a": "1"}


async def test_namespace_comes_from_the_object_when_omitted(client: ApiClient, namespace: str) -> None:
    obj = configmap("cm")
    obj["metadata"]["namespace"] = namespace
    created = await client.create(CONFIGMAPS, None, obj)
    assert created["metadata"]["namespace"] == namespace
    created["data"] = {"k": "v"}
    assert (await client.update(CONFIGMAPS, None, created))["data"] == {"k": "v"}


async def test_cluster_scoped_kinds_ignore_the_namespace(client: ApiClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scoped"}}
    created = await client.create(NAMESPACES, "ignored", ns)
    assert "namespace" not in created["metadata"]
    assert (await client.get(NAMESPACES, "ignored", "scoped"))["metadata"]["uid"] == created["metadata"][
        "uid"
    ]
    names = {o["metadata"]["name"] for o in (await client.list(NAMESPACES, "ignored")).items}
    assert {"default", "kube-system", "scoped"} <= names


async def test_served_version_is_converted(client: ApiClient, namespace: str) -> None:
    beta = {
        "apiVersion": "extensions/v1beta1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {"backend": {"serviceName": "web", "servicePort": 80}},
    }
    created = await client.create(INGRESS_BETA, namespace, beta)
    assert created["apiVersion"] == "extensions/v1beta1"
    assert created["spec"]["backend"] == {"serviceName": "web", "servicePort": 80}
    stored = await client.get(INGRESS_V1, namespace, "web")
    assert stored["apiVersion"] == "networking.k8s.io/v1"
    assert stored["spec"]["defaultBackend"]["service"]["name"] == "web"


# --- errors ---------------------------------------------------------------------------------------


async def test_not_found(client: ApiClient, namespace: str) -> None:
    err = await raises(404, "NotFound", client.get(CONFIGMAPS, namespace, "missing"))
    assert err.message == 'configmaps "missing" not found'
    assert (err.kind, err.name) == ("configmaps", "missing")
    await raises(404, "NotFound", client.delete(CONFIGMAPS, namespace, "missing"))
    await raises(404, "NotFound", client.patch(CONFIGMAPS, namespace, "missing", {"data": {}}))
    await raises(404, "NotFound", client.update(CONFIGMAPS, namespace, configmap("missing")))
    await raises(404, "NotFound", client.get(CONFIGMAPS, None, "missing"))


async def test_already_exists_and_stale_update_conflict(client: ApiClient, namespace: str) -> None:
    first = await client.create(CONFIGMAPS, namespace, configmap("cm"))
    err = await raises(409, "AlreadyExists", client.create(CONFIGMAPS, namespace, configmap("cm")))
    assert err.message == 'configmaps "cm" already exists'
    await client.update(CONFIGMAPS, namespace, {**first, "data": {"x": "1"}})
    err = await raises(409, "Conflict", client.update(CONFIGMAPS, namespace, {**first, "data": {"x": "2"}}))
    assert "the object has been modified" in err.message


async def test_invalid_carries_causes(client: ApiClient, namespace: str) -> None:
    err = await raises(422, "Invalid", client.create(CONFIGMAPS, namespace, configmap("Not_Valid")))
    assert err.message.startswith('ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value')
    assert [c.field for c in err.causes] == ["metadata.name"]
    assert err.causes[0].reason == "FieldValueInvalid"
    assert err.kind == "ConfigMap"


async def test_bad_request_and_method_not_allowed(client: ApiClient, namespace: str) -> None:
    await raises(400, "BadRequest", client.list(CONFIGMAPS, namespace, label_selector="a in (b"))
    await raises(400, "BadRequest", client.list(CONFIGMAPS, namespace, field_selector="spec.nothing=1"))
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "x"},
    }
    err = await raises(405, "MethodNotAllowed", client.create(CRDS, None, crd))
    assert "custom resources" in err.message
    await raises(400, "BadRequest", client.create(CONFIGMAPS, namespace, {"kind": "Pod", "apiVersion": "v1"}))


# --- patch ----------------------------------------------------------------------------------------


async def test_merge_patch(client: ApiClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("cm", {"a": "1", "b": "2"}))
    patched = await client.patch(CONFIGMAPS, namespace, "cm", {"data": {"a": None, "c": "3"}})
    assert patched["data"] == {"b": "2", "c": "3"}


async def test_strategic_merge_patch_merges_lists_by_key(client: ApiClient, namespace: str) -> None:
    await client.create(DEPLOYMENTS, namespace, deployment("web"))
    change = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}
    patched = await client.patch(DEPLOYMENTS, namespace, "web", change, patch_type="strategic")
    images = {c["name"]: c["image"] for c in patched["spec"]["template"]["spec"]["containers"]}
    assert images == {"web": "nginx:2", "sidecar": "busybox:1"}
    # The same body as a merge patch replaces the list.
    merged = await client.patch(DEPLOYMENTS, namespace, "web", change, patch_type="merge")
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["web"]


async def test_json_patch(client: ApiClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("cm", {"a": "1"}))
    ops = [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "add", "path": "/data/b", "value": "2"}]
    patched = await client.patch(CONFIGMAPS, namespace, "cm", ops, patch_type="json")
    assert patched["data"] == {"a": "1", "b": "2"}
    failing = [{"op": "test", "path": "/data/a", "value": "nope"}]
    await raises(422, "Invalid", client.patch(CONFIGMAPS, namespace, "cm", failing, patch_type="json"))
    await raises(400, "BadRequest", client.patch(CONFIGMAPS, namespace, "cm", {"a": 1}, patch_type="json"))


async def test_patch_precondition_on_resource_version(client: ApiClient, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, namespace, configmap("cm"))
    await client.patch(CONFIGMAPS, namespace, "cm", {"data": {"a": "1"}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"a": "2"}}
    await raises(409, "Conflict", client.patch(CONFIGMAPS, namespace, "cm", stale))


async def test_scale_and_status_subresources(client: ApiClient, namespace: str) -> None:
    await client.create(DEPLOYMENTS, namespace, deployment("web"))
    scale = await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"replicas": 3}}, subresource="scale")
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 3)
    assert (await client.get(DEPLOYMENTS, namespace, "web"))["spec"]["replicas"] == 3
    scale["spec"]["replicas"] = 2
    assert (await client.update(DEPLOYMENTS, namespace, scale, subresource="scale"))["spec"]["replicas"] == 2

    current = await client.get(DEPLOYMENTS, namespace, "web")
    current["status"] = {"replicas": 2, "readyReplicas": 1}
    current["spec"]["replicas"] = 9  # ignored by a status update
    after = await client.update(DEPLOYMENTS, namespace, current, subresource="status")
    assert after["status"]["readyReplicas"] == 1
    assert after["spec"]["replicas"] == 2
    await raises(404, "NotFound", client.patch(CONFIGMAPS, namespace, "x", {}, subresource="status"))


# --- delete ---------------------------------------------------------------------------------------


async def test_delete_options(client: ApiClient, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, namespace, configmap("cm"))
    err = await raises(409, "Conflict", client.delete(CONFIGMAPS, namespace, "cm", precondition_uid="other"))
    assert "Precondition failed: UID in precondition: other" in err.message
    await raises(
        400, "BadRequest", client.delete(CONFIGMAPS, namespace, "cm", propagation_policy="Sometimes")
    )

    held = await client.delete(CONFIGMAPS, namespace, "cm", propagation_policy="Orphan")
    assert held["metadata"]["finalizers"] == ["orphan"]
    assert held["metadata"]["deletionTimestamp"]
    await client.patch(CONFIGMAPS, namespace, "cm", {"metadata": {"finalizers": None}})
    await raises(404, "NotFound", client.get(CONFIGMAPS, namespace, "cm"))

    again = await client.create(CONFIGMAPS, namespace, configmap("cm"))
    assert again["metadata"]["uid"] != created["metadata"]["uid"]
    gone = await client.delete(
        CONFIGMAPS, namespace, "cm", precondition_uid=again["metadata"]["uid"], grace_period_seconds=0
    )
    assert gone["metadata"]["name"] == "cm"


# --- list -----------------------------------------------------------------------------------------


async def test_list_selectors_and_pages(client: ApiClient, namespace: str) -> None:
    for i in range(8):
        await client.create(CONFIGMAPS, namespace, configmap(f"cm-{i}", tier="a" if i % 2 else "b"))
    await client.create(CONFIGMAPS, "default", configmap("elsewhere", tier="a"))

    everything = await client.list(CONFIGMAPS, namespace)
    assert [o["metadata"]["name"] for o in everything.items] == [f"cm-{i}" for i in range(8)]
    assert int(everything.resource_version) >= max(
        int(o["metadata"]["resourceVersion"]) for o in everything.items
    )

    tier_a = await client.list(CONFIGMAPS, namespace, label_selector="tier=a")
    assert [o["metadata"]["name"] for o in tier_a.items] == ["cm-1", "cm-3", "cm-5", "cm-7"]
    not_a = await client.list(CONFIGMAPS, namespace, label_selector="tier!=a,tier")
    assert len(not_a.items) == 4
    one = await client.list(CONFIGMAPS, namespace, field_selector="metadata.name=cm-4")
    assert [o["metadata"]["name"] for o in one.items] == ["cm-4"]

    all_namespaces = await client.list(CONFIGMAPS, None, label_selector="tier=a")
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in all_namespaces.items} == {
        *((namespace, f"cm-{i}") for i in (1, 3, 5, 7)),
        ("default", "elsewhere"),
    }


async def test_objects_larger_than_a_read_buffer(client: ApiClient) -> None:
    big = {f"k{i}": "x" * 1000 for i in range(400)}  # ~400 KB: one watch line spans many chunks
    start = (await client.list(CONFIGMAPS, "default")).resource_version
    await client.create(CONFIGMAPS, "default", configmap("big", big))
    async with closing(client.watch(CONFIGMAPS, "default", resource_version=start)) as events:
        event = await next_change(events)
    assert event.type == "ADDED" and event.object["data"] == big
    assert (await client.list(CONFIGMAPS, "default")).items[0]["data"] == big


async def test_concurrent_requests_share_one_session(client: ApiClient) -> None:
    await asyncio.gather(*(client.create(CONFIGMAPS, "default", configmap(f"cm-{i}")) for i in range(20)))
    assert len((await client.list(CONFIGMAPS, "default")).items) == 20


# --- watch ----------------------------------------------------------------------------------------


async def test_watch_from_resource_version(client: ApiClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("before"))
    start = (await client.list(CONFIGMAPS, namespace)).resource_version
    created = await client.create(CONFIGMAPS, namespace, configmap("cm"))
    modified = await client.patch(CONFIGMAPS, namespace, "cm", {"data": {"a": "1"}})
    await client.delete(CONFIGMAPS, namespace, "cm")

    async with closing(client.watch(CONFIGMAPS, namespace, resource_version=start)) as events:
        seen = [await next_change(events) for _ in range(3)]
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [
        ("ADDED", "cm"),
        ("MODIFIED", "cm"),
        ("DELETED", "cm"),
    ]
    assert seen[0].resource_version == created["metadata"]["resourceVersion"]
    assert seen[1].object["data"] == {"a": "1"}
    assert seen[1].resource_version == modified["metadata"]["resourceVersion"]
    assert int(seen[2].resource_version) > int(seen[1].resource_version)


async def test_watch_without_resource_version_starts_with_current_state(
    client: ApiClient, namespace: str
) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("a"))
    await client.create(CONFIGMAPS, namespace, configmap("b"))
    async with closing(client.watch(CONFIGMAPS, namespace)) as events:
        first = [await next_change(events) for _ in range(2)]
        assert {(e.type, e.object["metadata"]["name"]) for e in first} == {("ADDED", "a"), ("ADDED", "b")}
        await client.create(CONFIGMAPS, namespace, configmap("c"))
        later = await next_change(events)
        assert (later.type, later.object["metadata"]["name"]) == ("ADDED", "c")


async def test_watch_with_selector_reports_entering_and_leaving(client: ApiClient, namespace: str) -> None:
    start = (await client.list(CONFIGMAPS, namespace)).resource_version
    await client.create(CONFIGMAPS, namespace, configmap("cm"))
    await client.patch(CONFIGMAPS, namespace, "cm", {"metadata": {"labels": {"app": "x"}}})
    await client.patch(CONFIGMAPS, namespace, "cm", {"data": {"k": "v"}})
    await client.patch(CONFIGMAPS, namespace, "cm", {"metadata": {"labels": {"app": "y"}}})
    async with closing(
        client.watch(CONFIGMAPS, namespace, resource_version=start, label_selector="app=x")
    ) as events:
        seen = [(await next_change(events)).type for _ in range(3)]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


async def test_watch_sends_bookmarks_and_ends_at_its_timeout(client: ApiClient, namespace: str) -> None:
    start = (await client.list(CONFIGMAPS, namespace)).resource_version
    types = []
    async with closing(
        client.watch(CONFIGMAPS, namespace, resource_version=start, timeout_seconds=1)
    ) as events:
        async with asyncio.timeout(5):
            async for event in events:
                types.append(event.type)
                if event.type == "BOOKMARK":
                    assert event.resource_version == start
                    assert event.object["kind"] == "ConfigMap"
    assert types and set(types) == {"BOOKMARK"}


async def test_watch_rejects_a_malformed_resource_version(client: ApiClient, namespace: str) -> None:
    async with closing(client.watch(CONFIGMAPS, namespace, resource_version="abc")) as events:
        await raises(400, "BadRequest", anext(events))


async def test_watch_from_compacted_revision_is_410(
    compacting_client: ApiClient, wait_compacted: WaitCompacted
) -> None:
    client = compacting_client
    created = await client.create(CONFIGMAPS, "default", configmap("cm"))
    rv = created["metadata"]["resourceVersion"]
    await client.patch(CONFIGMAPS, "default", "cm", {"data": {"a": "1"}})
    await wait_compacted(int(rv))
    async with closing(client.watch(CONFIGMAPS, "default", resource_version=rv)) as events:
        err = await raises(410, "Expired", anext(events))
    assert "too old resource version" in err.message
