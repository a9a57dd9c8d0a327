"""``kubelite up``: a server and N agents, each node in its own network namespace, on one machine.

Order of work (see plan.py for the picture):

1. plan and refuse overlaps with the host's routes; write ``up-state.json`` before touching anything;
2. the node network: a bridge in the host namespace, one namespace + veth per node;
3. the API server in this process: on the bridge address for the agents, and on the host's loopback
   for kubectl (a socket made in the original namespace when ``--host-netns`` moved us);
4. one ``kubelite agent`` per node, started with ``nsenter --net`` into the node's namespace;
5. wait for every Node to be Ready, print what to try, wait for SIGINT/SIGTERM;
6. always (also after a failure at any step): stop agents, stop the server, sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.api.resources import INDEX
from kubelite.apiserver.certs import ensure_credentials, kubeconfig, serving_hosts, write_kubeconfig
from kubelite.apiserver.server import RunningServer, ServerOptions
from kubelite.cluster.plan import UpPlan, make_plan, overlapping_routes
from kubelite.cluster.sweep import UpState, sweep
from kubelite.host.ip import RealIp, addr_add, bridge, link_master, link_up, route_add, veth_pair
from kubelite.host.netns import socket_in_netns

__all__ = ["UpError", "UpOptions", "run_down", "run_up"]

log = logging.getLogger(__name__)

STATE_FILE = "up-state.json"


class UpError(RuntimeError):
    """``kubelite up`` cannot go on; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    data_dir: Path
    nodes: int = 1
    overlay: str = "vxlan"
    name: str = "kubelite"
    node_cidr: str = "172.30.0.0/24"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    host_netns: str | None = None
    api_port: int = 6443
    cni: str = "kubelite"
    store: str = "sqlite"
    load_balancer_pool: str = ""
    """Addresses for LoadBalancer Services (default: the top of the node network)."""
    ready_timeout: float = 60.0
    original_netns: str | None = None
    """Where kubectl runs when ``host_netns`` is set: a path such as ``/proc/PID/fd/N``."""
    created_host_netns: bool = False
    agent_args: tuple[str, ...] = ()


def _agent_argv(opts: UpOptions, plan: UpPlan, index: int, kubeconfig_path: Path) -> list[str]:
    node = plan.nodes[index]
    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
    return [
        nsenter,
        f"--net=/run/netns/{node.name}",
        "--",
        sys.executable,
        "-m",
        "kubelite",
        "agent",
        "--kubeconfig",
        str(kubeconfig_path),
        "--node-name",
        node.name,
        "--node-ip",
        node.ip,
        "--data-dir",
        str(opts.data_dir / "nodes" / node.name),
        "--overlay",
        opts.overlay,
        "--uplink",
        "eth0",
        "--cni",
        opts.cni,
        "--netns-prefix",
        node.name,
        "--kill-pods-on-exit",
        "--cluster-cidr",
        opts.cluster_cidr,
        "--service-cidr",
        opts.service_cidr,
        *opts.agent_args,
    ]


async def _build_node_network(ip: RealIp, plan: UpPlan, host_netns: str | None) -> None:
    gw = f"{plan.gateway}/{plan.prefixlen}"
    await ip.batch([bridge(plan.bridge), addr_add(gw, plan.bridge), link_up(plan.bridge)], netns=host_netns)
    for node in plan.nodes:
        await ip.add_netns(node.name)
        await ip.batch(
            [
                veth_pair(node.host_veth, "eth0", node.name),
                link_master(node.host_veth, plan.bridge),
                link_up(node.host_veth),
            ],
            netns=host_netns,
        )
        # The service CIDR needs a route for the node's own connections to reach the proxy's
        # output hook (routing comes first); DNAT then re-routes them to the endpoint. No default
        # route: a node namespace has no way out of the lab.
        node_lines = [
            link_up("lo"),
            addr_add(f"{node.ip}/{plan.prefixlen}", "eth0"),
            link_up("eth0"),
            route_add(plan.service_cidr, dev="eth0"),
        ]
        await ip.batch(node_lines, netns=node.name)


async def _loopback_listener(opts: UpOptions) -> socket.socket:
    """127.0.0.1:<port> in the namespace kubectl runs in (the host's), even when we moved away."""
    if opts.original_netns:
        sock = await socket_in_netns(opts.original_netns)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", opts.api_port))
    except OSError as exc:
        sock.close()
        raise UpError(
            f"cannot listen on 127.0.0.1:{opts.api_port}: {exc}; choose another --api-port"
        ) from None
    sock.listen(512)
    return sock


async def _wait_ready(
    server: RunningServer, plan: UpPlan, agents: list[asyncio.subprocess.Process], seconds: float
) -> None:
    from kubelite.client.local import LocalClient

    assert server.rest is not None
    client = LocalClient(server.rest)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    want = {n.name for n in plan.nodes}
    while True:
        for node, proc in zip(plan.nodes, agents, strict=True):
            if proc.returncode is not None:
                raise UpError(f"the agent of {node.name} exited with code {proc.returncode}; see its log")
        nodes = (await client.list(INDEX.by_kind[("v1", "Node")])).items
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if (n.get("spec") or {}).get("podCIDR")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        }
        if want <= ready:
            return
        if loop.time() > deadline:
            missing = ", ".join(sorted(want - ready))
            raise UpError(f"nodes not Ready after {seconds:.0f} s: {missing}; see their agent logs")
        await asyncio.sleep(0.1)


