"""kubelite.cni types and configuration parsing without root: conflists, results, errors, fields."""

from __future__ import annotations

import ipaddress
import json

import pytest

from kubelite.cni.bridge import parse_bridge
from kubelite.cni.config import NetworkConfigList, PluginInput, RuntimeConf, parse_cni_args
from kubelite.cni.hostlocal import parse_host_local
from kubelite.cni.portmap import parse_portmap
from kubelite.cni.types import DNS, CniError, CniResult, ErrorCode, Interface, IPConfig, PortMapping, Route

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "kubelite",
    "plugins": [
        {"type": "loopback"},
        {
            "type": "bridge",
            "bridge": "cni0",
            "isDefaultGateway": True,
            "ipMasq": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]], "dataDir": "/x"},
        },
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    ],
}


def _bridge_input(**ipam: object) -> PluginInput:
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "bridge", "ipam": {"type": "host-local", **ipam}}
    return PluginInput.from_stdin(json.dumps(conf))


def test_conflist_parses_and_round_trips() -> None:
    net = NetworkConfigList.from_json(json.dumps(CONFLIST))
    assert net.name == "kubelite" and net.cni_version == "1.0.0" and not net.disable_check
    assert [p.type for p in net.plugins] == ["loopback", "bridge", "portmap"]
    assert net.plugins[2].capabilities == frozenset({"portMappings"})
    assert NetworkConfigList.from_json(net.to_json()) == net


def test_single_plugin_conf_becomes_a_list_of_one() -> None:
    net = NetworkConfigList.from_json({"cniVersion": "0.4.0", "name": "lo", "type": "loopback"})
    assert [p.type for p in net.plugins] == ["loopback"]
    assert "name" not in net.plugins[0].raw


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}, '"name"'),
        ({"cniVersion": "1.0.0", "name": "n", "plugins": []}, "non-empty list"),
        ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}, "plugins[0].type"),
        ({"cniVersion": "1.0.0", "name": "n"}, 'neither "plugins" nor "type"'),
    ],
)
def test_bad_conflists_are_explained(conf: object, message: str) -> None:
    with pytest.raises(CniError) as info:
        NetworkConfigList.from_json(conf if isinstance(conf, str) else json.dumps(conf))
    assert message in str(info.value)


def test_plugin_input_gets_name_version_runtime_config_and_prev_result() -> None:
    net = NetworkConfigList.from_json(CONFLIST)
    rt = RuntimeConf(
        "abc123",
        "/run/netns/pod",
        args=(("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web")),
        port_mappings=(PortMapping(8080, 80),),
        capability_args={"bandwidth": {"ingressRate": 1}},
    )
    prev = CniResult(ips=(IPConfig(ipaddress.ip_interface("10.244.1.5/24"), None, 2),))
    inp = PluginInput.for_chain(net, net.plugins[2], rt, prev)
    assert inp.conf["name"] == "kubelite" and inp.cni_version == "1.0.0"
    assert inp.runtime_config == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }
    stdin = json.loads(inp.stdin())
    assert stdin["prevResult"]["ips"] == [{"address": "10.244.1.5/24", "interface": 2}]
    assert "runtimeConfig" not in PluginInput.for_chain(net, net.plugins[1], rt, None).conf
    assert rt.cni_args() == "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    assert parse_cni_args(rt.cni_args()) == (("IgnoreUnknown", "1"), *rt.args)
    assert RuntimeConf("a", "/n").cni_args() == ""


def test_runtime_conf_rejects_bad_ids_and_names() -> None:
    with pytest.raises(CniError, match="container id"):
        RuntimeConf("bad id", "/run/netns/x")
    with pytest.raises(CniError, match="interface name"):
        RuntimeConf("ok", "/run/netns/x", ifname="a-name-longer-than-15")
    with pytest.raises(CniError, match="KEY=VALUE"):
        parse_cni_args("K8S_POD_NAME")


def test_stdin_version_is_checked() -> None:
    with pytest.raises(CniError) as info:
        PluginInput.from_stdin('{"cniVersion": "2.0.0", "type": "bridge"}')
    assert info.value.code == ErrorCode.INCOMPATIBLE_VERSION and "1.0.0" in info.value.msg


def test_result_json_per_version() -> None:
    result = CniResult(
        "1.0.0",
        (Interface("cni0", "02:00:00:00:00:01"), Interface("eth0", "02:00:00:00:00:02", "/run/netns/p")),
        (IPConfig(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1"), 1),),
        (Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.244.1.1")),),
        DNS(nameservers=("10.96.0.10",), search=("default.svc.cluster.local",)),
    )
    v1 = result.to_json()
    assert v1 == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/p"},
        ],
        "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]},
    }
    v04 = result.to_json("0.4.0")
    assert v04["cniVersion"] == "0.4.0" and v04["ips"][0]["version"] == "4"
    assert CniResult.from_json(v04) == CniResult.from_json(v1).__class__(
        **{**_fields(result), "cni_version": "0.4.0"}
    )
    assert result.container_ips() == result.ips
    assert result.container_ips("/other") == ()


def _fields(result: CniResult) -> dict[str, object]:
    return {name: getattr(result, name) for name in result.__slots__}


def test_result_parse_errors_name_the_field() -> None:
    with pytest.raises(CniError, match=r"result.ips\[0\]"):
        CniResult.from_json({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]})


