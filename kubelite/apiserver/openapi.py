"""The OpenAPI documents kubectl reads: ``/openapi/v2`` and ``/openapi/v3/...``.

kubectl uses them for three things, each with its own reader:

* ``kubectl explain`` (v3 by default since 1.27, but 1.27/1.28 fetch the v2 protobuf first
  and fail if it does not parse): finds the GVK on the resource's list/get
  operation, then the ``components.schemas`` entry whose ``x-kubernetes-group-version-kind``
  contains it, and follows ``$ref``/single-element ``allOf`` down the field path.
* the fieldValidation check before apply/create/replace (client-go QueryParamVerifier, v3
  then v2): for the object's GVK it looks for a PATCH operation whose own
  ``x-kubernetes-group-version-kind`` matches and whose *operation* parameters include
  ``fieldValidation``. Found: validation is left to the server. Not found: kubectl
  validates client side against the v2 schemas.
* client-side apply: computes the strategic merge patch from the v3 schema of the kind
  (``x-kubernetes-patch-strategy``/``-merge-key``) when the PATCH operation accepts
  ``application/strategic-merge-patch+json``.

The schemas are built at run time from the official ``kubernetes`` client's generated
models, which carry every built-in type's fields, types and descriptions::

    kubernetes.client.models.V1ServiceSpec ──► "io.k8s.api.core.v1.ServiceSpec"
        openapi_types {"ports": "List[V1ServicePort]"}     ──► type/items/$ref
        attribute_map {"cluster_ip": "clusterIP"}           ──► JSON field names
        field docs (pydantic Field / legacy property docs)  ──► description, required

The client drops the Go package, so each class is given the package of the first root
kind that reaches it: apimachinery meta types first, then every core/v1 kind, then the
kinds kubelite serves (apps/v1 DeploymentSpec → PodTemplateSpec stays core).

Documents are built once, lazily, per ``OpenAPIDocuments`` instance (under a second, most
of it importing the client's models); serve the bytes with their ETags. The handler
contract, as kube-openapi implements it:

* ``/openapi/v2``: kubectl asks for protobuf and cannot read JSON there; see ``v2()``.
* ``/openapi/v3/<path>?hash=H``: H stale → 301 to ``v3_url(path)``; H current → serve with
  ``Cache-Control: public, immutable``. Without ``hash``: serve with the ETag.

Patch strategies (``x-kubernetes-patch-strategy``/``-merge-key``) come from the
``extra_field_extensions`` hook; without them kubectl's client-side apply replaces whole
lists (containers, ports, env) instead of merging them by key.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

import orjson

from kubelite.api.resources import RESOURCES, ResourceType

ExtensionsHook = Callable[[str, str], Mapping[str, Any]]
"""(definition name, JSON field name) -> extra schema keys, e.g. x-kubernetes-patch-strategy."""
Json = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
TIME = META + "Time"
MICRO_TIME = META + "MicroTime"
FIELDS_V1 = META + "FieldsV1"
PATCH = META + "Patch"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
VERSION_INFO = "io.k8s.apimachinery.pkg.version.Info"

_META_CLASSES = (
    "V1ObjectMeta", "V1ListMeta", "V1LabelSelector", "V1LabelSelectorRequirement", "V1OwnerReference",
    "V1ManagedFieldsEntry", "V1Status", "V1StatusDetails", "V1StatusCause", "V1DeleteOptions",
    "V1Preconditions", "V1APIResourceList", "V1APIResource", "V1APIGroup", "V1APIGroupList",
    "V1APIVersions", "V1GroupVersionForDiscovery", "V1ServerAddressByClientCIDR", "V1WatchEvent",
    "V1Condition", "V1FieldSelectorRequirement",
)  # fmt: skip
_CORE_KINDS = (
    "Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange", "Namespace", "Node",
    "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate", "ReplicationController",
    "ResourceQuota", "Secret", "Service", "ServiceAccount",
)  # fmt: skip
# The generated client types these as plain strings or datetimes; Kubernetes names them.
_QUANTITY_FIELDS = MappingProxyType(
    {
        "V1ResourceRequirements": ("limits", "requests"),
        "V1VolumeResourceRequirements": ("limits", "requests"),
        "V1PodSpec": ("overhead",),
        "V1NodeStatus": ("capacity", "allocatable"),
        "V1EmptyDirVolumeSource": ("sizeLimit",),
        "V1ResourceFieldSelector": ("divisor",),
        "V1ContainerStatus": ("allocatedResources",),
        "V1PersistentVolumeClaimStatus": ("capacity", "allocatedResources"),
        "V1PersistentVolumeSpec": ("capacity",),
        "V1ResourceQuotaSpec": ("hard",),
        "V1ResourceQuotaStatus": ("hard", "used"),
        "V1LimitRangeItem": ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"),
        "V1CSIStorageCapacity": ("capacity", "maximumVolumeSize"),
    }
)
_MICRO_TIME_FIELDS = MappingProxyType(
    {
        "CoreV1Event": ("eventTime",),
        "CoreV1EventSeries": ("lastObservedTime",),
        "EventsV1Event": ("eventTime",),
        "EventsV1EventSeries": ("lastObservedTime",),
        "V1LeaseSpec": ("acquireTime", "renewTime"),
    }
)
_INT_OR_STRING_NAMES = ("port", "targetPort", "maxSurge", "maxUnavailable", "minAvailable")
_SPECIAL_OBJECTS = MappingProxyType(
    {("V1ManagedFieldsEntry", "fieldsV1"): FIELDS_V1, ("V1WatchEvent", "object"): RAW_EXTENSION}
)
_CLASS_NAME = re.compile(
    r"^(?P<group>[A-Z][a-z]+)?(?P<version>V\d+(?:(?:alpha|beta)\d+)?)(?P<name>[A-Z]\w*)$"
)
_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
_PRIMITIVES = MappingProxyType(
    {
        "str": {"type": "string"},
        "int": {"type": "integer"},
        "float": {"type": "number", "format": "double"},
        "bool": {"type": "boolean"},
        "bytes": {"type": "string", "format": "byte"},
        "bytearray": {"type": "string", "format": "byte"},
        "date": {"type": "string", "format": "date"},
    }
)
_LEGACY_REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


def _special_definitions(flavor: str) -> dict[str, Json]:
    """The apimachinery types the client flattens to primitives, as kube-openapi publishes them."""
    v3 = flavor == "v3"
    return {
        TIME: {"description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.", "type": "string", "format": "date-time"},  # noqa: E501
        MICRO_TIME: {"description": "MicroTime is version of Time with microsecond level precision.", "type": "string", "format": "date-time"},  # noqa: E501
        FIELDS_V1: {"description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.", "type": "object"},  # noqa: E501
        RAW_EXTENSION: {"description": "RawExtension is used to hold extensions in external versions.", "type": "object"},  # noqa: E501
        PATCH: {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"},  # noqa: E501
        QUANTITY: {
            "description": "Quantity is a fixed-point representation of a number (serialized as a string, e.g. \"100m\", \"1Gi\").",  # noqa: E501
            **({"oneOf": [{"type": "string"}, {"type": "number"}]} if v3 else {"type": "string"}),
        },
        INT_OR_STRING: {
            "description": "IntOrString is a type that can hold an int32 or a string.",
            "format": "int-or-string",
            **({"oneOf": [{"type": "integer"}, {"type": "string"}]} if v3 else {"type": "string"}),
        },
    }  # fmt: skip


def _go_package(group: str) -> str:
    if group == "":
        return "core"
    if group == "internal.apiserver.k8s.io":
        return "apiserverinternal"
    return group.split(".")[0]


def _definition_prefix(package: str, version: str) -> str:
    if package == "meta":
        return f"{META[:-3]}{version}."
    if package == "apiextensions":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}."
    if package == "apiregistration":
        return f"io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}."
    return f"io.k8s.api.{package}.{version}."


def _element_type(type_str: str) -> str:
    """The innermost type of ``List[...]``/``Dict[str, ...]`` nests."""
    while match := _LIST.match(type_str) or _DICT.match(type_str):
        type_str = next(g for g in match.groups() if g)
    return type_str


def _clean(text: str) -> str:
    return text.replace("  # noqa: E501", "").strip()


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    json_name: str
    type_str: str
    description: str
    required: bool
    int_or_string: bool


class _Models:
    """The client's model classes, their fields, and the Go package each one belongs to."""

    def __init__(self, module: ModuleType) -> None:
        # The client imports its ~850 model modules lazily (module __getattr__); so do we.
        self.module = module
        self.names = frozenset(n for n in dir(module) if n[:1].isupper())
        self.loaded: dict[str, type | None] = {}
        self.package: dict[str, str] = {}

    def get(self, name: str) -> type | None:
        """The model class called ``name``, or None if there is no such model."""
        if name not in self.loaded:
            cls = getattr(self.module, name, None) if name in self.names else None
            ok = isinstance(cls, type) and isinstance(getattr(cls, "openapi_types", None), dict)
            self.loaded[name] = cls if ok else None
        return self.loaded[name]

    def class_for_kind(self, package: str, version: str, kind: str) -> str | None:
        version_cap = version[:1].upper() + version[1:]
        for name in (f"{version_cap}{kind}", f"{package.capitalize()}{version_cap}{kind}"):
            if self.get(name) is not None:
                return name
        return None

    def claim(self, roots: Iterable[str], package: str) -> None:
        """Give ``package`` to every unclaimed class reachable from ``roots``."""
        queue = list(roots)
        while queue:
            name = queue.pop()
            cls = self.get(name)
            if cls is None or name in self.package:
                continue
            match = _CLASS_NAME.match(name)
            explicit = match.group("group") if match else None
            self.package[name] = explicit.lower() if explicit else package
            for type_str in getattr(cls, "openapi_types", {}).values():
                element = _element_type(type_str)
                if element not in self.package:
                    queue.append(element)

    def definition_name(self, cls_name: str) -> str:
        if cls_name == "VersionInfo":
            return VERSION_INFO
        match = _CLASS_NAME.match(cls_name)
        if match is None:
            return f"io.k8s.kubelite.{cls_name}"
        version = match.group("version").lower()
        package = self.package.get(cls_name, (match.group("group") or "core").lower())
        return _definition_prefix(package, version) + match.group("name")

    def description(self, cls_name: str) -> str:
        doc = inspect.cleandoc(getattr(self.get(cls_name), "__doc__", None) or "")
        text = doc.split("Attributes:")[0]
        if "auto generated by OpenAPI Generator" in text:  # legacy client: no class description
            return ""
        return " ".join(text.split()) if "\n\n" not in text.strip() else _clean(text)

    def fields(self, cls_name: str) -> list[_Field]:
        cls = self.get(cls_name)
        openapi_types: Mapping[str, str] = getattr(cls, "openapi_types", {})
        attribute_map: Mapping[str, str] = getattr(cls, "attribute_map", {})
        model_fields: Mapping[str, Any] | None = getattr(cls, "model_fields", None)
        legacy_required = set() if model_fields is not None or cls is None else self._legacy_required(cls)
        out = []
        for attr, type_str in openapi_types.items():
            if model_fields is not None and attr in model_fields:
                info = model_fields[attr]
                description = str(info.description or "")
                required = bool(info.is_required())
                annotation = str(info.annotation)
                int_or_string = "int" in annotation and "str" in annotation and "Dict" not in annotation
            else:
                getter = getattr(getattr(cls, attr, None), "fget", None)
                description = self._legacy_description(getattr(getter, "__doc__", None) or "")
                required = attr in legacy_required
                int_or_string = False
            json_name = attribute_map.get(attr, attr)
            if type_str == "object" and model_fields is None:
                int_or_string = json_name in _INT_OR_STRING_NAMES
            out.append(_Field(attr, json_name, type_str, description, required, int_or_string))
        return sorted(out, key=lambda f: f.json_name)

    @staticmethod
    def _legacy_description(doc: str) -> str:
        """The middle paragraphs of a python-legacy getter docstring ("Gets the x of this Y.")."""
        paragraphs = [p.strip() for p in inspect.cleandoc(doc).split("\n\n")]
        body = [p for p in paragraphs[1:] if p and not p.startswith((":return", ":rtype"))]
        return _clean(" ".join(body))

    @staticmethod
    def _legacy_required(cls: type) -> set[str]:
        """python-legacy setters raise ``ValueError("Invalid value for `x`, must not be `None`")``."""
        try:
            source = inspect.getsource(inspect.getmodule(cls) or cls)
        except (OSError, TypeError):
            return set()
        return set(_LEGACY_REQUIRED.findall(source))


