"""``/openapi/v2`` in protobuf (gnostic ``openapi.v2.Document``).

Field numbers below are written from ``openapiv2/OpenAPIv2.proto`` (google/gnostic-models), not
taken from the encoder, and every document is read back with the small decoder in this file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubelite.apiserver.openapi import OpenAPIDocuments
from kubelite.apiserver.openapi_pb import (
    PROTOBUF_V2_CONTENT_TYPE,
    OpenAPIEncodeError,
    OpenAPIV2Protobuf,
    encode_openapi_v2,
    wants_protobuf,
)

# ── a test-only decoder ────────────────────────────────────────────────────────────────────

Fields = dict[int, list[Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _iter(data: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        n, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", data[pos : pos + 8])[0], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
            assert len(value) == size, "truncated length-delimited field"
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        yield n, wire, value


def msg(data: bytes) -> Fields:
    """Field number -> values in wire order (varints as int, doubles as float, the rest bytes)."""
    out: Fields = {}
    for n, _, value in _iter(data):
        out.setdefault(n, []).append(value)
    return out


def one(fields: Fields, n: int) -> Any:
    values = fields.get(n, [])
    assert len(values) == 1, f"field {n}: {values!r}"
    return values[0]


def text(fields: Fields, n: int) -> str:
    return str(one(fields, n).decode())


def texts(fields: Fields, n: int) -> list[str]:
    return [v.decode() for v in fields.get(n, [])]


def named(entries: list[bytes]) -> dict[str, bytes]:
    """Named* messages (name = 1, value = 2) as an ordered dict of name -> value bytes."""
    out: dict[str, bytes] = {}
    for entry in entries:
        f = msg(entry)
        out[text(f, 1)] = one(f, 2) if isinstance(one(f, 2), bytes) else b""
    return out


def any_value(data: bytes) -> Any:
    """An ``Any`` message's value: its ``yaml`` (field 2), parsed by a YAML 1.1 parser as kubectl does."""
    return yaml.safe_load(text(msg(data), 2))


def vendor(entries: list[bytes]) -> dict[str, Any]:
    return {name: any_value(value) for name, value in named(entries).items()}


# Document / Schema / Operation field numbers from OpenAPIv2.proto.
DOC_SWAGGER, DOC_INFO, DOC_HOST, DOC_BASE_PATH, DOC_SCHEMES = 1, 2, 3, 4, 5
DOC_PATHS, DOC_DEFINITIONS, DOC_PARAMETERS, DOC_SECURITY, DOC_SECURITY_DEFS, DOC_VENDOR = 8, 9, 10, 12, 13, 16
PATHS_VENDOR, PATHS_PATH = 1, 2
ITEM_GET, ITEM_POST, ITEM_PATCH, ITEM_PARAMETERS = 2, 4, 8, 9
OP_TAGS, OP_OPERATION_ID, OP_CONSUMES, OP_PARAMETERS, OP_RESPONSES, OP_VENDOR = 1, 5, 7, 8, 9, 13
S_REF, S_FORMAT, S_DESCRIPTION, S_DEFAULT, S_MAXIMUM, S_MIN_LENGTH = 1, 2, 4, 5, 7, 12
S_REQUIRED, S_ENUM, S_ADDITIONAL, S_TYPE, S_ITEMS, S_ALL_OF, S_PROPERTIES, S_VENDOR = (
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    31,
)

SMALL: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Kubernetes", "version": "v1.33.0", "x-info": 1},
    "host": "example.test",
    "basePath": "/",
    "schemes": ["https"],
    "paths": {
        "x-paths": "vendor",
        "/api/v1/namespaces/{namespace}/services/{name}": {
            "patch": {
                "tags": ["core_v1"],
                "operationId": "patchCoreV1NamespacedService",
                "consumes": ["application/strategic-merge-patch+json", "application/merge-patch+json"],
                "parameters": [
                    {
                        "name": "body",
                        "in": "body",
                        "required": True,
                        "schema": {"$ref": "#/definitions/Patch"},
                    },
                    {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True},
                    {"$ref": "#/parameters/pretty"},
                ],
                "responses": {
                    "200": {"description": "OK", "schema": {"$ref": "#/definitions/Service"}},
                    "401": {"description": "Unauthorized"},
                    "x-codes": ["a"],
                },
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Service"},
            },
            "parameters": [
                {"name": "name", "in": "path", "required": True, "type": "string", "uniqueItems": True},
                {"name": "X-Trace", "in": "header", "type": "integer", "maximum": 9, "default": 3},
                {"name": "file", "in": "formData", "type": "file", "allowEmptyValue": True},
            ],
        },
    },
    "definitions": {
        "Service": {
            "description": "Service is a named abstraction.",
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {"$ref": "#/definitions/ServiceSpec", "description": "the spec"},
                "ports": {
                    "type": "array",
                    "items": {"$ref": "#/definitions/ServicePort"},
                    "x-kubernetes-patch-merge-key": "port",
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "raw": {"type": "object", "additionalProperties": False},
                "empty": {"type": "object", "properties": {}},
                "mode": {"type": "string", "enum": ["A", "B"], "default": "A", "minLength": 1},
                "both": {"allOf": [{"$ref": "#/definitions/A"}], "format": "int-or-string"},
            },
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "Service", "version": "v1"}],
        }
    },
    "parameters": {"pretty": {"name": "pretty", "in": "query", "type": "string"}},
    "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
    "security": [{"BearerToken": []}],
    "x-doc": {"a": [1, 2]},
}


