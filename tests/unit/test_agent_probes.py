"""Probes: parsing, http/tcp runs against a tiny server on 127.0.0.1, exec through a fake, the worker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import probes
from kubelite.agent.probes import (
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ProbeWorker,
    parse_probe,
    probe_failed_message,
    resolve_port,
    run_probe,
)
from kubelite.apiserver.certs import ensure_credentials

Obj = dict[str, Any]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
CONTAINER: Obj = {
    "name": "app",
    "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9000}],
    "env": [
        {"name": "PORT", "value": "8080"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ],
}


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_defaults_and_named_port() -> None:
    spec = parse_probe({"httpGet": {"port": "http"}}, CONTAINER)
    assert spec == ProbeSpec(kind="httpGet", port=8080, path="/", scheme="HTTP")
    assert (
        spec.initial_delay,
        spec.period,
        spec.timeout,
        spec.success_threshold,
        spec.failure_threshold,
    ) == (
        0,
        10,
        1,
        1,
        3,
    )


def test_parse_everything() -> None:
    probe = {
        "httpGet": {
            "host": "10.0.0.5",
            "port": 9000,
            "path": "/healthz?verbose=1",
            "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
        },
        "initialDelaySeconds": 5,
        "periodSeconds": 2,
        "timeoutSeconds": 3,
        "successThreshold": 2,
        "failureThreshold": 4,
        "terminationGracePeriodSeconds": 7,
    }
    assert parse_probe(probe, CONTAINER, kind="readiness") == ProbeSpec(
        kind="httpGet",
        host="10.0.0.5",
        port=9000,
        path="/healthz?verbose=1",
        scheme="HTTPS",
        http_headers=(("X-Probe", "yes"),),
        initial_delay=5,
        period=2,
        timeout=3,
        success_threshold=2,
        failure_threshold=4,
        termination_grace_period=7,
    )


def test_parse_exec_expands_only_static_env() -> None:
    probe = {"exec": {"command": ["check", "$(PORT)", "$(SECRET)", "$(NOPE)", "$$(PORT)"]}}
    assert parse_probe(probe, CONTAINER).command == ("check", "8080", "", "$(NOPE)", "$(PORT)")


def test_parse_tcp_and_grpc() -> None:
    assert parse_probe({"tcpSocket": {"port": "admin"}}, CONTAINER) == ProbeSpec(kind="tcpSocket", port=9000)
    assert parse_probe({"grpc": {"port": 9090, "service": "app"}}, CONTAINER) == ProbeSpec(
        kind="grpc", port=9090, service="app"
    )


@pytest.mark.parametrize(
    ("probe", "kind", "message"),
    [
        ({}, None, "exactly one of exec, httpGet, tcpSocket or grpc \\(found: none\\)"),
        ({"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}, None, "found: exec, tcpSocket"),
        ({"exec": {"command": []}}, None, "needs a command"),
        ({"httpGet": {"path": "/"}}, None, "needs a port"),
        ({"httpGet": {"port": "metrics"}}, None, "'metrics' is not the name of a port of container 'app'"),
        ({"tcpSocket": {"port": 70000}}, None, "not a valid port number"),
        ({"httpGet": {"port": 80, "scheme": "FTP"}}, None, "scheme must be HTTP or HTTPS"),
        (
            {"tcpSocket": {"port": 80}, "periodSeconds": -1},
            None,
            "periodSeconds must be an integer of at least 1",
        ),
        ({"tcpSocket": {"port": 80}, "successThreshold": 2}, "liveness", "must have successThreshold 1"),
    ],
)
def test_parse_rejects_bad_probes(probe: Obj, kind: ProbeKind | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_probe(probe, CONTAINER, kind=kind)


def test_resolve_port_accepts_numeric_strings() -> None:
    assert resolve_port("8081", CONTAINER) == 8081
    assert resolve_port(80, CONTAINER) == 80


# --- a tiny HTTP server ------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    requests: list[str] = field(default_factory=list)

    def spec(self, path: str, **kw: Any) -> ProbeSpec:
        return ProbeSpec(kind="httpGet", port=self.port, path=path, **kw)


def _response(code: int, body: bytes = b"", headers: Sequence[str] = ()) -> bytes:
    head = [f"HTTP/1.1 {code} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _serve(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        return
    text = head.decode()
    server.requests.append(text)
    path = text.split()[1]
    routes = {
        "/ok": _response(200, b"ok"),
        "/fail": _response(500, b"boom"),
        "/redirect": _response(302, b"", ["Location: /ok"]),
        "/away": _response(302, b"moved", ["Location: http://example.invalid/"]),
        "/loop": _response(302, b"", ["Location: /loop"]),
        "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "/big": _response(200, b"x" * 20000),
        "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        "/noclen": b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "/garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
        "/eof": b"",
    }
    if path == "/slow":
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the prober gives up and closes
    else:
        writer.write(routes.get(path, _response(404, b"not found")))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(0)
    listener = await asyncio.start_server(lambda r, w: _serve(srv, r, w), "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield srv


class NoExec:
    async def exec(self, command: Sequence[str], timeout: float) -> tuple[int, str]:  # noqa: ASYNC109
        raise AssertionError("no exec expected")


async def _http(server: Server, path: str, **kw: Any) -> ProbeResult:
    return await run_probe(server.spec(path, **kw), pod_ip="127.0.0.1", executor=NoExec())


async def test_http_success_and_the_request_the_kubelet_sends(server: Server) -> None:
    spec = server.spec("/ok", http_headers=(("x-custom", "1"), ("Host", "app.example")))
    assert await run_probe(spec, pod_ip="127.0.0.1", executor=NoExec()) == ProbeResult(True, "ok")
    lines = server.requests[0].split("\r\n")
    assert lines[0] == "GET /ok HTTP/1.1"
    assert "Host: app.example" in lines
    assert "User-Agent: kube-probe/1.33" in lines
    assert "Accept: */*" in lines
    assert "Connection: close" in lines
    assert "X-Custom: 1" in lines


async def test_http_default_host_header_and_user_agent_override(server: Server) -> None:
    await _http(server, "/ok", http_headers=(("User-Agent", "mine"), ("Accept", "")))
    lines = server.requests[0].split("\r\n")
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "User-Agent: mine" in lines
    assert not any(line.startswith("Accept:") for line in lines)


async def test_http_failure_hides_the_body(server: Server) -> None:
    assert await _http(server, "/fail") == ProbeResult(False, "HTTP probe failed with statuscode: 500")
    assert await _http(server, "/nothing-here") == ProbeResult(
        False, "HTTP probe failed with statuscode: 404"
    )


async def test_http_redirects(server: Server) -> None:
    assert await _http(server, "/redirect") == ProbeResult(True, "ok")
    assert [r.split()[1] for r in server.requests] == ["/redirect", "/ok"]
    away = await _http(server, "/away")
    assert away == ProbeResult(True, "Probe terminated redirects, Response body: moved", warning=True)
    server.requests.clear()
    loop = await _http(server, "/loop")
    assert loop == ProbeResult(
        False, f'Get "http://127.0.0.1:{server.port}/loop": stopped after 10 redirects'
    )
    assert len(server.requests) == 10


async def test_http_bodies(server: Server) -> None:
    assert await _http(server, "/chunked") == ProbeResult(True, "hello world")
    assert await _http(server, "/noclen") == ProbeResult(True, "until the end")
    assert await _http(server, "/continue") == ProbeResult(True, "")
    big = await _http(server, "/big")
    assert big.success and len(big.output) == 10 * 1024


async def test_http_errors_read_like_gos_client(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}"
    slow = await _http(server, "/slow", timeout=0.2)
    assert slow == ProbeResult(
        False, f'Get "{url}/slow": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    )
    assert await _http(server, "/eof") == ProbeResult(False, f'Get "{url}/eof": EOF')
    garbage = await _http(server, "/garbage")
    assert not garbage.success and "malformed HTTP response" in garbage.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_connection_refused() -> None:
    port = _closed_port()
    spec = ProbeSpec(kind="httpGet", port=port, path="/healthz")
    result = await run_probe(spec, pod_ip="127.0.0.1", executor=NoExec())
    assert result == ProbeResult(
        False,
        f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: connect: connection refused',
    )


async def test_https_does_not_verify_the_certificate(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path, ["127.0.0.1"])
    srv = Server(0)
    listener = await asyncio.start_server(
        lambda r, w: _serve(srv, r, w), "127.0.0.1", 0, ssl=creds.ssl_context()
    )
    srv.port = listener.sockets[0].getsockname()[1]
    async with listener:
        result = await run_probe(srv.spec("/ok", scheme="HTTPS"), pod_ip="127.0.0.1", executor=NoExec())
    assert result == ProbeResult(True, "ok")


async def test_host_defaults_to_the_pod_ip_through_an_injected_connect(server: Server) -> None:
    dialed: list[tuple[str, int]] = []

    async def connect(host: str, port: int, timeout: float) -> Streams:  # noqa: ASYNC109
        dialed.append((host, port))
        return await asyncio.open_connection("127.0.0.1", server.port)

    spec = ProbeSpec(kind="httpGet", port=8080, path="/ok")
    assert await run_probe(spec, pod_ip="10.244.1.7", executor=NoExec(), connect=connect) == ProbeResult(
        True, "ok"
    )
    assert dialed == [("10.244.1.7", 8080)]
    assert "Host: 10.244.1.7:8080" in server.requests[0].split("\r\n")
    tcp = replace(spec, kind="tcpSocket", host="10.9.9.9")
    assert await run_probe(tcp, pod_ip="10.244.1.7", executor=NoExec(), connect=connect) == ProbeResult(
        True, ""
    )
    assert dialed[-1] == ("10.9.9.9", 8080)


async def test_tcp_probe(server: Server) -> None:
    ok = ProbeSpec(kind="tcpSocket", port=server.port)
    assert await run_probe(ok, pod_ip="127.0.0.1", executor=NoExec()) == ProbeResult(True, "")
    port = _closed_port()
    refused = ProbeSpec(kind="tcpSocket", port=port)
    assert await run_probe(refused, pod_ip="127.0.0.1", executor=NoExec()) == ProbeResult(
        False, f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )

    async def hang(host: str, port: int, timeout: float) -> Streams:  # noqa: ASYNC109
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    slow = ProbeSpec(kind="tcpSocket", port=80, timeout=0.05)
    assert await run_probe(slow, pod_ip="10.0.0.1", executor=NoExec(), connect=hang) == ProbeResult(
        False, "dial tcp 10.0.0.1:80: i/o timeout"
    )


# --- gRPC health checks against a scripted HTTP/2 peer ------------------------------------------------


def _h2(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _literals(block: bytes) -> dict[str, str]:
    """Decode the client's header block (literal, new name, short strings, no Huffman)."""
    out, i = {}, 0
    while i < len(block):
        assert block[i] == 0
        n = block[i + 1]
        name = block[i + 2 : i + 2 + n].decode()
        i += 2 + n
        v = block[i]
        out[name] = block[i + 1 : i + 1 + v].decode()
        i += 1 + v
    return out


