"""Pure pieces of the API server: path parsing, negotiation, validation, conversion, tokens."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api import errors
from kubelite.api.convert import ingress_from_v1, ingress_to_v1
from kubelite.api.defaults import apply_defaults
from kubelite.api.resources import INDEX
from kubelite.api.service import default_service, validate_service_spec
from kubelite.api.validation import validate_object
from kubelite.apiserver import codec, discovery
from kubelite.apiserver.objects import decode_continue, encode_continue
from kubelite.apiserver.registry.pod import qos_class
from kubelite.apiserver.requestinfo import parse_request_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/namespaces/default/services/web", ("", "v1", "default", "services", "web", "")),
        (
            "/api/v1/namespaces/default/services/web/status",
            ("", "v1", "default", "services", "web", "status"),
        ),
        (
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            ("apps", "v1", "ns", "deployments", "d", "scale"),
        ),
        ("/api/v1/namespaces/kube-system", ("", "v1", "", "namespaces", "kube-system", "")),
        ("/api/v1/namespaces/x/finalize", ("", "v1", "", "namespaces", "x", "finalize")),
        ("/api/v1/nodes/n1/status", ("", "v1", "", "nodes", "n1", "status")),
        (
            "/apis/discovery.k8s.io/v1/endpointslices",
            ("discovery.k8s.io", "v1", "", "endpointslices", "", ""),
        ),
    ],
)
def test_request_paths(path: str, expected: tuple[str, ...]) -> None:
    info = parse_request_path(path)
    assert info.is_resource
    assert (info.group, info.version, info.namespace, info.resource, info.name, info.subresource) == expected


@pytest.mark.parametrize("path", ["/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/version"])
def test_discovery_paths_are_not_resources(path: str) -> None:
    assert not parse_request_path(path).is_resource


def test_proxy_tail_is_kept() -> None:
    info = parse_request_path("/api/v1/namespaces/d/services/web:http/proxy/a/b")
    assert info.subresource == "proxy" and info.rest == ("a", "b")


def test_negotiation() -> None:
    table = codec.negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", allow_table=True)
    assert table.table
    assert not codec.negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").table
    assert codec.negotiate("application/yaml").yaml
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    agg = codec.negotiate(accept, allow_discovery=True)
    assert agg.discovery == "v2"
    assert codec.negotiate("application/vnd.kubernetes.protobuf,application/json") == codec.ResponseFormat()
    with pytest.raises(errors.StatusError) as info:
        codec.negotiate("text/html")
    assert info.value.code == 406


def test_decode_body_errors() -> None:
    with pytest.raises(errors.StatusError) as info:
        codec.decode_body(b"{", "application/json")
    assert info.value.code == 400
    with pytest.raises(errors.StatusError) as info:
        codec.decode_body(b"a: b", "text/plain")
    assert info.value.code == 415
    assert codec.decode_body(b"kind: Service\nmetadata: {name: x}\n", "application/yaml") == {
        "kind": "Service",
        "metadata": {"name": "x"},
    }


def _service(**spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"},
                           "spec": spec}  # fmt: skip
    default_service(obj)
    return obj


def test_service_defaults() -> None:
    svc = _service(ports=[{"port": 80}], sessionAffinity="ClientIP", type="NodePort")
    port = svc["spec"]["ports"][0]
    assert port == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
    assert svc["spec"]["internalTrafficPolicy"] == "Cluster"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name", "Required value"),
        (
            {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]},
            "spec.ports[1].name",
            "Duplicate",
        ),
        ({"ports": [{"port": 0}]}, "spec.ports[0].port", "must be between 1 and 65535"),
        ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol", "Unsupported value"),
        (
            {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]},
            "spec.ports[0].nodePort",
            "Forbidden",
        ),
        ({"type": "ExternalName"}, "spec.externalName", "Required value"),
        ({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 1}]}, "spec.clusterIPs[0]", "None"),
        ({"type": "Bogus"}, "spec.type", "Unsupported value"),
        ({}, "spec.ports", "Required value"),
        (
            {
                "type": "LoadBalancer",
                "ports": [{"port": 80}],
                "loadBalancerSourceRanges": ["10.0.0.0/8", "x"],
            },
            "spec.loadBalancerSourceRanges[1]",
            "must be a list of IP ranges",
        ),
        (
            {"ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8"]},
            "spec.loadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ),
        (
            {"type": "NodePort", "ports": [{"port": 80}], "healthCheckNodePort": 31000},
            "spec.healthCheckNodePort",
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ),
    ],
)
def test_service_validation(spec: dict[str, Any], field: str, message: str) -> None:
    causes = validate_service_spec(_service(**spec))
    assert any(c.field == field and message in c.message for c in causes), causes


def test_headless_and_external_name_need_no_ports() -> None:
    assert validate_service_spec(_service(clusterIP="None")) == []
    assert validate_service_spec(_service(type="ExternalName", externalName="example.com.")) == []


def test_metadata_validation_messages() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": "d",
                                                                 "labels": {"bad key": "v"}}}  # fmt: skip
    causes = validate_object(obj, "ConfigMap", namespaced=True)
    fields = [c.field for c in causes]
    assert "metadata.name" in fields and "metadata.labels" in fields
    err = errors.invalid("", "ConfigMap", "Bad_Name", causes)
    assert err.code == 422 and err.message.startswith('ConfigMap "Bad_Name" is invalid: [metadata.name')


def test_workload_selector_must_match_template() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
           "spec": {"selector": {"matchLabels": {"app": "a"}},
                    "template": {"metadata": {"labels": {"app": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}}}  # fmt: skip
    apply_defaults(obj, "Deployment")
    causes = validate_object(obj, "Deployment", namespaced=True)
    assert [c.field for c in causes] == ["spec.template.metadata.labels"]
    assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}


def test_endpoints_reject_special_addresses() -> None:
    for ip in ("127.0.0.1", "169.254.1.1", "0.0.0.0", "224.0.0.5"):
        obj = {"metadata": {"name": "e", "namespace": "d"}, "subsets": [{"addresses": [{"ip": ip}]}]}
        assert validate_object(obj, "Endpoints", namespaced=True), ip


def test_ingress_conversion_round_trip() -> None:
    beta = {
        "apiVersion": "extensions/v1beta1",
        "kind": "Ingress",
        "metadata": {"name": "i"},
        "spec": {
            "backend": {"serviceName": "default", "servicePort": 80},
            "rules": [{"host": "foo.com", "http": {"paths": [{"path": "/a", "backend": {
                "serviceName": "a", "servicePort": "http"}}]}}],
        },
    }  # fmt: skip
    v1 = ingress_to_v1(beta)
    assert v1["apiVersion"] == "networking.k8s.io/v1"
    assert v1["spec"]["defaultBackend"] == {"service": {"name": "default", "port": {"number": 80}}}
    path = v1["spec"]["rules"][0]["http"]["paths"][0]
    assert path["pathType"] == "ImplementationSpecific"
    assert path["backend"] == {"service": {"name": "a", "port": {"name": "http"}}}
    back = ingress_from_v1(v1, "extensions/v1beta1")
    assert back["spec"]["backend"] == beta["spec"]["backend"]
    assert back["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {
        "serviceName": "a",
        "servicePort": "http",
    }


def test_continue_tokens() -> None:
    prefix = "/registry/configmaps/default/"
    token = encode_continue(42, prefix + "cm-7", prefix)
    assert decode_continue(token, prefix) == (42, prefix + "cm-7")
    with pytest.raises(errors.StatusError) as info:
        decode_continue("not-a-token", prefix)
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ],
)
def test_qos_class(resources: list[dict[str, Any]], expected: str) -> None:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert qos_class(spec) == expected


def test_discovery_documents_cover_every_resource() -> None:
    agg = discovery.aggregated(INDEX, legacy=False, version="v2")
    served = {(item["metadata"]["name"], v["version"], r["resource"])
              for item in agg["items"] for v in item["versions"] for r in v["resources"]}  # fmt: skip
    for rt in INDEX.by_path.values():
        if rt.group:
            assert (rt.group, rt.version, rt.plural) in served
    core = discovery.api_resource_list(INDEX, "", "v1")
    assert core is not None
    scale = [r for r in (discovery.api_resource_list(INDEX, "apps", "v1") or {})["resources"]
             if r["name"] == "deployments/scale"]  # fmt: skip
    assert scale[0]["group"] == "autoscaling" and scale[0]["kind"] == "Scale"
