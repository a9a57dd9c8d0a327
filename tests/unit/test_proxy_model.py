"""The proxy's pure model: service ports from Services, endpoints from slices, change tracking."""

from __future__ import annotations

from typing import Any

from kubelite.proxy.model import (
    ChangeTracker,
    Endpoint,
    ServicePortName,
    chain_suffix,
    cluster_endpoints,
    endpoints_from_slices,
    local_endpoints,
    service_ports,
)


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "ClusterIP",
        "clusterIP": "10.96.0.20",
        "clusterIPs": ["10.96.0.20"],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
    }
    base.update(spec)
    return {"metadata": {"namespace": "default", "name": name}, "spec": base}


def eps_slice(
    name: str, service: str, eps: list[dict[str, Any]], port: int = 8080, pname: str = "http"
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": pname, "port": port, "protocol": "TCP"}],
        "endpoints": eps,
    }


def test_service_ports_cover_every_type() -> None:
    [p] = service_ports(svc())
    assert p.name == ServicePortName("default", "web", "http", "TCP")
    assert (p.cluster_ips, p.port, p.node_port, p.affinity_seconds) == (("10.96.0.20",), 80, 0, 0)
    [p] = service_ports(
        svc(
            type="NodePort",
            ports=[{"name": "http", "port": 80, "nodePort": 30036}],
            externalTrafficPolicy="Local",
            sessionAffinity="ClientIP",
        )
    )
    assert (p.node_port, p.external_local, p.affinity_seconds) == (30036, True, 10800)
    lb = svc(type="LoadBalancer", ports=[{"port": 80, "nodePort": 31000}], externalIPs=["80.11.12.10"])
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}}
    [p] = service_ports(lb)
    assert (p.load_balancer_ips, p.external_ips) == (("172.30.0.200",), ("80.11.12.10",))
    assert service_ports(svc(clusterIP="None", clusterIPs=["None"])) == []
    assert service_ports(svc(type="ExternalName", externalName="example.com", clusterIP="")) == []


def test_endpoints_from_slices_merge_and_mark_local() -> None:
    slices = [
        eps_slice(
            "a", "web", [{"addresses": ["10.244.0.5"], "nodeName": "n1", "conditions": {"ready": True}}]
        ),
        eps_slice(
            "b",
            "web",
            [
                {
                    "addresses": ["10.244.1.5"],
                    "nodeName": "n2",
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                }
            ],
        ),
    ]
    got = endpoints_from_slices(slices, "n1")
    spn = ServicePortName("default", "web", "http", "TCP")
    assert got[spn] == (
        Endpoint("10.244.0.5", 8080, ready=True, serving=True, node_name="n1", is_local=True),
        Endpoint("10.244.1.5", 8080, ready=False, serving=True, terminating=True, node_name="n2"),
    )


def test_terminating_endpoints_only_when_nothing_else_is_left() -> None:
    [sp] = service_ports(svc())
    ready = Endpoint("10.0.0.1", 80)
    draining = Endpoint("10.0.0.2", 80, ready=False, serving=True, terminating=True)
    gone = Endpoint("10.0.0.3", 80, ready=False, serving=False, terminating=True)
    assert cluster_endpoints(sp, [ready, draining, gone]) == (ready,)
    assert cluster_endpoints(sp, [draining, gone]) == (draining,)
    assert local_endpoints([ready]) == ()


def test_change_tracker_reports_only_what_changed() -> None:
    t = ChangeTracker("n1", ("172.30.0.11",))
    t.service(svc("web"), ("default", "web"))
    t.service(svc("api", clusterIP="10.96.0.21", clusterIPs=["10.96.0.21"]), ("default", "api"))
    state, changed = t.take()
    assert changed is None and len(state.services) == 2  # first sync is full
    t.slice(eps_slice("web-1", "web", [{"addresses": ["10.244.0.5"]}]), ("default", "web-1"), "web")
    state, changed = t.take()
    assert changed == {ServicePortName("default", "web", "http", "TCP")}
    assert state.endpoints_of(ServicePortName("default", "web", "http", "TCP"))[0].ip == "10.244.0.5"
    t.service(svc("web"), ("default", "web"))  # the same object again: nothing to do
    assert t.take()[1] == frozenset()
    t.service(None, ("default", "api"))
    state, changed = t.take()
    assert changed == {ServicePortName("default", "api", "http", "TCP")} and len(state.services) == 1
    t.set_node_ips(["172.30.0.11", "172.30.0.12"])
    assert t.take()[1] is None


def test_chain_suffix_is_kube_proxys_sixteen_characters() -> None:
    s = chain_suffix(ServicePortName("default", "web", "http", "TCP"))
    assert (
        len(s) == 16 and s.isupper() and s == chain_suffix(ServicePortName("default", "web", "http", "TCP"))
    )


def test_load_balancer_source_ranges_from_the_field_or_the_annotation() -> None:
    lb = svc(type="LoadBalancer", loadBalancerSourceRanges=["10.1.2.3/16", " 192.0.2.0/24", "bad", "::/0"])
    [p] = service_ports(lb)
    assert p.source_ranges == ("10.1.0.0/16", "192.0.2.0/24")
    annotated = svc(type="LoadBalancer")
    annotated["metadata"]["annotations"] = {
        "service.beta.kubernetes.io/load-balancer-source-ranges": "198.51.100.0/24, 203.0.113.7/32"
    }
    assert service_ports(annotated)[0].source_ranges == ("198.51.100.0/24", "203.0.113.7/32")
    assert service_ports(svc(loadBalancerSourceRanges=["10.0.0.0/8"]))[0].source_ranges == ()
