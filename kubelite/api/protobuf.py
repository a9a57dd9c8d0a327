"""Kubernetes protobuf bodies to the JSON form of the object, and back.

Since 1.31 client-go's typed clients (``kubectl create configmap|secret|deployment|service...``,
``kubectl drain``, every Go controller) send request bodies as
``application/vnd.kubernetes.protobuf`` and never fall back to JSON. Such a body is::

    b"k8s\\x00" + runtime.Unknown{1: TypeMeta{1: apiVersion, 2: kind}, 2: raw,
                                  3: contentEncoding, 4: contentType}

where ``raw`` is the typed message of ``k8s.io/api`` (``generated.proto``). ``decode_object``
unwraps the envelope and walks ``raw`` with the field tables of ``protoschema``, giving the dict
the same client would have sent as JSON; the rest of the API server only ever sees that dict.

Layers, bottom up::

    wire       read_varint, iter_fields / encode_varint, encode_field    no schema
    schema     Field: protoschema's Go-like type strings, parsed once
    objects    decode_object, encode_object                              the JSON mapping rules

JSON mapping: a field absent from the wire is absent from the dict. Protobuf writes non-pointer
scalars even when they hold Go's zero value ("", 0, false); Go's JSON would omit most of them
(``omitempty``) and kubelite's defaulting fills the rest, so they are dropped. Pointer fields keep
a zero (``replicas: 0``, ``automountServiceAccountToken: false``). Messages are kept even when
empty (``"status": {}``), as Go's JSON does for structs. Unknown fields are skipped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from kubelite.api.protoschema import KINDS, MESSAGES

PROTOBUF: Final = "application/vnd.kubernetes.protobuf"
MAGIC: Final = b"k8s\x00"

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5

_WIRE_NAMES: Final = {
    VARINT: "a varint",
    I64: "a 64-bit value",
    LEN: "a length-delimited value",
    I32: "a 32-bit value",
}
_U64: Final = (1 << 64) - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_GO_ZERO_TIME: Final = -62135596800  # 0001-01-01T00:00:00Z: Go's zero time.Time, JSON null

Shape = Literal["one", "pointer", "list", "map"]


class ProtobufError(ValueError):
    """A protobuf body kubelite cannot read; the message is a sentence for the client.

    ``path`` is where in the object the fault lies (``spec.containers[0].ports``), empty for the
    envelope; the message leads with it as Kubernetes field errors do.
    """

    def __init__(self, reason: str, path: tuple[str, ...] = ()) -> None:
        self.reason, self.path = reason, path
        super().__init__(f"{'.'.join(path).replace('.[', '[')}: {reason}" if path else reason)

    def within(self, name: str) -> ProtobufError:
        return ProtobufError(self.reason, (name, *self.path))


def is_protobuf(content_type: str) -> bool:
    """Whether a Content-Type header names Kubernetes protobuf (parameters are ignored)."""
    return content_type.split(";", 1)[0].strip().lower() == PROTOBUF


def supported_kinds() -> set[tuple[str, str]]:
    """Every (apiVersion, kind) that ``decode_object`` accepts."""
    return set(KINDS)


# --- wire ---------------------------------------------------------------------------------------


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("the protobuf body ends inside a number: it is truncated")
        byte = data[pos]
        pos += 1
        if byte < 0x80 and not shift:
            return byte, pos  # the common one-byte case
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("the protobuf body holds a number longer than 10 bytes")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message, in wire order.

    Varints and fixed-width values are unsigned ints; length-delimited values are bytes.
    """
    pos, end = 0, len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("the protobuf body holds a field numbered 0: it is corrupt")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == LEN:
            size, pos = read_varint(data, pos)
            if pos + size > end:
                raise ProtobufError(f"field {number} runs past the end of its message: the body is truncated")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise ProtobufError(f"field {number} runs past the end of its message: the body is truncated")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ProtobufError(
                f"field {number} of the protobuf body has wire type {wire}, unused by Kubernetes"
            )
        yield number, wire, value


def encode_varint(value: int) -> bytes:
    """A varint; negative values take 10 bytes (64-bit two's complement), as Go writes int32/int64."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(number: int, value: int | bytes) -> bytes:
    """One field: an int as a varint, bytes as a length-delimited value."""
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    return encode_varint(number << 3 | LEN) + encode_varint(len(value)) + value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# --- schema -------------------------------------------------------------------------------------

_NUMERIC: Final = frozenset({"int32", "int64", "bool"})
_SPECIAL: Final = frozenset({"Time", "MicroTime", "Quantity", "IntOrString", "FieldsV1", "StringList"})
_SCALAR: Final = _NUMERIC | {"string", "bytes"}
_SHAPES: Final[tuple[tuple[str, Shape], ...]] = (("map[string]", "map"), ("[]", "list"), ("*", "pointer"))


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: ``type`` is a scalar, a special type or a message name."""

    name: str
    type: str
    shape: Shape
    wire: int
    is_message: bool

    @classmethod
    def parse(cls, name: str, spec: str) -> Field:
        plain: tuple[str, Shape] = ("", "one")
        prefix, shape = next(((p, s) for p, s in _SHAPES if spec.startswith(p)), plain)
        base = spec.removeprefix(prefix)
        wire = VARINT if base in _NUMERIC else LEN
        return cls(name, base, shape, wire, base not in _SCALAR and base not in _SPECIAL)


