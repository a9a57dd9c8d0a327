"""The two-node lab the kernel proxy tests share (nftables, iptables and userspace back ends).

Topology (every namespace made by the ``lab`` fixture; nothing in the root namespace)::

    segment ns:  br0 (L2 only) ── s1, s2, s9 (veths)
    node-i ns:   eth0 172.31.0.1i/24, cni0 10.244.i.1/24, ip_forward=1, host-gw route to the other node's
                 pod /24, and 10.96.0.0/12 dev eth0 (see SERVICE_ROUTE)
    pod ns:      eth0 10.244.i.x/24 on cni0 (bridge port in hairpin mode), default via 10.244.i.1
    client ns:   eth0 172.31.0.50/24 (outside the cluster); 192.168.50.0/24 (external / LB IPs) via node-1

Pods: a1 10.244.1.2 and b1 10.244.1.3 on node-1, a2 10.244.2.2 and b2 10.244.2.3 on node-2. Each runs
:data:`SERVER` (at most 55 s): TCP 8080 answers ``"<pod> <peer IP>"`` and closes, UDP 8080 answers
the same to each datagram, TCP 8081 keeps the connection and answers every line ``L`` with
``"<pod> L"`` (so a test can hold an established connection through a ClusterIP).

:func:`build` gives each node its own back end from ``make_backend(node netns)``; :meth:`Cluster.sync`
hands every node a :class:`ProxyState` of its own (``is_local`` and the node IP differ per node).
Processes started here are the lab's (stopped by PID in its teardown); :class:`Held` is stopped by
PID as soon as the test is done with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from lab import Lab

from kubelite.host.ip import addr_add, bridge, link_up, route_add
from kubelite.proxy.backend import ProxyBackend
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName

__all__ = [
    "CIP",
    "CLIENT_IP",
    "EXT",
    "LB",
    "NODE_IPS",
    "PODS",
    "WEB",
    "WEB_UDP",
    "Cluster",
    "Held",
    "MakeBackend",
    "build",
    "names",
    "stop",
    "web",
]

CIP = "10.96.0.20"
EXT, LB = "192.168.50.7", "192.168.50.8"
CLIENT_IP = "172.31.0.50"
NODE_IPS = {"node-1": "172.31.0.11", "node-2": "172.31.0.12"}
PODS = {"a1": ("node-1", "10.244.1.2"), "b1": ("node-1", "10.244.1.3"),
        "a2": ("node-2", "10.244.2.2"), "b2": ("node-2", "10.244.2.3")}  # fmt: skip
# Real nodes have a default route out of eth0; lab nodes must not, so they get one for the service CIDR.
# Without it a node's own connection to a ClusterIP fails (ENETUNREACH) before the output hook can
# redirect it (userspace), and a pod gets ENETUNREACH instead of "refused" for a service without
# endpoints under iptables (its REJECT is in filter FORWARD, after routing). The device is eth0, where a
# default route points: with cni0 (the old userspace lab's choice) that iptables REJECT never answers and
# the pod's connection times out.
SERVICE_ROUTE = route_add("10.96.0.0/12", dev="eth0")

WEB = ServicePortName("default", "web", "")
WEB_UDP = ServicePortName("default", "web", "", "UDP")

MakeBackend = Callable[[str], ProxyBackend]
"""Makes a node's back end; gets the node's netns name."""

SERVER = r"""
import selectors, socket, sys, time
name, ip = sys.argv[1], sys.argv[2]
sel = selectors.DefaultSelector()
def listen(kind, port):
    s = socket.socket(socket.AF_INET, kind); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    if kind == socket.SOCK_STREAM: s.listen(64)
    sel.register(s, selectors.EVENT_READ); return s
once, udp = listen(socket.SOCK_STREAM, 8080), listen(socket.SOCK_DGRAM, 8080)
echo = listen(socket.SOCK_STREAM, 8081)
held = {}  # echo connection -> bytes received after its last full line
print("ready", flush=True)
end = time.monotonic() + 55
while time.monotonic() < end:
    for key, _ in sel.select(1):
        s = key.fileobj
        if s is once:
            c, peer = s.accept(); c.sendall(f"{name} {peer[0]}".encode()); c.close()
        elif s is udp:
            _, peer = s.recvfrom(100); s.sendto(f"{name} {peer[0]}".encode(), peer)
        elif s is echo:
            c, _ = s.accept(); held[c] = b""; sel.register(c, selectors.EVENT_READ)
        else:
            try:
                data = s.recv(1000)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s); s.close(); held.pop(s, None); continue
            held[s] += data
            while b"\n" in held[s]:
                line, held[s] = held[s].split(b"\n", 1); s.sendall(name.encode() + b" " + line + b"\n")
