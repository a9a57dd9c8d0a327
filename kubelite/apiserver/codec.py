"""Request bodies in, responses out: JSON and YAML decoding, Accept negotiation.

kubectl and client-go send JSON (kubectl also YAML for some verbs) and ask for one of:
plain JSON, a server-side ``Table`` (``as=Table;g=meta.k8s.io;v=v1``), or aggregated
discovery (``as=APIGroupDiscoveryList;g=apidiscovery.k8s.io;v=v2``). Responses are never
protobuf: clients list JSON as an alternative and decode by the response's Content-Type. Request
bodies may be protobuf, which client-go 1.31+ sends for built-in types (``kubelite.api.protobuf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from kubelite.api import errors, protobuf

MAX_REQUEST_BODY = 3 * 1024 * 1024
JSON = "application/json"
YAML = "application/yaml"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str
    params: dict[str, str]

    @property
    def as_kind(self) -> str:
        return self.params.get("as", "")


def parse_media_types(header: str) -> list[MediaType]:
    out: list[MediaType] = []
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        fields = [f.strip() for f in part.split(";")]
        params: dict[str, str] = {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        out.append(MediaType(fields[0].lower(), params))
    return out


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """What the client asked for, decided once per request."""

    yaml: bool = False
    table: bool = False
    table_version: str = "v1"
    discovery: str = ""
    """'' or the apidiscovery version requested ('v2' or 'v2beta1')."""


def negotiate(accept: str, *, allow_table: bool = False, allow_discovery: bool = False) -> ResponseFormat:
    """Pick the first acceptable media type in the client's order of preference.

    Raises 406 when nothing offered is something we can produce.
    """
    if not accept.strip():
        return ResponseFormat()
    for mt in parse_media_types(accept):
        if mt.as_kind == "Table":
            if (
                allow_table
                and mt.params.get("g") == "meta.k8s.io"
                and mt.params.get("v") in ("v1", "v1beta1")
            ):
                return ResponseFormat(table=True, table_version=mt.params["v"])
            continue
        if mt.as_kind == "APIGroupDiscoveryList":
            if (
                allow_discovery
                and mt.params.get("g") == "apidiscovery.k8s.io"
                and mt.params.get("v")
                in (
                    "v2",
                    "v2beta1",
                )
            ):
                return ResponseFormat(discovery=mt.params["v"])
            continue
        if mt.as_kind:
            continue
        if mt.type in (JSON, "application/*", "*/*", "*", "application/json-patch+json"):
            return ResponseFormat()
        if mt.type in (YAML, "application/x-yaml", "text/yaml"):
            return ResponseFormat(yaml=True)
    raise errors.not_acceptable(
        f"only the following media types are accepted: {JSON}, {YAML}, "
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    )


def encode(obj: Any, fmt: ResponseFormat) -> tuple[bytes, str]:
    if fmt.yaml:
        return yaml.safe_dump(obj, sort_keys=False).encode(), YAML
    return orjson.dumps(obj), JSON


def decode_body(body: bytes, content_type: str, *, allowed: tuple[str, ...] = (JSON, YAML)) -> Any:
    """Decode a request body; 415 for an unknown media type, 400 for a malformed body."""
    ctype = content_type.split(";", 1)[0].strip().lower() or JSON
    if ctype in ("application/x-yaml", "text/yaml"):
        ctype = YAML
    if len(body) > MAX_REQUEST_BODY:
        raise errors.too_large(MAX_REQUEST_BODY)
    if protobuf.is_protobuf(ctype):
        try:
            return protobuf.decode_object(body)
        except protobuf.ProtobufError as e:
            raise errors.bad_request(f"the protobuf request body could not be decoded: {e}") from None
    if ctype not in allowed:
        raise errors.unsupported_media_type(ctype, [*allowed, protobuf.PROTOBUF])
    if not body.strip():
        raise errors.bad_request("the request body is empty: send a JSON or YAML object")
    if ctype == YAML or ctype.endswith("+yaml"):
        try:
            docs = list(yaml.safe_load_all(body))
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {_one_line(str(e))}") from None
        docs = [d for d in docs if d is not None]
        if len(docs) != 1:
            raise errors.bad_request("the request body must hold exactly one YAML document")
        return _json_roundtrip(docs[0])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"the request body is not valid JSON: {e}") from None


def _json_roundtrip(value: Any) -> Any:
    """YAML allows keys and values JSON does not (dates, non-string keys): normalise through JSON."""
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError) as e:
        raise errors.bad_request(f"error converting YAML to JSON: {e}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())
