"""The userspace proxy's TCP data path vs HAProxy doing the same L4 proxying, on loopback.

Measures, through each proxy, (1) HTTP requests/s: keep-alive connections from a bounded asyncio
load generator (``wrk`` is not on this machine; when it is, use it: ``wrk -t2 -c50 -d10s URL``) to a
tiny asyncio HTTP server, and (2) bulk TCP throughput with ``iperf3`` (5 s). The peer is HAProxy in
``mode tcp`` on the same ports in the same run; without ``haproxy`` installed (``apt-get install
haproxy``) the direct path (no proxy) is measured instead, as a ceiling. Goal: >= 50% of HAProxy's
requests/s and >= 80% of its throughput.

Every process listens on 127.0.0.1 and is stopped by its PID. Nothing is asserted.
Run: ``.venv/bin/python bench/proxy_userspace.py [--seconds 5] [--connections 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import free_ports

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

HTTP_SERVER = r"""
import asyncio, sys
RESPONSE = @RESPONSE@
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        n = d.count(b"\r\n\r\n")
        if n: self.t.write(RESPONSE * n)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await s.serve_forever()
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
""".replace("@RESPONSE@", repr(RESPONSE))

PROXY = r"""
import asyncio, socket, sys
from kubelite.proxy.userspace.proxier import TcpProxy
from kubelite.proxy.userspace.schedulers import Balancer, Destination, make_scheduler
async def main():
    bal = Balancer(make_scheduler("rr"))
    bal.set_destinations([Destination(d) for d in sys.argv[2:]])
    sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1]))); sock.setblocking(False)
    await TcpProxy(bal).start(sock)
    await asyncio.Event().wait()
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
"""


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # a process this bench started, by its PID
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_port(port: int, seconds: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


async def load(port: int, connections: int, seconds: float, pipeline: int = 1) -> float:
    """Requests/s from ``connections`` keep-alive connections for ``seconds`` (bounded in time)."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(REQUEST * pipeline)
                await reader.readexactly(len(RESPONSE) * pipeline)
                done += pipeline
        finally:
            writer.close()

    start_t = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.monotonic() - start_t)


def iperf(port: int, seconds: float) -> float:
    out = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
        capture_output=True, text=True, timeout=seconds + 30,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


def wrk(port: int, connections: int, seconds: float) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(int(seconds), 1)}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit(f"wrk printed no Requests/sec:\n{out.stdout}{out.stderr}")


def haproxy_config(listen: int, http: int, iperf_port: int, listen_bulk: int) -> str:
    return f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend http_in
    bind 127.0.0.1:{listen}
    default_backend http_out
backend http_out
    server s1 127.0.0.1:{http}
frontend bulk_in
    bind 127.0.0.1:{listen_bulk}
    default_backend bulk_out
backend bulk_out
    server s1 127.0.0.1:{iperf_port}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    http, iperf_port, px_http, px_bulk, hp_http, hp_bulk = free_ports(6)
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="klbench-proxy-"))
    try:
        procs.append(start([sys.executable, "-c", HTTP_SERVER, str(http)]))
        procs.append(start(["iperf3", "-s", "-p", str(iperf_port)]))
        env_py = [sys.executable, "-c", PROXY]
        procs.append(start([*env_py, str(px_http), f"127.0.0.1:{http}"]))
        procs.append(start([*env_py, str(px_bulk), f"127.0.0.1:{iperf_port}"]))
        haproxy = shutil.which("haproxy")
        if haproxy:
            cfg = tmp / "haproxy.cfg"
            cfg.write_text(haproxy_config(hp_http, http, iperf_port, hp_bulk))
            procs.append(start([haproxy, "-f", str(cfg), "-db"]))
            peer_name, peer_http, peer_bulk = "haproxy", hp_http, hp_bulk
        else:
            print("haproxy is not installed (apt-get install haproxy): the peer is the direct path, no proxy")
            peer_name, peer_http, peer_bulk = "direct", http, iperf_port
        for port in {http, iperf_port, px_http, px_bulk, peer_http, peer_bulk}:
            wait_port(port)
        if shutil.which("wrk"):
            print(f"load generator: wrk -t2 -c{args.connections} -d{args.seconds:.0f}s (the same for both)")
            ours_rps = wrk(px_http, args.connections, args.seconds)
            peer_rps = wrk(peer_http, args.connections, args.seconds)
        else:
            print("load generator: bounded asyncio keep-alive clients (wrk is not installed)")
            ours_rps = asyncio.run(load(px_http, args.connections, args.seconds))
            peer_rps = asyncio.run(load(peer_http, args.connections, args.seconds))
        ours_bulk = iperf(px_bulk, args.seconds)
        peer_bulk_gbps = iperf(peer_bulk, args.seconds)
        print(f"{'':12}{'userspace':>12}{peer_name:>12}{'ratio':>8}")
        print(f"{'requests/s':12}{ours_rps:12.0f}{peer_rps:12.0f}{ours_rps / peer_rps:8.2f}   (goal 0.50)")
        ratio = ours_bulk / peer_bulk_gbps
        print(f"{'bulk Gbit/s':12}{ours_bulk:12.2f}{peer_bulk_gbps:12.2f}{ratio:8.2f}   (goal 0.80)")
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
