"""API errors as Kubernetes ``Status`` objects.

Every error a client can meet on the API is a :class:`StatusError`; the HTTP layer turns it
into ``{"kind": "Status", "status": "Failure", ...}`` with the same code, reason, message
and details kube-apiserver would send, so kubectl and client libraries print the familiar text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Cause:
    """One field problem of a 422 Invalid (``details.causes[]``)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


@dataclass(slots=True)
class StatusError(Exception):
    code: int
    reason: str
    message: str
    group: str = ""
    kind: str = ""
    name: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after: int = 0

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            status["details"] = details
        return status


def success_status(*, name: str = "", group: str = "", kind: str = "", uid: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _qualified(group_resource: str, name: str) -> str:
    return f'{group_resource} "{name}"' if name else group_resource


def not_found(group: str, resource: str, name: str) -> StatusError:
    gr = f"{resource}.{group}" if group else resource
    return StatusError(
        404, "NotFound", f"{_qualified(gr, name)} not found", group=group, kind=resource, name=name
    )


def already_exists(group: str, resource: str, name: str) -> StatusError:
    gr = f"{resource}.{group}" if group else resource
    return StatusError(
        409, "AlreadyExists", f"{_qualified(gr, name)} already exists", group=group, kind=resource, name=name
    )


def conflict(group: str, resource: str, name: str, why: str) -> StatusError:
    gr = f"{resource}.{group}" if group else resource
    return StatusError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {_qualified(gr, name)}: {why}",
        group=group,
        kind=resource,
        name=name,
    )


def stale_conflict(group: str, resource: str, name: str) -> StatusError:
    return conflict(
        group,
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> StatusError:
    gk = f"{kind}.{group}" if group else kind
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{gk} "{name}" is invalid: {summary}',
        group=group,
        kind=kind,
        name=name,
        causes=causes,
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden(group: str, resource: str, name: str, why: str) -> StatusError:
    gr = f"{resource}.{group}" if group else resource
    return StatusError(
        403, "Forbidden", f"{_qualified(gr, name)} is forbidden: {why}", group=group, kind=resource, name=name
    )


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(content_type: str, supported: list[str]) -> StatusError:
    shown = f" ({content_type})" if content_type else ""
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format{shown} - accepted media types include: "
        f"{', '.join(supported)}",
    )


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)
