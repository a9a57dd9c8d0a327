"""Durability: kill -9 the API server during 200 concurrent creates; after a restart every
create that was answered 201 is there. The same test for the SQLite and the etcd store."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import aiohttp
import pytest
import yaml
from conftest import EtcdServer, ServerProcess

CREATES = 200
KILL_AFTER_ACKS = 60


def _client_settings(kubeconfig: Path) -> tuple[str, str, ssl.SSLContext]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return cluster["server"], cfg["users"][0]["user"]["token"], ctx


async def _create_until_killed(srv: ServerProcess) -> set[str]:
    url, token, ctx = _client_settings(srv.kubeconfig)
    acked: set[str] = set()
    killed = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}
    path = f"{url}/api/v1/namespaces/default/configmaps"
    connector = aiohttp.TCPConnector(ssl=ctx, limit=50)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def create(i: int) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"durable-{i}"},
                "data": {"i": "x"},
            }
            try:
                async with session.post(path, json=body, timeout=aiohttp.ClientTimeout(total=20)) as resp:
                    if resp.status == 201:
                        acked.add(body["metadata"]["name"])
                        if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
                            killed.set()
                            srv.kill9()
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass

        await asyncio.gather(*(create(i) for i in range(CREATES)))
    return acked


async def _names_after_restart(srv: ServerProcess) -> set[str]:
    url, token, ctx = _client_settings(srv.kubeconfig)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(f"{url}/api/v1/namespaces/default/configmaps", ssl=ctx) as resp,
    ):
        assert resp.status == 200
        items = (await resp.json())["items"]
    return {i["metadata"]["name"] for i in items}


async def _run(tmp_path: Path, store: str) -> None:
    srv = ServerProcess(tmp_path / "server", store=store).start()
    try:
        acked = await _create_until_killed(srv)
        assert srv.proc is not None and srv.proc.returncode == -9, "the server was not killed mid-run"
        assert KILL_AFTER_ACKS <= len(acked) < CREATES
        srv.start()
        present = await _names_after_restart(srv)
    finally:
        srv.stop()
    missing = acked - present
    assert not missing, f"{len(missing)} acknowledged creates were lost: {sorted(missing)[:10]}"


async def test_sqlite_keeps_every_acknowledged_create(tmp_path: Path) -> None:
    await _run(tmp_path, "sqlite")


@pytest.mark.etcd
async def test_etcd_keeps_every_acknowledged_create(tmp_path: Path, etcd_server: EtcdServer) -> None:
    await _run(tmp_path, "etcd://" + etcd_server.url.removeprefix("http://"))


async def test_restart_brings_every_object_back(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "server").start()
    try:
        url, token, ctx = _client_settings(srv.kubeconfig)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for i in range(5):
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"keep-{i}"}}
                async with session.post(
                    f"{url}/api/v1/namespaces/default/configmaps", json=body, ssl=ctx
                ) as r:
                    assert r.status == 201
        assert srv.stop() == 0, "SIGTERM should end the server cleanly"
        srv.start()
        names = await _names_after_restart(srv)
    finally:
        srv.stop()
    assert {f"keep-{i}" for i in range(5)} <= names