# ── definitions ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Kind:
    group: str
    version: str
    kind: str

    def gvk(self) -> Json:
        return {"group": self.group, "kind": self.kind, "version": self.version}


class _Definitions:
    """Version-neutral schemas; a ``{"$ref": name}`` holds a bare definition name."""

    def __init__(self, models: _Models, hook: ExtensionsHook | None) -> None:
        self.models = models
        self.hook = hook
        self.by_name: dict[str, str] = {}  # definition name -> client class
        self.gvks: dict[str, list[Json]] = {}
        self.extra: dict[str, Json] = {}  # definitions without a client class
        self.cache: dict[str, Json] = {}

    def add_class(self, cls_name: str) -> str:
        name = self.models.definition_name(cls_name)
        self.by_name.setdefault(name, cls_name)
        return name

    def kind(self, group: str, version: str, kind: str, *, item: str = "") -> str:
        """The definition of a top-level kind (``item``: the element definition of a List kind), tagged
        with its GVK. A kind the installed client does not know gets a free-form schema."""
        package = _go_package(group)
        cls_name = self.models.class_for_kind(package, version, kind)
        if cls_name is not None:
            name = self.add_class(cls_name)
        else:
            name = _definition_prefix(package, version) + kind
            meta: Json = {"$ref": META + ("ListMeta" if item else "ObjectMeta")}
            properties: Json = {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": meta,
            }
            if item:
                properties["items"] = {"type": "array", "items": {"$ref": item}}
            about = f"{kind} is served, but the installed kubernetes client has no schema for it."
            schema = {"description": about, "type": "object", "properties": properties}
            self.extra.setdefault(name, {**schema, "x-kubernetes-preserve-unknown-fields": True})
        self.tag(name, _Kind(group, version, kind))
        return name

    def tag(self, name: str, kind: _Kind) -> None:
        entries = self.gvks.setdefault(name, [])
        if kind.gvk() not in entries:
            entries.append(kind.gvk())

    def get(self, name: str) -> Json:
        if name not in self.cache:
            self.cache[name] = self._build(name)
        return self.cache[name]

    def _build(self, name: str) -> Json:
        if name in self.extra:
            schema = dict(self.extra[name])
        elif name in self.by_name:
            schema = self._from_class(name, self.by_name[name])
        else:
            schema = {"type": "object"}
        if name in self.gvks:
            schema["x-kubernetes-group-version-kind"] = sorted(
                self.gvks[name], key=lambda g: (g["group"], g["version"])
            )
        return schema

    def _from_class(self, name: str, cls_name: str) -> Json:
        properties: Json = {}
        required = []
        for f in self.models.fields(cls_name):
            prop = self._type_schema(f.type_str, cls_name, f)
            if f.description:
                prop = {"description": f.description, **prop}
            if self.hook is not None:
                prop.update(self.hook(name, f.json_name))
            properties[f.json_name] = prop
            if f.required:
                required.append(f.json_name)
        schema: Json = {"type": "object", "properties": properties}
        if description := self.models.description(cls_name):
            schema = {"description": description, **schema}
        if required:
            schema["required"] = required
        return schema

    def _type_schema(self, type_str: str, owner: str, f: _Field) -> Json:
        if match := _LIST.match(type_str):
            return {"type": "array", "items": self._type_schema(match.group(1), owner, f)}
        if match := _DICT.match(type_str):
            value = next(g for g in match.groups() if g)
            return {"type": "object", "additionalProperties": self._type_schema(value, owner, f)}
        if self.models.get(type_str) is not None:
            return {"$ref": self.add_class(type_str)}
        if type_str == "str" and f.json_name in _QUANTITY_FIELDS.get(owner, ()):
            return {"$ref": QUANTITY}
        if type_str == "datetime":
            return {"$ref": MICRO_TIME if f.json_name in _MICRO_TIME_FIELDS.get(owner, ()) else TIME}
        if type_str == "object":
            if f.int_or_string:
                return {"$ref": INT_OR_STRING}
            if special := _SPECIAL_OBJECTS.get((owner, f.json_name)):
                return {"$ref": special}
            return {"type": "object"}
        return dict(_PRIMITIVES.get(type_str, {"type": "string"}))

    def closure(self, roots: Iterable[str]) -> list[str]:
        """Every definition reachable from ``roots``, sorted."""
        seen: set[str] = set()
        queue = list(roots)
        while queue:
            name = queue.pop()
            if name in seen:
                continue
            seen.add(name)
            queue.extend(r for r in _refs(self.get(name)) if r not in seen)
        return sorted(seen)


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _render(node: Any, flavor: str) -> Any:
    """Neutral → v2 (``#/definitions/``, siblings beside $ref) or v3 (``#/components/schemas/``,
    a $ref with siblings wrapped in ``allOf`` since OpenAPI 3.0 ignores them)."""
    if isinstance(node, list):
        return [_render(item, flavor) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _render(value, flavor) for key, value in node.items() if key != "$ref"}
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out
    if flavor == "v2":
        return {"$ref": "#/definitions/" + ref, **out}
    target = {"$ref": "#/components/schemas/" + ref}
    return {**out, "allOf": [target]} if out else target