def test_error_json() -> None:
    err = CniError(ErrorCode.TRY_AGAIN, "the lock is busy", "retry", plugin="host-local")
    assert err.to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 11,
        "msg": "the lock is busy",
        "details": "retry",
    }
    assert err.try_again and str(err) == "host-local plugin: the lock is busy (retry)"
    back = CniError.from_json({"code": 7, "msg": "bad"}, plugin="bridge")
    assert back.code == 7 and back.plugin == "bridge"


def test_bridge_config_fields_and_defaults() -> None:
    inp = PluginInput.from_stdin(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "n",
                "type": "bridge",
                "isDefaultGateway": True,
                "mtu": 1400,
                "hairpinMode": True,
                "ipMasqExclude": ["10.244.0.0/16"],
                "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
            }
        )
    )
    conf = parse_bridge(inp)
    assert conf.bridge == "cni0" and conf.is_gateway and conf.is_default_gateway and conf.mtu == 1400
    assert conf.hairpin_mode and not conf.promisc_mode and conf.ipam_type == "host-local"
    assert conf.ip_masq_exclude == (ipaddress.ip_network("10.244.0.0/16"),)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bridge": "a-name-longer-than-15"}, "bridge plugin: bridge"),
        ({"hairpinMode": True, "promiscMode": True}, "cannot both be true"),
        ({"mtu": "1500"}, "bridge plugin: mtu must be an integer"),
        ({"isGateway": "yes"}, "bridge plugin: isGateway must be true or false"),
        ({"ipMasqExclude": ["10.0.0.0/33"]}, 'ipMasqExclude[0] "10.0.0.0/33" is not a CIDR'),
    ],
)
def test_bridge_config_errors(extra: dict[str, object], message: str) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "bridge", **extra}
    with pytest.raises(CniError) as info:
        parse_bridge(PluginInput.from_stdin(json.dumps(conf)))
    assert message in str(info.value)
    assert info.value.code == ErrorCode.INVALID_CONFIG


def test_host_local_config_both_forms() -> None:
    conf = parse_host_local(
        _bridge_input(
            subnet="10.9.0.0/24",
            ranges=[[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}]],
            routes=[{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.1.0.254"}],
            dataDir="/tmp/kl",
        )
    )
    assert conf.network == "net" and str(conf.store_dir) == "/tmp/kl/net"
    assert [str(s[0].subnet) for s in conf.ranges] == ["10.9.0.0/24", "10.1.0.0/24"]
    first = conf.ranges[1][0]
    assert (str(first.start), str(first.end), str(first.gateway)) == ("10.1.0.10", "10.1.0.20", "10.1.0.1")
    assert str(conf.ranges[0][0].end) == "10.9.0.254"
    assert [str(r.dst) for r in conf.routes] == ["0.0.0.0/0", "10.96.0.0/12"]


@pytest.mark.parametrize(
    ("ipam", "message"),
    [
        (
            {"ranges": [[{"subnet": "10.1.0.0/33"}]]},
            'bridge plugin: ipam.ranges[0][0].subnet "10.1.0.0/33" is not a CIDR',
        ),
        ({"ranges": [[{"subnet": "10.1.0.0/31"}]]}, "too small"),
        ({"ranges": [[{"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}]]}, "ipam.ranges[0][0].gateway"),
        ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.1.1"}]]}, "rangeStart"),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.3"}]]},
            "comes after",
        ),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}, "overlapping"),
        ({"ranges": [[]]}, "ipam.ranges[0] must be a non-empty list"),
        ({}, "ipam.ranges is missing"),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "x"}]}, "ipam.routes[0].dst"),
    ],
)
def test_host_local_config_errors(ipam: dict[str, object], message: str) -> None:
    with pytest.raises(CniError) as info:
        parse_host_local(_bridge_input(**ipam))
    assert message in str(info.value)


def test_portmap_config() -> None:
    inp = PluginInput.from_stdin(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "n",
                "type": "portmap",
                "runtimeConfig": {
                    "portMappings": [
                        {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
                        {"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "0.0.0.0"},
                    ]
                },
            }
        )
    )
    conf = parse_portmap(inp)
    assert conf.mappings == (PortMapping(8080, 80, "tcp"), PortMapping(8080, 80, "udp"))
    assert conf.snat and conf.mark_bit == 13


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"hostPort": 0, "containerPort": 80}, "hostPort 0"),
        ({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}, "protocol"),
        ({"hostPort": 80, "containerPort": 80, "hostIP": "nope"}, "hostIP"),
        ({"hostPort": "80", "containerPort": 80}, "integer"),
    ],
)
def test_portmap_config_errors(mapping: dict[str, object], message: str) -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": "n",
        "type": "portmap",
        "runtimeConfig": {"portMappings": [mapping]},
    }
    with pytest.raises(CniError) as info:
        parse_portmap(PluginInput.from_stdin(json.dumps(conf)))
    assert message in str(info.value) and "runtimeConfig.portMappings[0]" in str(info.value)
