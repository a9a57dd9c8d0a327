"""The container environment as the kubelet builds it: service links, $(VAR) expansion, sources."""

from __future__ import annotations

import base64
from fractions import Fraction
from typing import Any

import pytest

from kubelite.agent.envvars import (
    EnvSourceError,
    ServiceInfo,
    container_env,
    expand,
    expand_command,
    parse_quantity,
    service_env,
    service_info,
    services_for_pod,
)

Obj = dict[str, Any]


# --- service variables ----------------------------------------------------------------------------


def test_single_unnamed_port_matches_the_documented_example() -> None:
    svc = ServiceInfo("redis-primary", "10.0.0.11", (("", 6379, "TCP"),))
    assert service_env([svc]) == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.0.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_PORT": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.0.0.11",
    }


def test_multi_port_service_with_names_in_the_kubelets_order() -> None:
    svc = ServiceInfo("foo-bar", "1.2.3.4", (("http-api", 8083, "TCP"), ("dns", 53, "UDP")))
    assert list(service_env([svc]).items()) == [
        ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
        ("FOO_BAR_SERVICE_PORT", "8083"),
        ("FOO_BAR_SERVICE_PORT_HTTP_API", "8083"),
        ("FOO_BAR_SERVICE_PORT_DNS", "53"),
        ("FOO_BAR_PORT", "tcp://1.2.3.4:8083"),
        ("FOO_BAR_PORT_8083_TCP", "tcp://1.2.3.4:8083"),
        ("FOO_BAR_PORT_8083_TCP_PROTO", "tcp"),
        ("FOO_BAR_PORT_8083_TCP_PORT", "8083"),
        ("FOO_BAR_PORT_8083_TCP_ADDR", "1.2.3.4"),
        ("FOO_BAR_PORT_53_UDP", "udp://1.2.3.4:53"),
        ("FOO_BAR_PORT_53_UDP_PROTO", "udp"),
        ("FOO_BAR_PORT_53_UDP_PORT", "53"),
        ("FOO_BAR_PORT_53_UDP_ADDR", "1.2.3.4"),
    ]


def test_same_port_two_protocols_and_ipv6_brackets() -> None:
    svc = ServiceInfo("dns", "fd00::a", (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")))
    env = service_env([svc])
    assert env["DNS_PORT"] == "udp://[fd00::a]:53"
    assert env["DNS_PORT_53_TCP"] == "tcp://[fd00::a]:53"
    assert env["DNS_PORT_53_UDP_ADDR"] == "fd00::a"
    assert env["DNS_SERVICE_PORT_DNS_TCP"] == "53"


def test_services_without_a_cluster_ip_get_no_variables() -> None:
    services = [
        ServiceInfo("headless", "None", (("", 80, "TCP"),)),
        ServiceInfo("pending", "", (("", 80, "TCP"),)),
    ]
    assert service_env(services) == {}


def test_service_info_from_an_api_object() -> None:
    svc: Obj = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80}, {"port": 443, "protocol": "TCP"}],
        },
    }
    assert service_info(svc) == (
        "shop",
        ServiceInfo("web", "10.96.0.20", (("http", 80, "TCP"), ("", 443, "TCP"))),
    )


def _cluster() -> list[tuple[str, ServiceInfo]]:
    return [
        ("default", ServiceInfo("kubernetes", "10.96.0.1", (("https", 443, "TCP"),))),
        ("default", ServiceInfo("other", "10.96.0.5", (("", 80, "TCP"),))),
        ("shop", ServiceInfo("web", "10.96.0.20", (("", 80, "TCP"),))),
        ("shop", ServiceInfo("db", "None", (("", 5432, "TCP"),))),
        ("blog", ServiceInfo("web", "10.96.0.30", (("", 80, "TCP"),))),
    ]


def test_a_pod_sees_its_namespace_and_the_master_service() -> None:
    names = [(s.name, s.cluster_ip) for s in services_for_pod("shop", _cluster(), True)]
    assert names == [("kubernetes", "10.96.0.1"), ("web", "10.96.0.20")]


def test_without_service_links_only_the_master_service_remains() -> None:
    assert [s.name for s in services_for_pod("shop", _cluster(), False)] == ["kubernetes"]
    assert [s.name for s in services_for_pod("default", _cluster(), False)] == ["kubernetes"]
    assert [s.name for s in services_for_pod("default", _cluster(), True)] == ["kubernetes", "other"]


@pytest.mark.parametrize("first", [True, False])
def test_a_service_named_kubernetes_in_the_pods_namespace_wins(first: bool) -> None:
    mine = ("shop", ServiceInfo("kubernetes", "10.96.0.99", (("", 8080, "TCP"),)))
    services = [mine, *_cluster()] if first else [*_cluster(), mine]
    chosen = {s.name: s.cluster_ip for s in services_for_pod("shop", services, True)}
    assert chosen["kubernetes"] == "10.96.0.99"


