"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge expectations follow kube-apiserver, including the ordering cases of
k8s.io/apimachinery/pkg/util/strategicpatch's raw test cases.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.patch import (
    JSONValue,
    PatchError,
    json_equal,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from kubelite.api.patchmeta import (
    BUILTIN,
    OBJECT_META,
    POD_SPEC,
    FieldMeta,
    PatchSchema,
    definition_for_kind,
    field_meta,
    openapi_patch_extensions,
)

# --- RFC 7386 appendix A, plus the example of section 3 -----------------------------------------

MERGE_PATCH_CASES: list[tuple[JSONValue, JSONValue, JSONValue]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    (
        {
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged",
        },
        {
            "title": "Hello!",
            "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": None},
            "tags": ["example"],
        },
        {
            "title": "Hello!",
            "author": {"givenName": "John"},
            "tags": ["example"],
            "content": "This will be unchanged",
            "phoneNumber": "+01-123-456-7890",
        },
    ),
]


@pytest.mark.parametrize(("target", "patch", "expected"), MERGE_PATCH_CASES)
def test_json_merge_patch_rfc7386_examples(target: JSONValue, patch: JSONValue, expected: JSONValue) -> None:
    before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    assert json_merge_patch(target, patch) == expected
    assert target == before
    assert patch == patch_before


def test_json_merge_patch_result_shares_nothing_with_inputs() -> None:
    target: dict[str, JSONValue] = {"keep": {"x": [1]}}
    patch: dict[str, JSONValue] = {"new": {"y": [2]}}
    result = json_merge_patch(target, patch)
    assert isinstance(result, dict)
    kept: Any = result["keep"]
    added: Any = result["new"]
    kept["x"].append(3)
    added["y"].append(3)
    assert target == {"keep": {"x": [1]}}
    assert patch == {"new": {"y": [2]}}


# --- RFC 6902 appendix A ------------------------------------------------------------------------

