"""The OpenAPI documents, checked the way kubectl reads them (explain, fieldValidation, apply)."""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any

import pytest

from kubelite.api.resources import RESOURCES, ResourceType
from kubelite.apiserver.openapi import OpenAPIDocuments

Json = dict[str, Any]


@pytest.fixture(scope="module")
def docs() -> OpenAPIDocuments:
    documents = OpenAPIDocuments()
    documents.warm()
    return documents


@pytest.fixture(scope="module")
def v2(docs: OpenAPIDocuments) -> Json:
    parsed: Json = json.loads(docs.v2())
    return parsed


def v3_for(docs: OpenAPIDocuments, rt: ResourceType) -> Json:
    body = docs.v3(f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}")
    assert body is not None
    parsed: Json = json.loads(body)
    return parsed


def gvk(rt: ResourceType, kind: str | None = None) -> Json:
    return {"group": rt.group, "version": rt.version, "kind": kind or rt.kind}


def resolve(doc: Json, schema: Json) -> Json:
    """Follow $ref and single-element allOf, as kubectl explain and the patch builder do."""
    while True:
        ref = schema.get("$ref")
        if ref is None and len(schema.get("allOf", [])) == 1:
            ref = schema["allOf"][0]["$ref"]
        if ref is None:
            return schema
        container = doc["definitions"] if ref.startswith("#/definitions/") else doc["components"]["schemas"]
        schema = container[ref.rsplit("/", 1)[1]]


def schema_with_gvk(doc: Json, wanted: Json) -> tuple[str, Json]:
    schemas = doc.get("definitions") or doc["components"]["schemas"]
    found = [(n, s) for n, s in schemas.items() if wanted in s.get("x-kubernetes-group-version-kind", [])]
    assert len(found) == 1, (wanted, [n for n, _ in found])
    return found[0]


# ── index and documents ──────────────────────────────────────────────────────────────