# ── exact bytes ────────────────────────────────────────────────────────────────────────────


def test_prefix_matches_kube_apiserver_bytes() -> None:
    # The first bytes of a real kube-apiserver 1.32 /openapi/v2 protobuf body (kubectl -v=9):
    # 0a 03 "2.0" 12 12 (0a 0a "Kubernetes" 12 04 "1.32") 42 <paths>
    doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "1.32"}, "paths": {}}
    assert encode_openapi_v2(doc) == b"\x0a\x032.0\x12\x12\x0a\x0aKubernetes\x12\x041.32\x42\x00"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # additionalProperties is field 21: a two-byte key (0xaa 0x01); the oneof false is written.
        ({"additionalProperties": False}, b"\xaa\x01\x02\x10\x00"),
        ({"additionalProperties": True}, b"\xaa\x01\x02\x10\x01"),
        ({"additionalProperties": {}}, b"\xaa\x01\x02\x0a\x00"),
        # A present empty map is written; kube-openapi tells properties: {} from none.
        ({"properties": {}}, b"\xca\x01\x00"),
        ({"type": "string"}, b"\xb2\x01\x08\x0a\x06string"),
        ({"type": ["string", "null"]}, b"\xb2\x01\x0e\x0a\x06string\x0a\x04null"),
        # Fields go out in field-number order whatever the JSON order; proto3 zero values are left out.
        (
            {"type": "integer", "format": "int32", "description": ""},
            b"\x12\x05int32\xb2\x01\x09\x0a\x07integer",
        ),
        ({"maxLength": -1}, b"\x58" + b"\xff" * 9 + b"\x01"),
        ({"maximum": 1.5}, b"\x39" + struct.pack("<d", 1.5)),
        ({"uniqueItems": True, "readOnly": False}, b"\x80\x01\x01"),
        (
            {"x-kubernetes-patch-strategy": "merge"},
            b'\xfa\x01\x28\x0a\x1bx-kubernetes-patch-strategy\x12\x09\x12\x07"merge"',
        ),
    ],
)
def test_schema_bytes(schema: dict[str, Any], expected: bytes) -> None:
    doc = encode_openapi_v2({"definitions": {"S": schema}})
    entry = msg(one(msg(one(msg(doc), DOC_DEFINITIONS)), 1))
    assert text(entry, 1) == "S"
    assert one(entry, 2) == expected


# ── the whole small document, read back ────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def small() -> Fields:
    return msg(encode_openapi_v2(SMALL))


def test_document_header(small: Fields) -> None:
    assert text(small, DOC_SWAGGER) == "2.0"
    info = msg(one(small, DOC_INFO))
    assert (text(info, 1), text(info, 2), vendor(info[7])) == ("Kubernetes", "v1.33.0", {"x-info": 1})
    assert (text(small, DOC_HOST), text(small, DOC_BASE_PATH), texts(small, DOC_SCHEMES)) == (
        "example.test",
        "/",
        ["https"],
    )
    assert vendor(small[DOC_VENDOR]) == {"x-doc": {"a": [1, 2]}}
    security = msg(one(small, DOC_SECURITY))
    assert named(security[1]) == {"BearerToken": b""}  # StringArray with no scopes: an empty message
    scheme = msg(named(msg(one(small, DOC_SECURITY_DEFS))[1])["BearerToken"])
    api_key = msg(one(scheme, 2))  # SecurityDefinitionsItem.api_key_security
    assert (text(api_key, 1), text(api_key, 2), text(api_key, 3)) == ("apiKey", "authorization", "header")
    pretty = msg(named(msg(one(small, DOC_PARAMETERS))[1])["pretty"])
    query = msg(one(msg(one(pretty, 2)), 3))  # Parameter.non_body -> NonBodyParameter.query
    assert (text(query, 2), text(query, 4), text(query, 6)) == ("query", "pretty", "string")