@dataclass
class GrpcPeer:
    mode: str = "serving"
    port: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    message: bytes = b""
    preface: bytes = b""
    acks: bytes = b""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.done.set()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.preface = await reader.readexactly(24)
        while True:
            head = await reader.readexactly(9)
            payload = await reader.readexactly(int.from_bytes(head[:3], "big"))
            if head[3] == 1:
                self.headers = _literals(payload)
            if head[3] == 0 and head[4] & 1:
                self.message = payload
                break
        if self.mode == "silent":
            await reader.read()
            return
        status = {"serving": 1, "padded": 1, "not-serving": 2}.get(self.mode, 0)
        grpc_message = b"\x08" + bytes((status,))
        data = b"\x00" + len(grpc_message).to_bytes(4, "big") + grpc_message
        out = _h2(4, 0, 0, b"") + _h2(6, 0, 0, b"12345678")  # SETTINGS and PING: the client ACKs both
        if self.mode == "trailers-only":
            out += _h2(1, 5, 1, b"\x88")
        elif self.mode == "reset":
            out += _h2(3, 0, 1, b"\x00\x00\x00\x08")
        else:
            if self.mode == "padded":
                data = b"\x03" + data + b"\x00\x00\x00"
            out += _h2(1, 4, 1, b"\x88") + _h2(0, 8 if self.mode == "padded" else 0, 1, data)
            out += _h2(1, 5, 1, b"\x00\x0bgrpc-status\x010")
        writer.write(out)
        await writer.drain()
        self.acks = await reader.read(100)


