"""kubelite.cni rule and command generation without root: nft text, bridge batch lines, FakeNft."""

from __future__ import annotations

import ipaddress

import pytest

from kubelite.cni.bridge import (
    BridgeConfig,
    VethPlan,
    container_lines,
    host_veth_name,
    node_lines,
    random_mac,
)
from kubelite.cni.nftrules import (
    HOSTPORT_TABLE,
    MASQ_TABLE,
    hostport_chains,
    hostport_delete_ruleset,
    hostport_masq_ruleset,
    hostport_ruleset,
    masq_chain,
    masq_delete_ruleset,
    masq_ruleset,
)
from kubelite.cni.types import IPConfig, PortMapping, Route
from kubelite.host.nft import FakeNft, NftError, NftRunner, RealNft, netns_argv

POD = ipaddress.IPv4Interface("10.244.1.5/24")


def test_masq_ruleset_is_one_idempotent_chain_per_network() -> None:
    text = masq_ruleset(
        "kubelite",
        [ipaddress.ip_network("10.244.1.0/24"), ipaddress.ip_network("fd00::/64")],
        [ipaddress.ip_network("10.244.0.0/16")],
    )
    chain = masq_chain("kubelite")
    assert text.splitlines() == [
        f"add table ip {MASQ_TABLE}",
        f"add chain ip {MASQ_TABLE} {chain} {{ type nat hook postrouting priority 100; policy accept; }}",
        f"flush chain ip {MASQ_TABLE} {chain}",
        f"add rule ip {MASQ_TABLE} {chain} ip saddr 10.244.1.0/24 "
        'ip daddr != { 10.244.1.0/24, 224.0.0.0/4, 10.244.0.0/16 } masquerade comment "network kubelite"',
    ]
    assert masq_ruleset("kubelite", [ipaddress.ip_network("fd00::/64")]) == ""
    assert masq_chain("kubelite") != masq_chain("other")
    assert masq_delete_ruleset("kubelite").endswith(f"delete chain ip {MASQ_TABLE} {chain}\n")


def test_hostport_ruleset_dnats_from_outside_and_from_the_node() -> None:
    text = hostport_ruleset(
        "kubelite",
        "c0ffee",
        POD,
        [
            PortMapping(8080, 80),
            PortMapping(5353, 53, "udp", "192.168.50.2"),
            PortMapping(9, 9, "tcp", "fd00::1"),
        ],
    )
    pre, out = hostport_chains("kubelite", "c0ffee")
    lines = text.splitlines()
    t = HOSTPORT_TABLE
    assert f"add chain ip {t} {pre} {{ type nat hook prerouting priority -100; policy accept; }}" in lines
    assert f"add chain ip {t} {out} {{ type nat hook output priority -100; policy accept; }}" in lines
    assert f"flush chain ip {t} {pre}" in lines and f"flush chain ip {t} {out}" in lines
    for chain in (pre, out):
        assert (
            f"add rule ip {t} {chain} fib daddr type local tcp dport 8080 "
            'dnat to 10.244.1.5:80 comment "kubelite c0ffee"'
        ) in lines
        assert (
            f"add rule ip {t} {chain} fib daddr type local tcp dport 8080 "
            "ip saddr { 10.244.1.0/24, 127.0.0.0/8 } "
            'meta mark set meta mark | 0x2000 comment "kubelite c0ffee"'
        ) in lines
        assert (
            f"add rule ip {t} {chain} ip daddr 192.168.50.2 udp dport 5353 "
            'dnat to 10.244.1.5:53 comment "kubelite c0ffee"'
        ) in lines
    assert "fd00::1" not in text  # IPv6 host IPs are not in an ip-family table
    assert "hostport-masq" not in text  # written once per node, see below
    assert (
        f"add rule ip {t} hostport-masq meta mark & 0x2000 == 0x2000 "
        "meta mark set meta mark ^ 0x2000 masquerade" in hostport_masq_ruleset().splitlines()
    )
    # Priorities are numeric: nft 1.0.6 refuses "dstnat" on the output hook.
    assert "dstnat" not in text and "srcnat" not in text


def test_hostport_without_snat_has_no_marks_and_chains_differ_per_container() -> None:
    text = hostport_ruleset("n", "a", POD, [PortMapping(80, 80)], snat=False, mark_bit=14)
    assert "meta mark set meta mark |" not in text
    assert "0x4000" in hostport_masq_ruleset(14)
    assert "0x4000" in hostport_ruleset("n", "a", POD, [PortMapping(80, 80)], mark_bit=14)
    assert hostport_chains("n", "a") != hostport_chains("n", "b")
    assert hostport_chains("n", "a") != hostport_chains("m", "a")
    pre, out = hostport_chains("n", "a")
    assert hostport_delete_ruleset("n", "a").splitlines()[-2:] == [
        f"delete chain ip {HOSTPORT_TABLE} {pre}",
        f"delete chain ip {HOSTPORT_TABLE} {out}",
    ]


