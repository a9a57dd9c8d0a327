"""API values as kube-apiserver writes them for people: ages, labels, label selectors.

``human_duration`` is a port of Kubernetes' ``duration.HumanDuration``
(k8s.io/apimachinery/pkg/util/duration): about two significant figures, the finer unit
dropped as the value grows ("5s", "3m2s", "10m", "2d3h", "2y"). The server formats every
AGE, LAST SEEN and "(5m ago)" cell with it, so the rules must match exactly. The label and
selector renderings follow ``labels.FormatLabels`` and ``metav1.FormatLabelSelector``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24

UNKNOWN = "<unknown>"


def human_duration(d: timedelta) -> str:
    """Succinct, limited-precision rendering of ``d`` (negative beyond clock skew is "<invalid>")."""
    total = d.total_seconds()
    # Go converts with int(): truncation toward zero, so -1.5s is "-1" and still counts as now.
    seconds = int(total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * _MINUTE:
        return f"{seconds}s"
    minutes = seconds // _MINUTE
    if minutes < 10:
        s = seconds % _MINUTE
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = seconds // _HOUR
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < _DAY * 8:
        h = hours % _DAY
        return f"{hours // _DAY}d" if h == 0 else f"{hours // _DAY}d{h}h"
    if hours < _DAY * 365 * 2:
        return f"{hours // _DAY}d"
    if hours < _DAY * 365 * 8:
        days = (hours // _DAY) % 365
        years = hours // _DAY // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // _DAY // 365}y"


def parse_time(value: object) -> datetime | None:
    """An API timestamp (RFC 3339, "Z" or offset, optional fraction) as an aware datetime.

    None for absent, empty or unparsable values: the printers show those as "<unknown>".
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: object, now: datetime) -> str:
    """``HumanDuration(now - timestamp)``, or "<unknown>" for a missing timestamp."""
    parsed = parse_time(timestamp)
    if parsed is None:
        return UNKNOWN
    return human_duration(now - parsed)


# ── labels, selectors, lists ──────────────────────────────────────────────────────────


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, "<none>" when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or "<none>"


class InvalidSelectorError(ValueError):
    """A label selector whose operator or values Kubernetes would reject."""


def label_selector_string(selector: Any) -> str:
    """``metav1.LabelSelectorAsSelector(s).String()``: requirements sorted by key."""
    if not isinstance(selector, Mapping):
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in _mapping(selector.get("matchLabels")).items():
        requirements.append((str(key), f"{key}={value}"))
    for expr in _items(selector.get("matchExpressions")):
        key = str(expr.get("key") or "") if isinstance(expr, Mapping) else ""
        operator = expr.get("operator") if isinstance(expr, Mapping) else None
        values = sorted(str(v) for v in _items(expr.get("values") if isinstance(expr, Mapping) else None))
        if operator in ("In", "NotIn"):
            if not values:
                raise InvalidSelectorError(f"for 'in', 'notin' operators, values set can't be empty: {key}")
            word = "in" if operator == "In" else "notin"
            requirements.append((key, f"{key} {word} ({','.join(values)})"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                raise InvalidSelectorError(f"values set must be empty for exists and does not exist: {key}")
            requirements.append((key, key if operator == "Exists" else f"!{key}"))
        else:
            raise InvalidSelectorError(f"{operator!r} is not a valid label selector operator")
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: like the selector string, "<none>" if empty, "<error>" if invalid."""
    try:
        return label_selector_string(selector) or "<none>"
    except InvalidSelectorError:
        return "<error>"


def join_host_port(host: str, port: Any) -> str:
    """Go's ``net.JoinHostPort``: IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    """``a,b,c + N more...`` when ``more``; "<unset>" for an empty list."""
    text = ",".join(items)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"