@pytest.mark.parametrize(
    ("scheme", "oneof", "expected"),
    [
        ({"type": "basic", "description": "d"}, 1, {1: "basic", 2: "d"}),
        (
            {"type": "oauth2", "flow": "implicit", "authorizationUrl": "a"},
            3,
            {1: "oauth2", 2: "implicit", 4: "a"},
        ),
        ({"type": "oauth2", "flow": "password", "tokenUrl": "t"}, 4, {1: "oauth2", 2: "password", 4: "t"}),
        (
            {"type": "oauth2", "flow": "application", "tokenUrl": "t"},
            5,
            {1: "oauth2", 2: "application", 4: "t"},
        ),
        (
            {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "a",
                "tokenUrl": "t",
                "description": "d",
            },
            6,
            {1: "oauth2", 2: "accessCode", 4: "a", 5: "t", 6: "d"},
        ),
    ],
)
def test_security_schemes(scheme: dict[str, Any], oneof: int, expected: dict[int, str]) -> None:
    doc = msg(encode_openapi_v2({"securityDefinitions": {"s": {**scheme, "x-v": 1}}}))
    item = msg(named(msg(one(doc, DOC_SECURITY_DEFS))[1])["s"])
    fields = msg(one(item, oneof))
    vendor_field = max(fields)
    assert vendor(fields.pop(vendor_field)) == {"x-v": 1}
    assert vendor_field == {1: 3, 3: 6, 4: 6, 5: 6, 6: 7}[oneof]
    assert {n: text(fields, n) for n in fields} == expected


def test_oauth2_scopes() -> None:
    scheme = {"type": "oauth2", "flow": "implicit", "scopes": {"read": "Read it", "write": "Write it"}}
    doc = msg(encode_openapi_v2({"securityDefinitions": {"s": scheme}}))
    implicit = msg(one(msg(named(msg(one(doc, DOC_SECURITY_DEFS))[1])["s"]), 3))
    scopes = [msg(entry) for entry in msg(one(implicit, 3))[1]]  # Oauth2Scopes of NamedString
    assert [(text(e, 1), text(e, 2)) for e in scopes] == [("read", "Read it"), ("write", "Write it")]


def _path_item(small: Fields) -> Fields:
    paths = msg(one(small, DOC_PATHS))
    assert vendor(paths[PATHS_VENDOR]) == {"x-paths": "vendor"}
    return msg(named(paths[PATHS_PATH])["/api/v1/namespaces/{namespace}/services/{name}"])


def test_patch_operation_as_query_param_verifier_reads_it(small: Fields) -> None:
    # client-go QueryParamVerifier: the PATCH operation's own GVK extension and its
    # parameters[].parameter.non_body_parameter.query_parameter_sub_schema.name.
    op = msg(one(_path_item(small), ITEM_PATCH))
    assert texts(op, OP_TAGS) == ["core_v1"]
    assert text(op, OP_OPERATION_ID) == "patchCoreV1NamespacedService"
    assert texts(op, OP_CONSUMES) == [
        "application/strategic-merge-patch+json",
        "application/merge-patch+json",
    ]
    assert vendor(op[OP_VENDOR]) == {
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Service"},
    }
    body_item, query_item, ref_item = (msg(p) for p in op[OP_PARAMETERS])
    body = msg(one(msg(one(body_item, 1)), 1))  # ParametersItem.parameter -> Parameter.body_parameter
    assert (text(body, 2), text(body, 3), one(body, 4)) == ("body", "body", 1)
    assert text(msg(one(body, 5)), S_REF) == "#/definitions/Patch"
    query = msg(one(msg(one(msg(one(query_item, 1)), 2)), 3))
    assert (text(query, 2), text(query, 4), text(query, 6), one(query, 20)) == (
        "query",
        "fieldValidation",
        "string",
        1,
    )
    assert text(msg(one(ref_item, 2)), 1) == "#/parameters/pretty"  # ParametersItem.json_reference


