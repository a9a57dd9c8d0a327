"""kubelite.cni against the real kernel: a lab namespace plays the node, others are pods.

kubelite's plugins run in-process (``InProcessCni(host_netns=node)``: ``ip -n node``, nft through
``nsenter --net``) and as executables, and the reference plugins from /usr/lib/cni run through
``ExecCni(host_netns=node)`` (each plugin process is started inside the node namespace). Every rule
and link lives in lab namespaces; the root namespace's links, addresses and routes are checked by
``root_unchanged`` and its nft ruleset by ``root_nft_unchanged``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab import Lab, kernel_skip_reason, lab_fixture, root_unchanged  # noqa: F401

from kubelite.cni import (
    CniError,
    CniRunner,
    ExecCni,
    InProcessCni,
    NetworkConfigList,
    PortMapping,
    RuntimeConf,
    install_plugin_executables,
)
from kubelite.cni.hostlocal import allocations_of
from kubelite.cni.nftrules import HOSTPORT_TABLE, hostport_chains
from kubelite.host.nft import RealNft

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

REFERENCE_DIR = Path("/usr/lib/cni")
SUBNET = "10.123.1"

SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", port)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", port))
def answer_udp():
    for _ in range(100):
        data, peer = udp.recvfrom(100)
        udp.sendto(f"{name} udp from {peer[0]}".encode(), peer)
threading.Thread(target=answer_udp, daemon=True).start()
print("ready", flush=True)
for _ in range(100):
    conn, peer = tcp.accept()
    conn.sendall(f"{name} tcp from {peer[0]}".encode())
    conn.close()
"""

CLIENT = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    s = socket.create_connection((host, port), timeout=2)
    print(s.recv(200).decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(b"hi", (host, port))
    print(s.recvfrom(200)[0].decode())
"""


@pytest.fixture(autouse=True)
def root_nft_unchanged() -> Iterator[None]:
    """The root namespace's nft ruleset is only read, before and after."""
    nft = shutil.which("nft")
    if nft is None or kernel_skip_reason() is not None:
        yield
        return

    def ruleset() -> str:
        return subprocess.run([nft, "list", "ruleset"], capture_output=True, text=True, timeout=10).stdout

    before = ruleset()
    yield
    assert ruleset() == before, "the root namespace's nft ruleset changed"


def conflist(data_dir: Path, *, portmap: bool = True, version: str = "1.0.0") -> NetworkConfigList:
    plugins: list[dict[str, Any]] = [
        {"type": "loopback"},
        {
            "type": "bridge",
            "bridge": "cni0",
            "isDefaultGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": f"{SUBNET}.0/24"}]],
                "dataDir": str(data_dir),
            },
        },
    ]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return NetworkConfigList.from_json({"cniVersion": version, "name": "klnet", "plugins": plugins})


async def ping(lab: Lab, netns: str, address: str) -> tuple[int, str]:
    rc, out, err = await lab.exec(netns, ["ping", "-n", "-c", "1", "-W", "2", address])
    return rc, out + err


async def talk(lab: Lab, netns: str, kind: str, host: str, port: int) -> str:
    rc, out, err = await lab.exec(netns, [sys.executable, "-c", CLIENT, kind, host, str(port)], seconds=8)
    return out.strip() if rc == 0 else f"failed: {err.strip().splitlines()[-1] if err.strip() else rc}"


async def serve(lab: Lab, netns: str, name: str, port: int = 80) -> None:
    server = await lab.spawn(netns, [sys.executable, "-c", SERVER, name, str(port)])
    assert server.stdout is not None
    line = await asyncio.wait_for(server.stdout.readline(), 10)
    assert line.strip() == b"ready"


async def node_links(lab: Lab, node: str) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in await lab.ip.links(node)}


