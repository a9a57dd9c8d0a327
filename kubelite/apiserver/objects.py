"""API objects in the store: JSON bytes under ``/registry/...`` keys, resourceVersion = revision.

The stored bytes never carry ``metadata.resourceVersion``: it is the key's mod_revision and is
set on the way out, as kube-apiserver does with etcd. Continue tokens name the revision and the
last key of a page, so a paged list is one consistent snapshot.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from kubelite.api import errors
from kubelite.api.resources import ResourceType
from kubelite.store.interface import CompactedError, FutureRevisionError, KeyValue, Storage

Obj = dict[str, Any]


def encode(obj: Obj) -> bytes:
    md = obj.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        md = dict(md)
        del md["resourceVersion"]
        obj = {**obj, "metadata": md}
    return orjson.dumps(obj)


def decode(kv: KeyValue) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Obj]
    revision: int
    continue_token: str
    remaining: int | None


def encode_continue(revision: int, last_key: str, prefix: str) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": revision, "start": last_key[len(prefix) :] + "\x00"}
    return base64.urlsafe_b64encode(orjson.dumps(token)).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    """(revision, exclusive start key). 400 for a token we did not write."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        rv = int(data["rv"])
        start = str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request(
            "continue key is not valid: the token was not issued by this server"
        ) from None
    if data.get("v") != "meta.k8s.io/v1" or rv <= 0 or not start.endswith("\x00"):
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
    return rv, prefix + start[:-1]


_CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


class ObjectStore:
    """Typed reads and list pages over a Storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        kv = await self.storage.get(rt.key(namespace, name))
        return decode(kv) if kv is not None else None

    async def get_kv(self, rt: ResourceType, namespace: str | None, name: str) -> KeyValue | None:
        return await self.storage.get(rt.key(namespace, name))

    async def list_page(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        limit: int = 0,
        continue_token: str = "",
        revision: int = 0,
        keep: Any = None,
    ) -> Page:
        """One page of objects (all of them when ``limit`` is 0), filtered by ``keep(obj)``.

        With a filter, pages are read until ``limit`` matches are found, as the real server does.
        """
        prefix = rt.prefix(namespace)
        start_key = ""
        if continue_token:
            revision, start_key = decode_continue(continue_token, prefix)
        items: list[Obj] = []
        read_at = revision
        while True:
            want = 0 if limit <= 0 else max(limit - len(items), 1)
            try:
                res = await self.storage.list(prefix, revision=read_at, start_key=start_key, limit=want)
            except CompactedError:
                if continue_token:
                    raise errors.gone(_CONTINUE_TOO_OLD) from None
                raise errors.gone(f"too old resource version: {revision}") from None
            except FutureRevisionError as e:
                raise errors.timeout(
                    f"Too large resource version: {e.requested}, current: {e.current}"
                ) from None
            read_at = res.revision
            for kv in res.items:
                obj = decode(kv)
                if keep is None or keep(obj):
                    items.append(obj)
            if not res.more or not res.items:
                return Page(items, read_at, "", None)
            start_key = res.items[-1].key
            if limit > 0 and len(items) >= limit:
                remaining = res.remaining if keep is None else None
                return Page(items, read_at, encode_continue(read_at, start_key, prefix), remaining)
