"""HTTP verbs on resources: turns a parsed request into a ``Rest`` call and encodes the answer.

GET    collection          list, or watch with ?watch=true
GET    item[/status|scale] get
POST   collection          create            POST item/binding   bind a pod to a node
PUT    item[/status|scale] update            PATCH item[...]     patch (json, merge, strategic)
DELETE item                delete            DELETE collection   deletecollection
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from kubelite.api import errors
from kubelite.api.convert import ingress_from_v1, ingress_to_v1
from kubelite.api.fieldsel import FieldSelectorError, object_fields, parse_field_selector_for
from kubelite.api.patch import PatchError, json_merge_patch, json_patch, strategic_merge_patch
from kubelite.api.patchmeta import definition_for_kind
from kubelite.api.resources import INDEX, ResourceType
from kubelite.api.selectors import SelectorError, parse_selector
from kubelite.apiserver import codec, fieldvalidation, nodeproxy, watch
from kubelite.apiserver.codec import ResponseFormat
from kubelite.apiserver.fieldvalidation import FieldValidator
from kubelite.apiserver.requestinfo import RequestInfo
from kubelite.apiserver.rest import DeleteOptions, Rest
from kubelite.apiserver.tables import to_table

Obj = dict[str, Any]
_PATCH_CONTENT_TYPES = codec.PATCH_TYPES


def _bool_param(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("true", "1")


def dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def selector_filter(rt: ResourceType, query: Any) -> Callable[[Obj], bool] | None:
    """The object filter for ``labelSelector`` and ``fieldSelector``; 400 for a malformed one."""
    label_text = query.get("labelSelector", "")
    field_text = query.get("fieldSelector", "")
    if not label_text and not field_text:
        return None
    try:
        labels = parse_selector(label_text) if label_text else None
    except SelectorError as e:
        raise errors.bad_request(f"unable to parse requirement: {e}") from None
    try:
        fields = parse_field_selector_for(field_text, rt.plural, rt.group) if field_text else None
    except FieldSelectorError as e:
        raise errors.bad_request(str(e)) from None

    def keep(obj: Obj) -> bool:
        if labels is not None and not labels.matches(obj.get("metadata", {}).get("labels") or {}):
            return False
        return fields is None or fields.matches(object_fields(rt.plural, rt.group, obj))

    return keep


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _verb(method: str, named: bool, watching: bool) -> str:
    """The Kubernetes verb of a request (RBAC's vocabulary)."""
    if method == "GET":
        return "watch" if watching else ("get" if named else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return _VERBS.get(method, method.lower())


def _include_object(query: Any) -> str:
    value = str(query.get("includeObject", "Metadata") or "Metadata")
    if value not in ("None", "Metadata", "Object"):
        raise errors.bad_request(
            f'includeObject: Unsupported value: "{value}": supported values: "Metadata", "None", "Object"'
        )
    return value


def _int_param(query: Any, name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.bad_request(f'{name}: Invalid value: "{text}": must be an integer') from None


@dataclass(frozen=True, slots=True)
class Conversion:
    """Between the version a client speaks (``served``) and the one objects are stored in."""

    served: ResourceType
    stored: ResourceType

    @property
    def identity(self) -> bool:
        return self.served is self.stored

    def inbound(self, body: Any) -> Any:
        if self.identity or not isinstance(body, dict):
            return body
        sent = body.get("apiVersion")
        if (
            sent not in (None, self.served.api_version)
            or body.get("kind", self.served.kind) != self.served.kind
        ):
            return body  # check_type_meta reports the mismatch against the stored version
        return ingress_to_v1(body)

    def outbound(self, obj: Any) -> Any:
        if self.identity or not isinstance(obj, dict):
            return obj
        if "items" in obj:
            return {
                **obj,
                "apiVersion": self.served.api_version,
                "items": [self.outbound(i) for i in obj["items"]],
            }
        if obj.get("kind") != self.served.kind:
            return obj
        return ingress_from_v1(obj, self.served.api_version)

    def patch(self, apply: Callable[[Obj], Obj]) -> Callable[[Obj], Obj]:
        if self.identity:
            return apply
        return lambda current: ingress_to_v1(apply(self.outbound(current)))


def conversion_for(rt: ResourceType) -> Conversion:
    if not rt.stored_as:
        return Conversion(rt, rt)
    stored = INDEX.for_kind(rt.stored_as, rt.kind)
    assert stored is not None, f"{rt.kind} is stored as {rt.stored_as}, which is not served"
    return Conversion(rt, stored)


class ResourceHandler:
    def __init__(
        self,
        rest: Rest,
        bookmark_interval: float = 60.0,
        field_validator: Callable[[], FieldValidator] | None = None,
    ) -> None:
        self.rest = rest
        self.bookmark_interval = bookmark_interval
        self._field_validator = field_validator
        self._watches: set[asyncio.Task[Any]] = set()

    def stop_watches(self) -> None:
        """End every open watch stream (server shutdown): clients re-watch elsewhere."""
        for task in list(self._watches):
            task.cancel()

    def check_fields(self, query: Any, rt: ResourceType, obj: Any) -> list[str]:
        """Unknown fields of ``obj`` per ``?fieldValidation``: Strict raises, Warn returns warnings."""
        mode = fieldvalidation.directive(query)
        if mode == "Ignore" or self._field_validator is None or not isinstance(obj, dict):
            return []
        unknown = self._field_validator().unknown_fields(rt.api_version, rt.kind, obj)
        if unknown and mode == "Strict":
            raise fieldvalidation.strict_error(unknown)
        return fieldvalidation.warning_headers(unknown)

    def respond(
        self,
        obj: Any,
        fmt: ResponseFormat,
        rt: ResourceType,
        status: int = 200,
        *,
        query: Any = None,
        warnings: list[str] | None = None,
    ) -> web.Response:
        obj = conversion_for(rt).outbound(obj)
        if fmt.table and isinstance(obj, dict) and obj.get("kind") not in ("Status", "Scale"):
            items = obj.get("items", [obj])
            include = _include_object(query or {})
            list_meta = obj.get("metadata") if "items" in obj else None
            obj = to_table(rt, items, include_object=include, list_meta=list_meta)
            if fmt.table_version != "v1":
                obj["apiVersion"] = f"meta.k8s.io/{fmt.table_version}"
        body, ctype = codec.encode(obj, fmt)
        resp = web.Response(body=body, status=status, content_type=ctype)
        for warning in warnings or ():
            resp.headers.add("Warning", warning)
        return resp

    async def handle(self, request: web.Request, info: RequestInfo, rt: ResourceType) -> web.StreamResponse:
        conv = conversion_for(rt)
        srt = conv.stored
        method = request.method
        query = request.query
        fmt = codec.negotiate(request.headers.get("Accept", ""), allow_table=True)
        ns = info.namespace
        if rt.namespaced and info.name and not ns and rt.kind != "Namespace":
            raise errors.not_found(rt.group, rt.plural, info.name)
        if not rt.namespaced and ns:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        sub = info.subresource
        verb = _verb(method, bool(info.name), info.legacy_watch or _bool_param(query, "watch"))
        if not sub and verb not in rt.verbs:
            if rt.kind == "CustomResourceDefinition":
                raise errors.method_not_allowed(
                    "kubelite does not serve custom resources yet: CustomResourceDefinitions can be "
                    "listed but not created"
                )
            raise errors.method_not_allowed()
        if sub and sub not in rt.subresources and not (rt.kind == "Namespace" and sub == "finalize"):
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        if sub in nodeproxy.SUBRESOURCES:
            return await nodeproxy.serve(request, info, rt)
        if not info.name:
            if method == "GET":
                if info.legacy_watch or _bool_param(query, "watch"):
                    return await self.watch(request, rt, ns, fmt)
                return self.respond(await self.list_objects(srt, ns, query), fmt, rt, query=query)
            if method == "POST":
                sent = await _read_body(request)
                warnings = self.check_fields(query, rt, sent)
                new_obj = await self.rest.create(srt, ns, conv.inbound(sent), dry_run=dry_run(query))
                return self.respond(new_obj, fmt, rt, 201, warnings=warnings)
            if method == "DELETE":
                return self.respond(await self.delete_collection(request, srt, ns), fmt, rt)
            raise errors.method_not_allowed()
        if method == "GET":
            if info.legacy_watch or _bool_param(query, "watch"):
                raise errors.bad_request("watch a single object with ?fieldSelector=metadata.name=NAME")
            obj = await self.rest.get(srt, ns, info.name)
            if sub == "scale":
                obj = to_scale(obj)
            return self.respond(obj, fmt, rt, query=query)
        if method == "PUT":
            sent = await _read_body(request)
            warnings = self.check_fields(query, rt, sent) if not sub else []
            body = conv.inbound(sent)
            if sub == "scale":
                return self.respond(await self.put_scale(rt, ns, info.name, body, dry_run(query)), fmt, rt)
            if sub == "finalize":
                return self.respond(await self.finalize(rt, info.name, body), fmt, rt)
            obj, created = await self.rest.update(
                srt, ns, info.name, body, subresource=sub, dry_run=dry_run(query)
            )
            return self.respond(obj, fmt, rt, 201 if created else 200, warnings=warnings)
        if method == "PATCH":
            warnings = []
            patched = await self.patch(request, rt, ns, info.name, sub, warnings)
            return self.respond(patched, fmt, rt, warnings=warnings)
        if method == "DELETE":
            opts = await delete_options(request)
            obj, removed = await self.rest.delete(srt, ns, info.name, opts)
            return self.respond(obj, fmt, rt, 200 if removed else 202)
        if method == "POST" and sub == "binding":
            return self.respond(
                await self.bind(ns, info.name, await _read_body(request), query), fmt, rt, 201
            )
        raise errors.method_not_allowed()

    async def list_objects(self, rt: ResourceType, ns: str, query: Any) -> Obj:
        keep = selector_filter(rt, query)
        limit = _int_param(query, "limit") or 0
        revision = 0
        rv_match = query.get("resourceVersionMatch", "")
        if rv_match == "Exact":
            revision = _int_param(query, "resourceVersion") or 0
            if revision <= 0:
                raise errors.bad_request(
                    "resourceVersionMatch: Exact requires a resourceVersion greater than 0"
                )
        elif rv_match not in ("", "NotOlderThan"):
            raise errors.bad_request(
                f'resourceVersionMatch: Unsupported value: "{rv_match}": supported values: '
                '"Exact", "NotOlderThan"'
            )
        page = await self.rest.objects.list_page(
            rt,
            ns or None,
            limit=limit,
            continue_token=query.get("continue", ""),
            revision=revision,
            keep=keep,
        )
        meta: Obj = {"resourceVersion": str(page.revision)}
        if page.continue_token:
            meta["continue"] = page.continue_token
            if page.remaining is not None:
                meta["remainingItemCount"] = page.remaining
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": page.items}

    async def watch(
        self, request: web.Request, rt: ResourceType, ns: str, fmt: ResponseFormat
    ) -> web.StreamResponse:
        query = request.query
        timeout = _int_param(query, "timeoutSeconds")
        sie = query.get("sendInitialEvents")
        req = watch.WatchRequest(
            resource_version=query.get("resourceVersion", ""),
            keep=selector_filter(rt, query),
            bookmarks=_bool_param(query, "allowWatchBookmarks"),
            send_initial_events=None if sie is None else sie.lower() == "true",
            timeout=float(timeout) if timeout else None,
            bookmark_interval=self.bookmark_interval,
        )
        conv = conversion_for(rt)
        include = _include_object(query)
        if req.resource_version not in ("", "0"):
            watch.parse_resource_version(req.resource_version)  # a 400 before the stream starts
        events = watch.events(self.rest.objects, conv.stored, ns, req)
        # Headers go out at once, as kube-apiserver does: a watch may wait long for its first event.
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        headers_sent = False
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        try:
            event = await anext(events, None)
            while event is not None:
                obj = conv.outbound(event["object"])
                if fmt.table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    # Like kube-apiserver: column definitions only in the first event.
                    obj = to_table(rt, [obj], include_object=include, no_headers=headers_sent)
                    headers_sent = True
                await resp.write(orjson.dumps({"type": event["type"], "object": obj}) + b"\n")
                event = await anext(events, None)
        except errors.StatusError as e:
            await resp.write(orjson.dumps({"type": "ERROR", "object": e.to_status()}) + b"\n")
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._watches.discard(task)
            await events.aclose()
        return resp

    async def delete_collection(self, request: web.Request, rt: ResourceType, ns: str) -> Obj:
        opts = await delete_options(request)
        keep = selector_filter(rt, request.query)
        page = await self.rest.objects.list_page(rt, ns or None, keep=keep)
        deleted: list[Obj] = []
        for obj in page.items:
            try:
                gone, _ = await self.rest.delete(
                    rt, ns or obj["metadata"].get("namespace", ""), obj["metadata"]["name"], opts
                )
            except errors.StatusError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(gone)
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": ""},
            "items": deleted,
        }

    async def patch(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str, warnings: list[str]
    ) -> Obj:
        ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype not in _PATCH_CONTENT_TYPES:
            raise errors.unsupported_media_type(ctype, list(_PATCH_CONTENT_TYPES))
        if ctype == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(
                ctype
                + " (server-side apply is not supported by kubelite yet: use client-side `kubectl apply`)",
                list(_PATCH_CONTENT_TYPES[:3]),
            )
        raw = await request.read()
        if len(raw) > codec.MAX_REQUEST_BODY:
            raise errors.too_large(codec.MAX_REQUEST_BODY)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"the patch is not valid JSON: {e}") from None
        apply_patch = patcher(rt, sub, _PATCH_KINDS[ctype], doc)

        def apply(current: Obj) -> Obj:
            patched = apply_patch(current)
            if not sub:
                warnings[:] = self.check_fields(request.query, rt, patched)
            return patched

        dry = dry_run(request.query)
        if sub == "scale":

            def apply_scale(current: Obj) -> Obj:
                scaled = apply_patch(to_scale(current))
                return with_replicas(current, scaled)

            return to_scale(await self.rest.patch(rt, ns, name, apply_scale, dry_run=dry))
        conv = conversion_for(rt)
        return await self.rest.patch(conv.stored, ns, name, conv.patch(apply), subresource=sub, dry_run=dry)

    async def put_scale(self, rt: ResourceType, ns: str, name: str, body: Any, dry: bool) -> Obj:
        if not isinstance(body, dict) or body.get("kind", "Scale") != "Scale":
            raise errors.bad_request("the body of a scale update must be an autoscaling/v1 Scale")
        sent_rv = str((body.get("metadata") or {}).get("resourceVersion") or "")

        def apply_scale(current: Obj) -> Obj:
            scaled = with_replicas(current, body)
            if sent_rv:  # Rest.patch turns a resourceVersion the result carries into a precondition
                scaled["metadata"]["resourceVersion"] = sent_rv
            return scaled

        return to_scale(await self.rest.patch(rt, ns, name, apply_scale, dry_run=dry))

    async def finalize(self, rt: ResourceType, name: str, body: Any) -> Obj:
        finalizers = ((body or {}).get("spec") or {}).get("finalizers") or []
        await self.rest.finalize_namespace(name, [str(f) for f in finalizers])
        obj = await self.rest.objects.get(rt, None, name)
        return obj or {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": name},
            "status": {"phase": "Terminating"},
        }

    async def bind(self, ns: str, name: str, body: Any, query: Any) -> Obj:
        if not isinstance(body, dict) or body.get("kind") != "Binding":
            raise errors.bad_request("the body must be a v1 Binding")
        target = (body.get("target") or {}).get("name", "")
        if not target:
            raise errors.invalid(
                "", "Binding", name, [errors.Cause("target.name", "Required value", "FieldValueRequired")]
            )
        rt = next(r for r in self.rest.strategies if r.kind == "Pod")

        def apply(current: Obj) -> Obj:
            if current.get("spec", {}).get("nodeName"):
                raise errors.conflict(
                    "",
                    "pods",
                    name,
                    f'pod {name} is already assigned to node "{current["spec"]["nodeName"]}"',
                )
            current["spec"]["nodeName"] = target
            conds = current.setdefault("status", {}).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": current["metadata"].get("creationTimestamp"),
                }
            )
            return current

        await self.rest.patch(rt, ns, name, apply, subresource="binding", dry_run=dry_run(query))
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