# --- expansion (cases from third_party/forked/golang/expansion/expand_test.go) --------------------

CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("$VAR_A)", "$VAR_A)"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_B)_______$(A", "B_______$(A"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("--$($($($($--", "--$($($($($--"),
        ("$(foo$$var)", "$(foo$$var)"),
        ("\n", "\n"),
        ("$(VAR_A)é$é", "Aé$é"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


def test_expand_command_expands_command_and_args() -> None:
    command, args = expand_command(
        ["sh", "-c", "echo $(GREETING)"], ["$(WHO)", "$$(WHO)"], {"GREETING": "hi", "WHO": "you"}
    )
    assert command == ["sh", "-c", "echo hi"]
    assert args == ["you", "$(WHO)"]


# --- container_env ---------------------------------------------------------------------------------


def _pod(**spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "1234-5678",
            "labels": {"app": "web"},
            "annotations": {"team": "blue"},
        },
        "spec": {"nodeName": "node-a", "serviceAccountName": "default", **spec},
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIG_MAPS: dict[str, Obj] = {
    "settings": {"data": {"MODE": "fast", "LEVEL": "3"}},
    "extra": {"data": {"MODE": "slow", "COLOR": "red"}},
}
SECRETS: dict[str, Obj] = {"creds": {"data": {"PASSWORD": _b64("s3cret"), "USER": _b64("admin")}}}


def _env(
    container: Obj, *, service_vars: dict[str, str] | None = None, pod: Obj | None = None, **kw: Any
) -> dict[str, str]:
    pairs = container_env(
        container,
        pod or _pod(),
        service_vars=service_vars or {},
        config_maps=CONFIG_MAPS.get,
        secrets=SECRETS.get,
        node_ip=kw.pop("node_ip", "192.168.1.10"),
        pod_ip="10.244.1.7",
        pod_ips=["10.244.1.7"],
        **kw,
    )
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), "each variable appears once"
    return dict(pairs)


def test_env_from_with_prefix_and_later_sources_win() -> None:
    env = _env(
        {
            "envFrom": [
                {"configMapRef": {"name": "settings"}},
                {"configMapRef": {"name": "extra"}},
                {"secretRef": {"name": "creds"}, "prefix": "DB_"},
            ]
        }
    )
    assert env == {"MODE": "slow", "LEVEL": "3", "COLOR": "red", "DB_PASSWORD": "s3cret", "DB_USER": "admin"}


def test_env_overrides_env_from_and_expands_against_earlier_and_service_vars() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "env": [
            {"name": "MODE", "value": "careful"},
            {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/$(MODE)/$(LATER)"},
            {"name": "LATER", "value": "x"},
            {"name": "LITERAL", "value": "$$(MODE)"},
        ],
    }
    service_vars = {"WEB_SERVICE_HOST": "10.96.0.20", "WEB_SERVICE_PORT": "80", "LEVEL": "from-service"}
    pairs = container_env(
        container,
        _pod(),
        service_vars=service_vars,
        config_maps=CONFIG_MAPS.get,
        secrets=SECRETS.get,
        node_ip="192.168.1.10",
        pod_ip="10.244.1.7",
        pod_ips=["10.244.1.7"],
    )
    env = dict(pairs)
    assert env["MODE"] == "careful"
    assert env["URL"] == "http://10.96.0.20:80/careful/$(LATER)"  # earlier env wins; later ones stay literal
    assert env["LITERAL"] == "$(MODE)"
    assert env["LEVEL"] == "3"  # the container's own variables win over service variables
    assert env["WEB_SERVICE_HOST"] == "10.96.0.20"
    # Declared variables come first, service variables after them.
    assert [n for n, _ in pairs][-2:] == ["WEB_SERVICE_HOST", "WEB_SERVICE_PORT"]


def test_empty_value_without_source_is_an_empty_variable() -> None:
    assert _env({"env": [{"name": "EMPTY"}, {"name": "ALSO", "value": ""}]}) == {"EMPTY": "", "ALSO": ""}


def test_key_refs_and_secret_decoding() -> None:
    env = _env(
        {
            "env": [
                {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
            ]
        }
    )
    assert env == {"M": "fast", "P": "s3cret"}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        ({"envFrom": [{"secretRef": {"name": "nope"}}]}, 'secret "nope" not found'),
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]},
            'configmap "nope" not found',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]},
            "couldn't find key k in ConfigMap shop/settings",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]},
            "couldn't find key k in Secret shop/creds",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.restartPolicy"}}}]},
            "unsupported fieldPath: spec.restartPolicy",
        ),
    ],
)
def test_missing_sources_are_create_container_config_errors(container: Obj, message: str) -> None:
    with pytest.raises(EnvSourceError) as info:
        _env(container)
    assert info.value.message == message
    assert info.value.reason == "CreateContainerConfigError"


def test_optional_sources_that_are_missing_are_skipped() -> None:
    env = _env(
        {
            "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
            "env": [
                {
                    "name": "A",
                    "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
                {
                    "name": "B",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": True}},
                },
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": True}}},
                {"name": "D", "value": "d"},
            ],
        }
    )
    assert env == {"D": "d"}


def test_field_refs() -> None:
    fields = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "TEAM": "metadata.annotations['team']",
        "MISSING": "metadata.labels['nope']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "HOST_IP": "status.hostIP",
        "HOST_IPS": "status.hostIPs",
        "POD_IP": "status.podIP",
        "POD_IPS": "status.podIPs",
    }
    env = _env({"env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in fields.items()]})
    assert env == {
        "NAME": "web-1",
        "NS": "shop",
        "UID": "1234-5678",
        "APP": "web",
        "TEAM": "blue",
        "MISSING": "",
        "NODE": "node-a",
        "SA": "default",
        "HOST_IP": "192.168.1.10",
        "HOST_IPS": "192.168.1.10",
        "POD_IP": "10.244.1.7",
        "POD_IPS": "10.244.1.7",
    }


def _resource(name: str, resource: str, divisor: str | None = None, container_name: str | None = None) -> Obj:
    ref: Obj = {"resource": resource}
    if divisor:
        ref["divisor"] = divisor
    if container_name:
        ref["containerName"] = container_name
    return {"name": name, "valueFrom": {"resourceFieldRef": ref}}


def test_resource_field_refs_with_divisors_and_node_defaults() -> None:
    container = {
        "name": "app",
        "resources": {"limits": {"cpu": "1500m", "memory": "128Mi"}, "requests": {"memory": "64Mi"}},
        "env": [
            _resource("CPU_LIMIT", "limits.cpu"),
            _resource("CPU_LIMIT_M", "limits.cpu", "1m"),
            _resource("MEM_LIMIT", "limits.memory"),
            _resource("MEM_LIMIT_MI", "limits.memory", "1Mi"),
            _resource("MEM_REQUEST_MI", "requests.memory", "1Mi"),
            _resource("CPU_REQUEST_M", "requests.cpu", "1m"),  # defaults to the limit
            _resource("STORAGE_LIMIT", "limits.ephemeral-storage", "1Gi"),  # no limit: allocatable
            _resource("STORAGE_REQUEST", "requests.ephemeral-storage"),  # nothing: 0
        ],
    }
    env = _env(container, node_allocatable={"cpu": "4", "memory": "8Gi", "ephemeral-storage": "20Gi"})
    assert env == {
        "CPU_LIMIT": "2",  # rounded up
        "CPU_LIMIT_M": "1500",
        "MEM_LIMIT": str(128 * 2**20),
        "MEM_LIMIT_MI": "128",
        "MEM_REQUEST_MI": "64",
        "CPU_REQUEST_M": "1500",
        "STORAGE_LIMIT": "20",
        "STORAGE_REQUEST": "0",
    }


def test_resource_field_ref_of_another_container_and_unknown_names() -> None:
    pod = _pod(containers=[{"name": "app"}, {"name": "side", "resources": {"limits": {"memory": "1Gi"}}}])
    env = _env({"name": "app", "env": [_resource("SIDE_MEM", "limits.memory", "1Mi", "side")]}, pod=pod)
    assert env == {"SIDE_MEM": "1024"}
    with pytest.raises(EnvSourceError, match="container ghost not found"):
        _env({"name": "app", "env": [_resource("X", "limits.cpu", None, "ghost")]}, pod=pod)
    with pytest.raises(EnvSourceError, match="unsupported container resource : cpu"):
        _env({"name": "app", "env": [_resource("X", "cpu")]})


def test_cpu_limit_defaults_to_the_hosts_cpus() -> None:
    env = _env({"name": "app", "env": [_resource("CPU", "limits.cpu")]})
    assert int(env["CPU"]) >= 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        (3, Fraction(3)),
        ("1.5", Fraction(3, 2)),
        ("128Mi", Fraction(128 * 2**20)),
        ("1G", Fraction(10**9)),
        ("1e3", Fraction(1000)),
        ("100u", Fraction(1, 10**4)),
        (".5Ki", Fraction(512)),
    ],
)
def test_parse_quantity(text: object, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "5 Mi", "1mi", "abc"])
def test_parse_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="is not a resource quantity"):
        parse_quantity(text)