# ── operations ────────────────────────────────────────────────────────────────────────

# (type, description) of every parameter; descriptions are the first sentences of kube-apiserver's.
_PARAMS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "pretty": ("string", "If 'true', then the output is pretty printed."),
        "namespace": ("string", "object name and auth scope, such as for teams and projects"),
        "dryRun": ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),  # noqa: E501
        "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these changes."),  # noqa: E501
        "fieldValidation": (
            "string",
            "fieldValidation instructs the server on how to handle objects in the request"
            " (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are:"
            " - Ignore: This will ignore any unknown fields that are silently dropped from the object, and"
            " will ignore all but the last duplicate field that the decoder encounters."
            " - Warn: This will send a warning via the standard warning"
            " response header for each unknown field that is dropped from the object, and for each duplicate"
            " field that is encountered. - Strict: This will fail the request with a BadRequest error if any"
            " unknown fields would be dropped from the object, or if any duplicate fields are present.",
        ),
        "force": ("boolean", 'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other people.'),  # noqa: E501
        "allowWatchBookmarks": ("boolean", 'allowWatchBookmarks requests watch events of type "BOOKMARK".'),
        "continue": ("string", "The continue option should be set when retrieving more results."),
        "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),  # noqa: E501
        "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),  # noqa: E501
        "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
        "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may be served from."),  # noqa: E501
        "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),  # noqa: E501
        "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
        "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
        "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),  # noqa: E501
        "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
        "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned."),  # noqa: E501
        "propagationPolicy": ("string", "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'."),  # noqa: E501
        "container": ("string", "The container for which to stream logs or run the command."),
        "follow": ("boolean", "Follow the log stream of the pod. Defaults to false."),
        "insecureSkipTLSVerifyBackend": ("boolean", "Do not verify the serving certificate of the backend."),
        "limitBytes": ("integer", "If set, the number of bytes to read from the server before terminating."),
        "previous": ("boolean", "Return previous terminated container logs. Defaults to false."),
        "sinceSeconds": ("integer", "A relative time in seconds before the current time to show logs from."),
        "tailLines": ("integer", "If set, the number of lines from the end of the logs to show."),
        "timestamps": ("boolean", "If true, add an RFC3339 timestamp at the start of every line."),
        "command": ("string", "Command is the remote command to execute. Not executed within a shell."),
        "stdin": ("boolean", "Redirect the standard input stream of the pod for this call."),
        "stdout": ("boolean", "Redirect the standard output stream of the pod for this call."),
        "stderr": ("boolean", "Redirect the standard error stream of the pod for this call."),
        "tty": ("boolean", "TTY if true indicates that a tty will be allocated for the exec call."),
        "ports": ("integer", "List of ports to forward Required when using WebSockets"),
        "path": ("string", "Path is the URL path to use for the current proxy request."),
    }
)  # fmt: skip
_LIST_PARAMS = (
    "allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
    "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch",
)  # fmt: skip
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_PARAMS = (*_WRITE_PARAMS, "force")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_DELETE_COLLECTION_PARAMS = (
    *_DELETE_PARAMS,
    *(p for p in _LIST_PARAMS if p not in ("allowWatchBookmarks", "watch")),
)
_LOG_PARAMS = (
    "container", "follow", "insecureSkipTLSVerifyBackend", "limitBytes", "previous", "sinceSeconds",
    "tailLines", "timestamps",
)  # fmt: skip
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_OBJECT_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_STREAM_TYPES = (
    *_OBJECT_TYPES,
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
)
_OK = (("200", "OK"),)
_CREATED = (("200", "OK"), ("201", "Created"), ("202", "Accepted"))
_REPLACED = _CREATED[:2]
_DELETED = (("200", "OK"), ("202", "Accepted"))
_DEPRECATED_WATCH = "deprecated: use the 'watch' parameter with a list operation instead"