async def _grpc(mode: str, service: str = "", deadline: float = 1.0) -> tuple[ProbeResult, GrpcPeer]:
    peer = GrpcPeer(mode)
    listener = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    peer.port = listener.sockets[0].getsockname()[1]
    async with listener:
        spec = ProbeSpec(kind="grpc", port=peer.port, service=service, timeout=deadline)
        result = await run_probe(spec, pod_ip="127.0.0.1", executor=NoExec())
        await asyncio.wait_for(peer.done.wait(), 5)
        return result, peer


async def test_grpc_health_check_request_and_serving() -> None:
    result, peer = await _grpc("serving", service="app")
    assert result == ProbeResult(True, "service healthy")
    assert peer.headers == {
        ":method": "POST",
        ":scheme": "http",
        ":path": "/grpc.health.v1.Health/Check",
        ":authority": f"127.0.0.1:{peer.port}",
        "content-type": "application/grpc",
        "te": "trailers",
        "user-agent": "kube-probe/1.33",
    }
    assert peer.preface == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert peer.message == b"\x00\x00\x00\x00\x05\x0a\x03app"
    assert _h2(4, 1, 0, b"") in peer.acks and _h2(6, 1, 0, b"12345678") in peer.acks
    assert (await _grpc("padded"))[0].success


