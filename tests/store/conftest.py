"""Fixtures for the store tests: every contract test runs on SQLite and on a real etcd.

The etcd server is the OS package's binary on free loopback ports with a temporary data dir,
started once per session and stopped by its PID. Each test gets its own key namespace in it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from conftest import EtcdServer

from kubelite.store import EtcdStorage, SqliteStorage, Storage

from .helpers import OpenStore


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """Build (not start) a store of this test's back end; every call opens the same state."""
    if backend == "sqlite":
        return lambda: SqliteStorage(tmp_path / "state.db")
    server: EtcdServer = request.getfixturevalue("etcd_server")
    namespace = f"/test-{uuid.uuid4().hex}"  # fixed length: no namespace prefixes another
    return lambda: EtcdStorage([server.url], prefix=namespace)


@pytest.fixture
async def open_store(make_store: Callable[[], Storage]) -> AsyncIterator[OpenStore]:
    """Start a store of this test's back end; every store opened is closed after the test."""
    opened: list[Storage] = []

    async def open_one() -> Storage:
        store = make_store()
        opened.append(store)
        await store.start()
        return store

    yield open_one
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Storage:
    return await open_store()