def _compile() -> dict[str, dict[int, Field]]:
    schema = {
        message: {number: Field.parse(name, spec) for number, (name, spec) in fields.items()}
        for message, fields in MESSAGES.items()
    }
    for message, fields in schema.items():
        for f in fields.values():
            if f.is_message and f.type not in schema:
                raise AssertionError(f"protoschema: {message}.{f.name} names unknown message {f.type}")
    return schema


_SCHEMA: Final = _compile()


# --- decoding -----------------------------------------------------------------------------------


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf request body, with ``apiVersion`` and ``kind`` from its envelope.

    Raises ``ProtobufError`` when the body is not a Kubernetes protobuf envelope, is corrupt, or
    holds a kind kubelite has no table for.
    """
    if not body.startswith(MAGIC):
        raise ProtobufError(
            "the body is not Kubernetes protobuf: it does not start with the bytes 'k8s\\x00'; "
            "send it as application/json instead"
        )
    envelope = {n: v for n, _wire, v in iter_fields(body[len(MAGIC) :]) if isinstance(v, bytes)}
    if encoding := envelope.get(3):
        raise ProtobufError(
            f"protobuf content encoding {encoding.decode(errors='replace')!r} is not supported"
        )
    type_meta = {n: v for n, _wire, v in iter_fields(envelope.get(1, b"")) if isinstance(v, bytes)}
    api_version, kind = (
        type_meta.get(1, b"").decode(errors="replace"),
        type_meta.get(2, b"").decode(errors="replace"),
    )
    message = KINDS.get((api_version, kind))
    if message is None:
        what = f"kind {kind!r} of apiVersion {api_version!r}" if kind else "an object with no kind"
        raise ProtobufError(
            f"kubelite cannot decode {what} from protobuf; send it as application/json instead"
        )
    return {"apiVersion": api_version, "kind": kind, **_decode_message(message, envelope.get(2, b""))}


def _decode_message(message: str, data: bytes) -> dict[str, Any]:
    fields = _SCHEMA[message]
    out: dict[str, Any] = {}
    for number, wire, raw in iter_fields(data):
        f = fields.get(number)
        if f is None:
            continue  # a field newer than our table, or one we do not serve
        index = len(out.get(f.name, ())) if f.shape == "list" else -1
        try:
            _decode_field(f, wire, raw, out)
        except ProtobufError as e:
            if not f.name:
                raise  # an inline struct adds nothing to the JSON path
            raise e.within(f"{f.name}[{index}]" if index >= 0 else f.name) from None
    return out


def _decode_field(f: Field, wire: int, raw: int | bytes, out: dict[str, Any]) -> None:
    """Decode one field's value from the wire into ``out``, by the JSON mapping rules."""
    if f.shape == "list" and wire == LEN and f.wire == VARINT:
        assert isinstance(raw, bytes)
        out.setdefault(f.name, []).extend(_unpack(f.type, raw))
        return
    if wire != f.wire:
        raise ProtobufError(f"{_WIRE_NAMES[wire]} where {_WIRE_NAMES[f.wire]} belongs: the body is corrupt")
    if f.shape == "map":
        assert isinstance(raw, bytes)
        key, value = _map_entry(f.type, raw)
        out.setdefault(f.name, {})[key] = value
        return
    value = _value(f.type, raw)
    if f.shape == "list":
        out.setdefault(f.name, []).append(value)
        return
    if not f.name:
        out.update(value)  # a struct Go embeds inline
    elif value is None or (f.shape == "one" and not f.is_message and value in ("", 0)):
        out.pop(f.name, None)
    elif isinstance(value, dict) and isinstance(out.get(f.name), dict):
        out[f.name] = {**out[f.name], **value}  # protobuf merges a repeated singular message
    else:
        out[f.name] = value


def _unpack(ftype: str, data: bytes) -> list[Any]:
    out: list[Any] = []
    pos = 0
    while pos < len(data):
        raw, pos = read_varint(data, pos)
        out.append(_value(ftype, raw))
    return out


