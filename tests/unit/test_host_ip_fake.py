"""kubelite.host.ip without root: command builders and the recording FakeIp."""

from __future__ import annotations

import json

import pytest

from kubelite.host.ip import (
    FakeIp,
    HostCommandError,
    IpCall,
    IpRunner,
    RealIp,
    addr_add,
    bridge,
    link_master,
    link_up,
    route_add,
    validate_ifname,
    validate_netns,
    veth_pair,
)


def test_builders_produce_batch_lines() -> None:
    assert veth_pair("veth1", "eth0", "pod-1") == "link add veth1 type veth peer name eth0 netns pod-1"
    assert veth_pair("veth1", "eth0") == "link add veth1 type veth peer name eth0"
    assert bridge("cni0") == "link add name cni0 type bridge"
    assert addr_add("10.244.1.1/24", "cni0") == "addr add 10.244.1.1/24 dev cni0"
    assert addr_add("fd00::1/64", "eth0") == "addr add fd00::1/64 dev eth0"
    assert link_up("eth0") == "link set dev eth0 up"
    assert link_master("veth1", "cni0") == "link set dev veth1 master cni0"


def test_route_builder() -> None:
    assert route_add("default", via="10.244.1.1") == "route add default via 10.244.1.1"
    assert route_add("10.244.2.0/24", via="192.168.50.3") == "route add 10.244.2.0/24 via 192.168.50.3"
    assert route_add("10.244.2.0/24", dev="cni0") == "route add 10.244.2.0/24 dev cni0"
    assert (
        route_add("10.244.2.0/24", via="10.244.2.0", dev="flannel.1", onlink=True)
        == "route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: route_add("10.244.2.0/24"), "via"),
        (lambda: route_add("10.244.2.0/24", via="10.0.0.1", onlink=True), "onlink"),
        (lambda: route_add("10.244.2.1/24", dev="eth0"), "host bits"),
        (lambda: route_add("default", via="not-an-ip"), "does not appear"),
        (lambda: addr_add("10.244.1.1", "eth0"), "prefix length"),
        (lambda: addr_add("10.244.1.300/24", "eth0"), "does not appear"),
        (lambda: link_up("a-name-longer-than-15"), "interface name"),
        (lambda: link_up("eth0 down; link del lo"), "interface name"),
        (lambda: link_up("eth0\nlink del lo"), "interface name"),
        (lambda: veth_pair("veth1", "eth0", "../etc"), "namespace"),
        (lambda: veth_pair("veth1", "eth0", "a b"), "namespace"),
    ],
)
def test_builders_reject_bad_arguments(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_validators() -> None:
    assert validate_ifname("flannel.1") == "flannel.1"
    assert validate_ifname("a" * 15) == "a" * 15
    assert validate_netns("kltest-1-2") == "kltest-1-2"
    for bad in ("", ".", "..", "a/b", "x y"):
        with pytest.raises(ValueError, match="namespace"):
            validate_netns(bad)


def test_runners_implement_the_protocol() -> None:
    assert isinstance(FakeIp(), IpRunner)
    assert isinstance(RealIp("/nonexistent/ip"), IpRunner)


async def test_fake_records_batches_and_runs() -> None:
    ip = FakeIp()
    await ip.batch([bridge("cni0"), link_up("cni0")], netns="node-1")
    await ip.batch([])  # nothing to do: not recorded
    await ip.run(["link", "show"])
    assert ip.calls == [
        IpCall("batch", "node-1", ("link add name cni0 type bridge", "link set dev cni0 up")),
        IpCall("run", None, ("link show",)),
    ]
    assert ip.commands == [
        "ip -n node-1 link add name cni0 type bridge",
        "ip -n node-1 link set dev cni0 up",
        "ip link show",
    ]


async def test_fake_rejects_multi_line_commands() -> None:
    ip = FakeIp()
    with pytest.raises(ValueError, match="one non-empty line"):
        await ip.batch(["link show\nlink del lo"])
    with pytest.raises(ValueError, match="one non-empty line"):
        await ip.batch(["   "])
    with pytest.raises(ValueError, match="namespace"):
        await ip.batch([link_up("lo")], netns="../x")
    assert ip.calls == []


async def test_fake_json_helpers_use_canned_responses() -> None:
    links = [{"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"]}]
    ip = FakeIp(responses={"-j link show": json.dumps(links)})
    assert await ip.links("node-1") == links
    assert await ip.addresses() == []
    assert await ip.routes() == []
    assert ip.commands == ["ip -n node-1 -j link show", "ip -j addr show", "ip -j route show"]


async def test_fake_json_helper_rejects_non_list() -> None:
    ip = FakeIp(responses={"-j route show": '{"dst": "default"}'})
    with pytest.raises(HostCommandError, match="JSON list"):
        await ip.routes()


async def test_fake_tracks_namespaces() -> None:
    ip = FakeIp()
    await ip.add_netns("pod-a")
    await ip.add_netns("pod-b")
    with pytest.raises(HostCommandError, match="netns add pod-a"):
        await ip.add_netns("pod-a")
    await ip.delete_netns("pod-a")
    with pytest.raises(HostCommandError, match="netns del pod-a"):
        await ip.delete_netns("pod-a")
    assert await ip.list_netns() == ["pod-b"]
    assert ip.commands[:2] == ["ip netns add pod-a", "ip netns add pod-b"]


async def test_fake_injected_failure_names_the_line() -> None:
    def fail(netns: str | None, line: str) -> str | None:
        return 'Cannot find device "nosuch"' if "nosuch" in line else None

    ip = FakeIp(fail=fail)
    with pytest.raises(HostCommandError) as info:
        await ip.batch([link_up("lo"), addr_add("10.0.0.1/24", "nosuch")], netns="ns1")
    assert info.value.command == "ip -n ns1 addr add 10.0.0.1/24 dev nosuch"
    assert info.value.line == 2
    assert info.value.netns == "ns1"
    assert "Cannot find device" in str(info.value)


def test_error_message() -> None:
    err = HostCommandError("ip link set dev x up", 'Cannot find device "x"\n', returncode=1)
    assert str(err) == "ip command failed: 'ip link set dev x up': Cannot find device \"x\""
    assert HostCommandError("ip link", "", returncode=2).args[0].endswith("exit 2")


async def test_real_ip_reports_a_missing_binary() -> None:
    with pytest.raises(FileNotFoundError):
        await RealIp("/nonexistent/ip").run(["link", "show"])
