"""health_checks: one entry per health check node port, counting this node's ready endpoint addresses."""

from __future__ import annotations

from kubelite.proxy.healthcheck import HealthCheck, health_checks
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName


def test_local_ready_addresses_are_counted_once_across_ports() -> None:
    http, https = ServicePortName("ns", "lb", "http"), ServicePortName("ns", "lb", "https")
    other = ServicePortName("ns", "plain", "")
    services = {
        http: ServicePort(
            http, ("10.96.0.1",), 80, "TCP", 80, external_local=True, health_check_node_port=31000
        ),
        https: ServicePort(
            https, ("10.96.0.1",), 443, "TCP", 443, external_local=True, health_check_node_port=31000
        ),
        other: ServicePort(other, ("10.96.0.2",), 80, "TCP", 80, health_check_node_port=0),
    }
    mine, theirs, unready = (
        Endpoint("10.244.1.5", 80, is_local=True),
        Endpoint("10.244.2.5", 80),
        Endpoint("10.244.1.6", 80, ready=False, is_local=True),
    )
    endpoints = {http: (mine, theirs, unready), https: (Endpoint("10.244.1.5", 443, is_local=True),)}
    assert health_checks(ProxyState(services, endpoints)) == {31000: HealthCheck("ns", "lb", 1)}
    assert health_checks(ProxyState(services, {})) == {31000: HealthCheck("ns", "lb", 0)}
