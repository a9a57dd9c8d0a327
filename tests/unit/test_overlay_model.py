"""kubelite.overlay.model: nodes, VTEP MACs, annotations and the desired state per mode (pure)."""

from __future__ import annotations

import pytest

from kubelite.overlay.model import (
    PUBLIC_IP_ANNOTATION,
    VTEP_MAC_ANNOTATION,
    FdbEntry,
    KernelState,
    Neighbour,
    NodeRoute,
    Route,
    annotations_for,
    desired_host_gw,
    desired_vxlan,
    node_route_from,
    normalize_mac,
    vtep_address,
    vtep_annotations,
    vtep_mac_for,
    vxlan_device,
)

N1 = NodeRoute("n1", "172.31.0.11", "10.244.1.0/24")
N2 = NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")
N3 = NodeRoute("n3", "172.31.0.13", "10.244.3.0/24")


def node(
    name: str,
    cidr: str | None = "10.244.2.0/24",
    addresses: list[dict[str, str]] | None = None,
    annotations: dict[str, str] | None = None,
    cidrs: list[str] | None = None,
) -> dict[str, object]:
    spec: dict[str, object] = {}
    if cidr is not None:
        spec["podCIDR"] = cidr
    if cidrs is not None:
        spec["podCIDRs"] = cidrs
    return {
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
        "status": {
            "addresses": addresses
            if addresses is not None
            else [{"type": "InternalIP", "address": "172.31.0.12"}]
        },
    }


def test_vtep_mac_is_derived_from_the_node_ip() -> None:
    mac = vtep_mac_for("172.31.0.11")
    assert mac == "0e:6b:ac:1f:00:0b"
    first = int(mac[:2], 16)
    assert first & 0b10, "locally administered"
    assert not first & 0b01, "unicast"
    assert vtep_mac_for("10.0.0.1") != vtep_mac_for("10.0.0.2")
    assert N1.mac == mac
    assert NodeRoute("x", "172.31.0.11", "10.244.1.0/24", "0E-AA-00-00-00-01").mac == "0e:aa:00:00:00:01"


def test_vtep_address_is_the_pod_network_address() -> None:
    assert vtep_address("10.244.7.0/24") == "10.244.7.0"
    assert N2.vtep_ip == "10.244.2.0"


def test_node_route_validates_with_sentences() -> None:
    with pytest.raises(ValueError, match="not an IPv4 address"):
        NodeRoute("n", "fd00::1", "10.244.1.0/24")
    with pytest.raises(ValueError, match="not an IPv4 network"):
        NodeRoute("n", "10.0.0.1", "10.244.1.1/24")
    with pytest.raises(ValueError, match="multicast"):
        NodeRoute("n", "10.0.0.1", "10.244.1.0/24", "01:00:5e:00:00:01")
    with pytest.raises(ValueError, match="not a MAC"):
        normalize_mac("0e:6b:00")
    with pytest.raises(ValueError, match="needs a name"):
        NodeRoute("", "10.0.0.1", "10.244.1.0/24")


def test_annotations_for_publish_mac_and_ip() -> None:
    assert annotations_for(N1) == {
        VTEP_MAC_ANNOTATION: "0e:6b:ac:1f:00:0b",
        PUBLIC_IP_ANNOTATION: "172.31.0.11",
    }
    assert vtep_annotations("172.31.0.11") == annotations_for(N1)  # before the podCIDR is known
    assert vtep_annotations("172.31.0.11", "0E:AA:00:00:00:01")[VTEP_MAC_ANNOTATION] == "0e:aa:00:00:00:01"


def test_node_route_from_a_node_object() -> None:
    assert node_route_from(node("n2")) == NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")
    assert node_route_from(node("n2", cidr=None)) is None, "no podCIDR yet"
    assert node_route_from(node("n2", addresses=[])) is None, "no address yet"
    dual = node("n2", cidr="fd00:1::/64", cidrs=["fd00:1::/64", "10.244.2.0/24"])
    assert node_route_from(dual) == NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")
    external = node(
        "n2", addresses=[{"type": "Hostname", "address": "n2"}, {"type": "ExternalIP", "address": "1.2.3.4"}]
    )
    assert node_route_from(external) == NodeRoute("n2", "1.2.3.4", "10.244.2.0/24")


def test_node_route_from_takes_the_annotations_at_their_word() -> None:
    annotated = node(
        "n2", annotations={PUBLIC_IP_ANNOTATION: "192.168.9.2", VTEP_MAC_ANNOTATION: "0E:AA:BB:CC:DD:EE"}
    )
    assert node_route_from(annotated) == NodeRoute("n2", "192.168.9.2", "10.244.2.0/24", "0e:aa:bb:cc:dd:ee")
    junk = node("n2", annotations={PUBLIC_IP_ANNOTATION: "not-an-ip", VTEP_MAC_ANNOTATION: "zz"})
    assert node_route_from(junk) == NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")


