"""kubelite.host.netns: namespaces made without a process, sockets made inside another namespace."""

from __future__ import annotations

import asyncio
import os

import pytest
from lab import PREFIX, Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import HostCommandError, RealIp, addr_add, link_up
from kubelite.host.netns import in_process_netns_ready, socket_in_netns

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


async def test_add_and_delete_without_a_process(lab: Lab) -> None:
    await lab.netns()  # `ip netns add` has set /run/netns up for in-process use
    assert in_process_netns_ready()
    ip = RealIp()
    name = f"{PREFIX}inproc"
    await ip.add_netns(name)
    try:
        assert name in await ip.list_netns()
        with pytest.raises(HostCommandError, match="netns add"):
            await ip.add_netns(name)
        await ip.batch([link_up("lo"), addr_add("10.9.0.1/32", "lo")], netns=name)
        addrs = await ip.addresses(netns=name)
        assert any(a.get("local") == "10.9.0.1" for item in addrs for a in item.get("addr_info", []))
    finally:
        await ip.delete_netns(name)
    assert name not in await ip.list_netns()
    assert name not in os.listdir("/run/netns")
    with pytest.raises(HostCommandError, match="netns del"):
        await ip.delete_netns(name)


async def test_a_socket_made_in_a_lab_namespace_listens_there(lab: Lab) -> None:
    ns = await lab.netns()
    await lab.ip.batch([link_up("lo")], netns=ns)
    sock = await socket_in_netns(ns)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    server = await asyncio.start_server(lambda r, w: (w.write(b"from the lab\n"), w.close()), sock=sock)
    try:
        # Inside the lab namespace that loopback port is ours.
        client = (
            f"import socket; s = socket.create_connection(('127.0.0.1', {port})); "
            "print(s.recv(64).decode(), end='')"
        )
        code, out, _err = await lab.exec(ns, ["python3", "-c", client])
        assert (code, out) == (0, "from the lab\n")
    finally:
        server.close()
        await server.wait_closed()
