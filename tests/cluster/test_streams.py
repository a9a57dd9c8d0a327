"""logs, exec, port-forward and proxies through the API server to a kubelet, with kubectl 1.27 and 1.33.

The kubelet is kubelet_app on 127.0.0.1 in this process (LocalKubelet), with a back end that runs
commands as local processes, forwards to an echo server on 127.0.0.1 and serves logs from lists. A
Node whose status points at it (InternalIP 127.0.0.1, daemonEndpoints.kubeletEndpoint.Port) and pods
bound to that node make the API server forward to it, as it would to a real agent.

kubectl 1.27 speaks SPDY/3.1; kubectl 1.33 speaks WebSocket (v5.channel.k8s.io, and SPDY tunnelled in a
WebSocket for port-forward) and falls back to SPDY when the upgrade is refused; the *_spdy tests force
its SPDY path with KUBECTL_REMOTE_COMMAND_WEBSOCKETS / KUBECTL_PORT_FORWARD_WEBSOCKETS=false.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from conftest import Http, Kubectl, ServerProcess
from localkubelet import LocalBackend, LocalKubelet

pytestmark = [pytest.mark.kubectl]

SPDY_ONLY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
LOG_LINES = ["one", "two", "three", "four"]


@dataclass
class Env:
    namespace: str
    node: str
    kubelet: LocalKubelet
    http: Http


def _pod(name: str, containers: list[str], node: str = "", selector: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": c, "image": "busybox", "ports": [{"containerPort": 8080}]} for c in containers
        ]
    }
    if node:
        spec["nodeName"] = node
    if selector:
        spec["nodeSelector"] = {"kubelite.test/never": "true"}  # stays unscheduled
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _ok(response: Any, what: str) -> Any:
    assert response.status_code < 300, f"{what}: {response.status_code} {response.text}"
    return response.json()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _merge(http: Http, path: str, patch: dict[str, Any]) -> Any:
    return http.request(
        "PATCH", path, data=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
    )


@pytest.fixture(scope="module")
def env(server: ServerProcess) -> Iterator[Env]:
    http = Http(server)
    suffix = uuid.uuid4().hex[:6]
    namespace, node = f"streams-{suffix}", f"streams-node-{suffix}"
    backend = LocalBackend(
        logs_by_container={("app", "main"): LOG_LINES, ("multi", "b"): ["from b"]},
        previous_by_container={("app", "main"): ["before the restart"]},
    )
    kubelet = LocalKubelet(backend, http.token)
    try:
        _ok(http.request("POST", "/api/v1/namespaces", json={"metadata": {"name": namespace}}), "namespace")
        node_obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node},
            # Nothing else may land here: the scheduler and DaemonSets of other tests share the server.
            "spec": {
                "unschedulable": True,
                "taints": [{"key": "kubelite.test/streams", "effect": "NoSchedule"}],
            },
        }
        _ok(http.request("POST", "/api/v1/nodes", json=node_obj), "node")
        status = {
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        }
        _ok(_merge(http, f"/api/v1/nodes/{node}/status", {"status": status}), "node status")
        gone_port = _closed_port()
        gone = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"{node}-gone"},
            "spec": node_obj["spec"],
        }
        _ok(http.request("POST", "/api/v1/nodes", json=gone), "node without agent")
        gone_status = {**status, "daemonEndpoints": {"kubeletEndpoint": {"Port": gone_port}}}
        _ok(_merge(http, f"/api/v1/nodes/{node}-gone/status", {"status": gone_status}), "node status")
        pods = f"/api/v1/namespaces/{namespace}/pods"
        _ok(http.request("POST", pods, json=_pod("orphan", ["main"], f"{node}-gone")), "orphan")
        for pod in (
            _pod("app", ["main"], node),
            _pod("multi", ["a", "b"], node),
            _pod("pending", ["main"], selector=True),
        ):
            obj = _ok(http.request("POST", pods, json=pod), pod["metadata"]["name"])
            if pod["spec"].get("nodeName"):
                running = {"status": {"phase": "Running", "podIP": "127.0.0.1"}}
                _ok(_merge(http, f"{pods}/{obj['metadata']['name']}/status", running), "pod status")
        yield Env(namespace, node, kubelet, http)
    finally:
        http.request("DELETE", f"/api/v1/namespaces/{namespace}")
        http.request("DELETE", f"/api/v1/nodes/{node}")
        http.request("DELETE", f"/api/v1/nodes/{node}-gone")
        kubelet.close()
        http.close()


def kc(
    kubectl: Kubectl, env: Env, *args: str, spdy: bool = False, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return kubectl.run("-n", env.namespace, *args, env=SPDY_ONLY if spdy else None, check=False, **kw)


# --- exec ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spdy", [False, True], ids=["default", "spdy"])
def test_exec_stdout_stderr_and_exit_code(kubectl: Kubectl, env: Env, spdy: bool) -> None:
    if spdy and kubectl.version == "1.27":
        pytest.skip("kubectl 1.27 speaks only SPDY: the default case covers it")
    res = kc(kubectl, env, "exec", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 3", spdy=spdy)
    assert res.stdout == "out\n"
    assert "err\n" in res.stderr
    assert res.returncode == 3, res.stderr
    ok = kc(kubectl, env, "exec", "app", "--", "sh", "-c", "echo fine", spdy=spdy)
    assert (ok.returncode, ok.stdout) == (0, "fine\n"), ok.stderr


@pytest.mark.parametrize("spdy", [False, True], ids=["default", "spdy"])
def test_exec_stdin(kubectl: Kubectl, env: Env, spdy: bool) -> None:
    if spdy and kubectl.version == "1.27":
        pytest.skip("kubectl 1.27 speaks only SPDY: the default case covers it")
    text = "".join(f"line {i}\n" for i in range(2000))
    res = kc(kubectl, env, "exec", "-i", "app", "--", "cat", input=text, spdy=spdy)
    assert res.returncode == 0, res.stderr
    assert res.stdout == text
    counted = kc(kubectl, env, "exec", "-i", "app", "--", "wc", "-l", input=text, spdy=spdy)
    assert counted.stdout.strip() == "2000", counted.stderr
    big = kc(
        kubectl, env, "exec", "app", "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a", spdy=spdy
    )
    assert big.stdout == "a" * 3_000_000, big.stderr


def _run_in_pty(
    argv: list[str], environ: dict[str, str], rows: int, cols: int, timeout: float = 20.0
) -> tuple[int, str]:
    """Run ``argv`` with a terminal of ``rows`` x ``cols`` as its stdin/stdout/stderr; (exit code, output)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=environ, start_new_session=True
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break  # EIO: every holder of the terminal is gone
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(deadline - time.monotonic(), 1)), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("spdy", [False, True], ids=["default", "spdy"])
def test_exec_tty(kubectl: Kubectl, env: Env, spdy: bool) -> None:
    if spdy and kubectl.version == "1.27":
        pytest.skip("kubectl 1.27 speaks only SPDY: the default case covers it")
    environ = kubectl.environ()
    if spdy:
        environ.update(SPDY_ONLY)
    argv = [
        str(kubectl.binary),
        "-n",
        env.namespace,
        "exec",
        "-it",
        "app",
        "--",
        "sh",
        "-c",
        "tty; stty size; exit 4",
    ]
    code, output = _run_in_pty(argv, environ, rows=33, cols=111)
    assert re.search(r"/dev/pts/\d+", output), repr(output)
    assert "33 111" in output, repr(output)
    assert code == 4, output


