"""Field errors in Kubernetes' wording (apimachinery ``field.Error``).

A validator returns a list of :class:`~kubelite.api.errors.Cause`; the registry turns a
non-empty list into one 422 Invalid Status whose message lists every cause.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from kubelite.api.errors import Cause


def _show(value: object) -> str:
    """Render a value the way Go's ``%#v``-ish field errors do: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired")


def invalid(path: str, value: object, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueInvalid")


def not_supported(path: str, value: object, valid: Iterable[str]) -> Cause:
    options = ", ".join(json.dumps(v) for v in valid)
    return Cause(
        path, f"Unsupported value: {_show(value)}: supported values: {options}", "FieldValueNotSupported"
    )


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def duplicate(path: str, value: object) -> Cause:
    return Cause(path, f"Duplicate value: {_show(value)}", "FieldValueDuplicate")


def too_long(path: str, max_len: int) -> Cause:
    return Cause(path, f"Too long: must have at most {max_len} bytes", "FieldValueTooLong")


def type_invalid(path: str, value: object, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueTypeInvalid")


def immutable(path: str, value: object) -> Cause:
    return invalid(path, value, "field is immutable")