@dataclass(frozen=True, slots=True)
class _OpSpec:
    """An operation kube-apiserver installs; ``{ns}``, ``{kind}``, ``{Sub}`` are filled in per resource.

    ``response``/``body`` name what is sent: "object", "list", "status", "event", "delete",
    "patch", "target" (the subresource's own kind) or "string"/"" (plain text, nothing).
    """

    verb: str  # the resource verb that enables it; "" for subresource operations
    method: str
    op_verb: str
    suffix: str
    description: str
    action: str
    response: str
    body: str = ""
    params: tuple[str, ...] = ()
    codes: tuple[tuple[str, str], ...] = _OK
    produces: tuple[str, ...] = _OBJECT_TYPES


_COLLECTION_OPS = (
    _OpSpec("list", "get", "list", "{ns}{kind}", "list or watch objects of kind {kind}", "list", "list", "", _LIST_PARAMS, _OK, _STREAM_TYPES),  # noqa: E501
    _OpSpec("create", "post", "create", "{ns}{kind}", "create a {kind}", "post", "object", "object", _WRITE_PARAMS, _CREATED),  # noqa: E501
    _OpSpec("deletecollection", "delete", "delete", "Collection{ns}{kind}", "delete collection of {kind}", "deletecollection", "status", "delete", _DELETE_COLLECTION_PARAMS),  # noqa: E501
)  # fmt: skip
_ITEM_OPS = (
    _OpSpec("get", "get", "read", "{ns}{kind}", "read the specified {kind}", "get", "object"),
    _OpSpec("update", "put", "replace", "{ns}{kind}", "replace the specified {kind}", "put", "object", "object", _WRITE_PARAMS, _REPLACED),  # noqa: E501
    _OpSpec("delete", "delete", "delete", "{ns}{kind}", "delete a {kind}", "delete", "status", "delete", _DELETE_PARAMS, _DELETED),  # noqa: E501
    _OpSpec("patch", "patch", "patch", "{ns}{kind}", "partially update the specified {kind}", "patch", "object", "patch", _PATCH_PARAMS, _REPLACED),  # noqa: E501
)  # fmt: skip
_ALL_NAMESPACES_OPS = (
    _OpSpec("list", "get", "list", "{kind}ForAllNamespaces", "list or watch objects of kind {kind}", "list", "list", "", _LIST_PARAMS, _OK, _STREAM_TYPES),  # noqa: E501
)  # fmt: skip
_WATCH_OPS = (  # collection, item, all namespaces
    _OpSpec("watch", "get", "watch", "{ns}{kind}List", "watch individual changes to a list of {kind}. " + _DEPRECATED_WATCH + ".", "watchlist", "event", produces=_STREAM_TYPES),  # noqa: E501
    _OpSpec("watch", "get", "watch", "{ns}{kind}", "watch changes to an object of kind {kind}. " + _DEPRECATED_WATCH + ", filtered to a single item with the 'fieldSelector' parameter.", "watch", "event", produces=_STREAM_TYPES),  # noqa: E501
    _OpSpec("watch", "get", "watch", "{kind}ListForAllNamespaces", "watch individual changes to a list of {kind}. " + _DEPRECATED_WATCH + ".", "watchlist", "event", produces=_STREAM_TYPES),  # noqa: E501
)  # fmt: skip
_READ_REPLACE_PATCH = (
    _OpSpec("", "get", "read", "{ns}{kind}{Sub}", "read {sub} of the specified {kind}", "get", "target"),
    _OpSpec("", "put", "replace", "{ns}{kind}{Sub}", "replace {sub} of the specified {kind}", "put", "target", "target", _WRITE_PARAMS, _REPLACED),  # noqa: E501
    _OpSpec("", "patch", "patch", "{ns}{kind}{Sub}", "partially update {sub} of the specified {kind}", "patch", "target", "patch", _PATCH_PARAMS, _REPLACED),  # noqa: E501
)  # fmt: skip
_CREATE = (
    _OpSpec("", "post", "create", "{ns}{kind}{Sub}", "create {sub} of a {kind}", "post", "target", "target", _WRITE_PARAMS, _CREATED),  # noqa: E501
)  # fmt: skip
_LOG = (
    _OpSpec("", "get", "read", "{ns}{kind}Log", "read log of the specified {kind}", "get", "string", "", _LOG_PARAMS, _OK, ("text/plain", *_OBJECT_TYPES)),  # noqa: E501
)  # fmt: skip
# subresource -> (operations, (group, version, kind) of what they read and write; None: the resource's own)
_SUBRESOURCES: Mapping[str, tuple[tuple[_OpSpec, ...], tuple[str, str, str] | None]] = MappingProxyType(
    {
        "status": (_READ_REPLACE_PATCH, None),
        "ephemeralcontainers": (_READ_REPLACE_PATCH, None),
        "resize": (_READ_REPLACE_PATCH, None),
        "scale": (_READ_REPLACE_PATCH, ("autoscaling", "v1", "Scale")),
        "binding": (_CREATE, ("", "v1", "Binding")),
        "eviction": (_CREATE, ("policy", "v1", "Eviction")),
        "log": (_LOG, None),
    }
)
# connect subresource -> (options kind suffix, query parameters, methods)
_CONNECT: Mapping[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "exec": (
            "ExecOptions",
            ("command", "container", "stderr", "stdin", "stdout", "tty"),
            ("get", "post"),
        ),
        "attach": ("AttachOptions", ("container", "stderr", "stdin", "stdout", "tty"), ("get", "post")),
        "portforward": ("PortForwardOptions", ("ports",), ("get", "post")),
        "proxy": ("ProxyOptions", ("path",), ("get", "put", "post", "delete", "options", "head", "patch")),
    }
)


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    location: str = "query"
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class _Op:
    method: str
    operation_id: str
    description: str
    action: str
    kind: _Kind | None
    response: str | None  # definition name; None for a plain string body
    params: tuple[_Param, ...] = ()
    body: str | None = None
    consumes: tuple[str, ...] = ("*/*",)
    produces: tuple[str, ...] = _OBJECT_TYPES
    codes: tuple[tuple[str, str], ...] = _OK


