"""Concurrent patches without a resourceVersion are retried by the server, never answered 409."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import Http


def test_concurrent_merge_patches_all_succeed(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    assert (
        http.request(
            "POST", base, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hot"}}
        ).status_code
        == 201
    )

    def patch(i: int) -> int:
        body = {"data": {f"k{i}": str(i)}}
        resp = http.request(
            "PATCH", f"{base}/hot", json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        return int(resp.status_code)

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(patch, range(80)))
    assert codes == [200] * 80
    data = http.request("GET", f"{base}/hot").json()["data"]
    assert len(data) == 80


def test_patch_with_stale_resource_version_conflicts(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    made = http.request(
        "POST", base, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rv"}}
    )
    stale = made.json()["metadata"]["resourceVersion"]
    http.request(
        "PATCH",
        f"{base}/rv",
        json={"data": {"a": "1"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    resp = http.request(
        "PATCH",
        f"{base}/rv",
        json={"metadata": {"resourceVersion": stale}, "data": {"a": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 409