def _summary(opts: UpOptions, plan: UpPlan, port: int) -> str:
    kc = opts.data_dir / "kubeconfig"
    nodes = "\n".join(f"  {n.name:<20} {n.ip:<15} netns {n.name}" for n in plan.nodes)
    return (
        f"kubelite is up: {len(plan.nodes)} node(s), {opts.overlay} between nodes, API on 127.0.0.1:{port}\n"
        f"{nodes}\n"
        f"Try:\n"
        f"  export KUBECONFIG={kc}\n"
        f"  kubectl get nodes -o wide\n"
        f"  kubectl run web --image=registry.k8s.io/e2e-test-images/agnhost:2.47 -- netexec\n"
        f"  kubectl get pods -o wide; ip netns exec {plan.nodes[0].name} curl http://<pod IP>:8080/hostname\n"
        f"  ip netns exec {plan.nodes[0].name} ip route   # the node's view: cni0, routes to other nodes\n"
        f"Ctrl-C stops the cluster and removes every namespace, link and process it made."
    )


async def run_up(opts: UpOptions, stop: asyncio.Event, *, out: Callable[[str], None] = print) -> None:
    plan = make_plan(
        name=opts.name,
        nodes=opts.nodes,
        node_cidr=opts.node_cidr,
        cluster_cidr=opts.cluster_cidr,
        service_cidr=opts.service_cidr,
    )
    ip = RealIp()
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    state_path = opts.data_dir / STATE_FILE
    if state_path.exists():
        raise UpError(
            f"{state_path} exists: a cluster from this data dir is running or was killed; "
            f"run `kubelite down --data-dir {opts.data_dir}` first"
        )
    taken = [n for n in await ip.list_netns() if n.startswith(plan.netns_prefix)]
    if taken:
        raise UpError(
            f"network namespaces {', '.join(taken)} exist: a cluster named {opts.name!r} is running; "
            "use --name to start another"
        )
    problems = overlapping_routes(plan, await ip.routes())
    if problems:
        raise UpError(
            "; ".join(problems) + "; choose other ranges (--node-cidr, --cluster-cidr, --service-cidr)"
        )
    state = UpState(
        name=opts.name,
        host_netns=opts.host_netns,
        created_host_netns=opts.created_host_netns,
        bridge=plan.bridge,
        netns_prefix=plan.netns_prefix,
    )
    state.save(state_path)
    server: RunningServer | None = None
    agents: list[asyncio.subprocess.Process] = []
    logs: list[object] = []
    try:
        await _build_node_network(ip, plan, None)
        listener = await _loopback_listener(opts)
        port = int(listener.getsockname()[1])
        server = RunningServer(
            ServerOptions(
                data_dir=opts.data_dir,
                listen=f"{plan.gateway}:{port if opts.api_port == 0 else opts.api_port}",
                store=opts.store,
                service_cidr=opts.service_cidr,
                cluster_cidr=opts.cluster_cidr,
                advertise_address=plan.gateway,
                load_balancer_pool=opts.load_balancer_pool or plan.lb_pool,
                extra_sockets=(listener,),
                kubeconfig_server=f"https://127.0.0.1:{port}",
            )
        )
        await server.start()
        creds = ensure_credentials(opts.data_dir, serving_hosts(plan.gateway))
        agent_kc = opts.data_dir / "agent-kubeconfig"
        write_kubeconfig(agent_kc, kubeconfig(creds, server.url))
        for i, node in enumerate(plan.nodes):
            node_dir = opts.data_dir / "nodes" / node.name
            node_dir.mkdir(parents=True, exist_ok=True)
            log_file = _open_log(node_dir / "agent.log")
            logs.append(log_file)
            proc = await asyncio.create_subprocess_exec(
                *_agent_argv(opts, plan, i, agent_kc),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
            agents.append(proc)
            state.pids.append(proc.pid)
            state.save(state_path)
        await _wait_ready(server, plan, agents, opts.ready_timeout)
        out(_summary(opts, plan, port))
        await stop.wait()
    finally:
        await _stop_agents(agents)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
        for f in logs:
            with contextlib.suppress(Exception):
                f.close()  # type: ignore[attr-defined]
        left = await sweep(state, ip)
        for problem in left:
            log.warning("%s", problem)
        if not left:
            with contextlib.suppress(OSError):
                state_path.unlink()


def _open_log(path: Path) -> Any:
    return open(path, "ab")


async def _stop_agents(agents: list[asyncio.subprocess.Process], grace: float = 20.0) -> None:
    """SIGTERM (the agents remove their pods), then SIGKILL whatever is left after ``grace``."""
    for proc in agents:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    waits = [asyncio.wait_for(p.wait(), grace) for p in agents]
    for proc, result in zip(agents, await asyncio.gather(*waits, return_exceptions=True), strict=True):
        if isinstance(result, BaseException):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()


async def run_down(data_dir: Path) -> list[str]:
    """Clean up after an ``up`` that could not (killed): what ``up-state.json`` records."""
    state_path = data_dir / STATE_FILE
    if not state_path.exists():
        raise UpError(f"{state_path} does not exist: no cluster from this data dir to remove")
    state = UpState.load(state_path)
    problems = await sweep(state, RealIp())
    if not problems:
        state_path.unlink()
    return problems


def prepare_host_netns(name: str | None) -> tuple[str | None, bool]:
    """Before the event loop starts: create ``name`` if missing and move this process into it.

    Returns (a path to the original namespace for the loopback listener, whether we created it).
    """
    if not name:
        return None, False
    import subprocess

    from kubelite.host.netns import enter_netns

    ip = shutil.which("ip") or "/usr/sbin/ip"
    existing = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=True).stdout
    created = name not in [line.split()[0] for line in existing.splitlines() if line.strip()]
    if created:
        subprocess.run([ip, "netns", "add", name], check=True, capture_output=True)
        subprocess.run([ip, "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
    original_fd = os.open("/proc/self/ns/net", os.O_RDONLY)  # kept open for the process's life
    enter_netns(name)
    return f"/proc/{os.getpid()}/fd/{original_fd}", created
