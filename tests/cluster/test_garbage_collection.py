"""Garbage collection by ownerReferences in a real server: background, foreground, orphan, dangling."""

from __future__ import annotations

import time
from typing import Any

from conftest import Http, wait_for


def cm(http: Http, ns: str, name: str, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if owners:
        md["ownerReferences"] = owners
    resp = http.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": md},
    )
    assert resp.status_code == 201, resp.text
    made: dict[str, Any] = resp.json()
    return made


def ref(owner: dict[str, Any], *, block: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    }


def exists(http: Http, ns: str, name: str) -> bool:
    return bool(http.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}").status_code == 200)


def get(http: Http, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = http.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}").json()
    return obj


def delete(http: Http, ns: str, name: str, policy: str) -> int:
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}
    return int(http.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}", json=body).status_code)


def test_background_deletion_removes_dependents(http: Http, namespace: str) -> None:
    owner = cm(http, namespace, "owner")
    cm(http, namespace, "child-1", [ref(owner)])
    cm(http, namespace, "child-2", [ref(owner)])
    assert delete(http, namespace, "owner", "Background") == 200
    wait_for(
        "children gone",
        lambda: not exists(http, namespace, "child-1") and not exists(http, namespace, "child-2"),
    )


def test_foreground_deletion_waits_for_dependents(http: Http, namespace: str) -> None:
    owner = cm(http, namespace, "fg-owner")
    child = cm(http, namespace, "fg-child", [ref(owner)])
    grandchild = cm(http, namespace, "fg-grandchild", [ref(child)])
    assert grandchild["metadata"]["ownerReferences"][0]["uid"] == child["metadata"]["uid"]
    assert delete(http, namespace, "fg-owner", "Foreground") == 202
    wait_for(
        "everything gone",
        lambda: not any(exists(http, namespace, n) for n in ("fg-owner", "fg-child", "fg-grandchild")),
    )


def test_orphan_deletion_keeps_dependents(http: Http, namespace: str) -> None:
    owner = cm(http, namespace, "orphan-owner")
    cm(http, namespace, "orphan-child", [ref(owner)])
    assert delete(http, namespace, "orphan-owner", "Orphan") == 202
    wait_for("owner gone", lambda: not exists(http, namespace, "orphan-owner"))
    time.sleep(0.3)
    child = get(http, namespace, "orphan-child")
    assert child["metadata"].get("ownerReferences") in (None, [])


def test_dangling_and_partial_owners(http: Http, namespace: str) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "never-existed",
        "uid": "00000000-0000-4000-8000-000000000000",
    }
    cm(http, namespace, "dangling", [ghost])
    wait_for("dangling dependent deleted", lambda: not exists(http, namespace, "dangling"))
    alive = cm(http, namespace, "alive-owner")
    cm(http, namespace, "two-owners", [ghost, ref(alive, block=False)])

    def only_alive_left() -> bool:
        refs = get(http, namespace, "two-owners")["metadata"].get("ownerReferences") or []
        return [r["name"] for r in refs] == ["alive-owner"]

    wait_for("the dangling reference removed", only_alive_left)
    assert exists(http, namespace, "two-owners")
