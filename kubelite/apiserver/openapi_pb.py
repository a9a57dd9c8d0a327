"""``/openapi/v2`` in protobuf: the gnostic ``openapi.v2.Document`` encoding of a Swagger 2.0 document.

kubectl (client-go ``OpenAPISchema()``) asks for ``/openapi/v2`` only with
``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and parses the body as
``openapi_v2.Document`` (github.com/google/gnostic-models, ``openapiv2/OpenAPIv2.proto``).
Every version from 1.27 to 1.33 fetches it on ``apply``/``create``/``edit``; 1.27 and 1.28
stop there if it is not protobuf, later ones only for ``explain --output=plaintext-openapiv2``
and client-side validation. Client-side validation (kube-openapi ``proto.NewOpenAPIData``)
and ``explain`` read the definitions; client-go's ``QueryParamVerifier`` looks for a
``fieldValidation`` query parameter on the PATCH operation whose own
``x-kubernetes-group-version-kind`` is the object's GVK and, finding it, leaves validation
to the server.

The JSON document maps onto the messages key by key::

    Document ─ info: Info, paths: Paths ─ NamedPathItem ─ PathItem ─ Operation ─ ParametersItem
        │                                                              └ Responses ─ NamedResponseValue
        └ definitions: Definitions ─ NamedSchema ─ Schema ─ properties, items, allOf, additionalProperties

A few JSON values need a choice the proto spells as a ``oneof`` (parameter by ``in``, ``$ref``
or not, ``additionalProperties`` schema or boolean, security scheme by ``type``/``flow``).
``x-*`` keys become ``NamedAny`` vendor extensions, and every free-form value (vendor
extensions, ``default``, ``enum``, ``example``) an ``Any`` whose ``yaml`` holds the value.
kubectl reads that text with a YAML parser, and JSON is YAML flow syntax, so the text is the
value's JSON, with ``\\u`` escapes for the characters YAML 1.1 would not read back as written.
Keys the proto has no field for are dropped (gnostic would refuse such a document). Fields
are written in field-number order, as Go's ``proto.Marshal`` writes them; scalars at their
proto3 default (``""``, 0, false) are left out, messages whose key is present are written even
when empty (kube-openapi tells ``properties: {}`` from no properties).
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha512
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import orjson

PROTOBUF_V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""The Content-Type kube-apiserver answers with, whichever of the two protobuf types was asked for.

The ``@v1.0`` spelling kubectl sends is no valid media type: clients that parse the response's
Content-Type with Go's ``mime.ParseMediaType`` reject it, so servers answer with ``.v1.0``."""
PROTOBUF_V2_MEDIA_TYPES = frozenset(
    {"application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF_V2_CONTENT_TYPE}
)


class OpenAPIEncodeError(ValueError):
    """The JSON document does not fit the Swagger 2.0 shape at ``path`` (a list of keys)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []

    def __str__(self) -> str:
        where = ".".join(self.path) or "the document root"
        return f"cannot encode /openapi/v2 in protobuf: at {where}, {self.problem}"


def encode_openapi_v2(doc: dict[str, Any]) -> bytes:
    """The serialized ``openapi.v2.Document`` of the Swagger 2.0 JSON document ``doc``.

    Raises ``OpenAPIEncodeError`` (a ``ValueError``) naming the key path when a value has a
    type Swagger 2.0 does not allow there (a string where an object belongs, a parameter
    whose ``in`` is not body/query/path/header/formData, ...).
    """
    return _DOCUMENT.encode(doc)


def wants_protobuf(accept: str) -> bool:
    """Whether ``/openapi/v2`` with this Accept header is answered in protobuf rather than JSON.

    As kube-openapi negotiates: the media ranges in order of preference (q, then the more
    specific), the first that matches JSON or protobuf wins; ``*/*`` and ``application/*``
    match JSON first. A header that names neither gets JSON here (kube-apiserver: 406).
    """
    ranges: list[tuple[float, int, int, str]] = []
    for index, clause in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in clause.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            media = media.lower()
            wildcards = media.count("*")
            ranges.append((-q, wildcards, index, media))
    for _, _, _, media in sorted(ranges):
        if media in ("*/*", "application/*", "application/json"):
            return False
        if media in PROTOBUF_V2_MEDIA_TYPES:
            return True
    return False


class OpenAPIV2Protobuf:
    """The protobuf body (and its ETag) of a JSON ``/openapi/v2`` source, encoded once per document.

    ``source`` returns the current JSON bytes (e.g. ``OpenAPIDocuments.v2``); the encoding is
    redone only when it returns a different bytes object. Thread-safe.
    """

    def __init__(self, source: Callable[[], bytes]) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._json: bytes | None = None
        self._body = b""
        self._etag = ""

    def body(self) -> bytes:
        return self._current()[0]

    def etag(self) -> str:
        """The quoted ETag of ``body()`` (SHA-512, upper-case hex, as kube-openapi computes it)."""
        return self._current()[1]

    def _current(self) -> tuple[bytes, str]:
        with self._lock:
            data = self._source()
            if data is not self._json:
                self._body = encode_openapi_v2(orjson.loads(data))
                self._etag = f'"{sha512(self._body).hexdigest().upper()}"'
                self._json = data
            return self._body, self._etag


# ── wire format ────────────────────────────────────────────────────────────────────────────
# A field is a key varint (field number << 3 | wire type) and a value: a varint, 8 little-endian
# bytes (double), or a length varint and that many bytes (string or message; nothing is packed).

_VARINT, _FIXED64, _LEN = 0, 1, 2
_Kind = Callable[[bytearray, int, Any], None]
"""Writes one JSON value as field ``n`` of the message being built."""
_Encoder = Callable[[Any], bytes]
"""A JSON value -> the serialized message it stands for."""


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _bytes_field(out: bytearray, n: int, data: bytes | bytearray) -> None:
    _varint(out, n << 3 | _LEN)
    _varint(out, len(data))
    out += data


def _fail(expected: str, value: Any) -> OpenAPIEncodeError:
    shown = repr(value)
    return OpenAPIEncodeError(f"expected {expected}, got {shown[:60] + '...' if len(shown) > 60 else shown}")


def _string(out: bytearray, n: int, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail("a string", value)
    if value:
        _bytes_field(out, n, value.encode())


def _strings(out: bytearray, n: int, value: Any) -> None:
    if not isinstance(value, list):
        raise _fail("a list of strings", value)
    for item in value:
        if not isinstance(item, str):
            raise _fail("a list of strings", value)
        _bytes_field(out, n, item.encode())


def _bool(out: bytearray, n: int, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail("true or false", value)
    if value:
        _varint(out, n << 3 | _VARINT)
        out.append(1)


def _int64(out: bytearray, n: int, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("an integer", value)
    if isinstance(value, float) and not value.is_integer():
        raise _fail("an integer", value)
    if value:
        _varint(out, n << 3 | _VARINT)
        _varint(out, int(value) & 0xFFFF_FFFF_FFFF_FFFF)  # negative: two's complement, 10 bytes


def _double(out: bytearray, n: int, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("a number", value)
    if value:
        _varint(out, n << 3 | _FIXED64)
        out += struct.pack("<d", value)


def _message(encode: _Encoder) -> _Kind:
    def kind(out: bytearray, n: int, value: Any) -> None:
        _bytes_field(out, n, encode(value))

    return kind


def _repeated(encode: _Encoder) -> _Kind:
    def kind(out: bytearray, n: int, value: Any) -> None:
        if not isinstance(value, list):
            raise _fail("a list", value)
        for index, item in enumerate(value):
            try:
                _bytes_field(out, n, encode(item))
            except OpenAPIEncodeError as e:
                e.path.insert(0, f"[{index}]")
                raise

    return kind


# ── messages ───────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Spec:
    """A message whose JSON object keys map to fields; ``x-*`` keys go to ``vendor`` (0: none)."""

    fields: Mapping[str, tuple[int, _Kind]]
    vendor: int = 0

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, dict):
            raise _fail("an object", value)
        fields = self.fields
        entries: list[tuple[int, str, Any, _Kind | None]] = []
        for key, item in value.items():
            found = fields.get(key)
            if found is not None:
                entries.append((found[0], key, item, found[1]))
            elif self.vendor and key.startswith("x-"):
                entries.append((self.vendor, key, item, None))
        entries.sort(key=itemgetter(0))  # stable: vendor extensions keep their order
        out = bytearray()
        for n, key, item, kind in entries:
            try:
                if kind is None:
                    _bytes_field(out, n, _named(key, _any(item)))
                else:
                    kind(out, n, item)
            except OpenAPIEncodeError as e:
                e.path.insert(0, key)
                raise
        return bytes(out)


def _spec(vendor: int = 0, **fields: tuple[int, _Kind]) -> _Spec:
    return _Spec(MappingProxyType(fields), vendor)


def _named(name: str, value: bytes) -> bytes:
    """A ``Named*`` message: the map key (field 1) and the value message (field 2)."""
    out = bytearray()
    _string(out, 1, name)
    _bytes_field(out, 2, value)
    return bytes(out)


def _named_map(encode: _Encoder) -> _Encoder:
    """A map message (``Definitions``, ``Properties``, ...): each entry a ``Named*`` in field 1."""

    def encode_map(value: Any) -> bytes:
        if not isinstance(value, dict):
            raise _fail("an object", value)
        out = bytearray()
        for key, item in value.items():
            try:
                _bytes_field(out, 1, _named(key, encode(item)))
            except OpenAPIEncodeError as e:
                e.path.insert(0, key)
                raise
        return bytes(out)

    return encode_map


# Characters JSON text may carry raw but YAML 1.1 reads otherwise: outside c-printable (DEL, C1
# controls, BOM, U+FFFE/FFFF), or line breaks a quoted scalar folds away (NEL, U+2028, U+2029).
_NOT_YAML_TEXT = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _any(value: Any) -> bytes:
    """``Any``: the value as YAML text in ``yaml`` (field 2); ``value`` (a protobuf Any) stays unset."""
    text = orjson.dumps(value).decode()
    text = _NOT_YAML_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    out = bytearray()
    _bytes_field(out, 2, text.encode())
    return bytes(out)


def _string_array(value: Any) -> bytes:
    out = bytearray()
    _strings(out, 1, value)
    return bytes(out)


def _type_item(value: Any) -> bytes:
    """``TypeItem``: ``type`` is one name or a list of names."""
    return _string_array([value] if isinstance(value, str) else value)


def _items_item(value: Any) -> bytes:
    """``ItemsItem``: ``items`` is one schema or a list of schemas."""
    out = bytearray()
    _repeated(_schema)(out, 1, [value] if isinstance(value, dict) else value)
    return bytes(out)


def _additional_properties_item(value: Any) -> bytes:
    """``AdditionalPropertiesItem``: oneof schema (1) or boolean (2); a oneof false is still written."""
    if isinstance(value, bool):
        return bytes((2 << 3 | _VARINT, int(value)))
    out = bytearray()
    _bytes_field(out, 1, _schema(value))
    return bytes(out)


def _schema(value: Any) -> bytes:
    return _SCHEMA.encode(value)


def _schema_item(value: Any) -> bytes:
    """``SchemaItem`` of a response: oneof schema (1) or file schema (2, ``type: file``)."""
    out = bytearray()
    if isinstance(value, dict) and value.get("type") == "file":
        _bytes_field(out, 2, _FILE_SCHEMA.encode(value))
    else:
        _bytes_field(out, 1, _schema(value))
    return bytes(out)


def _primitives_items(value: Any) -> bytes:
    return _PRIMITIVES_ITEMS.encode(value)


def _ref_or(value: Any, encode: _Encoder) -> bytes:
    """``ParametersItem`` / ``ResponseValue``: oneof the thing (1) or a ``JsonReference`` (2)."""
    out = bytearray()
    if isinstance(value, dict) and "$ref" in value:
        _bytes_field(out, 2, _JSON_REFERENCE.encode(value))
    else:
        _bytes_field(out, 1, encode(value))
    return bytes(out)


def _parameter(value: Any) -> bytes:
    """``Parameter``: oneof body (1) or non-body (2); non-body is a oneof by ``in``."""
    if not isinstance(value, dict):
        raise _fail("a parameter object", value)
    where = value.get("in")
    out = bytearray()
    if where == "body":
        _bytes_field(out, 1, _BODY_PARAMETER.encode(value))
        return bytes(out)
    found = _NON_BODY_PARAMETERS.get(where) if isinstance(where, str) else None
    if found is None:
        raise OpenAPIEncodeError(
            f"parameter {value.get('name')!r} has in: {where!r}; use body, query, path, header or formData"
        )
    n, spec = found
    inner = bytearray()
    _bytes_field(inner, n, spec.encode(value))
    _bytes_field(out, 2, inner)
    return bytes(out)


def _parameters_item(value: Any) -> bytes:
    return _ref_or(value, _parameter)


def _response_value(value: Any) -> bytes:
    return _ref_or(value, _RESPONSE.encode)


def _split_map(value: Any, entry: int, vendor: int, encode: _Encoder) -> bytes:
    """``Paths`` / ``Responses``: ``x-*`` keys are vendor extensions, the others named entries."""
    if not isinstance(value, dict):
        raise _fail("an object", value)
    extensions, entries = bytearray(), bytearray()
    for key, item in value.items():
        try:
            if key.startswith("x-"):
                _bytes_field(extensions, vendor, _named(key, _any(item)))
            else:
                _bytes_field(entries, entry, _named(key, encode(item)))
        except OpenAPIEncodeError as e:
            e.path.insert(0, key)
            raise
    return bytes(extensions + entries) if vendor < entry else bytes(entries + extensions)


def _paths(value: Any) -> bytes:
    return _split_map(value, entry=2, vendor=1, encode=_PATH_ITEM.encode)


def _responses(value: Any) -> bytes:
    return _split_map(value, entry=1, vendor=2, encode=_response_value)


def _oauth2_scopes(value: Any) -> bytes:
    if not isinstance(value, dict):
        raise _fail("an object", value)
    out = bytearray()
    for key, item in value.items():
        entry = bytearray()
        _string(entry, 1, key)
        _string(entry, 2, item)
        _bytes_field(out, 1, entry)
    return bytes(out)


def _security_definitions_item(value: Any) -> bytes:
    """``SecurityDefinitionsItem``: oneof by ``type`` (and ``flow`` for oauth2)."""
    if not isinstance(value, dict):
        raise _fail("a security scheme object", value)
    kind = value.get("type")
    key = f"oauth2/{value.get('flow')}" if kind == "oauth2" else kind
    found = _SECURITY_SCHEMES.get(key) if isinstance(key, str) else None
    if found is None:
        raise OpenAPIEncodeError(
            f"security scheme of type {kind!r} (flow {value.get('flow')!r}) is not one of basic, apiKey,"
            " or oauth2 with flow implicit, password, application or accessCode"
        )
    out = bytearray()
    _bytes_field(out, found[0], found[1].encode(value))
    return bytes(out)


_ANY = _message(_any)
_ANYS = _repeated(_any)
_SCHEMA_MSG = _message(_schema)

_EXTERNAL_DOCS = _spec(3, description=(1, _string), url=(2, _string))
_XML = _spec(
    6,
    name=(1, _string),
    namespace=(2, _string),
    prefix=(3, _string),
    attribute=(4, _bool),
    wrapped=(5, _bool),
)
_JSON_REFERENCE = _spec(0, **{"$ref": (1, _string), "description": (2, _string)})
_SCHEMA = _spec(
    31,
    **{
        "$ref": (1, _string),
        "format": (2, _string),
        "title": (3, _string),
        "description": (4, _string),
        "default": (5, _ANY),
        "multipleOf": (6, _double),
        "maximum": (7, _double),
        "exclusiveMaximum": (8, _bool),
        "minimum": (9, _double),
        "exclusiveMinimum": (10, _bool),
        "maxLength": (11, _int64),
        "minLength": (12, _int64),
        "pattern": (13, _string),
        "maxItems": (14, _int64),
        "minItems": (15, _int64),
        "uniqueItems": (16, _bool),
        "maxProperties": (17, _int64),
        "minProperties": (18, _int64),
        "required": (19, _strings),
        "enum": (20, _ANYS),
        "additionalProperties": (21, _message(_additional_properties_item)),
        "type": (22, _message(_type_item)),
        "items": (23, _message(_items_item)),
        "allOf": (24, _repeated(_schema)),
        "properties": (25, _message(_named_map(_schema))),
        "discriminator": (26, _string),
        "readOnly": (27, _bool),
        "xml": (28, _message(_XML.encode)),
        "externalDocs": (29, _message(_EXTERNAL_DOCS.encode)),
        "example": (30, _ANY),
    },
)
_FILE_SCHEMA = _spec(
    10,
    format=(1, _string),
    title=(2, _string),
    description=(3, _string),
    default=(4, _ANY),
    required=(5, _strings),
    type=(6, _string),
    readOnly=(7, _bool),
    externalDocs=(8, _message(_EXTERNAL_DOCS.encode)),
    example=(9, _ANY),
)


def _primitive_fields(first: int) -> dict[str, tuple[int, _Kind]]:
    """type .. multipleOf: the run of fields every non-body parameter, header and items share."""
    names: tuple[tuple[str, _Kind], ...] = (
        ("type", _string),
        ("format", _string),
        ("items", _message(_primitives_items)),
        ("collectionFormat", _string),
        ("default", _ANY),
        ("maximum", _double),
        ("exclusiveMaximum", _bool),
        ("minimum", _double),
        ("exclusiveMinimum", _bool),
        ("maxLength", _int64),
        ("minLength", _int64),
        ("pattern", _string),
        ("maxItems", _int64),
        ("minItems", _int64),
        ("uniqueItems", _bool),
        ("enum", _ANYS),
        ("multipleOf", _double),
    )
    return {name: (first + i, kind) for i, (name, kind) in enumerate(names)}


_PRIMITIVES_ITEMS = _spec(18, **_primitive_fields(1))
_HEADER = _spec(19, **_primitive_fields(1), description=(18, _string))
_LOCATION_FIELDS: dict[str, tuple[int, _Kind]] = {
    "required": (1, _bool),
    "in": (2, _string),
    "description": (3, _string),
    "name": (4, _string),
}
# header and path parameters: type starts at 5; query and formData add allowEmptyValue (5) first.
_HEADER_OR_PATH_PARAMETER = _spec(22, **_LOCATION_FIELDS, **_primitive_fields(5))
_QUERY_OR_FORM_PARAMETER = _spec(23, **_LOCATION_FIELDS, allowEmptyValue=(5, _bool), **_primitive_fields(6))
_NON_BODY_PARAMETERS: Mapping[str, tuple[int, _Spec]] = MappingProxyType(
    {
        "header": (1, _HEADER_OR_PATH_PARAMETER),
        "formData": (2, _QUERY_OR_FORM_PARAMETER),
        "query": (3, _QUERY_OR_FORM_PARAMETER),
        "path": (4, _HEADER_OR_PATH_PARAMETER),
    }
)
_BODY_PARAMETER = _spec(
    6,
    description=(1, _string),
    name=(2, _string),
    required=(4, _bool),
    schema=(5, _SCHEMA_MSG),
    **{"in": (3, _string)},
)
_RESPONSE = _spec(
    5,
    description=(1, _string),
    schema=(2, _message(_schema_item)),
    headers=(3, _message(_named_map(_HEADER.encode))),
    examples=(4, _message(_named_map(_any))),
)
# SecurityRequirement: scheme name -> StringArray of scopes.
_SECURITY_REQUIREMENTS = _repeated(_named_map(_string_array))
_OPERATION = _spec(
    13,
    tags=(1, _strings),
    summary=(2, _string),
    description=(3, _string),
    externalDocs=(4, _message(_EXTERNAL_DOCS.encode)),
    operationId=(5, _string),
    produces=(6, _strings),
    consumes=(7, _strings),
    parameters=(8, _repeated(_parameters_item)),
    responses=(9, _message(_responses)),
    schemes=(10, _strings),
    deprecated=(11, _bool),
    security=(12, _SECURITY_REQUIREMENTS),
)
_OPERATION_MSG = _message(_OPERATION.encode)
_PATH_ITEM = _spec(
    10,
    **{"$ref": (1, _string)},
    get=(2, _OPERATION_MSG),
    put=(3, _OPERATION_MSG),
    post=(4, _OPERATION_MSG),
    delete=(5, _OPERATION_MSG),
    options=(6, _OPERATION_MSG),
    head=(7, _OPERATION_MSG),
    patch=(8, _OPERATION_MSG),
    parameters=(9, _repeated(_parameters_item)),
)
_OAUTH2_SCOPES = _message(_oauth2_scopes)


def _oauth2(*urls: str) -> _Spec:
    """``Oauth2*Security``: type, flow, scopes, the flow's URLs, description, then vendor extensions."""
    names = ("type", "flow", "scopes", *urls, "description")
    return _spec(
        len(names) + 1,
        **{name: (n, _OAUTH2_SCOPES if name == "scopes" else _string) for n, name in enumerate(names, 1)},
    )


_SECURITY_SCHEMES: Mapping[str, tuple[int, _Spec]] = MappingProxyType(
    {
        "basic": (1, _spec(3, type=(1, _string), description=(2, _string))),
        "apiKey": (
            2,
            _spec(5, type=(1, _string), name=(2, _string), description=(4, _string), **{"in": (3, _string)}),
        ),
        "oauth2/implicit": (3, _oauth2("authorizationUrl")),
        "oauth2/password": (4, _oauth2("tokenUrl")),
        "oauth2/application": (5, _oauth2("tokenUrl")),
        "oauth2/accessCode": (6, _oauth2("authorizationUrl", "tokenUrl")),
    }
)
_INFO = _spec(
    7,
    title=(1, _string),
    version=(2, _string),
    description=(3, _string),
    termsOfService=(4, _string),
    contact=(5, _message(_spec(4, name=(1, _string), url=(2, _string), email=(3, _string)).encode)),
    license=(6, _message(_spec(3, name=(1, _string), url=(2, _string)).encode)),
)
_TAG = _spec(
    4, name=(1, _string), description=(2, _string), externalDocs=(3, _message(_EXTERNAL_DOCS.encode))
)
_DOCUMENT = _spec(
    16,
    swagger=(1, _string),
    info=(2, _message(_INFO.encode)),
    host=(3, _string),
    basePath=(4, _string),
    schemes=(5, _strings),
    consumes=(6, _strings),
    produces=(7, _strings),
    paths=(8, _message(_paths)),
    definitions=(9, _message(_named_map(_schema))),
    parameters=(10, _message(_named_map(_parameter))),
    responses=(11, _message(_named_map(_RESPONSE.encode))),
    security=(12, _SECURITY_REQUIREMENTS),
    securityDefinitions=(13, _message(_named_map(_security_definitions_item))),
    tags=(14, _repeated(_TAG.encode)),
    externalDocs=(15, _message(_EXTERNAL_DOCS.encode)),
)