async def two_pods_work(lab: Lab, cni: CniRunner, net: NetworkConfigList, node: str) -> None:
    """ADD two pods; they reach each other and the gateway; CHECK; DEL (twice) cleans up."""
    pod_a, pod_b = await lab.netns(), await lab.netns()
    rt_a, rt_b = (
        RuntimeConf("pod-a-1", f"/run/netns/{pod_a}"),
        RuntimeConf("pod-b-1", f"/var/run/netns/{pod_b}"),
    )
    res_a = await cni.add(net, rt_a)
    res_b = await cni.add(net, rt_b)
    ip_a, ip_b = (str(r.ips[0].address.ip) for r in (res_a, res_b))
    assert {ip_a, ip_b} == {f"{SUBNET}.2", f"{SUBNET}.3"}
    assert [i.name for i in res_a.interfaces][::2] == ["cni0", "eth0"]
    assert res_a.interfaces[2].sandbox == rt_a.netns and res_a.ips[0].interface == 2

    links = await node_links(lab, node)
    veth_a = res_a.interfaces[1].name
    assert links[veth_a]["master"] == "cni0" and veth_a.startswith("veth") and len(veth_a) == 12
    assert links["cni0"]["address"] == res_a.interfaces[0].mac == res_b.interfaces[0].mac

    for netns, target in ((pod_a, ip_b), (pod_b, ip_a), (pod_a, f"{SUBNET}.1"), (pod_b, "127.0.0.1")):
        rc, output = await ping(lab, netns, target)
        assert rc == 0, output
    await serve(lab, pod_b, "b", 7000)
    assert await talk(lab, pod_a, "tcp", ip_b, 7000) == f"b tcp from {ip_a}"

    await cni.check(net, rt_a)
    await cni.check(net, rt_b)

    data_dir = Path(net.plugins[1].raw["ipam"]["dataDir"]) / net.name
    await cni.delete(net, rt_a)
    assert veth_a not in await node_links(lab, node)
    assert ip_a not in allocations_of(data_dir)
    assert "eth0" not in {link["ifname"] for link in await lab.ip.links(pod_a)}
    await cni.delete(net, rt_a)  # twice is fine
    await lab.delete(pod_a)
    await cni.delete(net, rt_a)  # and with the namespace gone
    rc, _ = await ping(lab, pod_b, f"{SUBNET}.1")
    assert rc == 0
    await cni.delete(net, rt_b)
    assert set(allocations_of(data_dir)) == set()


async def test_in_process_two_pods(lab: Lab, tmp_path: Path) -> None:
    node = await lab.netns()
    cni = InProcessCni(host_netns=node)
    await two_pods_work(lab, cni, conflist(tmp_path), node)
    assert (await lab.exec(node, ["cat", "/proc/sys/net/ipv4/ip_forward"]))[1].strip() == "1"


async def test_reference_plugins_same_conflist(lab: Lab, tmp_path: Path) -> None:
    if not (REFERENCE_DIR / "bridge").exists():
        pytest.skip("the reference plugins are not installed (Debian package containernetworking-plugins)")
    node = await lab.netns()
    # The reference portmap's CHECK looks for ip6tables chains it never made: check without it.
    await two_pods_work(
        lab, ExecCni([REFERENCE_DIR], host_netns=node), conflist(tmp_path, portmap=False), node
    )
    cni = ExecCni([REFERENCE_DIR], host_netns=node)
    pod = await lab.netns()
    net = conflist(tmp_path)
    rt = RuntimeConf("pod-c-1", f"/run/netns/{pod}", port_mappings=(PortMapping(8080, 80),))
    res = await cni.add(net, rt)
    await serve(lab, pod, "c")
    await lab.ip.batch(["link set dev lo up"], netns=node)
    assert (await talk(lab, node, "tcp", "127.0.0.1", 8080)).startswith("c tcp from")
    assert str(res.ips[0].address.ip) in allocations_of(tmp_path / "klnet")
    await cni.delete(net, rt)


async def test_kubelite_plugins_as_executables(lab: Lab, tmp_path: Path) -> None:
    node = await lab.netns()
    bin_dir = tmp_path / "bin"
    install_plugin_executables(bin_dir)
    await two_pods_work(lab, ExecCni([bin_dir], host_netns=node), conflist(tmp_path / "data"), node)


