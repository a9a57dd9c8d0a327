"""Server-side field validation (``?fieldValidation=Strict|Warn|Ignore``), as kube-apiserver 1.27+ does it.

An object is walked against the OpenAPI v2 definitions the server publishes; a field the
schema does not know is an "unknown field". Strict refuses the request with
``400 strict decoding error: unknown field "spec.bogus"``; Warn (the default) accepts it and
returns one ``Warning: 299 - "unknown field ..."`` header per field; Ignore does neither.
"""

from __future__ import annotations

from typing import Any

from kubelite.api import errors

Json = Any
DIRECTIVES = ("Ignore", "Warn", "Strict")
_MAX_REPORTED = 20


def directive(query: Any) -> str:
    value = str(query.get("fieldValidation", "") or "Warn")
    if value not in DIRECTIVES:
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"'
        )
    return value


class FieldValidator:
    """Unknown-field detection over a Swagger 2.0 ``definitions`` map."""

    def __init__(self, definitions: dict[str, Json]) -> None:
        self._defs = definitions
        self._by_gvk: dict[tuple[str, str], str] = {}
        for name, schema in definitions.items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                group, version = gvk.get("group", ""), gvk.get("version", "")
                api_version = f"{group}/{version}" if group else version
                self._by_gvk.setdefault((api_version, gvk.get("kind", "")), name)

    def unknown_fields(self, api_version: str, kind: str, obj: Json) -> list[str]:
        """Paths of fields ``obj`` has that its schema does not (empty for unknown kinds)."""
        name = self._by_gvk.get((api_version, kind))
        if name is None:
            return []
        found: list[str] = []
        self._walk(self._defs[name], obj, "", found)
        return found

    def _resolve(self, schema: Json) -> Json:
        seen = 0
        while isinstance(schema, dict) and seen < 8:
            ref = schema.get("$ref")
            if ref is None and len(schema.get("allOf") or []) == 1:
                ref = schema["allOf"][0].get("$ref")
            if not ref:
                return schema
            schema = self._defs.get(ref.rsplit("/", 1)[-1], {})
            seen += 1
        return schema

    def _walk(self, schema: Json, value: Json, path: str, found: list[str]) -> None:
        if len(found) >= _MAX_REPORTED:
            return
        schema = self._resolve(schema)
        if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                child = f"{path}.{key}" if path else key
                if props is not None and key in props:
                    self._walk(props[key], item, child, found)
                elif isinstance(extra, dict):
                    self._walk(extra, item, child, found)
                elif props is not None and extra is None and not key.startswith("$"):
                    found.append(child)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._walk(schema["items"], item, f"{path}[{i}]", found)


def strict_error(fields: list[str]) -> errors.StatusError:
    return errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in fields))


def warning_headers(fields: list[str]) -> list[str]:
    return [f'299 - "unknown field \\"{f}\\""' for f in fields]
