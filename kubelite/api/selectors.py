"""Label selectors, in the three forms the API meets them.

- the string kubectl sends as ``?labelSelector=`` (``parse_selector``), with the grammar
  and error messages of k8s.io/apimachinery/pkg/labels;
- the ``LabelSelector`` object of Deployments, ReplicaSets, DaemonSets
  (``selector_from_label_selector``: ``matchLabels`` + ``matchExpressions``);
- the plain map of ``Service.spec.selector`` (``selector_from_map``).

All three become the same frozen ``Selector``: a conjunction of ``Requirement``s.
The label key and value validators used on the way are public, since object validation
needs the same rules and wording.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class SelectorError(ValueError):
    """A selector that cannot be parsed or built; the message is kube-apiserver's."""


class Operator(enum.StrEnum):
    """The relation of a requirement, spelled as k8s.io/apimachinery/pkg/selection spells it."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"

# --- label key and value validation (k8s.io/apimachinery/pkg/api/validate/content) ---------------

_LABEL_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_NAME_RE = re.compile(_LABEL_NAME_FMT)
_LABEL_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_LABEL_NAME_FMT})?"
_LABEL_VALUE_MSG = "a valid label must be an empty string or " + _LABEL_NAME_MSG.removeprefix("must ")
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_DNS_SUBDOMAIN_RE = re.compile(_DNS_SUBDOMAIN_FMT)
_DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_MAX_NAME = 63
_MAX_SUBDOMAIN = 253


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """Kubernetes' RegexError, double spaces and all."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def validate_dns_subdomain(value: str) -> list[str]:
    """Errors for a lowercase RFC 1123 subdomain (e.g. a label key prefix); empty if valid."""
    errors = []
    if len(value.encode()) > _MAX_SUBDOMAIN:
        errors.append(_too_long(_MAX_SUBDOMAIN))
    if not _DNS_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_regex_error(_DNS_SUBDOMAIN_MSG, _DNS_SUBDOMAIN_FMT, "example.com"))
    return errors


