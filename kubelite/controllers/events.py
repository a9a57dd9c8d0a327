"""Events, as ``kubectl describe`` shows them: core/v1 Event objects about another object.

A repeated event (same object, type, reason and message) updates the count and
lastTimestamp of the one already written instead of adding another, as client-go's
event correlator does, so a controller retrying in a loop does not flood the namespace.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.meta import format_time, now
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient

log = logging.getLogger("kubelite.events")
Obj = dict[str, Any]
EVENTS = INDEX.by_kind[("v1", "Event")]


def involved_object(obj: Obj) -> Obj:
    md = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": md.get("name", ""),
        "uid": md.get("uid", ""),
        "resourceVersion": md.get("resourceVersion", ""),
    }
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "") -> None:
        self._client = client
        self._source: Obj = {"component": component, **({"host": host} if host else {})}

    async def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        """Record (or count again) an event; failures are logged, never raised: events are best effort."""
        ref = involved_object(obj)
        namespace = ref.get("namespace") or "default"
        # A stable name per (object, reason, message) lets a repeat find the first one.
        digest = hashlib.sha1(f"{ref['uid']}/{event_type}/{reason}/{message}".encode()).hexdigest()[:10]
        name = f"{ref['name']}.{digest}"
        stamp = format_time(now())
        try:
            current = await self._client.get(EVENTS, namespace, name)
        except StatusError as e:
            if e.code != 404:
                log.warning("event %s/%s: %s", namespace, name, e)
                return
            current = None
        try:
            if current is None:
                await self._client.create(EVENTS, namespace, {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": ref,
                    "reason": reason,
                    "message": message,
                    "type": event_type,
                    "source": self._source,
                    "reportingComponent": self._source["component"],
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "count": 1,
                })  # fmt: skip
            else:
                patch = {"count": int(current.get("count", 1)) + 1, "lastTimestamp": stamp}
                await self._client.patch(EVENTS, namespace, name, patch)
        except StatusError as e:
            log.warning("could not record event %s for %s/%s: %s", reason, namespace, ref["name"], e)
