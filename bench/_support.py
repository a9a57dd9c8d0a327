"""Shared pieces of the benchmarks: processes on loopback, stopped by PID, and percentiles.

Benchmarks print figures; they never assert on them (see bench/README.md).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

ETCD = Path("/usr/bin/etcd")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_etcd(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A single-member etcd on free loopback ports; returns (process, client URL)."""
    client, peer = (f"http://127.0.0.1:{p}" for p in free_ports(2))
    process = subprocess.Popen(
        [
            str(ETCD),
            "--data-dir",
            str(data_dir),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"default={peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(client + "/health", timeout=1) as response:
                if b'"true"' in response.read():
                    return process, client
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("etcd did not become healthy in 30 s")


def start_server(data_dir: Path, store: str = "sqlite") -> tuple[subprocess.Popen[bytes], Path]:
    """``kubelite server`` on a free loopback port; returns (process, kubeconfig path)."""
    port = free_ports(1)[0]
    kubeconfig = data_dir / "kubeconfig"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelite.cli.main",
            "server",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            store,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kubeconfig.exists():
            return process, kubeconfig
        if process.poll() is not None:
            raise SystemExit(f"kubelite server exited: see {data_dir / 'server.log'}")
        time.sleep(0.05)
    stop(process)
    raise SystemExit("kubelite server was not ready in 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def client_settings(kubeconfig: Path) -> tuple[str, dict[str, str], ssl.SSLContext]:
    """(server URL, auth headers, TLS context trusting the cluster CA) from a kubeconfig."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return cluster["server"], {"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"}, ctx


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def start_up(data_dir: Path, name: str, *, nodes: int, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    """``kubelite up`` inside the benchmark host namespace ``klbench-<pid>-<name>`` (never the root
    namespace); returns once it printed "kubelite is up"."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelite",
            "up",
            "--data-dir",
            str(data_dir),
            "--nodes",
            str(nodes),
            "--name",
            name,
            "--host-netns",
            f"klbench-{os.getpid()}-{name}",
            "--api-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("kubelite is up"):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"kubelite up {' '.join(extra)} did not start")


def stop_up(proc: subprocess.Popen[str]) -> None:
    """SIGINT (``up`` then removes everything it made), SIGKILL if it hangs; by PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()
