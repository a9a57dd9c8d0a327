"""kubelite.host.ip against the real kernel: namespaces, a bridge, veths, real packets.

Everything lives in namespaces made by the lab (``kltest-<pid>-<n>``); the root network namespace's
links, addresses and routes are snapshotted around every test and must be unchanged.
"""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest
from lab import Lab, kernel_skip_reason, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import (
    HostCommandError,
    IpRunner,
    RealIp,
    addr_add,
    bridge,
    link_master,
    link_up,
    route_add,
    veth_pair,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


async def _plumb_node(ip: IpRunner, node: str) -> None:
    await ip.batch(
        [link_up("lo"), bridge("cni0"), addr_add("10.244.1.1/24", "cni0"), link_up("cni0")], netns=node
    )


async def _plumb_pod(ip: IpRunner, node: str, pod: str, host_if: str, cidr: str) -> None:
    await ip.batch(
        [veth_pair(host_if, "eth0", pod), link_master(host_if, "cni0"), link_up(host_if)], netns=node
    )
    await ip.batch(
        [link_up("lo"), addr_add(cidr, "eth0"), link_up("eth0"), route_add("default", via="10.244.1.1")],
        netns=pod,
    )


async def _ping(lab: Lab, netns: str, address: str) -> tuple[int, str]:
    if shutil.which("ping"):
        rc, out, err = await lab.exec(netns, ["ping", "-n", "-c", "1", "-W", "2", address])
        return rc, out + err
    # No iputils here: a raw-socket ICMP echo in Python (we are root).
    script = r"""
import socket, struct, sys, os
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
hdr = struct.pack('!BBHHH', 8, 0, 0, os.getpid() & 0xffff, 1) + b'kubelite'
pkt = hdr[:2] + struct.pack('!H', csum(hdr)) + hdr[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)
s.sendto(pkt, (sys.argv[1], 0))
while True:
    data, peer = s.recvfrom(1500)
    if peer[0] == sys.argv[1] and data[20] == 0:
        print('reply from', peer[0]); break
"""
    rc, out, err = await lab.exec(netns, [sys.executable, "-c", script, address])
    return rc, out + err


ECHO_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print('ready', flush=True)
conn, peer = srv.accept()
data = conn.recv(1024)
conn.sendall(b'echo:' + data + b' from:' + peer[0].encode())
conn.close()
"""

ECHO_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.sendall(b'hello'); c.shutdown(socket.SHUT_WR)
print(c.recv(1024).decode())
"""


async def test_two_pods_on_a_bridge_exchange_packets(lab: Lab) -> None:
    ip = lab.ip
    node, pod_a, pod_b = await lab.netns(), await lab.netns(), await lab.netns()
    await _plumb_node(ip, node)
    await _plumb_pod(ip, node, pod_a, "vetha", "10.244.1.2/24")
    await _plumb_pod(ip, node, pod_b, "vethb", "10.244.1.3/24")

    names = set(await ip.list_netns())
    assert {node, pod_a, pod_b} <= names

    node_links = {link["ifname"]: link for link in await ip.links(node)}
    assert node_links["vetha"]["master"] == "cni0"
    assert node_links["vethb"]["master"] == "cni0"
    assert "UP" in node_links["cni0"]["flags"]
    addrs = {a["ifname"]: a for a in await ip.addresses(pod_a)}
    assert [(i["local"], i["prefixlen"]) for i in addrs["eth0"]["addr_info"] if i["family"] == "inet"] == [
        ("10.244.1.2", 24)
    ]
    routes = await ip.routes(pod_a)
    assert {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"}.items() <= next(
        r for r in routes if r["dst"] == "default"
    ).items()

    rc, output = await _ping(lab, pod_a, "10.244.1.3")
    assert rc == 0, output
    rc, output = await _ping(lab, pod_b, "10.244.1.1")  # the bridge's gateway address
    assert rc == 0, output

    server = await lab.spawn(pod_b, [sys.executable, "-c", ECHO_SERVER, "10.244.1.3", "7777"])
    assert server.stdout is not None
    assert (await server.stdout.readline()).strip() == b"ready"
    rc, out, err = await lab.exec(pod_a, [sys.executable, "-c", ECHO_CLIENT, "10.244.1.3", "7777"])
    assert rc == 0, err
    assert out.strip() == "echo:hello from:10.244.1.2"


async def test_failing_batch_names_the_command_and_leaves_nothing() -> None:
    if (reason := kernel_skip_reason()) is not None:
        pytest.skip(reason)
    async with Lab() as lab:
        ns = await lab.netns()
        with pytest.raises(HostCommandError) as info:
            await lab.ip.batch(
                [bridge("br-test"), addr_add("10.244.9.1/24", "nosuchdev"), link_up("br-test")], netns=ns
            )
        err = info.value
        assert err.line == 2
        assert err.command == f"ip -n {ns} addr add 10.244.9.1/24 dev nosuchdev"
        assert "nosuchdev" in str(err) and "Cannot find device" in err.stderr
        # ip -batch stops at the failure: line 1 applied, line 3 not.
        links = {link["ifname"]: link for link in await lab.ip.links(ns)}
        assert "br-test" in links and "UP" not in links["br-test"]["flags"]

        with pytest.raises(HostCommandError, match="nosuchdev"):
            await lab.ip.run(["link", "set", "dev", "nosuchdev", "up"], netns=ns)
    assert ns not in await RealIp().list_netns()


async def test_lab_cleans_up_after_a_failure() -> None:
    if (reason := kernel_skip_reason()) is not None:
        pytest.skip(reason)
    lab = Lab()
    started: list[tuple[str, asyncio.subprocess.Process]] = []

    async def fail_inside_the_lab() -> None:
        async with lab:
            ns = await lab.netns()
            started.append((ns, await lab.spawn(ns, ["sleep", "60"])))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside_the_lab()
    [(ns, sleeper)] = started
    assert lab.namespaces == [] and lab.processes == []
    assert sleeper.returncode is not None  # killed by PID and reaped
    assert ns not in await RealIp().list_netns()


async def test_deleting_a_pod_netns_removes_its_veth(lab: Lab) -> None:
    node, pod = await lab.netns(), await lab.netns()
    await _plumb_node(lab.ip, node)
    await _plumb_pod(lab.ip, node, pod, "vethp", "10.244.1.5/24")
    assert "vethp" in {link["ifname"] for link in await lab.ip.links(node)}
    await lab.delete(pod)
    # The kernel dismantles a deleted namespace in a work queue: the veth goes away shortly after.
    for _ in range(100):
        if "vethp" not in {link["ifname"] for link in await lab.ip.links(node)}:
            break
        await asyncio.sleep(0.05)
    assert "vethp" not in {link["ifname"] for link in await lab.ip.links(node)}
    assert pod not in await lab.ip.list_netns()


async def test_netns_add_twice_fails(lab: Lab) -> None:
    ns = await lab.netns()
    with pytest.raises(HostCommandError, match="netns add"):
        await lab.ip.add_netns(ns)
