"""Kubernetes protobuf request bodies: the wire format, the JSON mapping rules, real kubectl bodies."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kubelite.api import protoschema
from kubelite.api.protobuf import (
    MAGIC,
    ProtobufError,
    decode_object,
    encode_field,
    encode_object,
    encode_varint,
    is_protobuf,
    iter_fields,
    read_varint,
    supported_kinds,
)
from kubelite.api.resources import RESOURCES

DATA = Path(__file__).parent / "data" / "protobuf"
CAPTURED = sorted(p.stem for p in DATA.glob("*.pb"))
F = encode_field


def body(api_version: str, kind: str, raw: bytes) -> bytes:
    """A body as client-go frames it: magic, then runtime.Unknown{TypeMeta, raw}."""
    type_meta = F(1, api_version.encode()) + F(2, kind.encode())
    return MAGIC + F(1, type_meta) + F(2, raw) + F(3, b"") + F(4, b"")


def pod_with(spec: bytes) -> dict[str, Any]:
    return decode_object(body("v1", "Pod", F(1, F(1, b"p")) + F(2, spec)))


# --- captured from kubectl 1.33 -----------------------------------------------------------------


def test_every_captured_body_has_its_json() -> None:
    assert len(CAPTURED) >= 15
    assert all((DATA / f"{name}.json").exists() for name in CAPTURED)


@pytest.mark.parametrize("name", CAPTURED)
def test_kubectl_protobuf_body_decodes_to_what_kubectl_sends_as_json(name: str) -> None:
    raw = (DATA / f"{name}.pb").read_bytes()
    assert raw.startswith(MAGIC)
    assert decode_object(raw) == json.loads((DATA / f"{name}.json").read_text())


@pytest.mark.parametrize("name", CAPTURED)
def test_kubectl_body_survives_encode_then_decode(name: str) -> None:
    obj = decode_object((DATA / f"{name}.pb").read_bytes())
    assert decode_object(encode_object(obj)) == obj


def test_zero_replicas_from_kubectl_survive() -> None:
    obj = decode_object((DATA / "create_deployment_zero_replicas.pb").read_bytes())
    assert obj["spec"]["replicas"] == 0


def test_delete_options_from_kubectl_drain() -> None:
    obj = decode_object((DATA / "drain_delete_pod.pb").read_bytes())
    assert obj == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 5}


# --- wire primitives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**31 - 1, b"\xff\xff\xff\xff\x07"),
        (2**63 - 1, b"\xff" * 8 + b"\x7f"),
        (-1, b"\xff" * 9 + b"\x01"),
        (-(2**31), b"\x80\x80\x80\x80\xf8\xff\xff\xff\xff\x01"),
        (-(2**63), b"\x80" * 9 + b"\x01"),
    ],
)
def test_varint_round_trip(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    unsigned, end = read_varint(encoded + b"rest", 0)
    assert end == len(encoded)
    assert unsigned == value % 2**64


def test_iter_fields_reads_every_wire_type() -> None:
    data = (
        F(1, 150) + F(2, b"abc") + b"\x19" + (7).to_bytes(8, "little") + b"\x25" + (9).to_bytes(4, "little")
    )
    assert list(iter_fields(data)) == [(1, 0, 150), (2, 2, b"abc"), (3, 1, 7), (4, 5, 9)]


@pytest.mark.parametrize(
    ("field", "raw", "want"),
    [
        ("containerPort", encode_varint(-1), -1),  # Go's sign-extended 10-byte form
        ("containerPort", encode_varint(0xFFFFFFFF), -1),  # a 32-bit form decodes the same
        ("containerPort", encode_varint(-(2**31)), -(2**31)),
        ("hostPort", encode_varint(2**31 - 1), 2**31 - 1),
    ],
)
def test_negative_and_large_int32(field: str, raw: bytes, want: int) -> None:
    number = {"hostPort": 2, "containerPort": 3}[field]
    port = encode_varint(number << 3) + raw
    obj = pod_with(F(2, F(1, b"c") + F(6, port)))
    assert obj["spec"]["containers"][0]["ports"] == [{field: want}]


def test_negative_int64() -> None:
    obj = pod_with(F(5, -5) + F(4, -(2**63)))  # activeDeadlineSeconds, terminationGracePeriodSeconds
    assert obj["spec"] == {"activeDeadlineSeconds": -5, "terminationGracePeriodSeconds": -(2**63)}


def test_repeated_int64_packed_and_unpacked_decode_alike() -> None:
    groups = [1000, 0, -3, 2**40]
    unpacked = b"".join(F(4, g) for g in groups)
    packed = F(4, b"".join(encode_varint(g) for g in groups))
    for security_context in (unpacked, packed, F(4, encode_varint(1000)) + F(4, 0) + F(4, -3) + F(4, 2**40)):
        obj = pod_with(F(14, security_context))
        assert obj["spec"]["securityContext"] == {"supplementalGroups": groups}


def test_nested_messages_and_repeated_messages() -> None:
    container = F(1, b"app") + F(2, b"nginx") + F(3, b"sh") + F(3, b"-c") + F(6, F(3, 80)) + F(6, F(3, 443))
    obj = pod_with(F(2, container) + F(2, F(1, b"side")))
    assert obj["spec"]["containers"] == [
        {
            "name": "app",
            "image": "nginx",
            "command": ["sh", "-c"],
            "ports": [{"containerPort": 80}, {"containerPort": 443}],
        },
        {"name": "side"},
    ]


def test_maps_of_strings_bytes_and_quantities() -> None:
    labels = F(11, F(1, b"app") + F(2, b"web")) + F(11, F(1, b"tier") + F(2, b"")) + F(11, F(1, b"only-key"))
    secret = decode_object(body("v1", "Secret", F(1, labels) + F(2, F(1, b"k") + F(2, b"\x00\xffhi"))))
    assert secret["metadata"]["labels"] == {"app": "web", "tier": "", "only-key": ""}
    assert secret["data"] == {"k": "AP9oaQ=="}
    limits = F(1, F(1, b"cpu") + F(2, F(1, b"500m"))) + F(1, F(1, b"memory") + F(2, F(1, b"1Gi")))
    obj = pod_with(F(2, F(1, b"c") + F(8, limits)))
    assert obj["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "1Gi"}}


def test_repeated_singular_message_merges_as_protobuf_does() -> None:
    obj = pod_with(F(14, F(2, 1000)) + F(14, F(6, 2000)))
    assert obj["spec"]["securityContext"] == {"runAsUser": 1000, "runAsGroup": 2000}


# --- JSON mapping rules -------------------------------------------------------------------------


def test_pointer_zeros_survive_and_plain_zeros_are_dropped() -> None:
    # replicas *int32 = 0, minReadySeconds int32 = 0, paused bool = false
    deployment = decode_object(body("apps/v1", "Deployment", F(2, F(1, 0) + F(5, 0) + F(7, 0))))
    assert deployment["spec"] == {"replicas": 0}
    # automountServiceAccountToken *bool = false, hostNetwork bool = false, nodeName "" , hostname ""
    assert pod_with(F(21, 0) + F(11, 0) + F(10, b"") + F(16, b""))["spec"] == {
        "automountServiceAccountToken": False
    }
    # terminationGracePeriodSeconds *int64 = 0, runtimeClassName *string = ""
    assert pod_with(F(4, 0) + F(29, b""))["spec"] == {
        "terminationGracePeriodSeconds": 0,
        "runtimeClassName": "",
    }


def test_empty_messages_are_kept_like_go_structs() -> None:
    obj = decode_object(body("v1", "Service", F(1, b"") + F(2, b"") + F(3, F(1, b""))))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {},
        "spec": {},
        "status": {"loadBalancer": {}},
    }


def test_int_or_string() -> None:
    def port(target: bytes) -> dict[str, Any]:
        svc = decode_object(body("v1", "Service", F(2, F(1, F(3, 80) + target))))
        return dict(svc["spec"]["ports"][0])

    assert port(F(4, F(1, 0) + F(2, 8080))) == {"port": 80, "targetPort": 8080}
    assert port(F(4, F(1, 1) + F(3, b"http"))) == {"port": 80, "targetPort": "http"}
    assert port(F(4, F(1, 0) + F(2, 0))) == {"port": 80}  # zero, non-pointer: defaulting picks port
    assert port(F(4, b"")) == {"port": 80}
    # maxUnavailable *IntOrString = 0 is meaningful and kept; maxSurge "25%"
    rolling = F(1, F(1, 0) + F(2, 0)) + F(2, F(1, 1) + F(3, b"25%"))
    deployment = decode_object(
        body("apps/v1", "Deployment", F(2, F(4, F(1, b"RollingUpdate") + F(2, rolling))))
    )
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
    }


def test_times() -> None:
    meta = F(1, b"n") + F(8, F(1, 1704164645)) + F(9, F(1, 1704164645) + F(2, 999_999_999))
    obj = decode_object(body("v1", "ConfigMap", F(1, meta)))
    assert obj["metadata"] == {
        "name": "n",
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "deletionTimestamp": "2024-01-02T03:04:05Z",  # Time's JSON keeps whole seconds
    }
    # An empty Time and Go's zero time are JSON null: left out.
    assert decode_object(body("v1", "ConfigMap", F(1, F(8, b""))))["metadata"] == {}
    assert decode_object(body("v1", "ConfigMap", F(1, F(8, F(1, -62135596800)))))["metadata"] == {}
    lease = decode_object(body("coordination.k8s.io/v1", "Lease", F(2, F(4, F(1, 0) + F(2, 123_456_789)))))
    assert lease["spec"] == {"renewTime": "1970-01-01T00:00:00.123456Z"}


def test_inline_structs_join_their_parent() -> None:
    host_path = F(1, F(1, b"/data") + F(2, b"Directory"))
    config_map = F(19, F(1, F(1, b"settings")) + F(3, 0o644))
    volumes = F(1, F(1, b"data") + F(2, host_path)) + F(1, F(1, b"cfg") + F(2, config_map))
    key_ref = F(3, F(1, F(1, b"settings")) + F(2, b"level"))
    env = F(7, F(1, b"LEVEL") + F(3, key_ref))
    obj = pod_with(volumes + F(2, F(1, b"c") + env))
    assert obj["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/data", "type": "Directory"}},
        {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 0o644}},
    ]
    assert obj["spec"]["containers"][0]["env"] == [
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}
    ]


def test_unknown_fields_and_volume_sources_are_skipped() -> None:
    unknown = (
        F(999, 5)
        + F(998, b"x")
        + encode_varint(997 << 3 | 1)
        + bytes(8)
        + encode_varint(996 << 3 | 5)
        + bytes(4)
    )
    cm = decode_object(
        body("v1", "ConfigMap", F(1, F(1, b"c") + unknown) + unknown + F(2, F(1, b"a") + F(2, b"b")))
    )
    assert cm == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    obj = pod_with(F(1, F(1, b"v") + F(2, F(250, F(1, b"future")))))
    assert obj["spec"]["volumes"] == [{"name": "v"}]


def test_managed_fields_hold_raw_json() -> None:
    entry = F(1, b"kubectl") + F(2, b"Update") + F(6, b"FieldsV1") + F(7, F(1, b'{"f:data":{".":{}}}'))
    obj = decode_object(body("v1", "ConfigMap", F(1, F(17, entry))))
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}},
        }
    ]


def test_delete_options_from_any_group_version() -> None:
    raw = F(1, 0) + F(2, F(1, b"uid-1")) + F(4, b"Foreground") + F(5, b"All")
    for api_version in ("v1", "apps/v1", "meta.k8s.io/v1", "networking.k8s.io/v1"):
        assert decode_object(body(api_version, "DeleteOptions", raw)) == {
            "apiVersion": api_version,
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "uid-1"},
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        }


def test_beta_ingress_in_both_old_groups() -> None:
    backend = F(1, b"svc") + F(2, F(1, 1) + F(3, b"http"))
    rule = F(1, b"foo.com") + F(2, F(1, F(1, F(1, b"/bar") + F(2, backend) + F(3, b"Prefix"))))
    for api_version in ("networking.k8s.io/v1beta1", "extensions/v1beta1"):
        obj = decode_object(body(api_version, "Ingress", F(1, F(1, b"old")) + F(2, F(3, rule))))
        assert obj == {
            "apiVersion": api_version,
            "kind": "Ingress",
            "metadata": {"name": "old"},
            "spec": {
                "rules": [
                    {
                        "host": "foo.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/bar",
                                    "backend": {"serviceName": "svc", "servicePort": "http"},
                                    "pathType": "Prefix",
                                }
                            ]
                        },
                    }
                ]
            },
        }


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"kind": "ConfigMap"}', "does not start with the bytes 'k8s\\x00'"),
        (b"", "does not start with the bytes"),
        (MAGIC + b"\x0a\x10abc", "truncated"),
        (body("v1", "Secret", F(2, b"\x0a\x05k")), "data: field 1 runs past the end of its message"),
        (
            body("v1", "Pod", F(2, F(1, F(1, b"v") + F(2, F(1, b"\x0a\x05/a"))))),
            "spec.volumes[0].hostPath: field 1 runs past",
        ),
        (MAGIC + b"\x08\xff\xff", "truncated"),
        (MAGIC + b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (MAGIC + b"\x0b", "wire type 3"),
        (MAGIC + b"\x00\x00", "numbered 0"),
        (
            body("v1", "Pod", F(2, F(1, 5))),
            "spec.volumes[0]: a varint where a length-delimited value belongs",
        ),
        (
            body("v1", "Pod", F(2, F(2, F(1, b"a")) + F(2, F(1, b"b") + F(6, F(3, b"80"))))),
            "spec.containers[1].ports[0].containerPort: a length-delimited value where a varint belongs",
        ),
        (body("v1", "Pod", F(2, F(11, b"yes"))), "spec.hostNetwork: a length-delimited value where a varint"),
        (body("v1", "ConfigMap", F(2, F(1, b"k") + F(2, 5))), "data: a varint where a value belongs"),
        (
            body("v1", "ConfigMap", F(1, F(17, F(7, F(1, b"{nope"))))),
            "metadata.managedFields[0].fieldsV1: managed fields must hold JSON",
        ),
        (
            body("v1", "ConfigMap", F(1, F(8, F(1, 2**62)))),
            "metadata.creationTimestamp: the time is outside the years 1 to 9999",
        ),
        (body("batch/v1", "Job", b""), "cannot decode kind 'Job' of apiVersion 'batch/v1'"),
        (body("", "", b""), "cannot decode an object with no kind"),
        (MAGIC + F(1, F(1, b"v1") + F(2, b"ConfigMap")) + F(3, b"gzip"), "content encoding 'gzip'"),
    ],
)
def test_bad_bodies_raise_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(ProtobufError) as info:
        decode_object(raw)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["create_deployment_two_images", "create_ingress", "create_secret_generic"])
def test_damaged_bodies_raise_only_protobuf_error(name: str) -> None:
    """Every truncation and a fixed set of byte changes: decoded or refused, never another exception."""
    good = (DATA / f"{name}.pb").read_bytes()
    rng = random.Random(name)
    damaged = [good[:n] for n in range(len(good))]
    for _ in range(300):
        changed = bytearray(good)
        pos = rng.randrange(len(MAGIC), len(changed))
        changed[pos : pos + rng.randint(0, 3)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        damaged.append(bytes(changed))
    for data in damaged:
        try:
            decode_object(data)
        except ProtobufError:
            pass


def test_encode_refuses_kinds_without_a_table() -> None:
    with pytest.raises(ProtobufError, match="no protobuf table for kind 'Job'"):
        encode_object({"apiVersion": "batch/v1", "kind": "Job"})


# --- content types and coverage -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "want"),
    [
        ("application/vnd.kubernetes.protobuf", True),
        ("Application/VND.Kubernetes.Protobuf; charset=binary", True),
        ("application/vnd.kubernetes.protobuf;stream=watch", True),
        ("application/json", False),
        ("application/vnd.kubernetes.protobuf+json", False),
        ("", False),
    ],
)
def test_is_protobuf(content_type: str, want: bool) -> None:
    assert is_protobuf(content_type) is want


def test_every_writable_kind_and_its_list_is_supported() -> None:
    kinds = supported_kinds()
    for rt in RESOURCES:
        if not {"create", "update"} & set(rt.verbs):
            continue  # read-only resources never receive a body
        assert (rt.api_version, rt.kind) in kinds
        assert (rt.api_version, rt.list_kind) in kinds
    for extra in ("Binding", "DeleteOptions"):
        assert ("v1", extra) in kinds
    assert ("autoscaling/v1", "Scale") in kinds
    assert ("authentication.k8s.io/v1", "TokenRequest") in kinds


def test_schema_names_only_known_messages_and_types() -> None:
    known = set(protoschema.MESSAGES) | {"string", "int32", "int64", "bool", "bytes"}
    known |= {"Time", "MicroTime", "Quantity", "IntOrString", "FieldsV1", "StringList"}
    for message, fields in protoschema.MESSAGES.items():
        for number, (name, spec) in fields.items():
            base = spec.removeprefix("map[string]").removeprefix("[]").removeprefix("*")
            assert base in known, f"{message} field {number}"
            assert name or base in protoschema.MESSAGES, f"{message} field {number} inlines a non-message"


# --- whole objects through encode and decode ----------------------------------------------------

RICH_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "namespace": "default",
        "uid": "8f2a",
        "generation": 3,
        "creationTimestamp": "2024-05-06T07:08:09Z",
        "labels": {"app": "web"},
        "annotations": {"note": ""},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "1", "controller": True}
        ],
        "finalizers": ["example.com/keep"],
    },
    "spec": {
        "volumes": [
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
            {
                "name": "cfg",
                "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt", "mode": 256}]},
            },
            {"name": "sec", "secret": {"secretName": "tls", "defaultMode": 420, "optional": False}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
            {
                "name": "info",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
            {
                "name": "all",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "vault",
                                "expirationSeconds": 600,
                                "path": "token",
                            }
                        },
                        {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    ]
                },
            },
            {"name": "share", "nfs": {"server": "nfs.example", "path": "/exports"}},
        ],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
        "containers": [
            {
                "name": "app",
                "image": "nginx:1.27",
                "args": ["--port", "8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {
                        "name": "POD",
                        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                    },
                    {
                        "name": "MEM",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                    {
                        "name": "PW",
                        "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw", "optional": True}},
                    },
                ],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}],
                "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "scratch", "mountPath": "/tmp", "readOnly": True}],
                "livenessProbe": {
                    "httpGet": {
                        "path": "/healthz",
                        "port": "http",
                        "httpHeaders": [{"name": "X", "value": "1"}],
                    },
                    "initialDelaySeconds": 3,
                    "periodSeconds": 10,
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 1},
                "startupProbe": {"exec": {"command": ["cat", "/ready"]}},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                    "privileged": False,
                    "runAsUser": 0,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                },
                "stdin": True,
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 0,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": "robot",
        "automountServiceAccountToken": False,
        "hostNetwork": True,
        "securityContext": {"fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
        "imagePullSecrets": [{"name": "reg"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            },
        },
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
        "priority": 0,
        "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2}
        ],
        "overhead": {"cpu": "250m"},
    },
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-06T07:09:00Z"}],
        "podIP": "10.244.0.5",
        "podIPs": [{"ip": "10.244.0.5"}],
        "startTime": "2024-05-06T07:08:10Z",
        "containerStatuses": [
            {
                "name": "app",
                "state": {"running": {"startedAt": "2024-05-06T07:08:30Z"}},
                "lastState": {"terminated": {"exitCode": -1, "reason": "Error", "signal": 9}},
                "ready": True,
                "restartCount": 2,
                "image": "nginx:1.27",
                "imageID": "sha256:abc",
                "started": True,
            }
        ],
        "qosClass": "Burstable",
    },
}

OTHER_OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "podCIDRs": ["10.244.0.0/24"],
            "taints": [
                {"key": "k", "value": "v", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}
            ],
            "unschedulable": True,
        },
        "status": {
            "capacity": {"cpu": "4", "pods": "110"},
            "allocatable": {"cpu": "3900m"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "kubeletVersion": "v1.33.0", "architecture": "amd64"},
            "images": [{"names": ["nginx:1.27"], "sizeBytes": 73000000}],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "namespace": "default",
            "name": "web-0",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "Pulled",
        "message": "pulled",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "count": 2,
        "type": "Normal",
        "eventTime": "2024-01-01T00:00:00.250000Z",
        "series": {"count": 3, "lastObservedTime": "2024-01-01T00:01:00.000001Z"},
        "reportingComponent": "kubelet",
    },
    {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.244.0.5"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default"},
                "nodeName": "n1",
                "zone": "a",
                "hints": {"forZones": [{"name": "a"}]},
            }
        ],
        "ports": [{"name": "", "protocol": "TCP", "port": 8080, "appProtocol": "http"}],
    },
    {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "10.244.0.5", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "web-0"}}
                ],
                "notReadyAddresses": [{"ip": "10.244.0.6"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    },
    {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": "n1",
            "leaseDurationSeconds": 40,
            "renewTime": "2024-01-01T00:00:00.123456Z",
            "leaseTransitions": 0,
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web-0", "namespace": "default"},
        "target": {"kind": "Node", "name": "n1"},
    },
    {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "resourceVersion": "7"},
        "spec": {"replicas": 4},
        "status": {"replicas": 3, "selector": "app=web"},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a"}]}},
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
        },
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "nginx"},
        "spec": {
            "controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "P", "name": "p", "scope": "Cluster"},
        },
    },
    {
        "apiVersion": "v1",
        "kind": "ServiceAccountList",
        "metadata": {"resourceVersion": "12", "continue": "tok", "remainingItemCount": 0},
        "items": [
            {
                "metadata": {"name": "default"},
                "secrets": [{"name": "t"}],
                "automountServiceAccountToken": True,
            }
        ],
    },
]


@pytest.mark.parametrize("obj", [RICH_POD, *OTHER_OBJECTS], ids=lambda o: str(o["kind"]))
def test_objects_survive_encode_then_decode(obj: dict[str, Any]) -> None:
    # The fixtures hold zeros only in pointer fields (hostPath.type "", privileged false, priority 0...).
    assert decode_object(encode_object(obj)) == obj