PatchKind = Literal["merge", "strategic", "json"]
_PATCH_KINDS: dict[str, PatchKind] = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


def patcher(rt: ResourceType, subresource: str, kind: PatchKind, doc: Any) -> Callable[[Obj], Obj]:
    """``current -> patched`` for one patch document; 400 for a malformed patch, 422 for one
    that does not apply. Shared by the HTTP handler and the in-process client."""
    definition = (
        definition_for_kind("autoscaling/v1", "Scale")
        if subresource == "scale"
        else definition_for_kind(rt.api_version, rt.kind)
    )

    def apply(current: Obj) -> Obj:
        try:
            if kind == "json":
                if not isinstance(doc, list):
                    raise errors.bad_request("a JSON patch must be a list of operations")
                return _as_object(json_patch(current, doc))
            if not isinstance(doc, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            if kind == "merge":
                return _as_object(json_merge_patch(current, doc))
            return strategic_merge_patch(current, doc, definition)
        except PatchError as e:
            if e.code == 400:
                raise errors.bad_request(e.message) from None
            raise errors.StatusError(422, "Invalid", e.message) from None

    return apply


def _as_object(value: object) -> Obj:
    if not isinstance(value, dict):
        raise errors.StatusError(422, "Invalid", "the patched document is not an object")
    return value


def to_scale(obj: Obj) -> Obj:
    md = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in selector.items()),
        },
    }