@dataclass(slots=True)
class _Path:
    path: str
    params: tuple[_Param, ...]
    ops: list[_Op] = field(default_factory=list)


def _q(*names: str) -> tuple[_Param, ...]:
    return tuple(_Param(n) for n in names)


def _camel_group(group: str) -> str:
    """``rbac.authorization.k8s.io`` → ``RbacAuthorization``; the core group is ``Core``."""
    if not group:
        return "Core"
    return "".join(p[:1].upper() + p[1:] for p in group.removesuffix(".k8s.io").split("."))


def _camel_gv(group: str, version: str) -> str:
    return _camel_group(group) + version[:1].upper() + version[1:]


def _tag(group: str, version: str) -> str:
    camel = _camel_group(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


class _PathBuilder:
    """The REST paths kube-apiserver installs for one resource type, with its operationIds."""

    def __init__(self, rt: ResourceType, definitions: _Definitions) -> None:
        self.rt = rt
        self.defs = definitions
        self.kind = _Kind(rt.group, rt.version, rt.kind)
        self.prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
        self.obj = definitions.kind(rt.group, rt.version, rt.kind)
        self.list = definitions.kind(rt.group, rt.version, rt.list_kind, item=self.obj)

    def _ops(self, specs: Iterable[_OpSpec], sub: str = "", target: _Kind | None = None) -> list[_Op]:
        target_def = self.obj
        if target and any("target" in (s.response, s.body) for s in specs):
            target_def = self.defs.kind(target.group, target.version, target.kind)
        names = {
            "object": self.obj, "list": self.list, "status": META + "Status", "event": META + "WatchEvent",
            "delete": META + "DeleteOptions", "patch": PATCH, "target": target_def,
        }  # fmt: skip
        fill = {"ns": "Namespaced" if self.rt.namespaced else "", "kind": self.rt.kind, "sub": sub}
        fill["Sub"] = sub.capitalize()
        ops = []
        for spec in specs:
            if spec.verb and spec.verb not in self.rt.verbs:
                continue
            ops.append(
                _Op(
                    spec.method,
                    f"{spec.op_verb}{_camel_gv(self.rt.group, self.rt.version)}{spec.suffix.format(**fill)}",
                    spec.description.format(**fill),
                    spec.action,
                    target or self.kind,
                    names.get(spec.response),
                    _q(*spec.params),
                    names.get(spec.body),
                    _PATCH_TYPES if spec.body == "patch" else ("*/*",),
                    spec.produces,
                    spec.codes,
                )
            )
        return ops

    def paths(self) -> list[_Path]:
        rt = self.rt
        ns = (_Param("namespace", "path", True),) if rt.namespaced else ()
        scope = f"/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"/{rt.plural}"
        name = _Param("name", "path", True, f"name of the {rt.kind}")
        item = _Path(f"{self.prefix}{scope}/{{name}}", (name, *ns, _Param("pretty")), self._ops(_ITEM_OPS))
        out = [_Path(f"{self.prefix}{scope}", (*ns, _Param("pretty")), self._ops(_COLLECTION_OPS)), item]
        if rt.namespaced:
            out.append(
                _Path(f"{self.prefix}/{rt.plural}", (_Param("pretty"),), self._ops(_ALL_NAMESPACES_OPS))
            )
        watch_params = _q("pretty", *_LIST_PARAMS)
        watch = f"{self.prefix}/watch{scope}"
        out.append(_Path(watch, (*ns, *watch_params), self._ops(_WATCH_OPS[:1])))
        out.append(_Path(f"{watch}/{{name}}", (name, *ns, *watch_params), self._ops(_WATCH_OPS[1:2])))
        if rt.namespaced:
            out.append(_Path(f"{self.prefix}/watch/{rt.plural}", watch_params, self._ops(_WATCH_OPS[2:])))
        for sub in rt.subresources:
            out.extend(self._subresource(sub, item))
        return [p for p in out if p.ops]

    def _subresource(self, sub: str, item: _Path) -> list[_Path]:
        rest = item.params[1:]  # namespace, pretty
        if sub in _SUBRESOURCES:
            specs, target = _SUBRESOURCES[sub]
            kind = _Kind(*target) if target else None
            name = _Param("name", "path", True, f"name of the {(kind or self.kind).kind}")
            return [_Path(f"{item.path}/{sub}", (name, *rest), self._ops(specs, sub, kind))]
        if sub not in _CONNECT:
            return []
        options, query, methods = _CONNECT[sub]
        kind = _Kind("", "v1", f"{self.rt.kind}{options}")
        name = _Param("name", "path", True, f"name of the {kind.kind}")
        paths = [_Path(f"{item.path}/{sub}", (name, *rest))]
        if sub == "proxy":
            paths.append(_Path(f"{item.path}/{sub}/{{path}}", (name, *rest, _Param("path", "path", True))))
        for path in paths:
            suffix = "WithPath" if path is not paths[0] else ""
            for method in methods:
                description = f"connect {method.upper()} requests to {sub} of {self.rt.kind}"
                op_suffix = method.capitalize() + "{ns}{kind}{Sub}" + suffix
                params = () if suffix else query
                spec = _OpSpec(
                    "",
                    method,
                    "connect",
                    op_suffix,
                    description,
                    "connect",
                    "string",
                    "",
                    params,
                    _OK,
                    ("*/*",),
                )
                path.ops.extend(self._ops((spec,), sub, kind))
        return paths


# ── documents ─────────────────────────────────────────────────────────────────────────

_BEARER = {
    "type": "apiKey",
    "description": "Bearer Token authentication",
    "name": "authorization",
    "in": "header",
}


def _render_param(p: _Param, flavor: str) -> Json:
    type_, doc = _PARAMS.get(p.name, ("string", ""))
    out: Json = {"name": p.name, "in": p.location, "description": p.description or doc}
    if p.required:
        out["required"] = True
    if flavor == "v2":
        out.update(type=type_, uniqueItems=True)
    else:
        out["schema"] = {"type": type_, "uniqueItems": True}
    return out


def _render_op(op: _Op, tag: str, flavor: str) -> Json:
    ref_base = "#/definitions/" if flavor == "v2" else "#/components/schemas/"
    schema: Json = {"$ref": ref_base + op.response} if op.response else {"type": "string"}
    out: Json = {"tags": [tag], "description": op.description, "operationId": op.operation_id}
    params = [_render_param(p, flavor) for p in op.params]
    responses: Json = {}
    if flavor == "v2":
        out.update(consumes=list(op.consumes), produces=list(op.produces), schemes=["https"])
        if op.body:
            params.insert(
                0, {"name": "body", "in": "body", "required": True, "schema": {"$ref": ref_base + op.body}}
            )
        for code, text in op.codes:
            responses[code] = {"description": text, "schema": schema}
    else:
        if op.body:
            out["requestBody"] = {
                "content": {t: {"schema": {"$ref": ref_base + op.body}} for t in op.consumes}
            }
        for code, text in op.codes:
            responses[code] = {"description": text, "content": {t: {"schema": schema} for t in op.produces}}
    if params:
        out["parameters"] = params
    out["responses"] = {**responses, "401": {"description": "Unauthorized"}}
    if op.action:
        out["x-kubernetes-action"] = op.action
    if op.kind is not None:
        out["x-kubernetes-group-version-kind"] = {
            "group": op.kind.group,
            "version": op.kind.version,
            "kind": op.kind.kind,
        }
    return out


def _render_path(path: _Path, tag: str, flavor: str) -> Json:
    out: Json = {op.method: _render_op(op, tag, flavor) for op in path.ops}
    if path.params:
        out["parameters"] = [_render_param(p, flavor) for p in path.params]
    return out


def _discovery_path(path: str, operation_id: str, description: str, response: str) -> _Path:
    op = _Op("get", operation_id, description, "", None, response, consumes=_OBJECT_TYPES)
    return _Path(path, (), [op])


@dataclass(frozen=True, slots=True)
class _Document:
    """One v3 document's paths (and their tag) before rendering."""

    tag: str
    paths: tuple[_Path, ...]


@dataclass(frozen=True, slots=True)
class _Built:
    v2: bytes
    v2_hash: str
    v3: Mapping[str, bytes]
    v3_hashes: Mapping[str, str]
    v3_index: bytes


def _hash(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()


class _Builder:
    def __init__(
        self, resources: Sequence[ResourceType], version: str, hook: ExtensionsHook | None, models: ModuleType
    ) -> None:
        self.resources = resources
        self.info = {"title": "Kubernetes", "version": version}
        self.models = _Models(models)
        self.defs = _Definitions(self.models, hook)
        self.specials = {flavor: _special_definitions(flavor) for flavor in ("v2", "v3")}
        self.rendered: dict[str, dict[str, Json]] = {"v2": {}, "v3": {}}

    def _claim_packages(self) -> None:
        models = self.models
        models.claim(_META_CLASSES, "meta")
        core = [
            models.class_for_kind("core", "v1", k + suffix) for k in _CORE_KINDS for suffix in ("", "List")
        ]
        models.claim((c for c in core if c), "core")
        extra = [("autoscaling", "v1", "Scale"), ("policy", "v1", "Eviction")]
        for group, version, kind in [*((r.group, r.version, r.kind) for r in self.resources), *extra]:
            package = _go_package(group)
            roots = [models.class_for_kind(package, version, kind + s) for s in ("", "List")]
            models.claim((r for r in roots if r), package)

    def documents(self) -> dict[str, _Document]:
        self._claim_packages()
        by_gv: dict[str, list[_Path]] = {}
        groups: dict[str, None] = {}
        for rt in self.resources:
            key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
            if key not in by_gv:
                gv = _camel_group(rt.group) + rt.version[:1].upper() + rt.version[1:]
                listing = _discovery_path(
                    f"/{key}/", f"get{gv}APIResources", "get available resources", META + "APIResourceList"
                )
                by_gv[key] = [listing]
            by_gv[key].extend(_PathBuilder(rt, self.defs).paths())
            if rt.group:
                groups[rt.group] = None
            for kind in ("DeleteOptions", "WatchEvent"):
                self.defs.tag(META + kind, _Kind(rt.group, rt.version, kind))
        self.defs.tag(META + "Status", _Kind("", "v1", "Status"))
        self.defs.add_class("VersionInfo")
        docs = {
            key: _Document(
                _tag(*key.removeprefix("apis/").removeprefix("api/").rpartition("/")[::2]), tuple(paths)
            )
            for key, paths in by_gv.items()
        }
        docs["api"] = _Document(
            "core",
            (
                _discovery_path(
                    "/api/", "getCoreAPIVersions", "get available API versions", META + "APIVersions"
                ),
            ),
        )
        docs["apis"] = _Document(
            "apis",
            (
                _discovery_path(
                    "/apis/", "getAPIVersions", "get available API versions", META + "APIGroupList"
                ),
            ),
        )
        for group in groups:
            camel = _camel_group(group)
            path = _discovery_path(
                f"/apis/{group}/", f"get{camel}APIGroup", "get information of a group", META + "APIGroup"
            )
            docs[f"apis/{group}"] = _Document(camel[:1].lower() + camel[1:], (path,))
        docs["version"] = _Document(
            "version", (_discovery_path("/version/", "getCodeVersion", "get the code version", VERSION_INFO),)
        )
        return dict(sorted(docs.items()))

    def definitions(self, paths: Iterable[_Path], flavor: str) -> Json:
        roots = {name for p in paths for op in p.ops for name in (op.response, op.body) if name}
        out: Json = {}
        for name in self.defs.closure(roots):
            if name not in self.rendered[flavor]:
                neutral = self.specials[flavor].get(name) or self.defs.get(name)
                self.rendered[flavor][name] = _render(neutral, flavor)
            out[name] = self.rendered[flavor][name]
        return out

    def build(self) -> _Built:
        docs = self.documents()
        v3: dict[str, bytes] = {}
        for key, doc in docs.items():
            paths = {p.path: _render_path(p, doc.tag, "v3") for p in sorted(doc.paths, key=lambda p: p.path)}
            schemas = self.definitions(doc.paths, "v3")
            body = {
                "openapi": "3.0.0",
                "info": self.info,
                "paths": paths,
                "components": {"schemas": schemas, "securitySchemes": {"BearerToken": _BEARER}},
            }
            v3[key] = orjson.dumps(body)
        all_paths = sorted(((p, d.tag) for d in docs.values() for p in d.paths), key=lambda pt: pt[0].path)
        v2_doc = {
            "swagger": "2.0",
            "info": self.info,
            "paths": {p.path: _render_path(p, tag, "v2") for p, tag in all_paths},
            "definitions": self.definitions((p for p, _ in all_paths), "v2"),
            "securityDefinitions": {"BearerToken": {k: v for k, v in _BEARER.items()}},
            "security": [{"BearerToken": []}],
        }
        v2 = orjson.dumps(v2_doc)
        hashes = {key: _hash(data) for key, data in v3.items()}
        index = {
            "paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"} for key, h in hashes.items()}
        }
        return _Built(v2, _hash(v2), MappingProxyType(v3), MappingProxyType(hashes), orjson.dumps(index))