def validate_label_key(key: str) -> list[str]:
    """Errors for a label key (``[prefix/]name``) in Kubernetes' wording; empty if valid."""
    parts = key.split("/")
    errors: list[str] = []
    if len(parts) > 2:
        return [
            "a valid label key "
            + _regex_error(_LABEL_NAME_MSG, _LABEL_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + e for e in validate_dns_subdomain(prefix))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name.encode()) > _MAX_NAME:
        errors.append("name part " + _too_long(_MAX_NAME))
    if not _LABEL_NAME_RE.fullmatch(name):
        errors.append(
            "name part " + _regex_error(_LABEL_NAME_MSG, _LABEL_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def validate_label_value(value: str) -> list[str]:
    """Errors for a label value (empty is valid) in Kubernetes' wording; empty if valid."""
    errors = []
    if len(value.encode()) > _MAX_NAME:
        errors.append(_too_long(_MAX_NAME))
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _invalid(path: str, value: object, detail: str) -> str:
    """A field.Invalid error as Go renders it: ``path: Invalid value: "v": detail``."""
    return f"{path}: Invalid value: {json.dumps(value, ensure_ascii=False)}: {detail}"


def _aggregate(errors: list[str]) -> str:
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector: ``key operator values``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def build(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """A validated requirement (Kubernetes' NewRequirement); raises SelectorError."""
        vals = tuple(values)
        errors = []
        if key_errors := validate_label_key(key):
            errors.append(_invalid("key", key, "; ".join(key_errors)))
        if operator in (Operator.IN, Operator.NOT_IN) and not vals:
            # Go renders the empty (nil) slice as null.
            errors.append(_invalid("values", None, "for 'in', 'notin' operators, values set can't be empty"))
        elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS) and len(vals) != 1:
            errors.append(
                _invalid("values", list(vals), "exact-match compatibility requires one single value")
            )
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and vals:
            errors.append(
                _invalid("values", list(vals), "values set must be empty for exists and does not exist")
            )
        elif operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if len(vals) != 1:
                errors.append(
                    _invalid("values", list(vals), "for 'Gt', 'Lt' operators, exactly one value is required")
                )
            for i, v in enumerate(vals):
                if _as_int(v) is None:
                    errors.append(
                        _invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer")
                    )
        for i, v in enumerate(vals):
            if value_errors := validate_label_value(v):
                errors.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errors)))
        if errors:
            raise SelectorError(_aggregate(errors))
        return cls(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return (self.key in labels) == (op is Operator.EXISTS)
        value = labels.get(self.key)
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return value is not None and value in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return value is None or value not in self.values
        have, want = _as_int(value or ""), _as_int(self.values[0]) if len(self.values) == 1 else None
        if value is None or have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({values})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{values}"


def _as_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[-+]?[0-9]+", text) else None


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements, sorted by key. No requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False
    """True only for the selector of an absent LabelSelector object: it selects nothing."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.matches_nothing and all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements and not self.matches_nothing

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have, if the selector pins it (handy for indexes)."""
        for r in self.requirements:
            if r.key == key:
                exact = r.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                return r.values[0] if exact and len(r.values) == 1 else None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()
NOTHING = Selector(matches_nothing=True)


def _sorted(requirements: Iterable[Requirement]) -> Selector:
    return Selector(tuple(sorted(requirements, key=lambda r: r.key)))


def selector_from_map(labels: Mapping[str, str] | None) -> Selector:
    """Equality on every pair, as for ``Service.spec.selector``. Empty or None selects everything;
    callers that want "no selector, no pods" (Services) must check for that themselves."""
    if not labels:
        return EVERYTHING
    return _sorted(Requirement.build(k, Operator.EQUALS, (v,)) for k, v in labels.items())


_OBJECT_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def selector_from_label_selector(selector: Mapping[str, object] | None) -> Selector:
    """Kubernetes' LabelSelectorAsSelector: None selects nothing, ``{}`` selects everything."""
    if selector is None:
        return NOTHING
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise SelectorError("matchLabels must be a map and matchExpressions a list")
    requirements = [Requirement.build(str(k), Operator.EQUALS, (str(v),)) for k, v in match_labels.items()]
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError(f"invalid label selector requirement: {expr!r}")
        operator = _OBJECT_OPERATORS.get(str(expr.get("operator")))
        if operator is None:
            raise SelectorError(f"{json.dumps(expr.get('operator'))} is not a valid label selector operator")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise SelectorError("values must be a list of strings")
        requirements.append(Requirement.build(str(expr.get("key", "")), operator, (str(v) for v in values)))
    return _sorted(requirements) if requirements else EVERYTHING


# --- the string form ---------------------------------------------------------------------------

_SPECIAL = "=!(),><"
_WHITESPACE = " \t\r\n"
_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_IDENT, _END = "identifier", "end"


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal); kind is the symbol itself, ``in``/``notin``, identifier or end."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i >= len(text):
            tokens.append((_END, ""))
            return tokens
        if text[i] in _SPECIAL:
            symbol = next(s for s in _SYMBOLS if text.startswith(s, i))
            tokens.append((symbol, symbol))
            i += len(symbol)
            continue
        start = i
        while i < len(text) and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        word = text[start:i]
        tokens.append((word if word in ("in", "notin") else _IDENT, word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        kind, literal = self.tokens[self.pos]
        # Inside values, "in" and "notin" are plain words: "a in (in)" is legal.
        return (_IDENT if values and kind in ("in", "notin") else kind), literal

    def take(self, values: bool = True) -> tuple[str, str]:
        token = self.peek(values)
        self.pos += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self.peek()
            if kind == _END:
                return _sorted(requirements)
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            kind, literal = self.take()
            if kind == _END:
                return _sorted(requirements)
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self.peek()
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        kind, key = self.take()
        negated = kind == "!"
        if negated:
            kind, key = self.take()
        if kind != _IDENT:
            raise SelectorError(f"found '{key}', expected: identifier")
        if errors := validate_label_key(key):
            raise SelectorError(_invalid("<nil>", key, "; ".join(errors)))
        if negated or self.peek()[0] in (_END, ","):
            return Requirement.build(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS)
        kind, literal = self.take(values=False)
        operators = {
            "in": Operator.IN,
            "notin": Operator.NOT_IN,
            "=": Operator.EQUALS,
            "==": Operator.DOUBLE_EQUALS,
            "!=": Operator.NOT_EQUALS,
            ">": Operator.GREATER_THAN,
            "<": Operator.LESS_THAN,
        }
        if kind not in operators:
            raise SelectorError(f"found '{literal}', expected: {_BINARY_OPERATORS}")
        operator = operators[kind]
        values = self.value_set() if operator in (Operator.IN, Operator.NOT_IN) else self.exact_value()
        return Requirement.build(key, operator, sorted(values))

    def exact_value(self) -> set[str]:
        if self.peek()[0] in (_END, ","):
            return {""}
        kind, literal = self.take()
        if kind != _IDENT:
            raise SelectorError(f"found '{literal}', expected: identifier")
        return {literal}

    def value_set(self) -> set[str]:
        kind, literal = self.take()
        if kind != "(":
            raise SelectorError(f"found '{literal}' expected: '('")
        kind, literal = self.peek()
        if kind == ")":
            self.take()
            return {""}
        if kind not in (_IDENT, ","):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, literal = self.take()
            if kind == _IDENT:
                values.add(literal)
                after, after_literal = self.peek()
                if after == ")":
                    self.take()
                    return values
                if after != ",":
                    raise SelectorError(f"found '{after_literal}', expected: ',' or ')'")
            elif kind == ",":
                # Empty strings are values too: "(,a)", "(a,)" and "(a,,b)" all include "".
                after = self.peek()[0]
                if not values or after in (")", ","):
                    values.add("")
                if after == ")":
                    self.take()
                    return values
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")


def parse_selector(text: str) -> Selector:
    """Parse the ``labelSelector`` query form: ``a=b,c!=d,e in (f,g),h notin (i),j,!k,l>3``.

    Raises SelectorError with kube-apiserver's message on invalid input; "" selects everything.
    """
    return _Parser(text).parse()
