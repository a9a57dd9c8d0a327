"""The API client contract every component uses to reach cluster state.

    controllers / scheduler / agent
              │  ApiClient (this Protocol)
      ┌───────┴─────────┐
      LocalClient        HttpClient
      (in the server     (HTTPS + bearer token,
       process: calls     from a kubeconfig;
       the REST layer)    agents on other nodes)

Both speak the same semantics: errors are :class:`kubelite.api.errors.StatusError` with the
HTTP code kube-apiserver would send, objects are JSON dicts as the API serves them, and a
watch yields :class:`WatchEvent` values until it ends (timeout, server shutdown) or raises
``StatusError(410)`` when its start revision is too old.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kubelite.api.resources import ResourceType

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: Obj

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[Obj]
    resource_version: str


class ApiClient(Protocol):
    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """The object, or StatusError(404)."""
        ...

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        """Every matching object (all pages) and the list's resourceVersion."""
        ...

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after ``resource_version`` ("" = current state as ADDED, then changes).

        Bookmarks are requested and passed through. Ends when the server ends the stream; raises
        StatusError(410) for a compacted resourceVersion.
        """
        ...

    async def create(self, rt: ResourceType, namespace: str | None, obj: Obj) -> Obj: ...

    async def update(
        self, rt: ResourceType, namespace: str | None, obj: Obj, *, subresource: str = ""
    ) -> Obj:
        """PUT; the object's resourceVersion is the precondition (409 when stale)."""
        ...

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> Obj: ...

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
        """The object as deleted (or as marked for deletion), or StatusError(404)."""
        ...

    async def create_subresource(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str, obj: Obj
    ) -> Obj:
        """POST to one object's subresource (``pods/binding``); the server's answer."""
        ...

    async def close(self) -> None: ...
