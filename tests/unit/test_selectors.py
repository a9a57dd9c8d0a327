"""Label selectors: the query string, LabelSelector objects, plain maps, and label validation."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.selectors import (
    EVERYTHING,
    NOTHING,
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
    selector_from_label_selector,
    selector_from_map,
    validate_dns_subdomain,
    validate_label_key,
    validate_label_value,
)

NAME_REGEX_ERROR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_REGEX_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN_REGEX_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

# (query, canonical string form) — requirements come out sorted by key, values sorted.
PARSE_CASES = [
    ("", ""),
    ("   ", ""),
    ("app=web", "app=web"),
    ("app==web", "app==web"),
    ("app!=web", "app!=web"),
    ("app", "app"),
    ("!app", "!app"),
    ("! app", "!app"),
    ("tier in (front,back)", "tier in (back,front)"),
    ("tier in(front)", "tier in (front)"),
    ("tier notin (a)", "tier notin (a)"),
    ("x in ()", "x in ()"),
    ("x in (,a)", "x in (,a)"),
    ("x in (a,)", "x in (,a)"),
    ("x in (a,,b)", "x in (,a,b)"),
    ("x in (a, b , c)", "x in (a,b,c)"),
    ("x in (in,notin)", "x in (in,notin)"),
    ("x=in", "x=in"),
    ("x=", "x="),
    ("x=,y", "x=,y"),
    ("z=1,a=2", "a=2,z=1"),
    ("  app = web ,  !legacy  ", "app=web,!legacy"),
    ("replicas>3", "replicas>3"),
    ("replicas<3", "replicas<3"),
    ("example.com/name=x", "example.com/name=x"),
    ("a.b_c-d=E.F_g-1", "a.b_c-d=E.F_g-1"),
    ("!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
     "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "canonical"), PARSE_CASES)
def test_parse(query: str, canonical: str) -> None:
    selector = parse_selector(query)
    assert str(selector) == canonical
    assert parse_selector(canonical) == selector


def test_parse_builds_requirements() -> None:
    assert parse_selector("b in (y,x),a!=1,!c,d") == Selector(
        (
            Requirement("a", Operator.NOT_EQUALS, ("1",)),
            Requirement("b", Operator.IN, ("x", "y")),
            Requirement("c", Operator.DOES_NOT_EXIST),
            Requirement("d", Operator.EXISTS),
        )
    )


LABELS = {"app": "web", "tier": "front", "replicas": "5", "empty": ""}

MATCH_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("missing=", False),
    ("empty=", True),
    ("empty", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("tier in (front,back)", True),
    ("tier in (back)", False),
    ("missing in (x)", False),
    ("tier notin (back)", True),
    ("tier notin (front)", False),
    ("missing notin (x)", True),
    ("empty in ()", True),
    ("replicas>3", True),
    ("replicas>5", False),
    ("replicas<6", True),
    ("replicas<5", False),
    ("app>1", False),
    ("missing>1", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
]


@pytest.mark.parametrize(("query", "matches"), MATCH_CASES)
def test_matches(query: str, matches: bool) -> None:
    assert parse_selector(query).matches(LABELS) is matches


KEY_ERROR = 'unable to parse requirement: <nil>: Invalid value: "{key}": {detail}'

PARSE_ERRORS = [
    ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    ("a,,b", "found ',', expected: identifier after ','"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (b,", "unable to parse requirement: found '', expected: ',', or identifier"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("-a", KEY_ERROR.format(key="-a", detail="name part " + NAME_REGEX_ERROR)),
    ("a/b/c=d", KEY_ERROR.format(
        key="a/b/c",
        detail="a valid label key " + NAME_REGEX_ERROR
        + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    )),
    ("a=b!c", "found '!', expected: ',' or 'end of string'"),
    ("a=-b", 'unable to parse requirement: values[0][a]: Invalid value: "-b": ' + VALUE_REGEX_ERROR),
    ("a in (x,-b)", 'unable to parse requirement: values[0][a]: Invalid value: "-b": ' + VALUE_REGEX_ERROR),
    ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
     "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a=" + "v" * 64, f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": '
     "must be no more than 63 characters"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "message"), PARSE_ERRORS)
def test_parse_errors(query: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_selector(query)
    assert str(raised.value) == message


def test_selector_from_map() -> None:
    selector = selector_from_map({"tier": "front", "app": "web"})
    assert str(selector) == "app=web,tier=front"
    assert selector.matches(LABELS)
    assert not selector.matches({"app": "web"})
    assert selector_from_map({}) == EVERYTHING
    assert selector_from_map(None) == EVERYTHING
    with pytest.raises(SelectorError, match=r'^key: Invalid value: "bad key"'):
        selector_from_map({"bad key": "x"})


def test_selector_from_label_selector() -> None:
    selector = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "replicas", "operator": "Exists"},
            ],
        }
    )
    assert str(selector) == "app=web,env notin (prod),!legacy,replicas,tier in (back,front)"
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "legacy": "yes"})
    assert not selector.matches({**LABELS, "env": "prod"})


@pytest.mark.parametrize(
    ("obj", "everything", "nothing"),
    [(None, False, True), ({}, True, False), ({"matchLabels": {}, "matchExpressions": []}, True, False)],
)
def test_label_selector_absent_or_empty(obj: Any, everything: bool, nothing: bool) -> None:
    selector = selector_from_label_selector(obj)
    assert selector.empty is everything
    assert selector.matches(LABELS) is not nothing
    assert selector.matches({}) is not nothing


LABEL_SELECTOR_ERRORS = [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]},
     '"Equals" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: ["x"]: values set must be empty for exists and does not exist'),
    ({"matchExpressions": [{"key": "-a", "operator": "In", "values": ["-b"]}]},
     '[key: Invalid value: "-a": name part ' + NAME_REGEX_ERROR
     + ', values[0][-a]: Invalid value: "-b": ' + VALUE_REGEX_ERROR + "]"),
    ({"matchLabels": {"a": "b c"}}, 'values[0][a]: Invalid value: "b c": ' + VALUE_REGEX_ERROR),
    ({"matchLabels": ["a"]}, "matchLabels must be a map and matchExpressions a list"),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "message"), LABEL_SELECTOR_ERRORS)
def test_label_selector_errors(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        selector_from_label_selector(obj)
    assert str(raised.value) == message


def test_nothing_and_everything() -> None:
    assert NOTHING.matches_nothing
    assert not NOTHING.empty
    assert not NOTHING.matches({})
    assert EVERYTHING.empty
    assert EVERYTHING.matches({"any": "thing"})
    assert not parse_selector("a").empty


@pytest.mark.parametrize(
    ("query", "key", "value"),
    [
        ("app=web,tier!=x", "app", "web"),
        ("app==web", "app", "web"),
        ("app in (web)", "app", "web"),
        ("app in (web,db)", "app", None),
        ("app!=web", "app", None),
        ("tier=x", "app", None),
    ],
)
def test_requires_exact_match(query: str, key: str, value: str | None) -> None:
    assert parse_selector(query).requires_exact_match(key) == value


@pytest.mark.parametrize(
    ("key", "errors"),
    [
        ("app", []),
        ("App.Name_1-x", []),
        ("a", []),
        ("example.com/app", []),
        ("k8s.io/a" + "b" * 62, []),
        ("a" * 63, []),
        ("a" * 64, ["name part must be no more than 63 characters"]),
        ("", ["name part must be non-empty", "name part " + NAME_REGEX_ERROR]),
        ("/a", ["prefix part must be non-empty"]),
        ("example.com/", ["name part must be non-empty", "name part " + NAME_REGEX_ERROR]),
        ("-a", ["name part " + NAME_REGEX_ERROR]),
        ("a_", ["name part " + NAME_REGEX_ERROR]),
        ("a b", ["name part " + NAME_REGEX_ERROR]),
        ("a\n", ["name part " + NAME_REGEX_ERROR]),
        ("Example.com/a", ["prefix part " + SUBDOMAIN_REGEX_ERROR]),
        ("x" * 254 + "/a", ["prefix part must be no more than 253 characters"]),
    ],
)
def test_validate_label_key(key: str, errors: list[str]) -> None:
    assert validate_label_key(key) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("", []),
        ("web", []),
        ("1.2.3_rc-1", []),
        ("v" * 63, []),
        ("v" * 64, ["must be no more than 63 characters"]),
        ("-web", [VALUE_REGEX_ERROR]),
        ("web.", [VALUE_REGEX_ERROR]),
        ("a/b", [VALUE_REGEX_ERROR]),
        ("é", [VALUE_REGEX_ERROR]),
    ],
)
def test_validate_label_value(value: str, errors: list[str]) -> None:
    assert validate_label_value(value) == errors


def test_validate_dns_subdomain() -> None:
    assert validate_dns_subdomain("kubernetes.io") == []
    assert validate_dns_subdomain("a" * 253) == []
    assert validate_dns_subdomain("Kubernetes.io") == [SUBDOMAIN_REGEX_ERROR]
    assert validate_dns_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_requirement_build_checks_value_count() -> None:
    with pytest.raises(SelectorError, match="exact-match compatibility requires one single value"):
        Requirement.build("a", Operator.EQUALS, ("x", "y"))
    with pytest.raises(SelectorError, match="exactly one value is required"):
        Requirement.build("a", Operator.GREATER_THAN, ())
    assert Requirement.build("a", Operator.IN, ("x",)).matches({"a": "x"})
