"""What is particular to HttpClient: kubeconfig, paths, Status parsing, transport errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from client_fixtures import *  # noqa: F403  (the fixtures)
from client_helpers import CONFIGMAPS, NAMESPACES, closing, raises, resource

import kubelite.client
from kubelite.apiserver.server import RunningServer
from kubelite.client.http import HttpClient, resource_path, status_error


def test_resource_paths() -> None:
    deployments = resource("apps/v1", "Deployment")
    assert resource_path(CONFIGMAPS, "ns", "cm") == "/api/v1/namespaces/ns/configmaps/cm"
    assert resource_path(CONFIGMAPS, None) == "/api/v1/configmaps"
    assert (
        resource_path(deployments, "ns", "web", "scale")
        == "/apis/apps/v1/namespaces/ns/deployments/web/scale"
    )
    assert resource_path(NAMESPACES, "ignored", "kube-system") == "/api/v1/namespaces/kube-system"
    assert resource_path(NAMESPACES, None, "x", "finalize") == "/api/v1/namespaces/x/finalize"


def test_status_bodies_become_status_errors() -> None:
    err = status_error(
        {
            "kind": "Status",
            "code": 422,
            "reason": "Invalid",
            "message": "bad",
            "details": {
                "name": "x",
                "kind": "ConfigMap",
                "causes": [{"field": "metadata.name", "message": "no", "reason": "FieldValueInvalid"}],
                "retryAfterSeconds": 3,
            },
        }
    )
    assert (err.code, err.reason, err.message, err.name, err.kind, err.retry_after) == (
        422, "Invalid", "bad", "x", "ConfigMap", 3,
    )  # fmt: skip
    assert [(c.field, c.message, c.reason) for c in err.causes] == [
        ("metadata.name", "no", "FieldValueInvalid")
    ]
    fallback = status_error("not a status", 503)
    assert (fallback.code, fallback.reason) == (503, "ServiceUnavailable")


def test_exported_members() -> None:
    assert sorted(kubelite.client.__all__) == sorted(
        ["ApiClient", "Backoff", "Clock", "FakeClock", "HttpClient", "Informer", "ListResult", "LocalClient",
         "LoopClock", "PatchType", "ShutDown", "WatchEvent", "WorkQueue", "run_workers"]
    )  # fmt: skip
    for name in kubelite.client.__all__:
        assert getattr(kubelite.client, name) is not None
    with pytest.raises(AttributeError):
        _ = kubelite.client.Nothing


def test_kubeconfig_errors_say_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="not a YAML mapping"):
        HttpClient.from_kubeconfig(path)
    path.write_text(yaml.safe_dump({"contexts": []}))
    with pytest.raises(ValueError, match="no current-context"):
        HttpClient.from_kubeconfig(path)
    path.write_text(yaml.safe_dump({"current-context": "c", "contexts": [{"name": "other", "context": {}}]}))
    with pytest.raises(ValueError, match="no context named 'c'"):
        HttpClient.from_kubeconfig(path)


async def test_kubeconfig_with_files_and_a_named_context(api_server: RunningServer, tmp_path: Path) -> None:
    doc = yaml.safe_load(api_server.kubeconfig_path.read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
    cluster["certificate-authority"] = "ca.crt"
    (tmp_path / "token").write_text(user.pop("token") + "\n")
    user["tokenFile"] = "token"
    doc["contexts"].append({"name": "other", "context": doc["contexts"][0]["context"]})
    doc["current-context"] = "missing"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    client = HttpClient.from_kubeconfig(path, context="other")
    try:
        assert (await client.get(NAMESPACES, None, "default"))["metadata"]["name"] == "default"
    finally:
        await client.close()


async def test_wrong_token_is_401(api_server: RunningServer) -> None:
    good = HttpClient.from_kubeconfig(api_server.kubeconfig_path)
    bad = HttpClient(good.server, token="wrong", ssl_context=False)
    try:
        await raises(401, "Unauthorized", bad.get(NAMESPACES, None, "default"))
        async with closing(bad.watch(CONFIGMAPS, "default")) as events:
            await raises(401, "Unauthorized", anext(events))
    finally:
        await bad.close()
        await good.close()


async def test_unreachable_server_is_503() -> None:
    client = HttpClient("https://127.0.0.1:9", ssl_context=False)
    try:
        err = await raises(503, "ServiceUnavailable", client.list(CONFIGMAPS))
        assert "https://127.0.0.1:9 could not be reached" in err.message
        async with closing(client.watch(CONFIGMAPS)) as events:
            await raises(503, "ServiceUnavailable", anext(events))
    finally:
        await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get(NAMESPACES, None, "default")


async def test_untrusted_certificate_is_refused(api_server: RunningServer) -> None:
    client = HttpClient(api_server.url, token="x")  # the system CAs do not know the server's CA
    try:
        err = await raises(503, "ServiceUnavailable", client.get(NAMESPACES, None, "default"))
        assert "certificate" in err.message.lower()
    finally:
        await client.close()