def test_v3_index_lists_every_group_version(docs: OpenAPIDocuments) -> None:
    index = json.loads(docs.v3_index())
    keys = set(index["paths"])
    for rt in RESOURCES:
        assert (f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}") in keys
        if rt.group:
            assert f"apis/{rt.group}" in keys
    assert {"api", "apis", "version"} <= keys
    for key, entry in index["paths"].items():
        body = docs.v3(key)
        assert body is not None
        digest = hashlib.sha512(body).hexdigest().upper()
        assert entry == {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        assert docs.v3_hash(key) == digest
        assert docs.v3_etag(key) == f'"{digest}"'
        assert docs.v3_url(key) == entry["serverRelativeURL"]


def test_documents_are_valid_json_of_the_right_versions(docs: OpenAPIDocuments, v2: Json) -> None:
    assert v2["swagger"] == "2.0"
    assert v2["info"]["title"] == "Kubernetes"
    assert docs.v2_etag() == f'"{hashlib.sha512(docs.v2()).hexdigest().upper()}"'
    for key in docs.v3_paths():
        doc = json.loads(docs.v3(key) or b"")
        assert doc["openapi"] == "3.0.0"
        assert doc["paths"]
        refs = {r for r in _refs(doc) if r.startswith("#/components/schemas/")}
        assert {r.rsplit("/", 1)[1] for r in refs} <= set(doc["components"]["schemas"]), key
    v2_refs = {r.rsplit("/", 1)[1] for r in _refs(v2)}
    assert v2_refs <= set(v2["definitions"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_lookup_paths_are_normalised_and_unknown_paths_are_none(docs: OpenAPIDocuments) -> None:
    assert docs.v3("/api/v1/") == docs.v3("api/v1")
    assert docs.v3("apis/nope/v1") is None
    assert docs.v3_hash("apis/nope/v1") is None
    assert docs.v3_url("nope") is None


def test_documents_are_built_once(docs: OpenAPIDocuments) -> None:
    assert docs.v2() is docs.v2()
    assert docs.v3("api/v1") is docs.v3("api/v1")
    assert docs.build_seconds is not None


# ── what kubectl looks for ───────────────────────────────────────────────────────────


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.kind}")
def test_every_served_kind_has_its_gvk(docs: OpenAPIDocuments, v2: Json, rt: ResourceType) -> None:
    v3 = v3_for(docs, rt)
    for doc in (v2, v3):
        schema_with_gvk(doc, {"group": rt.group, "kind": rt.kind, "version": rt.version})
        schema_with_gvk(doc, {"group": rt.group, "kind": rt.list_kind, "version": rt.version})


PATCHABLE = [r for r in RESOURCES if "patch" in r.verbs]


@pytest.mark.parametrize("rt", PATCHABLE, ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.kind}")
def test_patch_operations_take_field_validation(docs: OpenAPIDocuments, v2: Json, rt: ResourceType) -> None:
    """client-go's QueryParamVerifier: every PATCH operation for the GVK lists fieldValidation itself."""
    v3 = v3_for(docs, rt)
    for doc in (v3, v2):
        patches = [item["patch"] for item in doc["paths"].values() if "patch" in item]
        mine = [op for op in patches if op.get("x-kubernetes-group-version-kind") == gvk(rt)]
        assert mine, rt
        for op in mine:
            assert "fieldValidation" in [p["name"] for p in op["parameters"]]
            consumes = op["requestBody"]["content"] if doc is v3 else op["consumes"]
            assert "application/strategic-merge-patch+json" in consumes


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.kind}")
def test_explain_finds_the_kind_from_its_path(docs: OpenAPIDocuments, rt: ResourceType) -> None:
    """kubectl explain (plaintext.tmpl): the list or get operation's GVK names the schema."""
    v3 = v3_for(docs, rt)
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    path = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
    found = v3["paths"][path]["get"]["x-kubernetes-group-version-kind"]
    assert found == gvk(rt)
    name, _ = schema_with_gvk(v3, {"group": rt.group, "kind": rt.kind, "version": rt.version})
    assert name.endswith("." + rt.kind)


def test_service_ports_port_is_a_required_integer(docs: OpenAPIDocuments, v2: Json) -> None:
    service = next(r for r in RESOURCES if r.kind == "Service")
    v3 = v3_for(docs, service)
    for doc in (v2, v3):
        _, svc = schema_with_gvk(doc, {"group": "", "kind": "Service", "version": "v1"})
        spec = resolve(doc, svc["properties"]["spec"])
        ports = spec["properties"]["ports"]
        assert ports["type"] == "array"
        port = resolve(doc, ports["items"])
        assert port["properties"]["port"]["type"] == "integer"
        assert "port" in port["required"]
        target = resolve(doc, port["properties"]["targetPort"])
        assert target["format"] == "int-or-string"


def test_definition_names_and_special_types(v2: Json) -> None:
    defs = v2["definitions"]
    assert "io.k8s.api.core.v1.PodTemplateSpec" in defs  # reached from apps, but a core type
    assert "io.k8s.api.apps.v1.PodTemplateSpec" not in defs
    assert "io.k8s.api.core.v1.Event" in defs  # CoreV1Event in the client
    meta = defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["creationTimestamp"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    assert meta["name"]["type"] == "string"
    lease = defs["io.k8s.api.coordination.v1.LeaseSpec"]["properties"]
    assert lease["renewTime"]["$ref"].endswith("meta.v1.MicroTime")
    limits = defs["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["$ref"].endswith("api.resource.Quantity")
    assert defs["io.k8s.api.core.v1.Secret"]["properties"]["data"]["additionalProperties"]["format"] == "byte"
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "description": defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["description"],
        "format": "int-or-string",
        "type": "string",
    }
    assert "io.k8s.api.autoscaling.v1.Scale" in defs
    assert defs["io.k8s.api.core.v1.PodSpec"]["required"] == ["containers"]


def test_v3_wraps_refs_that_carry_a_description(docs: OpenAPIDocuments) -> None:
    v3 = json.loads(docs.v3("api/v1") or b"")
    schemas = v3["components"]["schemas"]
    condition = schemas["io.k8s.api.core.v1.PodCondition"]["properties"]["lastTransitionTime"]
    assert condition["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time"}]
    assert condition["description"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"] == [
        {"type": "integer"},
        {"type": "string"},
    ]


def test_scale_and_status_subresources(docs: OpenAPIDocuments) -> None:
    deployment = next(r for r in RESOURCES if r.kind == "Deployment")
    v3 = v3_for(docs, deployment)
    scale = v3["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
    }
    assert scale["get"]["operationId"] == "readAppsV1NamespacedDeploymentScale"
    status = v3["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert status["put"]["operationId"] == "replaceAppsV1NamespacedDeploymentStatus"
    assert [p["name"] for p in status["parameters"]] == ["name", "namespace", "pretty"]


def test_operations_follow_kube_apiserver_naming(docs: OpenAPIDocuments) -> None:
    pods = json.loads(docs.v3("api/v1") or b"")["paths"]
    assert pods["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert (
        pods["/api/v1/namespaces/{namespace}/pods"]["delete"]["operationId"]
        == "deleteCoreV1CollectionNamespacedPod"
    )
    assert pods["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert pods["/api/v1/nodes/{name}"]["patch"]["operationId"] == "patchCoreV1Node"
    assert (
        pods["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"]
        == "readCoreV1NamespacedPodLog"
    )
    exec_ = pods["/api/v1/namespaces/{namespace}/pods/{name}/exec"]
    assert exec_["post"]["x-kubernetes-group-version-kind"]["kind"] == "PodExecOptions"
    assert "deletecollection" not in json.dumps(pods["/api/v1/namespaces"])  # Namespace has no such verb
    assert pods["/api/v1/namespaces/{namespace}/pods"]["get"]["tags"] == ["core_v1"]
    lease = json.loads(docs.v3("apis/coordination.k8s.io/v1") or b"")["paths"]
    assert lease["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["put"][
        "operationId"
    ] == ("replaceCoordinationV1NamespacedLease")


# ── hooks and fallbacks ──────────────────────────────────────────────────────────────


def test_field_extensions_hook() -> None:
    def patch_meta(definition: str, field: str) -> dict[str, Any]:
        if (definition, field) == ("io.k8s.api.core.v1.PodSpec", "containers"):
            return {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}
        if (definition, field) == ("io.k8s.api.core.v1.PodSpec", "securityContext"):
            return {"x-kubernetes-patch-strategy": "retainKeys"}
        return {}

    pod = next(r for r in RESOURCES if r.kind == "Pod")
    documents = OpenAPIDocuments([pod], extra_field_extensions=patch_meta)
    v2 = json.loads(documents.v2())
    containers = v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    v3 = json.loads(documents.v3("api/v1") or b"")
    security = v3["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["securityContext"]
    assert security == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSecurityContext"}],
        "x-kubernetes-patch-strategy": "retainKeys",
    }


def test_a_kind_the_client_does_not_know_is_free_form() -> None:
    widget = ResourceType("example.com", "v1", "Widget", "widgets", "widget", True, subresources=("status",))
    documents = OpenAPIDocuments([widget])
    v3 = json.loads(documents.v3("apis/example.com/v1") or b"")
    name, schema = schema_with_gvk(v3, {"group": "example.com", "kind": "Widget", "version": "v1"})
    assert name == "io.k8s.api.example.v1.Widget"
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    _, items = schema_with_gvk(v3, {"group": "example.com", "kind": "WidgetList", "version": "v1"})
    assert items["properties"]["items"]["items"]["$ref"].endswith(".Widget")
    patch = v3["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


class LegacyWidgetSpec:
    """NOTE: This class is auto generated by OpenAPI Generator.

    Do not edit the class manually.
    """

    openapi_types = {"size": "int", "port": "object", "labels": "dict(str, str)"}
    attribute_map = {"size": "size", "port": "port", "labels": "labels"}

    @property
    def size(self) -> int:
        """Gets the size of this LegacyWidgetSpec.  # noqa: E501

        How many widgets.  # noqa: E501

        :return: The size of this LegacyWidgetSpec.  # noqa: E501
        :rtype: int
        """
        return 0

    @size.setter
    def size(self, size: int) -> None:
        if size is None:
            raise ValueError("Invalid value for `size`, must not be `None`")

    @property
    def port(self) -> object:
        """Gets the port of this LegacyWidgetSpec.  # noqa: E501

        :return: The port of this LegacyWidgetSpec.  # noqa: E501
        """
        return None

    @property
    def labels(self) -> dict[str, str]:
        return {}


def test_python_legacy_client_models() -> None:
    """kubernetes<33 generated plain classes: docs in property docstrings, required in setters."""
    fake = types.ModuleType("fake_models")
    widget_type = {"openapi_types": {"spec": "V1WidgetSpec"}, "attribute_map": {"spec": "spec"}}
    list_type = {"openapi_types": {"items": "list[V1Widget]"}, "attribute_map": {"items": "items"}}
    setattr(fake, "V1Widget", type("V1Widget", (), widget_type))  # noqa: B010
    setattr(fake, "V1WidgetList", type("V1WidgetList", (), list_type))  # noqa: B010
    setattr(fake, "V1WidgetSpec", LegacyWidgetSpec)  # noqa: B010
    widget = ResourceType("example.com", "v1", "Widget", "widgets", "widget", True)
    v2 = json.loads(OpenAPIDocuments([widget], models=fake).v2())
    spec = v2["definitions"]["io.k8s.api.example.v1.WidgetSpec"]
    assert spec["properties"]["size"] == {"description": "How many widgets.", "type": "integer"}
    assert spec["properties"]["port"]["$ref"].endswith("intstr.IntOrString")
    assert spec["properties"]["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert spec["required"] == ["size"]
    assert "description" not in spec