def with_replicas(current: Obj, scale: Obj) -> Obj:
    # replicas is not a pointer in Scale: protobuf and Go clients leave out a 0.
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid(
            "autoscaling",
            "Scale",
            current["metadata"]["name"],
            [
                errors.Cause(
                    "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"
                )
            ],
        )
    new = copy.deepcopy(current)
    new["spec"]["replicas"] = replicas
    return new


async def delete_options(request: web.Request) -> DeleteOptions:
    query = request.query
    body: Obj = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            parsed = codec.decode_body(raw, request.headers.get("Content-Type", ""))
            if not isinstance(parsed, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            body = parsed
    grace = body.get("gracePeriodSeconds")
    if grace is None:
        grace = _int_param(query, "gracePeriodSeconds")
    policy = body.get("propagationPolicy") or query.get("propagationPolicy", "")
    if body.get("orphanDependents") is True or query.get("orphanDependents") == "true":
        policy = policy or "Orphan"
    if policy not in ("", "Orphan", "Background", "Foreground"):
        raise errors.bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Foreground", "Background", "Orphan"'
        )
    pre = body.get("preconditions") or {}
    dry = dry_run(query) or body.get("dryRun") == ["All"]
    return DeleteOptions(
        grace_period_seconds=grace,
        propagation_policy=policy,
        precondition_uid=pre.get("uid") or "",
        precondition_rv=pre.get("resourceVersion") or "",
        dry_run=dry,
    )


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    return codec.decode_body(raw, request.headers.get("Content-Type", ""))