def _veth() -> VethPlan:
    return VethPlan("veth0a1b2c3d", "02:00:00:00:00:01", "eth0", "02:00:00:00:00:02", "/run/netns/pod-1")


def test_node_lines_create_the_bridge_once_and_plug_the_veth() -> None:
    conf = BridgeConfig(network="n", mtu=1450, hairpin_mode=True, promisc_mode=False)
    gw = [ipaddress.ip_interface("10.244.1.1/24")]
    lines = node_lines(conf, _veth(), create_bridge=True, bridge_mac="02:00:00:00:00:aa", gateways=gw)
    assert lines == [
        "link add name cni0 address 02:00:00:00:00:aa mtu 1450 type bridge",
        "link set dev cni0 up",
        "addr replace 10.244.1.1/24 dev cni0",
        "link add veth0a1b2c3d address 02:00:00:00:00:01 mtu 1450 type veth "
        "peer name eth0 address 02:00:00:00:00:02 mtu 1450 netns /run/netns/pod-1",
        "link set dev veth0a1b2c3d master cni0",
        "link set dev veth0a1b2c3d type bridge_slave hairpin on",
        "link set dev veth0a1b2c3d up",
    ]
    again = node_lines(
        BridgeConfig(network="n", promisc_mode=True),
        _veth(),
        create_bridge=False,
        bridge_mac="02:00:00:00:00:aa",
        gateways=[],
    )
    assert again[:3] == [
        "link set dev cni0 address 02:00:00:00:00:aa",
        "link set dev cni0 promisc on",
        "link set dev cni0 up",
    ]


def test_node_lines_refuse_a_path_that_could_break_the_batch() -> None:
    bad = VethPlan(
        "veth0a1b2c3d", "02:00:00:00:00:01", "eth0", "02:00:00:00:00:02", "/run/netns/x\nlink del lo"
    )
    with pytest.raises(ValueError, match="absolute"):
        node_lines(
            BridgeConfig(network="n"), bad, create_bridge=False, bridge_mac="02:00:00:00:00:aa", gateways=[]
        )


def test_container_lines_address_link_and_routes() -> None:
    ips = [
        IPConfig(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1"), 2),
        IPConfig(ipaddress.ip_interface("fd00::5/64"), ipaddress.ip_address("fd00::1"), 2),
    ]
    routes = [
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.244.1.1")),
        Route(ipaddress.ip_network("10.96.0.0/12")),
        Route(ipaddress.ip_network("::/0")),
    ]
    assert container_lines("eth0", ips, routes) == [
        "addr add 10.244.1.5/24 dev eth0",
        "addr add fd00::5/64 dev eth0 nodad",
        "link set dev eth0 up",
        "route add 0.0.0.0/0 via 10.244.1.1 dev eth0",
        "route add 10.96.0.0/12 via 10.244.1.1 dev eth0",
        "route add ::/0 via fd00::1 dev eth0",
    ]


def test_names_and_macs_look_like_the_reference() -> None:
    name = host_veth_name()
    assert len(name) == 12 and name.startswith("veth") and int(name[4:], 16) >= 0
    mac = random_mac()
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast


async def test_fake_nft_models_tables_and_chains() -> None:
    nft = FakeNft()
    assert isinstance(nft, NftRunner) and isinstance(RealNft(), NftRunner)
    await nft.apply(hostport_ruleset("n", "a", POD, [PortMapping(80, 8080)]), netns="node")
    await nft.apply(hostport_ruleset("n", "b", POD, [PortMapping(81, 8080)]), netns="node")
    assert (("ip", HOSTPORT_TABLE)) in await nft.list_tables(netns="node")
    assert await nft.list_tables() == []
    await nft.apply(hostport_delete_ruleset("n", "a"), netns="node")
    listing = await nft.list_table("ip", HOSTPORT_TABLE, netns="node") or ""
    assert hostport_chains("n", "a")[0] not in listing and hostport_chains("n", "b")[0] in listing
    assert await nft.list_table("ip", "nothing", netns="node") is None
    await nft.apply("table ip t {\n  chain c {\n  }\n}\ndelete table ip t\n", netns="node")
    assert ("ip", "t") not in await nft.list_tables(netns="node")
    assert len(nft.applied("node")) == 4 and nft.applied() == []

    nft.fail = lambda netns, text: "Error: syntax" if "boom" in text else None
    with pytest.raises(NftError, match="syntax") as info:
        await nft.apply("add table ip boom\n", netns="node")
    assert info.value.netns == "node"


def test_netns_argv() -> None:
    assert netns_argv(None) == []
    assert netns_argv("node-1") == ["nsenter", "--net=/run/netns/node-1"]
    assert netns_argv("/proc/1/ns/net", nsenter="/usr/bin/nsenter") == [
        "/usr/bin/nsenter",
        "--net=/proc/1/ns/net",
    ]
