"""Shared fixtures: real kubelite server processes, the real kubectl, the official Python client.

Servers listen on free loopback ports with a temporary data dir and are stopped by PID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

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


KUBECTL_VERSIONS = ("1.27", "1.33")
if os.environ.get("KUBELITE_KUBECTL_VERSIONS"):
    KUBECTL_VERSIONS = tuple(os.environ["KUBELITE_KUBECTL_VERSIONS"].split(","))


def free_port() -> int:
    return _free_ports(1)[0]


def kubectl_dir() -> Path | None:
    found = shutil.which("kubectl")
    if not found:
        return None
    return Path(os.path.realpath(found)).parent


def kubectl_path(version: str) -> Path | None:
    d = kubectl_dir()
    if d is None:
        return None
    p = d / f"kubectl.{version}"
    return p if p.exists() else None


@dataclass
class ServerProcess:
    """``kubelite server`` in a child process; ``start`` returns once the kubeconfig is written."""

    data_dir: Path
    store: str = "sqlite"
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kubeconfig.exists():
            self.kubeconfig.unlink()
        self.log_path = self.data_dir / "server.log"
        log = self.log_path.open("ab")
        cmd = [
            sys.executable,
            "-m",
            "kubelite.cli.main",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kubeconfig.exists():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite server exited early:\n{self.log_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kubelite server not ready in {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return (
            self.log_path.read_text(errors="replace")[-5000:]
            if self.log_path and self.log_path.exists()
            else ""
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("kubelite-server")).start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Kubectl:
    binary: Path
    kubeconfig: Path
    version: str

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This process's environment with kubectl pointed at the cluster (for run and Popen)."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HOME": str(self.kubeconfig.parent),
            **(extra or {}),
        }

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(self.binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.environ(env),
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}\n{res.stdout}"
            )
        return res


@pytest.fixture(params=KUBECTL_VERSIONS, ids=lambda v: f"kubectl{v}")
def kubectl(request: pytest.FixtureRequest, server: ServerProcess) -> Kubectl:
    path = kubectl_path(request.param)
    if path is None:
        pytest.skip(f"kubectl.{request.param} is not installed next to the machine's kubectl")
    return Kubectl(path, server.kubeconfig, request.param)


@pytest.fixture
def namespace(server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(server.kubeconfig))
    core = client.CoreV1Api(api_client)
    # Readable prefix + a digest of the full test id, so parametrized variants never collide.
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{digest}".replace("--", "-")
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except client.ApiException:
            pass
        api_client.close()


class Http:
    def __init__(self, server: ServerProcess) -> None:
        cfg = yaml.safe_load(server.kubeconfig.read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        self.token = cfg["users"][0]["user"]["token"]
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        self._ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)  # noqa: SIM115
        self._ca.write(ca)
        self._ca.close()
        self.session = requests.Session()
        self.session.verify = self._ca.name
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA

    def close(self) -> None:
        self.session.close()
        Path(self._ca.name).unlink()

    def request(self, method: str, path: str, *, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {self.token if token is None else token}")
        return self.session.request(method, self.base + path, headers=headers, timeout=30, **kw)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[Http]:
    h = Http(server)
    try:
        yield h
    finally:
        h.close()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last result."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {last!r}")
