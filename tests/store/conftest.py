"""Fixtures for the store tests: every contract test runs on SQLite and on a real etcd.

The etcd server is the OS package's binary on free loopback ports with a temporary data dir,
started once per session and stopped by its PID. Each test gets its own key namespace in it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.store import EtcdStorage, SqliteStorage, Storage

from .helpers import OpenStore

ETCD_BINARY = Path("/usr/bin/etcd")
SKIP_NO_ETCD = (
    "etcd tests need /usr/bin/etcd (Debian package etcd-server); install it with scripts/install.sh"
)


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are bound, so the ports are distinct.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class EtcdServer:
    """One etcd member; ``url`` is its client URL."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path

    @classmethod
    def start(cls, data_dir: Path, timeout: float = 30.0) -> EtcdServer:
        client_port, peer_port = _free_ports(2)
        url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = data_dir.parent / f"{data_dir.name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(ETCD_BINARY), "--data-dir", str(data_dir), "--name", "default",
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"default={peer}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        server = cls(process, url, data_dir, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"etcd exited with {process.returncode}:\n{server.log_tail()}")
            if server.healthy():
                return server
            time.sleep(0.05)
        server.stop()
        raise RuntimeError(f"etcd was not healthy within {timeout}s:\n{server.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                return bool(json.load(response).get("health") == "true")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate this etcd (by PID) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    if not ETCD_BINARY.exists():
        pytest.skip(SKIP_NO_ETCD)
    server = EtcdServer.start(tmp_path_factory.mktemp("etcd") / "data")
    try:
        yield server
    finally:
        server.stop()


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
