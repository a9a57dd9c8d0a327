"""``LocalClient``: the ApiClient contract inside the server process, without HTTP or auth.

    LocalClient ──► the same steps handlers.py takes for a request ──► Rest / ObjectStore / watch.events

Each verb repeats what ``handlers.ResourceHandler`` does between parsing a request and encoding
its answer: the verb and subresource checks, version conversion (``extensions/v1beta1`` Ingress
is stored as ``networking.k8s.io/v1``), selector filters, the three patch kinds, DeleteOptions
validation and the status / scale / finalize subresources. So a controller sees the same objects
and the same StatusErrors whether it runs beside the server or on another machine.

Bodies are copied on the way in and results on the way out, as a round trip through JSON would:
callers may mutate what they pass and what they get.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from multidict import MultiDict

from kubelite.api import errors
from kubelite.api.resources import ResourceType
from kubelite.apiserver import watch as apiwatch
from kubelite.apiserver.handlers import (
    ResourceHandler,
    conversion_for,
    patcher,
    selector_filter,
    to_scale,
    with_replicas,
)
from kubelite.apiserver.rest import DeleteOptions, Rest, clone
from kubelite.client.http import status_error, write_target
from kubelite.client.interface import ListResult, Obj, PatchType, WatchEvent

if TYPE_CHECKING:
    from kubelite.client.interface import ApiClient

_PATCH_TYPES = ("merge", "strategic", "json")
_NEEDS_AGENT = ("log", "exec", "attach", "portforward", "proxy")
_PROPAGATION_POLICIES = ("", "Orphan", "Background", "Foreground")


def _check(rt: ResourceType, verb: str, subresource: str = "") -> None:
    """The verb and subresource checks ``ResourceHandler.handle`` makes before any work."""
    if not subresource and verb not in rt.verbs:
        if rt.kind == "CustomResourceDefinition":
            raise errors.method_not_allowed(
                "kubelite does not serve custom resources yet: CustomResourceDefinitions can be "
                "listed but not created"
            )
        raise errors.method_not_allowed()
    finalize = rt.kind == "Namespace" and subresource == "finalize"
    if subresource and subresource not in rt.subresources and not finalize:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
    if subresource in _NEEDS_AGENT:
        raise errors.StatusError(
            503,
            "ServiceUnavailable",
            f"{rt.plural}/{subresource} needs a node agent; this cluster has none running yet "
            "(start nodes with `kubelite up`)",
        )


def _scope(rt: ResourceType, namespace: str | None, name: str = "") -> str:
    """The namespace a request path would carry ("" for cluster scope or all namespaces)."""
    if not rt.namespaced:
        return ""
    if name and not namespace:
        raise errors.not_found(rt.group, rt.plural, name)
    return namespace or ""


class LocalClient:
    """ApiClient over a :class:`Rest` in this process. ``close()`` does nothing."""

    def __init__(self, rest: Rest, *, bookmark_interval: float = 60.0) -> None:
        self._rest = rest
        # Only its request-free helpers are used (list, scale, finalize); no field validator, as
        # the HTTP server only warns about unknown fields unless asked to be strict.
        self._handler = ResourceHandler(rest, bookmark_interval)
        self._bookmark_interval = bookmark_interval

    async def close(self) -> None:
        return None

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        scope = _scope(rt, namespace, name)
        _check(rt, "get")
        conv = conversion_for(rt)
        # Rest.get decodes a fresh object from the stored bytes: nothing else holds it.
        obj: Obj = conv.outbound(await self._rest.get(conv.stored, scope, name))
        return obj

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        _check(rt, "list")
        conv = conversion_for(rt)
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        # One snapshot, all items: what HttpClient's pages add up to.
        listed = conv.outbound(await self._handler.list_objects(conv.stored, _scope(rt, namespace), query))
        return ListResult(list(listed["items"]), str(listed["metadata"]["resourceVersion"]))

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        _check(rt, "watch")
        conv = conversion_for(rt)
        if resource_version not in ("", "0"):
            apiwatch.parse_resource_version(resource_version)  # 400, as the server answers before streaming
        req = apiwatch.WatchRequest(
            resource_version=resource_version,
            keep=selector_filter(rt, {"labelSelector": label_selector, "fieldSelector": field_selector}),
            bookmarks=True,
            timeout=float(timeout_seconds) if timeout_seconds else None,
            bookmark_interval=self._bookmark_interval,
        )
        # Each event's object is decoded afresh from the store; the server keeps no reference.
        stream = apiwatch.events(self._rest.objects, conv.stored, _scope(rt, namespace), req)
        async with aclosing(stream) as events:
            async for event in events:
                if event["type"] == "ERROR":
                    raise status_error(event["object"])
                yield WatchEvent(event["type"], conv.outbound(event["object"]))

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, obj: Obj) -> Obj:
        _check(rt, "create")
        ns, _ = write_target(rt, namespace, obj)
        conv = conversion_for(rt)
        created = await self._rest.create(conv.stored, _scope(rt, ns), conv.inbound(clone(obj)))
        return _out(conv.outbound(created))

    async def update(
        self, rt: ResourceType, namespace: str | None, obj: Obj, *, subresource: str = ""
    ) -> Obj:
        ns, name = write_target(rt, namespace, obj)
        if not name:
            raise errors.bad_request("an update needs the object's metadata.name")
        scope = _scope(rt, ns, name)
        _check(rt, "update", subresource)
        conv = conversion_for(rt)
        body = conv.inbound(clone(obj))
        if subresource == "scale":
            return _out(await self._handler.put_scale(rt, scope, name, body, False))
        if subresource == "finalize":
            return _out(await self._handler.finalize(rt, name, body))
        updated, _ = await self._rest.update(conv.stored, scope, name, body, subresource=subresource)
        return _out(conv.outbound(updated))

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> Obj:
        if patch_type not in _PATCH_TYPES:
            raise ValueError(f"patch_type {patch_type!r}: use one of {', '.join(_PATCH_TYPES)}")
        scope = _scope(rt, namespace, name)
        _check(rt, "patch", subresource)
        apply_patch = patcher(rt, subresource, patch_type, clone({"patch": patch})["patch"])
        if subresource == "scale":

            def apply_scale(current: Obj) -> Obj:
                return with_replicas(current, apply_patch(to_scale(current)))

            return _out(to_scale(await self._rest.patch(rt, scope, name, apply_scale)))
        conv = conversion_for(rt)
        patched = await self._rest.patch(
            conv.stored, scope, name, conv.patch(apply_patch), subresource=subresource
        )
        return _out(conv.outbound(patched))

    async def create_subresource(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str, obj: Obj
    ) -> Obj:
        scope = _scope(rt, namespace, name)
        _check(rt, "create", subresource)
        if subresource != "binding":
            raise errors.method_not_allowed()
        return _out(await self._handler.bind(scope, name, clone(obj), MultiDict()))

    async def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        precondition_uid: str = "",
    ) -> Obj:
        scope = _scope(rt, namespace, name)
        _check(rt, "delete")
        if propagation_policy not in _PROPAGATION_POLICIES:
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{propagation_policy}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        opts = DeleteOptions(
            grace_period_seconds=grace_period_seconds,
            propagation_policy=propagation_policy,
            precondition_uid=precondition_uid,
        )
        conv = conversion_for(rt)
        deleted, _ = await self._rest.delete(conv.stored, scope, name, opts)
        return _out(conv.outbound(deleted))


def _out(obj: Any) -> Obj:
    # Write results may be held by a strategy's after_commit hook: hand out a copy.
    copied: Obj = clone(obj)
    return copied


def _as_object(value: object) -> Obj:
    if not isinstance(value, dict):
        raise errors.StatusError(422, "Invalid", "the patched document is not an object")
    return value


if TYPE_CHECKING:

    def _implements(client: LocalClient) -> ApiClient:
        return client
