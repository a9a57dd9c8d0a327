"""``kubelite up`` clusters for tests: started in a lab host namespace, stopped by PID, checked for leftovers.

The node network is built inside ``kltest-<pid>-up<n>`` (``--host-netns``), never in the root
namespace; kubectl reaches the API through the loopback listener ``kubelite up`` keeps in the root
namespace. Pod IPs are reachable only from the lab host namespace and the node namespaces, so
traffic checks run there with ``ip netns exec``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))

from conftest import Kubectl, kubectl_path, wait_for
from lab import PREFIX, kernel_skip_reason

_counter = itertools.count(1)
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True, timeout=10).stdout
    return json.loads(out) if out.strip() else []


@dataclass
class UpCluster:
    data_dir: Path
    nodes: int = 2
    overlay: str = "vxlan"
    cni: str = "kubelite"
    name: str = field(default_factory=lambda: f"k{os.getpid() % 100000}{next(_counter)}")
    host_netns: str = ""
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    extra: tuple[str, ...] = ()
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not self.host_netns:
            self.host_netns = f"{PREFIX}up-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kubelite",
            "up",
            "--data-dir",
            str(self.data_dir),
            "--nodes",
            str(self.nodes),
            "--overlay",
            self.overlay,
            "--name",
            self.name,
            "--host-netns",
            self.host_netns,
            "--api-port",
            "0",
            "--cni",
            self.cni,
            *self.extra,
        ]

    def start(self, timeout: float = 90.0) -> UpCluster:
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        up = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if line.startswith("kubelite is up"):
                    up.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not up.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("kubelite up did not come up:\n" + self.log_text())
        return self

    def log_text(self) -> str:
        text = "".join(self.output)
        for agent_log in sorted(self.data_dir.glob("nodes/*/agent.log")):
            text += f"\n--- {agent_log}\n" + agent_log.read_text(errors="replace")[-6000:]
        return text

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # only the process this test started, by its PID
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def kubectl(self, version: str = "1.33") -> Kubectl:
        path = kubectl_path(version)
        if path is None:
            pytest.skip(f"kubectl.{version} is not installed")
        return Kubectl(path, self.kubeconfig, version)

    def in_host(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run a command in the lab host namespace (where node and pod IPs are reachable)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.host_netns, *argv], capture_output=True, text=True, timeout=timeout
        )

    def in_node(self, node: int, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", f"{self.name}-node{node}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def node_name(self, i: int) -> str:
        return f"{self.name}-node{i}"

    def pod(self, kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
        return json.loads(kubectl.run("get", "pod", "-n", ns, name, "-o", "json").stdout)

    def wait_pod(
        self,
        kubectl: Kubectl,
        ns: str,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            res = kubectl.run("get", "pod", "-n", ns, name, "-o", "json", check=False)
            if res.returncode != 0:
                return None
            pod = json.loads(res.stdout)
            return pod if check(pod) else None

        try:
            return wait_for(f"pod {ns}/{name}", probe, timeout)  # type: ignore[no-any-return]
        except AssertionError:
            res = kubectl.run("get", "pod", "-n", ns, name, "-o", "yaml", check=False)
            raise AssertionError(
                f"pod {ns}/{name} never got there:\n{res.stdout}\n{self.log_text()[-4000:]}"
            ) from None


def running_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return status.get("phase") == "Running" and ready and bool(status.get("podIP"))


def host_snapshot() -> dict[str, Any]:
    """The root namespace's view that ``kubelite up`` in a lab must leave as it found it."""
    names = sorted(n["name"] for n in ip_json("netns", "list") if not str(n["name"]).startswith("kltest-"))
    return {
        "netns": names,
        "links": sorted(link["ifname"] for link in ip_json("link", "show")),
        "routes": ip_json("route", "show", "table", "all"),
        "rules": ip_json("rule", "show"),
    }


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


@pytest.fixture(name="up_factory")
def up_factory_fixture(tmp_path: Path) -> Iterator[Callable[..., UpCluster]]:
    """Start ``kubelite up`` clusters; each is stopped (SIGINT, by PID) after the test."""
    reason = kernel_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    clusters: list[UpCluster] = []

    def make(**kw: Any) -> UpCluster:
        c = UpCluster(tmp_path / f"up{len(clusters)}", **kw)
        clusters.append(c)
        return c.start()

    yield make
    for c in clusters:
        c.stop()