def test_responses(small: Fields) -> None:
    responses = msg(one(msg(one(_path_item(small), ITEM_PATCH)), OP_RESPONSES))
    assert vendor(responses[2]) == {"x-codes": ["a"]}
    codes = named(responses[1])
    assert list(codes) == ["200", "401"]
    ok = msg(one(msg(codes["200"]), 1))  # ResponseValue.response
    assert text(ok, 1) == "OK"
    assert text(msg(one(msg(one(ok, 2)), 1)), S_REF) == "#/definitions/Service"  # SchemaItem.schema
    assert text(msg(one(msg(codes["401"]), 1)), 1) == "Unauthorized"


def test_path_level_parameters(small: Fields) -> None:
    path_param, header_param, form_param = (msg(one(msg(p), 1)) for p in _path_item(small)[ITEM_PARAMETERS])
    path = msg(one(msg(one(path_param, 2)), 4))
    assert (one(path, 1), text(path, 2), text(path, 4), text(path, 5), one(path, 19)) == (
        1,
        "path",
        "name",
        "string",
        1,
    )
    header = msg(one(msg(one(header_param, 2)), 1))
    assert (text(header, 4), text(header, 5), one(header, 10), any_value(one(header, 9))) == (
        "X-Trace",
        "integer",
        9.0,
        3,
    )
    form = msg(one(msg(one(form_param, 2)), 2))
    assert (text(form, 4), one(form, 5), text(form, 6)) == ("file", 1, "file")


def test_definition(small: Fields) -> None:
    service = msg(named(msg(one(small, DOC_DEFINITIONS))[1])["Service"])
    assert text(service, S_DESCRIPTION) == "Service is a named abstraction."
    assert texts(msg(one(service, S_TYPE)), 1) == ["object"]
    assert texts(service, S_REQUIRED) == ["spec"]
    assert vendor(service[S_VENDOR]) == {
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Service", "version": "v1"}]
    }
    props = {name: msg(value) for name, value in named(msg(one(service, S_PROPERTIES))[1]).items()}
    assert list(props) == ["spec", "ports", "labels", "raw", "empty", "mode", "both"]
    assert (text(props["spec"], S_REF), text(props["spec"], S_DESCRIPTION)) == (
        "#/definitions/ServiceSpec",
        "the spec",
    )
    ports = props["ports"]
    assert text(msg(one(msg(one(ports, S_ITEMS)), 1)), S_REF) == "#/definitions/ServicePort"
    assert vendor(ports[S_VENDOR]) == {
        "x-kubernetes-patch-merge-key": "port",
        "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["port", "protocol"],
    }
    labels_values = msg(one(msg(one(props["labels"], S_ADDITIONAL)), 1))
    assert texts(msg(one(labels_values, S_TYPE)), 1) == ["string"]
    assert msg(one(props["raw"], S_ADDITIONAL)) == {2: [0]}
    assert one(props["empty"], S_PROPERTIES) == b""
    mode = props["mode"]
    assert [any_value(v) for v in mode[S_ENUM]] == ["A", "B"]
    assert (any_value(one(mode, S_DEFAULT)), one(mode, S_MIN_LENGTH)) == ("A", 1)
    both = props["both"]
    assert text(msg(one(both, S_ALL_OF)), S_REF) == "#/definitions/A"
    assert text(both, S_FORMAT) == "int-or-string"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'with "quotes", a \\ and\nnew lines\t',
        "yes",  # YAML 1.1 would read a bare yes as true; the JSON text quotes it
        "del \x7f, line breaks \x85 \u2028 \u2029, c1 \x9b, bom \ufeff, é, 日本, 🙂",
        {"nested": [1, 2.5, None, True, {"k": "v"}]},
        12345678901234567890,
    ],
)
def test_any_yaml_reads_back(value: Any) -> None:
    doc = encode_openapi_v2({"x-value": value})
    assert vendor(msg(doc)[DOC_VENDOR]) == {"x-value": value}


# ── errors ─────────────────────────────────────────────────────────────────────────────────


def test_unknown_parameter_location_names_where() -> None:
    doc = {"paths": {"/x": {"get": {"parameters": [{"name": "n", "in": "cookie"}]}}}}
    with pytest.raises(OpenAPIEncodeError) as info:
        encode_openapi_v2(doc)
    assert str(info.value) == (
        "cannot encode /openapi/v2 in protobuf: at paths./x.get.parameters.[0], parameter 'n' has"
        " in: 'cookie'; use body, query, path, header or formData"
    )