def _map_entry(ftype: str, data: bytes) -> tuple[str, Any]:
    key, raw = "", None
    for number, wire, value in iter_fields(data):
        if number == 1 and isinstance(value, bytes):
            key = value.decode(errors="replace")
        elif number == 2:
            if wire != (VARINT if ftype in _NUMERIC else LEN):
                raise ProtobufError(f"{_WIRE_NAMES[wire]} where a value belongs: the body is corrupt")
            raw = value
    if raw is None:  # an entry with no value holds the zero value
        raw = 0 if ftype in _NUMERIC else b""
    try:
        return key, _value(ftype, raw)
    except ProtobufError as e:
        raise e.within(key) from None


def _value(ftype: str, raw: int | bytes) -> Any:
    """One value of type ``ftype`` (the wire type was checked by the caller)."""
    if isinstance(raw, int):
        if ftype == "bool":
            return raw != 0
        return _signed(raw, 32 if ftype == "int32" else 64)
    if ftype == "string":
        return raw.decode(errors="replace")  # Go keeps invalid UTF-8; its JSON writes U+FFFD
    if ftype == "bytes":
        return base64.b64encode(raw).decode()
    if ftype in ("Time", "MicroTime"):
        return _time(raw, micro=ftype == "MicroTime")
    if ftype == "Quantity":
        return _first_string(raw)
    if ftype == "IntOrString":
        return _int_or_string(raw)
    if ftype == "StringList":
        return [
            v.decode(errors="replace") for n, _w, v in iter_fields(raw) if n == 1 and isinstance(v, bytes)
        ]
    if ftype == "FieldsV1":
        try:
            return json.loads(_first_string(raw) or "{}")
        except ValueError:
            raise ProtobufError("managed fields must hold JSON") from None
    return _decode_message(ftype, raw)


def _first_string(data: bytes) -> str:
    for number, _wire, value in iter_fields(data):
        if number == 1 and isinstance(value, bytes):
            return value.decode(errors="replace")
    return ""


def _int_or_string(data: bytes) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _wire, value in iter_fields(data):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, int):
            int_val = _signed(value, 32)
        elif number == 3 and isinstance(value, bytes):
            str_val = value.decode(errors="replace")
    return str_val if kind == 1 else int_val


def _time(data: bytes, *, micro: bool) -> str | None:
    """metav1.Time as RFC 3339 in seconds, MicroTime in microseconds; the zero time is None (null)."""
    seconds = nanos = 0
    for number, _wire, value in iter_fields(data):
        if number == 1 and isinstance(value, int):
            seconds = _signed(value, 64)
        elif number == 2 and isinstance(value, int):
            nanos = _signed(value, 32)
    if not data or (seconds == _GO_ZERO_TIME and nanos == 0):
        return None
    try:
        t = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError("the time is outside the years 1 to 9999") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{t.microsecond:06d}Z" if micro else f"{text}Z"


# --- encoding -----------------------------------------------------------------------------------


def encode_object(obj: dict[str, Any]) -> bytes:
    """The protobuf body client-go would send for a JSON-form object (the inverse of decode_object).

    Keys the table does not know are left out. Raises ``ProtobufError`` for a kind without a table.
    """
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    message = KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f"kubelite has no protobuf table for kind {kind!r} of apiVersion {api_version!r}")
    type_meta = encode_field(1, api_version.encode()) + encode_field(2, kind.encode())
    return MAGIC + encode_field(1, type_meta) + encode_field(2, _encode_message(message, obj))


def _encode_message(message: str, obj: dict[str, Any]) -> bytes:
    out = bytearray()
    for number, f in sorted(_SCHEMA[message].items()):
        if not f.name:
            out += encode_field(number, _encode_message(f.type, obj))
            continue
        value = obj.get(f.name)
        if value is None:
            continue
        if f.shape == "list":
            for item in value:
                out += encode_field(number, _encode_value(f.type, item))
        elif f.shape == "map":
            for key, item in value.items():
                entry = encode_field(1, key.encode()) + encode_field(2, _encode_value(f.type, item))
                out += encode_field(number, entry)
        else:
            out += encode_field(number, _encode_value(f.type, value))
    return bytes(out)


def _encode_value(ftype: str, value: Any) -> int | bytes:
    if ftype in _NUMERIC:
        return int(value)
    if ftype == "string":
        return str(value).encode()
    if ftype == "bytes":
        return base64.b64decode(value)
    if ftype in ("Time", "MicroTime"):
        delta = datetime.fromisoformat(value) - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        return encode_field(1, seconds) + (
            encode_field(2, delta.microseconds * 1000) if delta.microseconds else b""
        )
    if ftype == "Quantity":
        return encode_field(1, str(value).encode())
    if ftype == "IntOrString":
        if isinstance(value, int):
            return encode_field(1, 0) + encode_field(2, value)
        return encode_field(1, 1) + encode_field(3, value.encode())
    if ftype == "StringList":
        return b"".join(encode_field(1, v.encode()) for v in value)
    if ftype == "FieldsV1":
        return encode_field(1, json.dumps(value, separators=(",", ":")).encode())
    return _encode_message(ftype, value)