@pytest.mark.parametrize(
    ("mode", "output"),
    [
        ("not-serving", 'service unhealthy (responded with "NOT_SERVING")'),
        ("trailers-only", "error: health rpc probe failed: the call ended without a health status"),
        ("reset", "error: health rpc probe failed: the server reset the stream"),
        ("silent", "timeout: health rpc did not complete within 100ms"),
    ],
)
async def test_grpc_failures(mode: str, output: str) -> None:
    result, _peer = await _grpc(mode, deadline=0.1)
    assert not result.success and result.output.startswith(output)


async def test_grpc_connection_refused() -> None:
    port = _closed_port()
    result = await run_probe(ProbeSpec(kind="grpc", port=port), pod_ip="127.0.0.1", executor=NoExec())
    assert result == ProbeResult(
        False,
        f'error: failed to connect service at "127.0.0.1:{port}": dial tcp 127.0.0.1:{port}: connect: '
        "connection refused",
    )


# --- exec -------------------------------------------------------------------------------------------


@dataclass
class FakeExec:
    code: int = 0
    output: str = ""
    hang: bool = False
    raise_timeout: bool = False
    calls: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    async def exec(self, command: Sequence[str], timeout: float) -> tuple[int, str]:  # noqa: ASYNC109
        self.calls.append((tuple(command), timeout))
        if self.raise_timeout:
            raise TimeoutError
        if self.hang:
            await asyncio.Event().wait()
        return self.code, self.output


EXEC = ProbeSpec(kind="exec", command=("sh", "-c", "test -f /tmp/healthy"), timeout=2)


async def test_exec_probe_results() -> None:
    executor = FakeExec(0, "fine\n")
    assert await run_probe(EXEC, pod_ip="", executor=executor) == ProbeResult(True, "fine\n")
    assert executor.calls == [(("sh", "-c", "test -f /tmp/healthy"), 2.0)]
    assert await run_probe(EXEC, pod_ip="", executor=FakeExec(1, "missing")) == ProbeResult(False, "missing")
    big = await run_probe(EXEC, pod_ip="", executor=FakeExec(0, "y" * 50000))
    assert len(big.output) == 10 * 1024


async def test_exec_probe_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    timed_out = ProbeResult(False, 'command "sh -c test -f /tmp/healthy" timed out')
    assert await run_probe(EXEC, pod_ip="", executor=FakeExec(raise_timeout=True)) == timed_out
    monkeypatch.setattr(probes, "EXEC_GRACE", 0.0)
    fast = replace(EXEC, timeout=0.05)
    assert (await run_probe(fast, pod_ip="", executor=FakeExec(hang=True))).output == timed_out.output


