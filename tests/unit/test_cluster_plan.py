"""kubelite up's plan: names, addresses, and refusing overlaps, before anything is touched."""

from __future__ import annotations

import pytest

from kubelite.cluster.plan import make_plan, overlapping_routes


def _plan(**kw: object) -> object:
    args: dict[str, object] = {
        "name": "kl",
        "nodes": 3,
        "node_cidr": "172.30.0.0/24",
        "cluster_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/12",
    }
    args.update(kw)
    return make_plan(**args)  # type: ignore[arg-type]


def test_plan_names_and_addresses() -> None:
    plan = make_plan(
        name="kl",
        nodes=3,
        node_cidr="172.30.0.0/24",
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/12",
    )
    assert plan.bridge == "kl-kl"
    assert plan.gateway == "172.30.0.1"
    assert [(n.name, n.ip, n.host_veth) for n in plan.nodes] == [
        ("kl-node1", "172.30.0.11", "kl-kl-1"),
        ("kl-node2", "172.30.0.12", "kl-kl-2"),
        ("kl-node3", "172.30.0.13", "kl-kl-3"),
    ]
    assert plan.lb_pool == "172.30.0.200-172.30.0.254"
    assert plan.prefixlen == 24


def test_interface_names_fit_the_kernel_limit() -> None:
    plan = make_plan(
        name="abcdefghi",
        nodes=50,
        node_cidr="172.30.0.0/24",
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/12",
    )
    assert max(len(n.host_veth) for n in plan.nodes) <= 15
    assert len(plan.bridge) <= 15


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "Bad_Name"}, "cluster name"),
        ({"name": "waytoolongname"}, "cluster name"),
        ({"nodes": 0}, "--nodes 0"),
        ({"node_cidr": "10.244.1.0/24"}, "--node-cidr 10.244.1.0/24 overlaps --cluster-cidr"),
        ({"service_cidr": "10.240.0.0/12"}, "overlaps --service-cidr"),
        ({"cluster_cidr": "nonsense"}, "is not a CIDR"),
    ],
)
def test_bad_plans_are_refused_with_a_sentence(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _plan(**kw)


def test_overlapping_host_routes_are_reported() -> None:
    plan = make_plan(
        name="kl",
        nodes=1,
        node_cidr="172.30.0.0/24",
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/12",
    )
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "ens4"},
        {"dst": "172.30.0.0/16", "dev": "docker0"},
        {"dst": "10.244.7.0/24", "dev": "cni9"},
        {"dst": "127.0.0.0/8", "dev": "lo", "type": "local"},
        {"dst": "192.0.2.0/24", "dev": "ens4"},
    ]
    problems = overlapping_routes(plan, routes)
    assert problems == [
        "the node network (--node-cidr) 172.30.0.0/24 overlaps the host's route to 172.30.0.0/16"
        " (dev docker0)",
        "the pod network (--cluster-cidr) 10.244.0.0/16 overlaps the host's route to 10.244.7.0/24"
        " (dev cni9)",
    ]