# --- logs ----------------------------------------------------------------------------------------------


def test_logs(kubectl: Kubectl, env: Env) -> None:
    res = kc(kubectl, env, "logs", "app")
    assert (res.returncode, res.stdout) == (0, "one\ntwo\nthree\nfour\n"), res.stderr
    tail = kc(kubectl, env, "logs", "app", "--tail=2")
    assert tail.stdout == "three\nfour\n", tail.stderr
    previous = kc(kubectl, env, "logs", "app", "--previous")
    assert previous.stdout == "before the restart\n", previous.stderr
    missing = kc(kubectl, env, "logs", "multi", "-c", "b", "--previous")
    assert missing.returncode != 0
    assert 'previous terminated container "b" in pod "multi" not found' in missing.stderr
    other = kc(kubectl, env, "logs", "multi", "-c", "b")
    assert other.stdout == "from b\n", other.stderr
    limited = kc(kubectl, env, "logs", "app", "--limit-bytes=6")
    assert limited.stdout == "one\ntw", limited.stderr


def test_logs_follow(kubectl: Kubectl, env: Env) -> None:
    environ = kubectl.environ()
    proc = subprocess.Popen(
        [str(kubectl.binary), "-n", env.namespace, "logs", "-f", "app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(len(LOG_LINES) + 3)]
        assert lines == [f"{x}\n" for x in LOG_LINES] + ["more 0\n", "more 1\n", "more 2\n"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


# --- port-forward --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spdy", [False, True], ids=["default", "spdy"])
def test_port_forward_one_megabyte(kubectl: Kubectl, env: Env, spdy: bool) -> None:
    if spdy and kubectl.version == "1.27":
        pytest.skip("kubectl 1.27 speaks only SPDY: the default case covers it")
    environ = kubectl.environ()
    if spdy:
        environ.update(SPDY_ONLY)
    proc = subprocess.Popen(
        [str(kubectl.binary), "-n", env.namespace, "port-forward", "pod/app", f":{env.kubelet.echo_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", first)
        assert match, first
        assert int(match.group(2)) == env.kubelet.echo_port
        local = int(match.group(1))
        payload = os.urandom(1024 * 1024)
        assert _echo_through(local, payload) == payload
        with ThreadPoolExecutor(3) as pool:  # then three at once through the same forwarding session
            payloads = [os.urandom(512 * 1024) for _ in range(3)]
            assert list(pool.map(lambda p: _echo_through(local, p), payloads)) == payloads
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "error" not in err.lower(), err


def _echo_through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        received = bytearray()
        view = memoryview(payload)
        sock.setblocking(False)
        deadline = time.monotonic() + 20
        while len(received) < len(payload) and time.monotonic() < deadline:
            want_write = [sock] if view else []
            readable, writable, _ = select.select([sock], want_write, [], 0.5)
            if writable:
                sent = sock.send(view[:65536])
                view = view[sent:]
                if not view:
                    sock.shutdown(socket.SHUT_WR)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        return bytes(received)


def test_exec_command_is_killed_when_kubectl_goes_away(kubectl: Kubectl, env: Env) -> None:
    marker = f"{4000 + os.getpid() % 1000}.{time.monotonic_ns() % 1000}"  # unique: found with pgrep
    environ = kubectl.environ()
    proc = subprocess.Popen(
        [
            str(kubectl.binary),
            "-n",
            env.namespace,
            "exec",
            "app",
            "--",
            "sh",
            "-c",
            f"echo started; exec sleep {marker}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        assert _running(marker)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(marker), "the command outlived the kubectl exec that started it"


def _running(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0


def test_port_forward_to_a_closed_port(kubectl: Kubectl, env: Env) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connections are refused
    environ = kubectl.environ()
    proc = subprocess.Popen(
        [str(kubectl.binary), "-n", env.namespace, "port-forward", "pod/app", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert match
        local = int(match.group(1))
        with (
            socket.create_connection(("127.0.0.1", local), timeout=10) as sock,
            contextlib.suppress(ConnectionError),
        ):
            assert sock.recv(10) == b""  # closed at once
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        closed.close()
    assert f"error forwarding port {port} to pod {env.namespace}/app: connection refused" in err, err


# --- errors --------------------------------------------------------------------------------------------


def test_errors_reach_kubectl(kubectl: Kubectl, env: Env) -> None:
    pending = kc(kubectl, env, "exec", "pending", "--", "true")
    assert pending.returncode != 0
    assert "pod pending does not have a host assigned" in pending.stderr
    unknown = kc(kubectl, env, "exec", "app", "-c", "nope", "--", "true")
    assert unknown.returncode != 0
    assert "container nope is not valid for pod app" in unknown.stderr
    attach = kc(kubectl, env, "attach", "app")
    assert attach.returncode != 0
    assert "attach is not supported by the test backend" in attach.stderr
    for args in (["logs", "orphan"], ["exec", "orphan", "--", "true"]):
        down = kc(kubectl, env, *args)
        assert down.returncode != 0
        assert f"error trying to reach the agent of node {env.node}-gone at 127.0.0.1:" in down.stderr, (
            down.stderr
        )
        assert "connection refused; is its `kubelite agent` running?" in down.stderr, down.stderr
    missing = kc(kubectl, env, "exec", "app", "--", "/no/such/program")
    assert missing.returncode != 0
    assert "/no/such/program" in missing.stderr


def test_api_errors_and_proxies(env: Env) -> None:
    http, pods = env.http, f"/api/v1/namespaces/{env.namespace}/pods"
    multi = http.request("GET", f"{pods}/multi/log")
    assert multi.status_code == 400
    assert multi.json()["message"] == "a container name must be specified for pod multi, choose one of: [a b]"
    assert http.request("GET", f"{pods}/pending/log").text == ""  # as Kubernetes: no node, no logs yet
    follow = http.request("GET", f"{pods}/app/log", params={"tailLines": "1"})
    assert follow.text == "four\n"
    bad = http.request("GET", f"{pods}/app/log", params={"tailLines": "x"})
    assert bad.status_code == 400 and "tailLines" in bad.json()["message"]
    not_upgraded = http.request("POST", f"{pods}/app/exec", params={"command": "true", "stdout": "true"})
    assert not_upgraded.status_code == 400 and not_upgraded.json()["message"] == "Upgrade request required"
    loopback = http.request("GET", f"{pods}/app/proxy/")
    assert loopback.status_code == 400 and loopback.json()["message"] == "address not allowed"
    health = http.request("GET", f"/api/v1/nodes/{env.node}/proxy/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    assert http.request("GET", f"{pods}/nope/log").status_code == 404
    # The kubelet refuses anyone without the API server's token.
    import requests

    direct = requests.get(f"http://127.0.0.1:{env.kubelet.port}/healthz", timeout=5)
    assert direct.status_code == 401 and direct.json()["reason"] == "Unauthorized"


# --- the official Python client (WebSocket, v5/v4.channel.k8s.io) ---------------------------------------


def test_python_client_exec_and_port_forward(server: ServerProcess, env: Env) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    api_client = config.new_client_from_config(str(server.kubeconfig))
    core = client.CoreV1Api(api_client)
    try:
        with warnings.catch_warnings():
            # stream() with preloaded content returns without closing its socket (a client bug).
            warnings.simplefilter("ignore", ResourceWarning)
            out = stream(
                core.connect_get_namespaced_pod_exec,
                "app",
                env.namespace,
                command=["sh", "-c", "echo from-python; echo to-stderr >&2"],
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
            )
            gc.collect()
        assert "from-python\n" in out and "to-stderr\n" in out
        resp = stream(
            core.connect_get_namespaced_pod_exec,
            "app",
            env.namespace,
            command=["sh", "-c", "cat; exit 7"],
            stderr=True,
            stdin=True,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        resp.write_stdin("typed\n")
        resp.close_channel(0)  # v5: end of stdin
        resp.run_forever(timeout=10)
        assert resp.read_stdout() == "typed\n"
        assert resp.returncode == 7
        resp.close()
        resp.sock.shutdown()  # close() skips the socket once the server has closed the WebSocket
        forward = portforward(
            core.connect_get_namespaced_pod_portforward,
            "app",
            env.namespace,
            ports=str(env.kubelet.echo_port),
        )
        sock = forward.socket(env.kubelet.echo_port)
        sock.settimeout(10)
        sock.sendall(b"hello through a websocket")
        assert sock.recv(1024) == b"hello through a websocket"
        sock.close()
        forward.close()
    finally:
        api_client.close()


# --- a SPDY client that does flow control ---------------------------------------------------------------


def test_spdy_client_with_flow_control(server: ServerProcess, env: Env) -> None:
    """Our own SPDY client (it sends SETTINGS and WINDOW_UPDATE, unlike Go's) pulls 2 MB of stdout."""
    import asyncio

    from kubelite.agent.streams.spdy import SETTINGS_INITIAL_WINDOW_SIZE, Settings, SpdySession, StreamConn

    cfg = yaml.safe_load(server.kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    ctx = ssl.create_default_context(cadata=ca.decode())
    command = "".join(f"&command={c}" for c in ("head", "-c", "2000000", "/dev/zero"))
    path = f"/api/v1/namespaces/{env.namespace}/pods/app/exec?stdout=true&stderr=true{command}"

    async def run() -> tuple[int, dict[str, Any]]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=ctx, server_hostname="127.0.0.1"
        )
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {env.http.token}\r\n"
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"v4.channel.k8s.io" in head
        async with SpdySession(StreamConn(reader, writer), server=False) as session:
            await session.send(Settings(((SETTINGS_INITIAL_WINDOW_SIZE, 65536, 0),)))
            error = await session.open((("streamType", "error"),))
            stdout = await session.open((("streamType", "stdout"),))
            stderr = await session.open((("streamType", "stderr"),))
            total = 0
            while chunk := await stdout.read():
                total += len(chunk)
            assert await stderr.read() == b""
            status = b""
            while chunk := await error.read():
                status += chunk
            return total, json.loads(status)

    total, status = asyncio.run(asyncio.wait_for(run(), 30))
    assert total == 2_000_000
    assert status["status"] == "Success"


# --- the API server's resolution, without a server --------------------------------------------------


def test_nodeproxy_resolution_is_kube_apiservers() -> None:
    from multidict import MultiDict

    from kubelite.api.errors import StatusError
    from kubelite.apiserver import nodeproxy

    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a", "ports": [{"name": "web", "containerPort": 8080}]}, {"name": "b"}],
        },
        "status": {"podIP": "10.244.1.5"},
    }
    assert nodeproxy.pick_container(pod, "init") == "init"
    with pytest.raises(StatusError, match=r"choose one of: \[init a b\]"):
        nodeproxy.pick_container(pod, "")
    with pytest.raises(StatusError, match="container c is not valid for pod p"):
        nodeproxy.pick_container(pod, "c")
    single = {"metadata": {"name": "s"}, "spec": {"containers": [{"name": "only"}]}}
    assert nodeproxy.pick_container(single, "") == "only"

    node = {
        "metadata": {"name": "n"},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "n"},
                {"type": "InternalIP", "address": "10.0.0.7"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}},
        },
    }
    assert nodeproxy.kubelet_endpoint(node) == ("10.0.0.7", 10350)
    assert nodeproxy.kubelet_endpoint({"metadata": {"name": "n"}, "status": {"addresses": [
        {"type": "Hostname", "address": "n"}]}}) == ("n", 10250)  # fmt: skip
    with pytest.raises(StatusError, match="reports no address"):
        nodeproxy.kubelet_endpoint({"metadata": {"name": "n"}, "status": {}})

    query = MultiDict(
        [("command", "sh"), ("command", "-c"), ("stdin", "true"), ("stdout", "1"), ("tty", "false")]
    )
    assert nodeproxy.kubelet_query("exec", query) == [
        ("input", "1"),
        ("output", "1"),
        ("command", "sh"),
        ("command", "-c"),
    ]
    logs = MultiDict([("follow", "true"), ("tailLines", "2"), ("container", "a")])
    assert nodeproxy.kubelet_query("log", logs) == [("follow", "true"), ("tailLines", "2")]
    with pytest.raises(StatusError, match="limitBytes"):
        nodeproxy.kubelet_query("log", MultiDict([("limitBytes", "-1")]))
    assert nodeproxy.kubelet_query("portforward", MultiDict([("ports", "80,443")])) == [("port", "80,443")]

    assert nodeproxy._pod_proxy_target(pod, "", "/x/y", "q=1").url == "http://10.244.1.5:8080/x/y?q=1"
    assert nodeproxy._pod_proxy_target(pod, "web", "", "").url == "http://10.244.1.5:8080/"
    assert nodeproxy._split_name("https:p:8443") == ("https", "p", "8443")
    for ip in ("127.0.0.1", "169.254.1.1", "::1", "0.0.0.0"):
        with pytest.raises(StatusError, match="address not allowed"):
            nodeproxy._pod_proxy_target({**pod, "status": {"podIP": ip}}, "80", "/", "")
