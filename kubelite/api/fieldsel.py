"""Field selectors: the ``?fieldSelector=`` query, and the fields each resource exposes to it.

Grammar and messages follow k8s.io/apimachinery/pkg/fields: comma-joined terms
``field=value``, ``field==value`` or ``field!=value``; ``\\``, ``,`` and ``=`` inside a
value are escaped with a backslash; a field an object lacks compares as "".

Which fields a resource supports, and how they are read off an object, follow the field
label conversion functions and ``GetAttrs`` of kube-apiserver's registries: every kind
supports ``metadata.name`` and ``metadata.namespace`` unless its registry narrows that
(Nodes and Namespaces, being cluster-scoped, drop ``metadata.namespace``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


class FieldSelectorError(ValueError):
    """A field selector that cannot be parsed or names an unsupported field."""


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    operator: str
    """"=", "==" or "!=" ("=" and "==" mean the same)."""
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return not equal if self.operator == "!=" else equal

    def __str__(self) -> str:
        op = "!=" if self.operator == "!=" else "="
        return f"{self.field}{op}{escape_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A conjunction of field requirements. No requirements selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def requires_exact_match(self, field: str) -> str | None:
        """The value ``field`` must equal, if a term pins it (e.g. ``spec.nodeName`` for kubelets)."""
        for r in self.requirements:
            if r.field == field and r.operator != "!=":
                return r.value
        return None

    def check_supported(self, plural: str, group: str) -> None:
        """Raise FieldSelectorError for the first field the resource does not support."""
        supported = supported_fields(plural, group)
        for r in self.requirements:
            if r.field not in supported:
                raise FieldSelectorError(f"field label not supported: {r.field}")

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(value: str) -> str:
    out = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise FieldSelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Go prints the rune as a number here.
            raise FieldSelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise FieldSelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """Parse the ``fieldSelector`` query form; "" selects everything. Whitespace is not trimmed."""
    requirements = []
    for term in sorted(_split_terms(text)) if text else []:
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), "")
            if op:
                requirements.append(FieldRequirement(term[:i], op, _unescape(term[i + len(op) :])))
                break
        else:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(requirements))


def parse_field_selector_for(text: str, plural: str, group: str) -> FieldSelector:
    """Parse and check every field against what ``plural.group`` supports, as the API does."""
    selector = parse_field_selector(text)
    selector.check_supported(plural, group)
    return selector


# --- what each resource exposes -----------------------------------------------------------------

_Extractor = Callable[[Mapping[str, object]], str]


def _at(path: str, default: str = "") -> _Extractor:
    """Read a dotted path from an object, rendering it as Go's strconv would."""
    keys = path.split(".")

    def extract(obj: Mapping[str, object]) -> str:
        node: object = obj
        for key in keys:
            if not isinstance(node, Mapping) or node.get(key) is None:
                return default
            node = node[key]
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    return extract


def _pod_ip(obj: Mapping[str, object]) -> str:
    status = obj.get("status")
    if isinstance(status, Mapping):
        ips = status.get("podIPs")
        if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
            return str(ips[0].get("ip") or "")
    return _at("status.podIP")(obj)


def _event_source(obj: Mapping[str, object]) -> str:
    return _at("source.component")(obj) or _at("reportingComponent")(obj)


_NAME = {"metadata.name": _at("metadata.name")}
_META = {**_NAME, "metadata.namespace": _at("metadata.namespace")}

_FIELDS: dict[tuple[str, str], dict[str, _Extractor]] = {
    ("", "pods"): {
        **_META,
        "spec.nodeName": _at("spec.nodeName"),
        "spec.restartPolicy": _at("spec.restartPolicy"),
        "spec.schedulerName": _at("spec.schedulerName"),
        "spec.serviceAccountName": _at("spec.serviceAccountName"),
        "spec.hostNetwork": _at("spec.hostNetwork", "false"),
        "status.phase": _at("status.phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _at("status.nominatedNodeName"),
    },
    ("", "events"): {
        **_META,
        **{
            f"involvedObject.{f}": _at(f"involvedObject.{f}")
            for f in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            )
        },
        "reason": _at("reason"),
        "reportingComponent": _at("reportingComponent"),
        "source": _event_source,
        "type": _at("type"),
    },
    ("", "secrets"): {**_META, "type": _at("type")},
    ("", "services"): {**_META, "spec.clusterIP": _at("spec.clusterIP"), "spec.type": _at("spec.type")},
    ("", "nodes"): {**_NAME, "spec.unschedulable": _at("spec.unschedulable", "false")},
    ("", "namespaces"): {**_NAME, "status.phase": _at("status.phase")},
    ("apps", "replicasets"): {**_META, "status.replicas": _at("status.replicas", "0")},
}


def _extractors(plural: str, group: str) -> dict[str, _Extractor]:
    return _FIELDS.get((group, plural), _META)


def supported_fields(plural: str, group: str) -> frozenset[str]:
    """Field names ``plural`` in API group ``group`` ("" for core) can be selected on."""
    return frozenset(_extractors(plural, group))


def object_fields(plural: str, group: str, obj: Mapping[str, object]) -> dict[str, str]:
    """The selectable fields of ``obj`` (a resource of ``plural.group``) as strings."""
    return {name: extract(obj) for name, extract in _extractors(plural, group).items()}