JSON_PATCH_CASES: list[tuple[str, JSONValue, JSONValue, JSONValue]] = [
    ("A.1 add object member", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ("A.2 add array element", {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ("A.3 remove object member", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
     {"foo": "bar"}),
    ("A.4 remove array element", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ("A.5 replace value", {"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ("A.6 move value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 move array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}], {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 test success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.10 add nested member object", {"foo": "bar"},
     [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 ignore unrecognized elements", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
     {"/": 9, "~1": 10}),
    ("A.16 add array value", {"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # Beyond the appendix.
    ("copy", {"a": {"b": [1]}}, [{"op": "copy", "from": "/a", "path": "/c"}],
     {"a": {"b": [1]}, "c": {"b": [1]}}),
    ("~1 in a key", {"metadata": {"labels": {}}},
     [{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"}],
     {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}),
    ("negative index, as kube allows", {"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"}], {"a": [1, 2]}),
    ("add at end by index", {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    ("replace the whole document", {"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("test the whole document", {"a": 1}, [{"op": "test", "path": "", "value": {"a": 1}}], {"a": 1}),
    ("test null value", {"a": None}, [{"op": "test", "path": "/a", "value": None}], {"a": None}),
    ("move to same place", {"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
    ("operations apply in order", {"spec": {"replicas": 1}},
     [{"op": "test", "path": "/spec/replicas", "value": 1},
      {"op": "replace", "path": "/spec/replicas", "value": 3}],
     {"spec": {"replicas": 3}}),
    ("empty patch", {"a": 1}, [], {"a": 1}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "target", "ops", "expected"), JSON_PATCH_CASES, ids=[c[0] for c in JSON_PATCH_CASES]
)
def test_json_patch(name: str, target: JSONValue, ops: JSONValue, expected: JSONValue) -> None:
    before, ops_before = copy.deepcopy(target), copy.deepcopy(ops)
    assert json_patch(target, ops) == expected
    assert target == before
    assert ops == ops_before


JSON_PATCH_ERRORS: list[tuple[str, JSONValue, JSONValue, str]] = [
    ("A.9 test error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     "testing value /baz failed: test failed"),
    ("A.12 add to a nonexistent target", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     'add operation does not apply: doc is missing path: "/baz/bat": missing value'),
    ("A.15 strings are not numbers", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
     "testing value /~01 failed: test failed"),
    ("true is not 1", {"a": 1}, [{"op": "test", "path": "/a", "value": True}],
     "testing value /a failed: test failed"),
    ("test of a missing key", {"a": 1}, [{"op": "test", "path": "/b", "value": None}],
     "testing value /b failed: test failed"),
    ("test below a missing key", {}, [{"op": "test", "path": "/a/b", "value": 1}],
     "test operation does not apply: is missing path: /a/b: missing value"),
    ("replace of a missing key", {"spec": {}}, [{"op": "replace", "path": "/spec/foo", "value": 1}],
     "replace operation does not apply: doc is missing key: /spec/foo: missing value"),
    ("replace below a missing key", {}, [{"op": "replace", "path": "/spec/foo", "value": 1}],
     "replace operation does not apply: doc is missing path: /spec/foo: missing value"),
    ("replace past the end", {"a": [1]}, [{"op": "replace", "path": "/a/1", "value": 1}],
     "replace operation does not apply: doc is missing key: /a/1: missing value"),
    ("remove of a missing key", {"a": {}}, [{"op": "remove", "path": "/a/b"}],
     "error in remove for path: '/a/b': Unable to remove nonexistent key: b: missing value"),
    ("remove past the end", {"a": [1]}, [{"op": "remove", "path": "/a/5"}],
     "error in remove for path: '/a/5': Unable to access invalid index: 5: invalid index referenced"),
    ("remove below a missing key", {}, [{"op": "remove", "path": "/a/b"}],
     'remove operation does not apply: doc is missing path: "/a/b": missing value'),
    ("add past the end", {"a": [1]}, [{"op": "add", "path": "/a/3", "value": 1}],
     "error in add for path: '/a/3': Unable to access invalid index: 3: invalid index referenced"),
    ("add with a word for index", {"a": [1]}, [{"op": "add", "path": "/a/x", "value": 1}],
     "error in add for path: '/a/x': value was not a proper array index: 'x': "
     'strconv.Atoi: parsing "x": invalid syntax'),
    ("add without a value", {}, [{"op": "add", "path": "/a"}],
     "add operation, missing value field: missing value"),
    ("path that is not a pointer", {"a": 1}, [{"op": "remove", "path": "a"}],
     'remove operation does not apply: doc is missing path: "a": missing value'),
    ("move from a missing key", {"a": {}}, [{"op": "move", "from": "/a/x", "path": "/b"}],
     "error in move for path: 'x': Unable to remove nonexistent key: x: missing value"),
    ("move into its own child", {"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}],
     "move operation does not apply: from /a is a prefix of path /a/b/c"),
    ("copy from a missing key", {}, [{"op": "copy", "from": "/x", "path": "/y"}],
     "copy operation does not apply: doc is missing from path: /x: missing value"),
    ("copy to a missing parent", {"x": 1}, [{"op": "copy", "from": "/x", "path": "/y/z"}],
     "copy operation does not apply: doc is missing destination path: /y/z: missing value"),
    ("unknown op", {}, [{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate"),
    ("missing op", {}, [{"path": "/a"}], "Unexpected kind: unknown"),
    ("missing path", {}, [{"op": "remove"}],
     "remove operation failed to decode path: operation missing path field: missing value"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "target", "ops", "message"), JSON_PATCH_ERRORS, ids=[c[0] for c in JSON_PATCH_ERRORS]
)
def test_json_patch_errors(name: str, target: JSONValue, ops: JSONValue, message: str) -> None:
    before = copy.deepcopy(target)
    with pytest.raises(PatchError) as raised:
        json_patch(target, ops)
    assert raised.value.message == message
    assert str(raised.value) == message
    assert raised.value.code == 422
    assert target == before


def test_json_patch_failure_midway_leaves_target_untouched() -> None:
    target: dict[str, JSONValue] = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(
            target, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 9}]
        )
    assert target == {"a": 1}


@pytest.mark.parametrize("ops", [{"op": "add"}, "add", [["add"]]])
def test_json_patch_malformed_document_is_a_bad_request(ops: JSONValue) -> None:
    with pytest.raises(PatchError) as raised:
        json_patch({}, ops)
    assert raised.value.code == 400


def test_json_patch_added_values_are_copies() -> None:
    value: dict[str, JSONValue] = {"x": [1]}
    result = json_patch(
        {}, [{"op": "add", "path": "/a", "value": value}, {"op": "copy", "from": "/a", "path": "/b"}]
    )
    assert isinstance(result, dict)
    added: Any = result["a"]
    added["x"].append(2)
    assert value == {"x": [1]}
    assert result["b"] == {"x": [1]}


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (1, True, False),
        (0, False, False),
        ({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
        (None, {}, False),
    ],
)
def test_json_equal(a: JSONValue, b: JSONValue, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


# --- strategic merge patch on built-in kinds ----------------------------------------------------

DEPLOYMENT = definition_for_kind("apps/v1", "Deployment")
POD = definition_for_kind("v1", "Pod")
SERVICE = definition_for_kind("v1", "Service")


def smp(target: dict[str, Any], patch: dict[str, Any], definition: str | None) -> dict[str, Any]:
    before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = strategic_merge_patch(target, patch, definition)
    assert target == before, "target was mutated"
    assert patch == patch_before, "patch was mutated"
    return result


def pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": containers, **spec},
    }


def test_smp_containers_merge_by_name() -> None:
    target = pod(
        [
            {"name": "web", "image": "nginx:1.24", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "b"},
        ]
    )
    result = smp(target, {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}, POD)
    assert result["spec"]["containers"] == [
        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "b"},
    ]


def test_smp_env_merges_by_name_and_new_items_come_first_as_in_kube() -> None:
    target = pod([{"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    patch = {
        "spec": {
            "containers": [{"name": "web", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]
        }
    }
    env = smp(target, patch, POD)["spec"]["containers"][0]["env"]
    # A keeps its place before B (both are live); C follows B, the patch item it came after.
    assert env == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    only_new = {"spec": {"containers": [{"name": "web", "env": [{"name": "C", "value": "4"}]}]}}
    env = smp(target, only_new, POD)["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["C", "A", "B"]


def test_smp_patch_delete_removes_a_container() -> None:
    target = pod([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}])
    result = smp(target, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}, POD)
    assert result["spec"]["containers"] == [{"name": "a", "image": "a"}, {"name": "c", "image": "c"}]


def test_smp_patch_replace_in_a_list_replaces_the_list() -> None:
    target = pod([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
    patch = {"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}
    assert smp(target, patch, POD)["spec"]["containers"] == [{"name": "z", "image": "z"}]


def test_smp_patch_merge_item_is_an_ordinary_merge() -> None:
    target = pod([{"name": "a", "image": "a", "args": ["x"]}])
    patch = {"spec": {"containers": [{"name": "a", "image": "b", "$patch": "merge"}]}}
    assert smp(target, patch, POD)["spec"]["containers"] == [{"name": "a", "image": "b", "args": ["x"]}]


def test_smp_finalizers_are_unioned() -> None:
    target = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    result = smp(target, {"metadata": {"finalizers": ["b", "c"]}}, POD)
    assert result["metadata"]["finalizers"] == ["a", "b", "c"]
    result = smp(target, {"metadata": {"finalizers": ["c"]}}, POD)
    assert result["metadata"]["finalizers"] == ["c", "a", "b"]


def test_smp_delete_from_primitive_list() -> None:
    target = {"metadata": {"finalizers": ["a", "b", "c", "b"]}}
    result = smp(target, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}, POD)
    assert result["metadata"]["finalizers"] == ["a", "c"]
    # A deletion list for an absent list adds nothing.
    assert smp({"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD) == {
        "metadata": {}
    }


def test_smp_service_ports_merge_by_port() -> None:
    target = {
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}],
        }
    }
    patch = {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}
    assert smp(target, patch, SERVICE)["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"port": 443, "protocol": "TCP", "targetPort": 8443},
    ]


def test_smp_null_deletes_labels_and_adds_others() -> None:
    target = {"metadata": {"name": "x", "labels": {"app": "web", "tier": "front"}, "annotations": {"a": "1"}}}
    result = smp(target, {"metadata": {"labels": {"tier": None, "env": "prod"}, "annotations": None}}, POD)
    assert result == {"metadata": {"name": "x", "labels": {"app": "web", "env": "prod"}}}


def test_smp_lists_without_merge_strategy_are_replaced() -> None:
    target = pod([{"name": "a", "args": ["1", "2"]}], tolerations=[{"key": "k1", "operator": "Exists"}])
    patch = {
        "spec": {
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "containers": [{"name": "a", "args": ["3"]}],
        }
    }
    result = smp(target, patch, POD)
    assert result["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]
    assert result["spec"]["containers"] == [{"name": "a", "args": ["3"]}]


def test_smp_deployment_template_containers_and_retain_keys() -> None:
    target = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.24", "env": [{"name": "A", "value": "1"}]}
                    ]
                },
            },
        },
    }
    patch = {
        "spec": {
            "replicas": 3,
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {"spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": "2"}]}]}},
        }
    }
    result = smp(target, patch, DEPLOYMENT)
    assert result["spec"]["replicas"] == 3
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert result["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx:1.24", "env": [{"name": "A", "value": "2"}]}
    ]


def test_smp_retain_keys_rejects_a_field_not_retained() -> None:
    target = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}
    with pytest.raises(PatchError, match=r"^invalid patch format of retainKeys$") as raised:
        smp(target, patch, DEPLOYMENT)
    assert raised.value.code == 400


def test_smp_volumes_retain_keys_switches_the_volume_source() -> None:
    target = pod([], volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}])
    patch = {
        "spec": {
            "volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]
        }
    }
    assert smp(target, patch, POD)["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/x"}},
        {"name": "cfg", "configMap": {"name": "c"}},
    ]


def test_smp_kubectl_apply_patch_with_set_element_order() -> None:
    """The shape ``kubectl apply`` sends after adding a sidecar and reordering containers."""
    target = pod([{"name": "web", "image": "nginx:1.24"}, {"name": "log", "image": "busybox"}])
    target["metadata"]["finalizers"] = ["x"]
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "proxy"}, {"name": "web"}, {"name": "log"}],
            "containers": [{"name": "proxy", "image": "envoy"}, {"name": "web", "image": "nginx:1.25"}],
        },
    }
    result = smp(target, patch, POD)
    assert result["spec"]["containers"] == [
        {"name": "proxy", "image": "envoy"},
        {"name": "web", "image": "nginx:1.25"},
        {"name": "log", "image": "busybox"},
    ]
    assert result["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert "$setElementOrder/containers" not in result["spec"]


def test_smp_kubectl_apply_removing_a_finalizer() -> None:
    target = {"metadata": {"finalizers": ["a", "b", "server-added"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}
    assert smp(target, patch, POD)["metadata"]["finalizers"] == ["a", "server-added"]


def test_smp_set_element_order_must_cover_the_patch_list() -> None:
    target = pod([{"name": "a"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}
    with pytest.raises(PatchError, match="doesn't match \\$setElementOrder list"):
        smp(target, patch, POD)


def test_smp_map_directives() -> None:
    target = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"x": "y"}}}
    replaced = smp(target, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}}, POD)
    assert replaced["metadata"]["labels"] == {"c": "3"}
    deleted = smp(target, {"spec": {"nodeSelector": {"$patch": "delete"}}}, POD)
    assert deleted["spec"]["nodeSelector"] == {}
    merged = smp(target, {"metadata": {"labels": {"$patch": "merge", "c": "3"}}}, POD)
    assert merged["metadata"]["labels"] == {"a": "1", "b": "2", "c": "3"}
    assert smp(target, {"$patch": "delete"}, POD) == {}
    with pytest.raises(PatchError, match=r"^unknown patch type: bogus in map"):
        smp(target, {"metadata": {"labels": {"$patch": "bogus"}}}, POD)


