"""Field selectors: parsing, matching, and the fields each resource exposes."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.fieldsel import (
    FieldRequirement,
    FieldSelector,
    FieldSelectorError,
    escape_value,
    object_fields,
    parse_field_selector,
    parse_field_selector_for,
    supported_fields,
)

PARSE_CASES = [
    ("", ()),
    ("metadata.name=web", (FieldRequirement("metadata.name", "=", "web"),)),
    ("metadata.name==web", (FieldRequirement("metadata.name", "==", "web"),)),
    ("status.phase!=Running", (FieldRequirement("status.phase", "!=", "Running"),)),
    ("spec.nodeName=", (FieldRequirement("spec.nodeName", "=", ""),)),
    # Terms come out sorted, as kube sorts them.
    ("status.phase!=Failed,status.phase!=Succeeded,spec.nodeName=n1", (
        FieldRequirement("spec.nodeName", "=", "n1"),
        FieldRequirement("status.phase", "!=", "Failed"),
        FieldRequirement("status.phase", "!=", "Succeeded"),
    )),
    ("a=b,,c=d", (FieldRequirement("a", "=", "b"), FieldRequirement("c", "=", "d"))),
    (r"a=x\,y\=z\\", (FieldRequirement("a", "=", "x,y=z\\"),)),
    ("spec.clusterIP!=None", (FieldRequirement("spec.clusterIP", "!=", "None"),)),
    # No trimming: the space is part of the field name, which then is unsupported.
    ("a = b", (FieldRequirement("a ", "=", " b"),)),
]  # fmt: skip


@pytest.mark.parametrize(("query", "requirements"), PARSE_CASES)
def test_parse(query: str, requirements: tuple[FieldRequirement, ...]) -> None:
    assert parse_field_selector(query) == FieldSelector(requirements)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_parse_errors(query: str, message: str) -> None:
    with pytest.raises(FieldSelectorError) as raised:
        parse_field_selector(query)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("query", "fields", "matches"),
    [
        ("", {}, True),
        ("metadata.name=web", {"metadata.name": "web"}, True),
        ("metadata.name=web", {"metadata.name": "db"}, False),
        ("metadata.name!=web", {"metadata.name": "db"}, True),
        ("spec.nodeName=", {}, True),
        ("spec.nodeName!=", {}, False),
        (
            "spec.nodeName=n1,status.phase!=Succeeded",
            {"spec.nodeName": "n1", "status.phase": "Running"},
            True,
        ),
        (
            "spec.nodeName=n1,status.phase!=Succeeded",
            {"spec.nodeName": "n1", "status.phase": "Succeeded"},
            False,
        ),
    ],
)
def test_matches(query: str, fields: dict[str, str], matches: bool) -> None:
    assert parse_field_selector(query).matches(fields) is matches


def test_string_form_round_trips_with_escapes() -> None:
    selector = parse_field_selector(r"b==x\,y,a!=1")
    assert str(selector) == r"a!=1,b=x\,y"
    assert parse_field_selector(str(selector)).matches({"a": "2", "b": "x,y"})
    assert escape_value("a\\b,c=d") == r"a\\b\,c\=d"


def test_requires_exact_match() -> None:
    selector = parse_field_selector("spec.nodeName=n1,status.phase!=Failed")
    assert selector.requires_exact_match("spec.nodeName") == "n1"
    assert selector.requires_exact_match("status.phase") is None
    assert selector.empty is False
    assert parse_field_selector("").empty


@pytest.mark.parametrize(
    ("plural", "group", "fields"),
    [
        ("pods", "", {
            "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
            "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
            "status.podIP", "status.nominatedNodeName",
        }),
        ("events", "", {
            "metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
            "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
            "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
            "source", "type",
        }),
        ("secrets", "", {"metadata.name", "metadata.namespace", "type"}),
        ("services", "", {"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
        ("nodes", "", {"metadata.name", "spec.unschedulable"}),
        ("namespaces", "", {"metadata.name", "status.phase"}),
        ("replicasets", "apps", {"metadata.name", "metadata.namespace", "status.replicas"}),
        ("configmaps", "", {"metadata.name", "metadata.namespace"}),
        ("deployments", "apps", {"metadata.name", "metadata.namespace"}),
        ("endpointslices", "discovery.k8s.io", {"metadata.name", "metadata.namespace"}),
        ("ingressclasses", "networking.k8s.io", {"metadata.name", "metadata.namespace"}),
        # Same plural, other group: the core table does not apply.
        ("events", "events.k8s.io", {"metadata.name", "metadata.namespace"}),
        ("replicasets", "", {"metadata.name", "metadata.namespace"}),
    ],
)  # fmt: skip
def test_supported_fields(plural: str, group: str, fields: set[str]) -> None:
    assert supported_fields(plural, group) == frozenset(fields)


@pytest.mark.parametrize(
    ("query", "plural", "group", "message"),
    [
        ("spec.foo=1", "pods", "", "field label not supported: spec.foo"),
        ("metadata.namespace=x", "nodes", "", "field label not supported: metadata.namespace"),
        ("metadata.name=a,spec.type=x", "configmaps", "", "field label not supported: spec.type"),
        ("a = b", "pods", "", "field label not supported: a "),
    ],
)
def test_unsupported_fields(query: str, plural: str, group: str, message: str) -> None:
    with pytest.raises(FieldSelectorError) as raised:
        parse_field_selector_for(query, plural, group)
    assert str(raised.value) == message


def test_supported_selector_passes_the_check() -> None:
    selector = parse_field_selector_for("spec.clusterIP!=None,metadata.name=kubernetes", "services", "")
    assert selector.matches({"spec.clusterIP": "10.96.0.1", "metadata.name": "kubernetes"})


POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "default", "hostNetwork": True},
    "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]},
}  # fmt: skip


def test_pod_fields() -> None:
    assert object_fields("pods", "", POD) == {
        "metadata.name": "web-1",
        "metadata.namespace": "default",
        "spec.nodeName": "n1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default",
        "spec.hostNetwork": "true",
        "status.phase": "Running",
        "status.podIP": "10.0.0.5",
        "status.nominatedNodeName": "",
    }


def test_pod_fields_of_a_fresh_pod() -> None:
    fields = object_fields("pods", "", {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}})
    assert fields["spec.hostNetwork"] == "false"
    assert fields["spec.nodeName"] == ""
    assert fields["status.podIP"] == ""
    old_style = object_fields("pods", "", {"metadata": {}, "status": {"podIP": "10.1.1.1"}})
    assert old_style["status.podIP"] == "10.1.1.1"


def test_event_fields() -> None:
    event = {
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1",
                           "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled",
        "type": "Normal",
        "reportingComponent": "kubelet",
        "source": {"component": "kubelet", "host": "n1"},
    }  # fmt: skip
    fields = object_fields("events", "", event)
    assert fields["involvedObject.kind"] == "Pod"
    assert fields["involvedObject.fieldPath"] == "spec.containers{web}"
    assert fields["involvedObject.resourceVersion"] == "42"
    assert fields["source"] == "kubelet"
    assert fields["reportingComponent"] == "kubelet"
    assert fields["reason"] == "Pulled"
    # With no source.component, source falls back to the reporting controller.
    assert object_fields("events", "", {"reportingComponent": "scheduler"})["source"] == "scheduler"


@pytest.mark.parametrize(
    ("plural", "group", "obj", "expected"),
    [
        ("nodes", "", {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}},
         {"metadata.name": "n1", "spec.unschedulable": "true"}),
        ("nodes", "", {"metadata": {"name": "n1"}}, {"metadata.name": "n1", "spec.unschedulable": "false"}),
        ("namespaces", "", {"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}},
         {"metadata.name": "ns", "status.phase": "Terminating"}),
        ("secrets", "", {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"},
         {"metadata.name": "s", "metadata.namespace": "d", "type": "Opaque"}),
        ("services", "", {"metadata": {"name": "s", "namespace": "d"}, "spec": {"clusterIP": "None"}},
         {"metadata.name": "s", "metadata.namespace": "d", "spec.clusterIP": "None", "spec.type": ""}),
        ("replicasets", "apps", {"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 3}},
         {"metadata.name": "r", "metadata.namespace": "d", "status.replicas": "3"}),
        ("replicasets", "apps", {"metadata": {"name": "r", "namespace": "d"}, "status": {}},
         {"metadata.name": "r", "metadata.namespace": "d", "status.replicas": "0"}),
        ("ingressclasses", "networking.k8s.io", {"metadata": {"name": "nginx"}},
         {"metadata.name": "nginx", "metadata.namespace": ""}),
        ("configmaps", "", {"metadata": "garbage"}, {"metadata.name": "", "metadata.namespace": ""}),
    ],
)  # fmt: skip
def test_object_fields(plural: str, group: str, obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert object_fields(plural, group, obj) == expected


def test_kube_proxy_and_kubelet_style_queries() -> None:
    headless = {"metadata": {"name": "h", "namespace": "d"}, "spec": {"clusterIP": "None"}}
    normal = {"metadata": {"name": "n", "namespace": "d"}, "spec": {"clusterIP": "10.96.0.10"}}
    not_headless = parse_field_selector_for("spec.clusterIP!=None", "services", "")
    assert not not_headless.matches(object_fields("services", "", headless))
    assert not_headless.matches(object_fields("services", "", normal))
    on_node = parse_field_selector_for("spec.nodeName=n1", "pods", "")
    assert on_node.matches(object_fields("pods", "", POD))
    assert not on_node.matches(object_fields("pods", "", {"spec": {"nodeName": "n2"}}))
