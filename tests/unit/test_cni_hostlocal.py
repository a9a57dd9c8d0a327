"""host-local IPAM in a temporary data dir: round robin, exhaustion, release, reserved addresses, sets."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from kubelite.cni.config import PluginInput
from kubelite.cni.hostlocal import HostLocalPlugin, IpRange, allocations_of, candidates
from kubelite.cni.netops import FakePluginHost
from kubelite.cni.plugin import CallContext, PluginState, call_plugin
from kubelite.cni.types import CniError, ErrorCode


def _input(data_dir: Path, ranges: list[list[dict[str, str]]], **extra: object) -> PluginInput:
    conf = {
        "cniVersion": "1.0.0",
        "name": "pods",
        "type": "bridge",
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": str(data_dir)},
        **extra,
    }
    return PluginInput.from_stdin(json.dumps(conf))


def _ctx(container: str, ifname: str = "eth0", command: str = "ADD") -> CallContext:
    return CallContext(
        command=command,
        container_id=container,
        netns="/run/netns/x",
        ifname=ifname,
        host=FakePluginHost(),
        state=PluginState(),
    )


async def _add(inp: PluginInput, container: str, ifname: str = "eth0") -> list[str]:
    result = await HostLocalPlugin().add(inp, _ctx(container, ifname))
    return [ip.address.with_prefixlen for ip in result.ips]


def _range(subnet: str, start: str | None = None, end: str | None = None, gw: str | None = None) -> IpRange:
    net = ipaddress.ip_network(subnet)
    return IpRange(
        net,
        ipaddress.ip_address(start) if start else net.network_address + 1,
        ipaddress.ip_address(end) if end else net.broadcast_address - 1,
        ipaddress.ip_address(gw) if gw else net.network_address + 1,
    )


def test_candidates_start_after_last_and_wrap() -> None:
    r = _range("10.0.0.0/29")  # usable .2-.6 (.1 gateway, .0/.7 network/broadcast)
    assert [str(a) for a, _ in candidates((r,), None)] == [f"10.0.0.{i}" for i in (2, 3, 4, 5, 6)]
    after = [str(a) for a, _ in candidates((r,), ipaddress.ip_address("10.0.0.4"))]
    assert after == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    # A last address outside the set starts from the beginning (the reference does the same).
    assert next(candidates((r,), ipaddress.ip_address("192.168.0.1")))[0] == ipaddress.ip_address("10.0.0.2")


def test_candidates_never_hand_out_gateway_network_or_broadcast() -> None:
    r = _range("10.0.0.0/29", start="10.0.0.0", end="10.0.0.7", gw="10.0.0.6")
    assert [str(a) for a, _ in candidates((r,), None)] == [f"10.0.0.{i}" for i in (1, 2, 3, 4, 5)]


def test_candidates_walk_the_ranges_of_a_set() -> None:
    a, b = _range("10.0.0.0/30"), _range("10.0.1.0/30")  # one usable address each: .2
    got = [str(x) for x, _ in candidates((a, b), ipaddress.ip_address("10.0.0.2"))]
    assert got == ["10.0.1.2", "10.0.0.2"]


async def test_round_robin_release_and_reuse_order(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/29"}]])
    assert await _add(inp, "a") == ["10.1.0.2/29"]
    assert await _add(inp, "b") == ["10.1.0.3/29"]
    await HostLocalPlugin().delete(inp, _ctx("a", command="DEL"))
    # Round robin: the released .2 is not reused before the rest of the range.
    assert await _add(inp, "c") == ["10.1.0.4/29"]
    store = tmp_path / "pods"
    assert (store / "10.1.0.4").read_bytes() == b"c\r\neth0"
    assert (store / "last_reserved_ip.0").read_text() == "10.1.0.4"
    assert (store / "lock").exists()
    assert set(allocations_of(store)) == {"10.1.0.3", "10.1.0.4"}


async def test_exhaustion_is_a_clear_error_and_release_frees(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.2", "rangeEnd": "10.1.0.4"}]])
    for name in ("a", "b", "c"):
        await _add(inp, name)
    with pytest.raises(CniError) as info:
        await _add(inp, "d")
    assert "no free address left in 10.1.0.0/29 (10.1.0.2-10.1.0.4)" in info.value.msg
    assert "DEL" in info.value.msg
    await HostLocalPlugin().delete(inp, _ctx("b", command="DEL"))
    assert await _add(inp, "d") == ["10.1.0.3/29"]


async def test_release_is_by_container_and_ifname_and_idempotent(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    await _add(inp, "a", "eth0")
    await _add(inp, "a", "net1")
    plugin = HostLocalPlugin()
    await plugin.delete(inp, _ctx("a", "net1", "DEL"))
    assert list(allocations_of(tmp_path / "pods").values()) == ["a\r\neth0"]
    await plugin.delete(inp, _ctx("a", "net1", "DEL"))
    await plugin.delete(_input(tmp_path / "never", [[{"subnet": "10.1.0.0/24"}]]), _ctx("z", command="DEL"))
    await plugin.check(inp, _ctx("a", "eth0", "CHECK"))
    with pytest.raises(CniError, match="no address is allocated"):
        await plugin.check(inp, _ctx("a", "net1", "CHECK"))


async def test_old_files_with_only_the_id_are_released(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    (tmp_path / "pods").mkdir()
    (tmp_path / "pods" / "10.1.0.9").write_text("old-container")
    await HostLocalPlugin().delete(inp, _ctx("old-container", command="DEL"))
    assert allocations_of(tmp_path / "pods") == {}


async def test_second_add_for_same_container_is_refused(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    await _add(inp, "a")
    with pytest.raises(CniError, match="already allocated to container a"):
        await _add(inp, "a")


async def test_two_range_sets_give_one_address_each(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:10::/120"}]])
    result = await HostLocalPlugin().add(inp, _ctx("a"))
    assert [ip.address.with_prefixlen for ip in result.ips] == ["10.1.0.2/24", "fd00:10::2/120"]
    assert [str(ip.gateway) for ip in result.ips] == ["10.1.0.1", "fd00:10::1"]
    assert (tmp_path / "pods" / "last_reserved_ip.1").read_text() == "fd00:10::2"


async def test_two_ranges_in_one_set_spill_over(tmp_path: Path) -> None:
    inp = _input(
        tmp_path,
        [[{"subnet": "10.1.0.0/30"}, {"subnet": "10.2.0.0/29", "rangeStart": "10.2.0.5"}]],
    )
    got = [(await _add(inp, name))[0] for name in ("a", "b", "c")]
    assert got == ["10.1.0.2/30", "10.2.0.5/29", "10.2.0.6/29"]


async def test_requested_address_from_args_and_runtime_config(tmp_path: Path) -> None:
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]], runtimeConfig={"ips": ["10.1.0.77/24"]})
    assert await _add(inp, "a") == ["10.1.0.77/24"]
    with pytest.raises(CniError, match="already allocated"):
        await _add(inp, "b")
    plain = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    ctx = CallContext(
        command="ADD",
        container_id="c",
        netns="/n",
        ifname="eth0",
        host=FakePluginHost(),
        args=(("IP", "10.1.0.1"),),
    )
    with pytest.raises(CniError, match="not usable"):
        await HostLocalPlugin().add(plain, ctx)


async def test_failed_add_keeps_nothing(tmp_path: Path) -> None:
    # The second set is exhausted: the first set's address must be given back.
    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]])
    await _add(inp, "a")
    with pytest.raises(CniError):
        await _add(inp, "b")
    assert set(allocations_of(tmp_path / "pods")) == {"10.1.0.2", "10.2.0.2"}


async def test_result_carries_routes_and_resolv_conf(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\nsearch a.svc b.svc\noptions ndots:5\ndomain cluster.local\n")
    conf = {
        "cniVersion": "0.4.0",
        "name": "pods",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "subnet": "10.3.0.0/24",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(tmp_path),
            "resolvConf": str(resolv),
        },
    }
    result = await call_plugin(
        HostLocalPlugin(), "host-local", "ADD", PluginInput.from_stdin(json.dumps(conf)), _ctx("a")
    )
    assert result is not None
    out = result.to_json()
    assert out["cniVersion"] == "0.4.0"
    assert out["ips"] == [{"version": "4", "address": "10.3.0.2/24", "gateway": "10.3.0.1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]
    assert out["dns"] == {
        "nameservers": ["10.96.0.10"],
        "domain": "cluster.local",
        "search": ["a.svc", "b.svc"],
        "options": ["ndots:5"],
    }


async def test_lock_held_elsewhere_means_try_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from kubelite.cni import hostlocal

    inp = _input(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    (tmp_path / "pods").mkdir()
    holder = os.open(tmp_path / "pods" / "lock", os.O_RDWR | os.O_CREAT)  # held across the await below
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setattr(hostlocal, "LOCK_WAIT_SECONDS", 0.05)
        with pytest.raises(CniError) as info:
            await _add(inp, "a")
        assert info.value.code == ErrorCode.TRY_AGAIN
    finally:
        os.close(holder)
    assert await _add(inp, "a") == ["10.1.0.2/24"]