def test_smp_new_values_are_cleaned_of_nulls_and_directives() -> None:
    target = pod([{"name": "a"}])
    patch = {
        "spec": {
            "affinity": {"nodeAffinity": None, "podAffinity": {"x": 1}},
            "initContainers": [{"name": "init", "image": None}, {"name": "gone", "$patch": "delete"}],
            "securityContext": {"$patch": "replace", "runAsUser": 1},
            "dnsConfig": {"$patch": "delete"},
        }
    }
    spec = smp(target, patch, POD)["spec"]
    assert spec["affinity"] == {"podAffinity": {"x": 1}}
    assert spec["initContainers"] == [{"name": "init"}]
    assert spec["securityContext"] == {"runAsUser": 1}
    assert "dnsConfig" not in spec


def test_smp_type_change_takes_the_patch_value() -> None:
    target = {"spec": {"ports": "80", "x": {"a": 1}}}
    result = smp(target, {"spec": {"ports": [{"port": 80}], "x": "flat"}}, SERVICE)
    assert result["spec"] == {"ports": [{"port": 80}], "x": "flat"}


def test_smp_unknown_type_merges_maps_and_replaces_lists() -> None:
    target = {
        "spec": {"items": [{"name": "a"}], "config": {"a": 1, "b": 2}},
        "metadata": {"finalizers": ["x"]},
    }
    patch = {
        "spec": {"items": [{"name": "b"}], "config": {"b": None, "c": 3}},
        "metadata": {"finalizers": ["y"]},
    }
    assert smp(target, patch, None) == {
        "spec": {"items": [{"name": "b"}], "config": {"a": 1, "c": 3}},
        "metadata": {"finalizers": ["y"]},
    }