def test_host_gw_routes_via_the_node_ips() -> None:
    desired = desired_host_gw(N1, [N1, N2, N3], uplink="eth0")
    assert desired.state == KernelState(
        routes=frozenset(
            {Route("10.244.2.0/24", "172.31.0.12", "eth0"), Route("10.244.3.0/24", "172.31.0.13", "eth0")}
        )
    )
    assert desired.skipped == ()
    assert [n.name for n in desired.nodes] == ["n2", "n3"]
    assert desired_host_gw(N1, [N2]).state.routes == {Route("10.244.2.0/24", "172.31.0.12", None)}


def test_host_gw_skips_nodes_off_the_segment() -> None:
    far = NodeRoute("far", "192.168.7.3", "10.244.9.0/24")
    desired = desired_host_gw(N1, [N2, far], uplink="eth0", uplink_networks=["172.31.0.11/24"])
    assert {r.dst for r in desired.state.routes} == {"10.244.2.0/24"}
    assert [s.node for s in desired.skipped] == ["far"]
    assert "use the vxlan overlay" in desired.skipped[0].reason


def test_vxlan_entries_per_remote_node() -> None:
    desired = desired_vxlan(N1, [N2, N3])
    assert desired.state.routes == {
        Route("10.244.2.0/24", "10.244.2.0", "flannel.1", onlink=True),
        Route("10.244.3.0/24", "10.244.3.0", "flannel.1", onlink=True),
    }
    assert desired.state.neighbours == {
        Neighbour("10.244.2.0", "0e:6b:ac:1f:00:0c", "flannel.1"),
        Neighbour("10.244.3.0", "0e:6b:ac:1f:00:0d", "flannel.1"),
    }
    assert desired.state.fdb == {
        FdbEntry("0e:6b:ac:1f:00:0c", "172.31.0.12", "flannel.1"),
        FdbEntry("0e:6b:ac:1f:00:0d", "172.31.0.13", "flannel.1"),
    }
    custom = desired_vxlan(
        N1, [NodeRoute("n2", "172.31.0.12", "10.244.2.0/24", "0e:aa:00:00:00:02")], device="vx0"
    )
    assert custom.state.fdb == {FdbEntry("0e:aa:00:00:00:02", "172.31.0.12", "vx0")}


def test_conflicting_nodes_are_skipped_with_reasons() -> None:
    remotes = [
        NodeRoute("a-overlaps-local", "172.31.0.20", "10.244.1.0/25"),
        NodeRoute("b-same-ip", "172.31.0.11", "10.244.5.0/24"),
        N2,
        NodeRoute("z-overlaps-n2", "172.31.0.21", "10.244.2.0/24"),
        NodeRoute("zz-mac", "172.31.0.22", "10.244.6.0/24", N2.mac),
    ]
    desired = desired_vxlan(N1, remotes)
    assert [n.name for n in desired.nodes] == ["n2"]
    reasons = {s.node: s.reason for s in desired.skipped}
    assert set(reasons) == {"a-overlaps-local", "b-same-ip", "z-overlaps-n2", "zz-mac"}
    assert "overlaps this node's" in reasons["a-overlaps-local"]
    assert "this node's IP" in reasons["b-same-ip"]
    assert "overlaps node n2's" in reasons["z-overlaps-n2"]
    assert "also node n2's" in reasons["zz-mac"]
    # The same conflicts in another order lose the same way (name order decides).
    assert desired_vxlan(N1, list(reversed(remotes))) == desired


def test_vxlan_device_spec() -> None:
    device = vxlan_device(N1, uplink="eth0", uplink_mtu=1500)
    assert (device.name, device.vni, device.port, device.mtu) == ("flannel.1", 1, 8472, 1450)
    assert (device.local_ip, device.uplink, device.mac, device.address) == (
        "172.31.0.11",
        "eth0",
        "0e:6b:ac:1f:00:0b",
        "10.244.1.0/32",
    )
    with pytest.raises(ValueError, match="too small for VXLAN"):
        vxlan_device(N1, uplink="eth0", uplink_mtu=600)
    with pytest.raises(ValueError, match="VNI"):
        vxlan_device(N1, uplink="eth0", uplink_mtu=1500, vni=0)
    with pytest.raises(ValueError, match="interface name"):
        vxlan_device(N1, uplink="eth0; reboot", uplink_mtu=1500)