class OpenAPIDocuments:
    """kube-apiserver's OpenAPI documents for ``resources``, built once on first use.

    ``version`` goes to ``info.version``. ``extra_field_extensions(definition, field)``
    returns extra keys for a field's schema (``x-kubernetes-patch-strategy`` and friends);
    the returned keys sit beside the field's type, wrapped in ``allOf`` in v3 when the
    field is a ``$ref``. ``models`` defaults to ``kubernetes.client.models``.
    Thread-safe; every accessor returns immutable bytes or strings.
    """

    def __init__(
        self,
        resources: Sequence[ResourceType] = RESOURCES,
        *,
        version: str = "v1.33.0",
        extra_field_extensions: ExtensionsHook | None = None,
        models: ModuleType | None = None,
    ) -> None:
        self._resources = tuple(resources)
        self._version = version
        self._hook = extra_field_extensions
        self._models = models
        self._lock = threading.Lock()
        self._built: _Built | None = None
        self.build_seconds: float | None = None
        """Wall time the first build took (None until then)."""

    def _get(self) -> _Built:
        with self._lock:
            if self._built is None:
                start = time.perf_counter()
                models = self._models
                if models is None:
                    from kubernetes.client import models as client_models

                    models = client_models
                self._built = _Builder(self._resources, self._version, self._hook, models).build()
                self.build_seconds = time.perf_counter() - start
            return self._built

    def warm(self) -> float:
        """Build now (e.g. at server start, in a thread) and return the seconds the build took."""
        self._get()
        return self.build_seconds or 0.0

    def v2(self) -> bytes:
        """``/openapi/v2`` as Swagger 2.0 JSON.

        kubectl asks for the protobuf form (``Accept: ...spec.v2@v1.0+protobuf``) and cannot
        read JSON there (kubectl 1.27/1.28 fail every ``explain`` with "proto: cannot parse
        invalid wire-format data"): encode this with ``openapi_pb.OpenAPIV2Protobuf(docs.v2)``
        and answer with Content-Type ``application/com.github.proto-openapi.spec.v2.v1.0+protobuf``
        (the "@" spelling is not a valid media type and Go's mime parser rejects it).
        """
        return self._get().v2

    def v2_etag(self) -> str:
        """The quoted ETag of ``v2()`` (SHA-512, upper-case hex, as kube-openapi computes it)."""
        return f'"{self._get().v2_hash}"'

    def v3_index(self) -> bytes:
        """``/openapi/v3``: ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}``."""
        return self._get().v3_index

    def v3_paths(self) -> list[str]:
        """The document keys the index lists: "api", "api/v1", "apis", "apis/apps", "apis/apps/v1", ..."""
        return list(self._get().v3)

    def v3(self, group_version_path: str) -> bytes | None:
        """``/openapi/v3/<path>`` as OpenAPI 3.0 JSON, or None (404) for an unknown path."""
        return self._get().v3.get(group_version_path.strip("/"))

    def v3_hash(self, group_version_path: str) -> str | None:
        """The current ``hash`` of a v3 document (unquoted), or None for an unknown path."""
        return self._get().v3_hashes.get(group_version_path.strip("/"))

    def v3_etag(self, group_version_path: str) -> str | None:
        digest = self.v3_hash(group_version_path)
        return f'"{digest}"' if digest else None

    def v3_url(self, group_version_path: str) -> str | None:
        """The server-relative URL the index advertises (where a stale ``hash`` is redirected)."""
        digest = self.v3_hash(group_version_path)
        return f"/openapi/v3/{group_version_path.strip('/')}?hash={digest}" if digest else None