def test_wrong_type_names_where() -> None:
    with pytest.raises(OpenAPIEncodeError, match=r"at definitions\.S\.properties\.a\.type, expected a list"):
        encode_openapi_v2({"definitions": {"S": {"properties": {"a": {"type": 3}}}}})
    with pytest.raises(OpenAPIEncodeError, match=r"at definitions\.S\.maxLength, expected an integer"):
        encode_openapi_v2({"definitions": {"S": {"maxLength": 1.5}}})


def test_unknown_keys_are_dropped() -> None:
    assert encode_openapi_v2({"swagger": "2.0", "nullable": True}) == encode_openapi_v2({"swagger": "2.0"})


# ── negotiation and caching ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),  # kubectl 1.27-1.33
        ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", True),
        ("application/json", False),
        ("", False),
        ("*/*", False),
        ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
        ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),
        ("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),  # more specific first
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0", False),
        ("text/html", False),
    ],
)
def test_wants_protobuf(accept: str, protobuf: bool) -> None:
    assert wants_protobuf(accept) is protobuf


def test_content_type_is_a_valid_media_type() -> None:
    assert "@" not in PROTOBUF_V2_CONTENT_TYPE


def test_cache_encodes_once_per_document() -> None:
    current = [b'{"swagger": "2.0"}']
    cached = OpenAPIV2Protobuf(lambda: current[0])
    first = cached.body()
    assert first == b"\x0a\x032.0"
    assert cached.body() is first
    assert cached.etag().startswith('"') and len(cached.etag()) == 130
    current[0] = b'{"swagger": "2.0", "host": "h"}'  # a new document object: encoded again
    assert cached.body() == b"\x0a\x032.0\x1a\x01h"


# ── the real document ──────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def real() -> tuple[dict[str, Any], bytes]:
    doc = json.loads(OpenAPIDocuments().v2())
    return doc, encode_openapi_v2(doc)


def test_real_document_size(real: tuple[dict[str, Any], bytes]) -> None:
    doc, body = real
    json_size = len(json.dumps(doc, separators=(",", ":")))
    # Protobuf drops the JSON key names and quotes: smaller, but the descriptions dominate.
    # (Encoding time is not asserted here: timings belong in bench/.)
    assert 0.5 * json_size < len(body) < json_size


def test_real_document_reads_back(real: tuple[dict[str, Any], bytes]) -> None:
    doc, body = real
    top = msg(body)
    definitions = named(msg(one(top, DOC_DEFINITIONS))[1])
    assert list(definitions) == list(doc["definitions"])
    for name, schema in doc["definitions"].items():
        fields = msg(definitions[name])
        extensions = vendor(fields.get(S_VENDOR, []))
        assert extensions == {k: v for k, v in schema.items() if k.startswith("x-")}, name
        assert set(named(msg(fields[S_PROPERTIES][0])[1]) if S_PROPERTIES in fields else []) == set(
            schema.get("properties", {})
        )

    paths = named(msg(one(top, DOC_PATHS))[PATHS_PATH])
    assert list(paths) == list(doc["paths"])
    checked = 0
    for path, item in doc["paths"].items():
        patch = item.get("patch")
        if not patch or "x-kubernetes-group-version-kind" not in patch:
            continue
        op = msg(one(msg(paths[path]), ITEM_PATCH))
        gvk = vendor(op[OP_VENDOR])["x-kubernetes-group-version-kind"]
        assert gvk == patch["x-kubernetes-group-version-kind"]
        query_names = []
        for p in op.get(OP_PARAMETERS, []):
            non_body = msg(one(msg(p), 1)).get(2)
            if non_body and 3 in msg(non_body[0]):
                query_names.append(text(msg(one(msg(non_body[0]), 3)), 4))
        expected = [p["name"] for p in patch.get("parameters", []) if p.get("in") == "query"]
        assert query_names == expected, path
        checked += 1
    assert checked > 20


def test_real_document_service_patch_offers_field_validation(
    real: tuple[dict[str, Any], bytes],
) -> None:
    _, body = real
    paths = named(msg(one(msg(body), DOC_PATHS))[PATHS_PATH])
    op = msg(one(msg(paths["/api/v1/namespaces/{namespace}/services/{name}"]), ITEM_PATCH))
    assert vendor(op[OP_VENDOR])["x-kubernetes-group-version-kind"] == {
        "group": "",
        "version": "v1",
        "kind": "Service",
    }
    names = [text(msg(one(msg(one(msg(one(msg(p), 1)), 2)), 3)), 4) for p in op[OP_PARAMETERS][1:]]
    assert "fieldValidation" in names
