"""Fixtures for the client tests: a real kubelite API server in this process, and both clients.

Test modules take them with ``from client_fixtures import *``. This is not a conftest.py:
tests/store and tests/cluster import the top-level conftest by its module name, which a second
conftest module would shadow.

Every test gets a fresh server (a new data dir, a free port) so revisions and compaction are
its own. ``client`` is parametrized: the same test runs against HttpClient (HTTPS, from the
server's kubeconfig) and LocalClient (the server's own Rest).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_helpers import (
    BOOKMARK_INTERVAL,
    NAMESPACES,
    PAGE_SIZE,
    WaitCompacted,
    server_options,
    server_rest,
)

from kubelite.apiserver.server import RunningServer
from kubelite.client.http import HttpClient
from kubelite.client.interface import ApiClient
from kubelite.client.local import LocalClient

__all__ = [
    "api_server",
    "client",
    "client_kind",
    "compacting_client",
    "compacting_server",
    "namespace",
    "wait_compacted",
]


def make_client(kind: str, server: RunningServer) -> ApiClient:
    if kind == "http":
        return HttpClient.from_kubeconfig(server.kubeconfig_path, page_size=PAGE_SIZE)
    return LocalClient(server_rest(server), bookmark_interval=BOOKMARK_INTERVAL)


async def _started(data_dir: Path, compaction_interval: float = 300.0) -> RunningServer:
    srv = RunningServer(server_options(data_dir, compaction_interval=compaction_interval))
    await srv.start()
    return srv


@pytest.fixture
async def api_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    srv = await _started(tmp_path / "server")
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def compacting_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server that compacts its history every 50 ms (each compaction drops what the previous
    tick saw), so old resourceVersions expire quickly."""
    srv = await _started(tmp_path / "server", compaction_interval=0.05)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture(params=["http", "local"])
def client_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def client(client_kind: str, api_server: RunningServer) -> AsyncIterator[ApiClient]:
    c = make_client(client_kind, api_server)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def compacting_client(client_kind: str, compacting_server: RunningServer) -> AsyncIterator[ApiClient]:
    c = make_client(client_kind, compacting_server)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def wait_compacted(compacting_server: RunningServer) -> WaitCompacted:
    """``await wait_compacted(rev)``: returns once a watch from ``rev`` would get 410."""

    async def wait(revision: int) -> None:
        storage = compacting_server._storage
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await storage.compacted_revision() <= revision:
            assert loop.time() < deadline, f"the store did not compact past {revision} in 10s"
            await asyncio.sleep(0.02)

    return wait


@pytest.fixture
async def namespace(client: ApiClient) -> str:
    """A namespace of the test's own (the server is fresh, so the name is free)."""
    await client.create(
        NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}
    )
    return "t"