def test_smp_merge_key_missing_from_a_patch_item() -> None:
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        smp(pod([{"name": "a"}]), {"spec": {"containers": [{"image": "x"}]}}, POD)


def test_smp_mixed_and_nested_lists_are_rejected() -> None:
    with pytest.raises(PatchError, match=r"^lists of lists are not supported$"):
        smp({"metadata": {"finalizers": [["a"]]}}, {"metadata": {"finalizers": ["b"]}}, POD)
    with pytest.raises(PatchError, match="list element types are not identical"):
        smp({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [{"b": 1}]}}, POD)


@pytest.mark.parametrize(
    ("target", "patch"),
    [({"a": 1}, ["not", "an", "object"]), ([1], {"a": 1})],
)
def test_smp_needs_objects(target: Any, patch: Any) -> None:
    with pytest.raises(PatchError, match="invalid JSON document"):
        strategic_merge_patch(target, patch, None)


# --- ordering, as in strategicpatch's raw test cases --------------------------------------------

TEST_SCHEMA = PatchSchema(
    definitions={
        "mergeItem": {
            "mergingList": FieldMeta(ref="mergeItem", strategy="merge", merge_key="name"),
            "mergingIntList": FieldMeta(strategy="merge"),
            "nonMergingList": FieldMeta(ref="mergeItem"),
        }
    },
    roots={},
)