"""

CLIENT = r"""
import errno, socket, sys
proto, host = sys.argv[1], sys.argv[2]
port, count, sport = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
for _ in range(count):
    try:
        if proto == "tcp":
            c = socket.create_connection((host, port), timeout=2)
            print(c.recv(100).decode()); c.close()
        else:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sport: c.bind(("0.0.0.0", sport))
            for attempt in range(3):
                c.sendto(b"x", (host, port))
                try:
                    print(c.recv(100).decode()); break
                except TimeoutError:
                    if attempt == 2: print("ERR:timeout")
            c.close()
    except OSError as e:
        plain = type(e) is OSError
        print("ERR:" + (errno.errorcode.get(e.errno or 0, "?") if plain else type(e).__name__))
"""

# Holds one TCP connection; stdin: "send TEXT" (a line on the held connection) or "fresh TEXT" (the
# same on a new connection). Prints one reply line per command: the line answering TEXT (late answers
# to earlier lines are skipped), or "ERR:<why>" after 4 s; exits at EOF or after 55 s.
HOLD = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
pending = {}
def exchange(c, text):
    want, end = text.encode(), time.monotonic() + 4
    try:
        c.sendall(want + b"\n")
        while True:
            while b"\n" in pending.get(c, b""):
                line, pending[c] = pending[c].split(b"\n", 1)
                if line.endswith(b" " + want): return line.decode()
            if time.monotonic() >= end: return "ERR:TimeoutError"
            c.settimeout(end - time.monotonic()); chunk = c.recv(100)
            if not chunk: return "ERR:closed"
            pending[c] = pending.get(c, b"") + chunk
    except OSError as e:
        return "ERR:" + type(e).__name__
try:
    held = socket.create_connection((host, port), timeout=3)
except OSError as e:
    print("ERR:" + type(e).__name__, flush=True); sys.exit(0)
print("connected", flush=True)
end = time.monotonic() + 55
for command in sys.stdin:
    verb, _, text = command.strip().partition(" ")
    if verb == "send":
        print(exchange(held, text), flush=True)
    else:
        try:
            with socket.create_connection((host, port), timeout=3) as c: print(exchange(c, text), flush=True)
        except OSError as e:
            print("ERR:" + type(e).__name__, flush=True)
    if time.monotonic() > end: break
"""


def web(spn: ServicePortName = WEB, **kw: object) -> ServicePort:
    """``spn`` on CIP:80 -> target 8080; keywords replace any other field."""
    return replace(ServicePort(spn, (CIP,), 80, spn.protocol, 8080), **kw)  # type: ignore[arg-type]


def names(replies: Iterable[str]) -> list[str]:
    """The answering pods of ``"<pod> <peer IP>"`` replies (errors stay as they are)."""
    return [r.split()[0] if r else r for r in replies]


