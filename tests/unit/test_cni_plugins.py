"""kubelite's plugins and runners against FakePluginHost: what each command asks of the kernel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubelite.cni import (
    CniError,
    CniRunner,
    ErrorCode,
    ExecCni,
    FakePluginHost,
    InProcessCni,
    NetworkConfigList,
    PortMapping,
    ResultCache,
    RuntimeConf,
    builtin_plugins,
    install_plugin_executables,
)
from kubelite.cni.hostlocal import allocations_of
from kubelite.cni.nftrules import HOSTPORT_TABLE, MASQ_TABLE, hostport_chains
from kubelite.cni.plugin import plugin_main

POD_NS = "/run/netns/pod-a"


def _conflist(data_dir: Path, *, portmap: bool = True, version: str = "1.0.0") -> NetworkConfigList:
    plugins: list[dict[str, Any]] = [
        {"type": "loopback"},
        {
            "type": "bridge",
            "bridge": "cni0",
            "isDefaultGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.244.1.0/24"}]],
                "dataDir": str(data_dir),
            },
        },
    ]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return NetworkConfigList.from_json({"cniVersion": version, "name": "kubelite", "plugins": plugins})


def _rt(container: str = "ctr-a", netns: str = POD_NS, *ports: PortMapping) -> RuntimeConf:
    return RuntimeConf(container, netns, args=(("K8S_POD_NAME", "web"),), port_mappings=ports)


async def test_add_chain_costs_one_batch_per_namespace(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    assert isinstance(cni, CniRunner) and isinstance(ExecCni(["/usr/lib/cni"]), CniRunner)
    result = await cni.add(_conflist(tmp_path), _rt("ctr-a", POD_NS, PortMapping(8080, 80)))

    # The first ADD looks at the bridge once; then one batch in the node, one in the pod.
    assert host.queries == ["node -d link show dev cni0"]
    assert [ref for ref, _ in host.batches] == ["node", "pod-a"]
    node, pod = host.lines("node"), host.lines("pod-a")
    assert node[0].startswith("link add name cni0 address ") and node[0].endswith(" type bridge")
    assert "addr replace 10.244.1.1/24 dev cni0" in node
    veth = result.interfaces[1].name
    assert any(line.startswith(f"link add {veth} ") and f"netns {POD_NS}" in line for line in node)
    assert pod == [
        "link set dev lo up",
        "addr add 10.244.1.2/24 dev eth0",
        "link set dev eth0 up",
        "route add 0.0.0.0/0 via 10.244.1.1 dev eth0",
    ]
    # Masquerade and host ports go in ONE nft transaction; forwarding and route_localnet are set.
    [applied] = host.nft.applied("node")
    assert f"add table ip {MASQ_TABLE}" in applied and f"add table ip {HOSTPORT_TABLE}" in applied
    assert "dnat to 10.244.1.2:80" in applied
    assert host.sysctls["node net/ipv4/ip_forward"] == "1"

    out = result.to_json()
    assert [i["name"] for i in out["interfaces"]] == ["cni0", veth, "eth0"]
    assert out["interfaces"][2]["sandbox"] == POD_NS
    assert out["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]


async def test_second_add_reuses_what_the_runner_knows(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    net = _conflist(tmp_path)
    first = await cni.add(net, _rt("ctr-a"))
    host.batches.clear()
    host.queries.clear()
    second = await cni.add(net, _rt("ctr-b", "/run/netns/pod-b"))
    assert host.queries == []  # bridge MAC remembered
    assert host.lines("node")[0] == f"link set dev cni0 address {first.interfaces[0].mac}"
    assert second.interfaces[0].mac == first.interfaces[0].mac
    assert len(host.nft.applied("node")) == 1  # masquerade written once, no host ports: no nft
    assert str(second.ips[0].address) == "10.244.1.3/24"


async def test_stale_bridge_memory_is_noticed_and_retried(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    net = _conflist(tmp_path, portmap=False)
    await cni.add(net, _rt("ctr-a"))
    gone = {"armed": True}

    def fail(ref: str, line: str) -> str | None:
        if gone["armed"] and ref == "node" and line.startswith("link set dev cni0 address"):
            gone["armed"] = False
            return 'Cannot find device "cni0"'
        return None

    host.fail = fail
    host.batches.clear()
    await cni.add(net, _rt("ctr-b", "/run/netns/pod-b"))
    node_batches = [lines for ref, lines in host.batches if ref == "node"]
    assert len(node_batches) == 2 and node_batches[1][0].startswith("link add name cni0")


async def test_delete_is_idempotent_and_releases(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    net = _conflist(tmp_path)
    rt = _rt("ctr-a", POD_NS, PortMapping(8080, 80))
    await cni.add(net, rt)
    host.batches.clear()
    await cni.delete(net, rt)
    assert host.lines("pod-a") == ["link del dev eth0", "link set dev lo down"]
    assert allocations_of(tmp_path / "kubelite") == {}
    assert (
        f"delete chain ip {HOSTPORT_TABLE} {hostport_chains('kubelite', 'ctr-a')[0]}"
        in host.nft.applied("node")[-1]
    )

    # The device is gone now: the second DEL still succeeds (the failing optional line is skipped).
    host.fail = lambda ref, line: 'Cannot find device "eth0"' if line == "link del dev eth0" else None
    host.batches.clear()
    await cni.delete(net, rt)
    assert [lines for _, lines in host.batches] == [
        ("link del dev eth0", "link set dev lo down"),
        ("link set dev lo down",),
    ]
    # And when the pod's namespace is gone, nothing runs there at all.
    host.missing.add("pod-a")
    host.batches.clear()
    await cni.delete(net, rt)
    assert host.batches == []


async def test_delete_skips_nft_for_a_container_without_host_ports(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    net = _conflist(tmp_path)
    await cni.add(net, _rt("ctr-a"))
    before = len(host.nft.calls)
    await cni.delete(net, _rt("ctr-a"))
    assert len(host.nft.calls) == before
    # Another runner (e.g. after a restart) does not know: it deletes the chains to be sure.
    other = InProcessCni(host_netns="node", host=host)
    await other.delete(net, _rt("ctr-a"))
    assert len(host.nft.calls) == before + 1


async def test_failed_add_is_undone(tmp_path: Path) -> None:
    host = FakePluginHost(
        fail=lambda ref, line: "RTNETLINK answers: Invalid argument" if "route add" in line else None
    )
    cni = InProcessCni(host_netns="node", host=host)
    with pytest.raises(CniError, match="Invalid argument"):
        await cni.add(_conflist(tmp_path), _rt("ctr-a"))
    assert allocations_of(tmp_path / "kubelite") == {}
    assert host.lines("pod-a")[-2:] == ["link del dev eth0", "link set dev lo down"]
    assert cni.cache.get(_conflist(tmp_path), _rt("ctr-a")) is None


async def test_missing_netns_is_error_3(tmp_path: Path) -> None:
    host = FakePluginHost(missing={"pod-a"})
    with pytest.raises(CniError) as info:
        await InProcessCni(host_netns="node", host=host).add(_conflist(tmp_path), _rt())
    assert info.value.code == ErrorCode.UNKNOWN_CONTAINER and "does not exist" in info.value.msg


def _check_answers(host: FakePluginHost, result_json: dict[str, Any]) -> None:
    bridge, veth, eth0 = result_json["interfaces"]
    host.json["node -d link show dev cni0"] = [
        {"ifname": "cni0", "address": bridge["mac"], "flags": ["UP"], "linkinfo": {"info_kind": "bridge"}}
    ]
    host.json[f"node -d link show dev {veth['name']}"] = [
        {"ifname": veth["name"], "ifindex": 7, "master": "cni0", "linkinfo": {"info_kind": "veth"}}
    ]
    host.json["pod-a -d link show dev eth0"] = [
        {"ifname": "eth0", "address": eth0["mac"], "link_index": 7, "linkinfo": {"info_kind": "veth"}}
    ]
    host.json["pod-a link show dev lo"] = [{"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"]}]
    host.json["pod-a addr show dev eth0"] = [{"addr_info": [{"local": "10.244.1.2", "prefixlen": 24}]}]
    host.json["pod-a route show"] = [{"dst": "default", "gateway": "10.244.1.1"}]


async def test_check_compares_the_kernel_with_the_cached_result(tmp_path: Path) -> None:
    host = FakePluginHost()
    cni = InProcessCni(host_netns="node", host=host)
    net, rt = _conflist(tmp_path), _rt("ctr-a", POD_NS, PortMapping(8080, 80))
    result = await cni.add(net, rt)
    _check_answers(host, result.to_json())
    await cni.check(net, rt)

    host.json["pod-a route show"] = []
    with pytest.raises(CniError, match=re.escape("route 0.0.0.0/0 via 10.244.1.1 is missing")):
        await cni.check(net, rt)
    _check_answers(host, result.to_json())
    host.json["pod-a addr show dev eth0"] = [{"addr_info": []}]
    with pytest.raises(CniError, match=re.escape("10.244.1.2/24 is not on eth0")):
        await cni.check(net, rt)
    _check_answers(host, result.to_json())
    await host.nft.apply(f"delete table ip {HOSTPORT_TABLE}\n", netns="node")
    with pytest.raises(CniError, match="portmap plugin: chain"):
        await cni.check(net, rt)

    with pytest.raises(CniError, match="no cached ADD result"):
        await cni.check(net, _rt("other"))
    old = _conflist(tmp_path, version="0.3.1")
    with pytest.raises(CniError, match="has no CHECK"):
        await cni.check(old, rt)


async def test_result_cache_on_disk(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "results")
    cni = InProcessCni(host_netns="node", host=FakePluginHost(), cache=cache)
    net = _conflist(tmp_path, version="0.4.0")
    result = await cni.add(net, _rt())
    record = json.loads((tmp_path / "results" / "kubelite-ctr-a-eth0").read_text())
    assert record["kind"] == "cniCacheV1" and record["result"]["ips"][0]["version"] == "4"
    assert ResultCache(tmp_path / "results").get(net, _rt()) == result
    await cni.delete(net, _rt())
    assert not (tmp_path / "results" / "kubelite-ctr-a-eth0").exists()


async def test_unknown_type_needs_a_path(tmp_path: Path) -> None:
    net = NetworkConfigList.from_json({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "tuning"}]})
    with pytest.raises(CniError, match='no in-process plugin "tuning"'):
        await InProcessCni(host=FakePluginHost()).add(net, _rt())
    with pytest.raises(CniError, match='no executable CNI plugin named "tuning"'):
        await InProcessCni(host=FakePluginHost(), cni_path=[tmp_path]).add(net, _rt())


async def test_portmap_needs_a_prev_result() -> None:
    stdin = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "n",
            "type": "portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80}]},
        }
    ).encode()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": POD_NS, "CNI_IFNAME": "eth0"}
    plugins = builtin_plugins()
    code, out = await plugin_main("portmap", plugins["portmap"], env, stdin, host=FakePluginHost())
    assert code == 1
    error = json.loads(out)
    assert error["code"] == ErrorCode.INVALID_CONFIG and "needs a prevResult" in error["msg"]


@pytest.mark.parametrize(
    ("env", "stdin", "code", "needle"),
    [
        ({"CNI_COMMAND": "VERSION"}, b"{}", 0, '"supportedVersions"'),
        ({}, b"{}", 1, "CNI_COMMAND is not set"),
        ({"CNI_COMMAND": "GC"}, b"{}", 1, "unknown CNI_COMMAND"),
        ({"CNI_COMMAND": "ADD"}, b"nope", 1, "not valid JSON"),
        ({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "0.4.0", "type": "loopback"}', 1, "CNI_NETNS is not set"),
        (
            {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c", "CNI_NETNS": POD_NS, "CNI_IFNAME": "eth0"},
            b'{"cniVersion": "0.3.1", "type": "loopback"}',
            1,
            "has no CHECK",
        ),
    ],
)
async def test_plugin_main_speaks_the_spec(env: dict[str, str], stdin: bytes, code: int, needle: str) -> None:
    plugins = builtin_plugins()
    got, out = await plugin_main("loopback", plugins["loopback"], env, stdin, host=FakePluginHost())
    assert got == code and needle in out
    if code:
        error = json.loads(out)
        assert set(error) >= {"cniVersion", "code", "msg"}


async def test_plugin_main_add_then_del_via_fake_host() -> None:
    plugins = builtin_plugins()
    host = FakePluginHost()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": POD_NS, "CNI_IFNAME": "eth0"}
    code, out = await plugin_main(
        "loopback",
        plugins["loopback"],
        env,
        b'{"cniVersion":"0.4.0","name":"lo","type":"loopback"}',
        host=host,
    )
    assert code == 0 and json.loads(out)["interfaces"] == [
        {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": POD_NS}
    ]
    assert host.lines("pod-a") == ["link set dev lo up"]
    code, out = await plugin_main(
        "loopback",
        plugins["loopback"],
        {**env, "CNI_COMMAND": "DEL", "CNI_NETNS": ""},
        b'{"cniVersion":"0.4.0","name":"lo","type":"loopback"}',
        host=host,
    )
    assert (code, out) == (0, "")


def test_shims_run_the_module(tmp_path: Path) -> None:
    paths = install_plugin_executables(tmp_path / "bin")
    assert sorted(p.name for p in paths) == ["bridge", "host-local", "loopback", "portmap"]
    text = (tmp_path / "bin" / "bridge").read_text()
    assert text == f'#!/bin/sh\nexec {sys.executable} -m kubelite.cni bridge "$@"\n'
    done = subprocess.run(
        [str(tmp_path / "bin" / "portmap")],
        input=b'{"cniVersion": "1.0.0"}',
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
    bad = subprocess.run(
        [sys.executable, "-m", "kubelite.cni", "nope"], capture_output=True, timeout=30, check=False
    )
    assert bad.returncode == 1 and "usage" in json.loads(bad.stdout)["msg"]