# --- the worker ---------------------------------------------------------------------------------------


class Script:
    """A probe that returns scripted results, then cancels the worker (as the agent would)."""

    def __init__(self, *results: bool | Exception) -> None:
        self.results = list(results)

    async def __call__(self) -> ProbeResult:
        if not self.results:
            raise asyncio.CancelledError
        item = self.results.pop(0)
        if isinstance(item, Exception):
            raise item
        return ProbeResult(item, "" if item else "boom")


@dataclass
class Recorder:
    sleeps: list[float] = field(default_factory=list)
    changes: list[tuple[bool, str]] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_change(self, ok: bool, output: str) -> None:
        self.changes.append((ok, output))


SPEC = ProbeSpec(
    kind="tcpSocket", port=80, initial_delay=5, period=2, success_threshold=2, failure_threshold=3
)


async def _drive(
    kind: ProbeKind, spec: ProbeSpec, script: Script, **kw: Any
) -> tuple[ProbeWorker, Recorder, bool]:
    rec = Recorder()
    worker = ProbeWorker(spec, kind, script, rec.on_change, sleep=rec.sleep, **kw)
    finished = True
    try:
        await worker.run()
    except asyncio.CancelledError:
        finished = False
    return worker, rec, finished


async def test_readiness_thresholds() -> None:
    script = Script(False, True, True, False, False, False, True)
    worker, rec, finished = await _drive("readiness", SPEC, script)
    assert rec.changes == [(True, ""), (False, "boom")]
    assert rec.sleeps == [5, 2, 2, 2, 2, 2, 2, 2]  # initial delay, then a period after every run
    assert not finished and worker.result is False
    assert worker.failure_message == ""  # the last run succeeded
    assert worker.probes == 7


async def test_readiness_starts_not_ready_and_reports_only_changes() -> None:
    worker, rec, _ = await _drive(
        "readiness", replace(SPEC, success_threshold=1), Script(False, False, False, False)
    )
    assert rec.changes == []
    assert worker.result is False
    assert worker.failure_message == "Readiness probe failed: boom"


async def test_liveness_failure_stops_the_worker() -> None:
    script = Script(False, False, True, False, False, False, True)
    worker, rec, finished = await _drive("liveness", replace(SPEC, success_threshold=1), script)
    assert rec.changes == [(False, "boom")]
    assert finished  # the agent restarts the container and starts a new worker
    assert worker.result is False
    assert script.results == [True]


async def test_startup_success_and_failure_end_the_worker() -> None:
    worker, rec, finished = await _drive(
        "startup", replace(SPEC, success_threshold=1), Script(False, True, True)
    )
    assert (rec.changes, finished, worker.result) == ([(True, "")], True, True)
    worker, rec, finished = await _drive(
        "startup", replace(SPEC, success_threshold=1), Script(False, False, False)
    )
    assert (rec.changes, finished, worker.result) == ([(False, "boom")], True, False)


async def test_errors_do_not_count_and_elapsed_shortens_the_initial_delay() -> None:
    seen: list[ProbeResult] = []
    script = Script(False, RuntimeError("exec failed"), False, OSError("x"), False)
    worker, rec, _ = await _drive(
        "liveness", replace(SPEC, success_threshold=1), script, elapsed=3, on_result=seen.append
    )
    assert rec.changes == [(False, "boom")]
    assert rec.sleeps[0] == 2
    assert len(seen) == 3 and worker.probes == 3
    worker, rec, _ = await _drive("liveness", SPEC, Script(True), elapsed=30)
    assert rec.sleeps == [2]  # no initial delay left


def test_failure_message_and_bad_kind() -> None:
    assert probe_failed_message("liveness", "HTTP probe failed with statuscode: 500") == (
        "Liveness probe failed: HTTP probe failed with statuscode: 500"
    )
    with pytest.raises(ValueError, match="readiness, liveness or startup"):
        ProbeWorker(SPEC, "sometimes", Script(), lambda ok, out: None)  # type: ignore[arg-type]