async def stop(proc: asyncio.subprocess.Process) -> None:
    """End a process this test started, by its PID, and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 5)


@dataclass
class Held:
    """A TCP connection held open by :data:`HOLD` inside a namespace (stop it with :meth:`stop`)."""

    proc: asyncio.subprocess.Process

    async def _ask(self, verb: str, text: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{verb} {text}\n".encode())
        await self.proc.stdin.drain()
        return (await asyncio.wait_for(self.proc.stdout.readline(), 15)).decode().strip()

    async def say(self, text: str) -> str:
        """Send ``text`` as a line on the held connection; the reply line (or ``ERR:<why>``)."""
        return await self._ask("send", text)

    async def fresh(self, text: str) -> str:
        """The same over a new connection to the same address (then closed)."""
        return await self._ask("fresh", text)

    async def stop(self) -> None:
        await stop(self.proc)


@dataclass
class Cluster:
    lab: Lab
    make_backend: MakeBackend
    nodes: dict[str, str] = field(default_factory=dict)
    """node name -> netns"""
    pods: dict[str, str] = field(default_factory=dict)
    """pod name -> netns"""
    client: str = ""
    backends: dict[str, ProxyBackend] = field(default_factory=dict)
    synced: frozenset[ServicePortName] = frozenset()
    """The service ports of the last :meth:`sync`."""

    def netns(self, where: str) -> str:
        """The namespace of ``where``: "client", a node name or a pod name."""
        return self.client if where == "client" else self.nodes.get(where) or self.pods[where]

    async def request(
        self, where: str, proto: str, host: str, port: int, count: int = 1, sport: int = 0
    ) -> list[str]:
        """``count`` requests from ``where``: one reply line each, ``ERR:<why>`` on failure."""
        argv = [sys.executable, "-c", CLIENT, proto, host, str(port), str(count), str(sport)]
        rc, out, err = await self.lab.exec(self.netns(where), argv, seconds=30)
        assert rc == 0, err
        return out.split("\n")[:count]

    async def hold(self, where: str, host: str, port: int) -> Held:
        """Open a TCP connection from ``where`` to ``host:port`` and keep it (see :class:`Held`)."""
        argv = [sys.executable, "-c", HOLD, host, str(port)]
        proc = await self.lab.spawn(self.netns(where), argv, stdin=asyncio.subprocess.PIPE)
        held = Held(proc)
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        if first != "connected":
            await held.stop()
            raise AssertionError(f"could not connect from {where} to {host}:{port}: {first!r}")
        return held

    def state(
        self, node: str, services: Sequence[ServicePort], endpoints: Mapping[ServicePortName, Sequence[str]]
    ) -> ProxyState:
        """What ``node``'s proxy programs: ``endpoints`` names pods, on the service's target port."""
        ports = {sp.name: sp.target_port for sp in services}
        eps = {
            spn: tuple(
                Endpoint(
                    PODS[pod][1],
                    int(ports.get(spn, 8080)),
                    node_name=PODS[pod][0],
                    is_local=PODS[pod][0] == node,
                )
                for pod in pods
            )
            for spn, pods in endpoints.items()
        }
        return ProxyState({sp.name: sp for sp in services}, eps, node_ips=(NODE_IPS[node],))

    def touched(self, services: Sequence[ServicePort]) -> frozenset[ServicePortName]:
        """``services`` and those of the last sync: a ``changed`` set covering both."""
        return self.synced | {sp.name for sp in services}

    async def sync(
        self,
        services: Sequence[ServicePort],
        endpoints: Mapping[ServicePortName, Sequence[str]],
        changed: frozenset[ServicePortName] | None = None,
    ) -> None:
        """Sync every node's back end (``changed=None``: a full sync)."""
        for node, backend in self.backends.items():
            await backend.sync(self.state(node, services, endpoints), changed)
        self.synced = frozenset(sp.name for sp in services)

    async def restart(
        self, node: str, services: Sequence[ServicePort], endpoints: Mapping[ServicePortName, Sequence[str]]
    ) -> None:
        """Replace ``node``'s back end by a new one (it knows nothing) and full-sync it."""
        self.backends[node] = self.make_backend(self.nodes[node])
        await self.backends[node].sync(self.state(node, services, endpoints), None)

    async def cleanup(self) -> None:
        for backend in self.backends.values():
            await backend.cleanup()


async def _pod(cluster: Cluster, name: str) -> asyncio.subprocess.Process:
    lab, (node, address) = cluster.lab, PODS[name]
    ns, gw = await lab.netns(), address.rsplit(".", 1)[0] + ".1"
    hairpin = f"link set dev v{name} type bridge_slave hairpin on"
    await lab.plug(cluster.nodes[node], f"v{name}", ns, bridge="cni0", extra=[hairpin])
    await lab.ip.batch(
        [link_up("lo"), addr_add(f"{address}/24", "eth0"), link_up("eth0"), route_add("default", via=gw)],
        netns=ns,
    )
    cluster.pods[name] = ns
    return await lab.spawn(ns, [sys.executable, "-c", SERVER, name, address])


async def build(lab: Lab, make_backend: MakeBackend) -> Cluster:
    """The lab above, with servers ready and one back end per node (nothing synced yet)."""
    ip = lab.ip
    cluster = Cluster(lab, make_backend)
    segment = await lab.netns()
    await ip.batch([link_up("lo"), bridge("br0"), link_up("br0")], netns=segment)
    for i, node in ((1, "node-1"), (2, "node-2"), (9, "client")):
        ns = await lab.netns()
        await lab.plug(segment, f"s{i}", ns)
        address = CLIENT_IP if node == "client" else NODE_IPS[node]
        lines = [link_up("lo"), addr_add(f"{address}/24", "eth0"), link_up("eth0")]
        if node == "client":
            cluster.client = ns
            await ip.batch([*lines, route_add("192.168.50.0/24", via=NODE_IPS["node-1"])], netns=ns)
            continue
        other = 3 - i
        lines += [
            bridge("cni0"),
            addr_add(f"10.244.{i}.1/24", "cni0"),
            link_up("cni0"),
            route_add(f"10.244.{other}.0/24", via=f"172.31.0.1{other}"),
            SERVICE_ROUTE,
        ]
        await ip.batch(lines, netns=ns)
        rc, _, err = await lab.exec(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        assert rc == 0, err
        cluster.nodes[node] = ns
        cluster.backends[node] = make_backend(ns)
    servers = [await _pod(cluster, name) for name in PODS]
    for proc in servers:  # they start in parallel; wait for each to listen
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ready"
    return cluster