def named(*names: int, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": n, **extra.get(str(n), {})} for n in names]


SMP_ORDER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "merge lists of scalars",
        {"mergingIntList": [1, 2, 4]},
        {"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]},
        {"mergingIntList": [1, 2, 3, 4]},
    ),
    (
        "set elements order in a list with server-only items",
        {"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 3}, {"name": 4, "value": 4},
                         {"name": 2, "value": 2}, {"name": 9}]},
        {"$setElementOrder/mergingList": named(4, 2, 3, 1)},
        {"mergingList": [{"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 3, "value": 3},
                         {"name": 1, "other": "a"}, {"name": 9}]},
    ),
    (
        "set elements order in a list with server-only items 2",
        {"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 9},
                         {"name": 3, "value": 3}, {"name": 4, "value": 4}]},
        {"$setElementOrder/mergingList": named(2, 1, 4, 3)},
        {"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 9},
                         {"name": 4, "value": 4}, {"name": 3, "value": 3}]},
    ),
    (
        "set elements order in a list with server-only items 3",
        {"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9},
                         {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4}]},
        {"$setElementOrder/mergingList": named(2, 1, 4, 3)},
        {"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9},
                         {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3}]},
    ),
    (
        "add an item in a list and preserve order",
        {"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]},
        {"$setElementOrder/mergingList": named(3, 1, 2), "mergingList": [{"name": 3, "value": 3}]},
        {"mergingList": [{"name": 3, "value": 3}, {"name": 1, "other": "a"},
                         {"name": 2, "value": 2, "other": "b"}]},
    ),
    (
        "delete and add in one patch",
        {"mergingList": named(1, 2, 3)},
        {"$setElementOrder/mergingList": named(1, 4, 3),
         "mergingList": [{"name": 4}, {"name": 2, "$patch": "delete"}]},
        {"mergingList": named(1, 4, 3)},
    ),
    (
        "nested merging list inside a merging list",
        {"mergingList": [{"name": 1, "mergingList": [{"name": "x", "v": 1}]}]},
        {"mergingList": [{"name": 1, "mergingList": [{"name": "x", "w": 2}, {"name": "y"}]}]},
        {"mergingList": [{"name": 1, "mergingList": [{"name": "x", "v": 1, "w": 2}, {"name": "y"}]}]},
    ),
    (
        "non-merging list nested in a merging list is replaced",
        {"mergingList": [{"name": 1, "nonMergingList": [{"name": "a"}, {"name": "b"}]}]},
        {"mergingList": [{"name": 1, "nonMergingList": [{"name": "c"}]}]},
        {"mergingList": [{"name": 1, "nonMergingList": [{"name": "c"}]}]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "target", "patch", "expected"), SMP_ORDER_CASES, ids=[c[0] for c in SMP_ORDER_CASES]
)
def test_smp_element_order(
    name: str, target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(target)
    assert strategic_merge_patch(target, patch, "mergeItem", TEST_SCHEMA) == expected
    assert target == before


# --- patchmeta ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind", "definition"),
    [
        ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
        ("v1", "Service", "io.k8s.api.core.v1.Service"),
        ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
        ("discovery.k8s.io/v1", "EndpointSlice", "io.k8s.api.discovery.v1.EndpointSlice"),
        ("networking.k8s.io/v1", "IngressClass", "io.k8s.api.networking.v1.IngressClass"),
        ("coordination.k8s.io/v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
        ("example.com/v1", "Widget", None),
        ("v1", "Deployment", None),
    ],
)
def test_definition_for_kind(api_version: str, kind: str, definition: str | None) -> None:
    assert definition_for_kind(api_version, kind) == definition


@pytest.mark.parametrize(
    ("definition", "field", "extensions"),
    [
        (POD_SPEC, "containers",
         {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}),
        (POD_SPEC, "volumes",
         {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge,retainKeys"}),
        (POD_SPEC, "tolerations", {}),
        ("io.k8s.api.core.v1.Container", "ports",
         {"x-kubernetes-patch-merge-key": "containerPort", "x-kubernetes-patch-strategy": "merge"}),
        ("io.k8s.api.core.v1.Container", "volumeMounts",
         {"x-kubernetes-patch-merge-key": "mountPath", "x-kubernetes-patch-strategy": "merge"}),
        ("io.k8s.api.core.v1.ServiceSpec", "ports",
         {"x-kubernetes-patch-merge-key": "port", "x-kubernetes-patch-strategy": "merge"}),
        ("io.k8s.api.core.v1.NodeStatus", "addresses",
         {"x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge"}),
        ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", {"x-kubernetes-patch-strategy": "retainKeys"}),
        (OBJECT_META, "finalizers", {"x-kubernetes-patch-strategy": "merge"}),
        (OBJECT_META, "ownerReferences",
         {"x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"}),
        (OBJECT_META, "labels", {}),
        ("io.k8s.api.core.v1.Nonexistent", "x", {}),
    ],
)  # fmt: skip
def test_openapi_patch_extensions(definition: str, field: str, extensions: dict[str, str]) -> None:
    assert openapi_patch_extensions(definition, field) == extensions


def test_every_served_kind_reaches_object_meta() -> None:
    for definition in BUILTIN.roots.values():
        meta = field_meta(definition, "metadata")
        assert meta is not None, definition
        assert meta.ref == OBJECT_META, definition


def test_walk_from_deployment_to_container_env() -> None:
    path = ["spec", "template", "spec", "containers", "env"]
    definition: str | None = DEPLOYMENT
    meta = None
    for name in path:
        meta = field_meta(definition, name)
        assert meta is not None, name
        definition = meta.ref or None
    assert meta == FieldMeta(strategy="merge", merge_key="name")


def test_field_meta_strategy_parts() -> None:
    volumes = field_meta(POD_SPEC, "volumes")
    assert volumes is not None
    assert volumes.strategies == ("merge", "retainKeys")
    assert volumes.merges
    assert volumes.retains_keys
    assert not volumes.replaces
    assert field_meta(None, "anything") is None