async def test_errors_come_back_as_cni_errors(lab: Lab, tmp_path: Path) -> None:
    node = await lab.netns()
    bin_dir = tmp_path / "bin"
    install_plugin_executables(bin_dir)
    bad = NetworkConfigList.from_json(
        {
            "cniVersion": "1.0.0",
            "name": "bad",
            "plugins": [
                {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/33"}]]}}
            ],
        }
    )
    rt = RuntimeConf("x", f"/run/netns/{await lab.netns()}")
    for runner in (InProcessCni(host_netns=node), ExecCni([bin_dir], host_netns=node)):
        with pytest.raises(CniError) as info:
            await runner.add(bad, rt)
        assert info.value.code == 7
        assert 'bridge plugin: ipam.ranges[0][0].subnet "10.1.0.0/33" is not a CIDR' in str(info.value)
    missing = RuntimeConf("y", "/run/netns/kltest-no-such-namespace")
    with pytest.raises(CniError) as info:
        await InProcessCni(host_netns=node).add(conflist(tmp_path), missing)
    assert info.value.code == 3


async def connect_outside(lab: Lab, node: str) -> str:
    """A namespace wired to the node by a veth: node 192.168.77.1 and .3, outside 192.168.77.2."""
    outside = await lab.netns()
    await lab.ip.batch(
        [
            f"link add n-ext type veth peer name ext0 netns {outside}",
            "addr add 192.168.77.1/24 dev n-ext",
            "addr add 192.168.77.3/24 dev n-ext",
            "link set dev n-ext up",
            "link set dev lo up",
        ],
        netns=node,
    )
    await lab.ip.batch(
        ["addr add 192.168.77.2/24 dev ext0", "link set dev ext0 up", "link set dev lo up"], netns=outside
    )
    return outside


async def test_portmap_reaches_pods_through_host_ports(lab: Lab, tmp_path: Path) -> None:
    node = await lab.netns()
    outside = await connect_outside(lab, node)
    pod_a, pod_b = await lab.netns(), await lab.netns()
    # Pod B's namespace is given by a /proc path (not /run/netns): its side runs through nsenter.
    holder = await lab.spawn(pod_b, ["sleep", "60"])
    cni = InProcessCni(host_netns=node)
    net = conflist(tmp_path)
    rt_a = RuntimeConf(
        "pod-a-1", f"/run/netns/{pod_a}", port_mappings=(PortMapping(8080, 80, "tcp", "192.168.77.1"),)
    )
    rt_b = RuntimeConf(
        "pod-b-1",
        f"/proc/{holder.pid}/ns/net",
        port_mappings=(
            PortMapping(8080, 80, "tcp", "192.168.77.3"),  # same host port, other host IP
            PortMapping(8080, 80, "udp"),  # same host port, other protocol
            PortMapping(9090, 80),  # any node address, 127.0.0.1 included
        ),
    )
    ip_a = str((await cni.add(net, rt_a)).ips[0].address.ip)
    ip_b = str((await cni.add(net, rt_b)).ips[0].address.ip)
    await serve(lab, pod_a, "a")
    await serve(lab, pod_b, "b")

    assert await talk(lab, outside, "tcp", "192.168.77.1", 8080) == "a tcp from 192.168.77.2"
    assert await talk(lab, outside, "tcp", "192.168.77.3", 8080) == "b tcp from 192.168.77.2"
    assert await talk(lab, outside, "udp", "192.168.77.1", 8080) == "b udp from 192.168.77.2"
    assert await talk(lab, outside, "tcp", "192.168.77.1", 9090) == "b tcp from 192.168.77.2"
    # From the node itself: its own address, and loopback (route_localnet + masquerade).
    assert (await talk(lab, node, "tcp", "192.168.77.3", 9090)).startswith("b tcp from")
    assert await talk(lab, node, "tcp", "127.0.0.1", 9090) == f"b tcp from {SUBNET}.1"
    # Hairpin: B reaches itself through its host port; A (same bridge) reaches B too.
    assert await talk(lab, pod_b, "tcp", "192.168.77.1", 9090) == f"b tcp from {SUBNET}.1"
    assert await talk(lab, pod_a, "tcp", "192.168.77.1", 9090) == f"b tcp from {SUBNET}.1"
    # Masquerade for pod traffic leaving the pod subnet: the outside sees the node's address.
    await serve(lab, outside, "ext", 7100)
    assert await talk(lab, pod_a, "tcp", "192.168.77.2", 7100) == "ext tcp from 192.168.77.1"

    await cni.check(net, rt_a)
    await cni.check(net, rt_b)
    nft = RealNft()
    await cni.delete(net, rt_a)
    listing = await nft.list_table("ip", HOSTPORT_TABLE, netns=node) or ""
    assert hostport_chains("klnet", "pod-a-1")[0] not in listing
    assert hostport_chains("klnet", "pod-b-1")[0] in listing
    assert (await talk(lab, outside, "tcp", "192.168.77.1", 8080)).startswith("failed")
    assert await talk(lab, outside, "tcp", "192.168.77.3", 8080) == "b tcp from 192.168.77.2"
    await cni.delete(net, rt_b)
    listing = await nft.list_table("ip", HOSTPORT_TABLE, netns=node) or ""
    assert "pod-" not in listing
    assert ip_a != ip_b


async def test_concurrent_adds_share_one_bridge(lab: Lab, tmp_path: Path) -> None:
    node = await lab.netns()
    pods = [await lab.netns() for _ in range(6)]
    cni = InProcessCni(host_netns=node)
    net = conflist(tmp_path, portmap=False)
    rts = [RuntimeConf(f"pod-{i}", f"/run/netns/{pod}") for i, pod in enumerate(pods)]
    results = await asyncio.gather(*(cni.add(net, rt) for rt in rts))
    addresses = {str(r.ips[0].address.ip) for r in results}
    assert len(addresses) == len(pods)
    assert len({r.interfaces[0].mac for r in results}) == 1
    for pod in pods:
        rc, output = await ping(lab, pod, f"{SUBNET}.1")
        assert rc == 0, output
    await asyncio.gather(*(cni.delete(net, rt) for rt in rts))
    assert allocations_of(tmp_path / "klnet") == {}
    assert not [name for name in await node_links(lab, node) if name.startswith("veth")]
