"""Container probes: parsing, one probe run, and the worker state machine (kubelet ``prober/``).

    container.livenessProbe ──parse_probe──► ProbeSpec ──run_probe──► ProbeResult(success, output)
                                                  ProbeWorker: initial delay, every period, thresholds
                                                  ──on_change(result, output)──► the agent

One probe run (``run_probe``), as the kubelet's probers:

* exec: the command's exit code 0 is success; output (stdout+stderr) up to 10 KiB; past
  ``timeoutSeconds`` it fails with ``command "…" timed out``.
* httpGet: ``GET`` to ``host`` (default: the pod IP) with ``User-Agent: kube-probe/1.33``,
  ``Accept: */*``; 200 ≤ status < 400 is success; redirects to the same host are followed (at most
  10), a redirect elsewhere is a success with a warning; HTTPS does not verify certificates; the
  body (up to 10 KiB) is the output; other statuses fail with ``HTTP probe failed with statuscode: N``;
  errors read like Go's client (``Get "http://…": dial tcp …: connect: connection refused``).
* tcpSocket: a connection that opens is success.
* grpc: ``grpc.health.v1.Health/Check`` (with ``service``) over cleartext HTTP/2; ``SERVING`` is
  success (output ``service healthy``), else ``service unhealthy (responded with "NOT_SERVING")``.

The worker (``ProbeWorker``) starts from the kubelet's initial value (readiness: not ready,
liveness: alive, startup: unknown), reports a new result only after ``successThreshold``
successes or ``failureThreshold`` failures in a row, and calls ``on_change`` when the result
changes. After a liveness or startup failure it stops (the agent restarts the container and
starts a new worker); after a startup success it stops too (the agent starts readiness and
liveness). Errors raised by a probe run are logged and do not count, as in the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kubelite.agent.backoff import go_duration
from kubelite.agent.envvars import expand

__all__ = [
    "Connect",
    "ProbeExecutor",
    "ProbeKind",
    "ProbeResult",
    "ProbeSpec",
    "ProbeWorker",
    "parse_probe",
    "probe_failed_message",
    "resolve_port",
    "run_probe",
]

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
ProbeKind = Literal["readiness", "liveness", "startup"]
Handler = Literal["exec", "httpGet", "tcpSocket", "grpc"]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[str, int, float], Awaitable[Streams]]

MAX_OUTPUT = 10 * 1024  # the kubelet keeps at most 10 KiB of a probe's output / body
MAX_REDIRECTS = 10
USER_AGENT = "kube-probe/1.33"
EXEC_GRACE = 1.0  # extra seconds the executor gets to report its own timeout
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A parsed probe: the handler and the timing (API defaults 0, 10, 1, 1, 3)."""

    kind: Handler
    command: tuple[str, ...] = ()
    host: str = ""
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    http_headers: tuple[tuple[str, str], ...] = ()
    service: str = ""  # grpc
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period: int | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    success: bool
    output: str = ""
    warning: bool = False  # a success the kubelet reports as "probe warning" (redirect elsewhere)


class ProbeExecutor(Protocol):
    """Runs a command inside the container; raises TimeoutError after ``timeout`` seconds."""

    async def exec(self, command: Sequence[str], timeout: float) -> tuple[int, str]: ...  # noqa: ASYNC109


def probe_failed_message(kind: str, output: str) -> str:
    """The event text the kubelet records: ``Liveness probe failed: <output>``."""
    return f"{kind.capitalize()} probe failed: {output}"


# --- parsing ---------------------------------------------------------------------------------------


def resolve_port(port: object, container: Obj) -> int:
    """A probe's port: a number, or the name of a port of the container (kubelet ResolveContainerPort)."""
    if isinstance(port, str) and not port.isdigit():
        for p in container.get("ports") or []:
            if p.get("name") == port:
                number = int(p.get("containerPort") or 0)
                break
        else:
            raise ValueError(
                f"probe port {port!r} is not the name of a port of container {container.get('name', '')!r}; "
                "name it in ports[] or give the number"
            )
    else:
        try:
            number = int(str(port))
        except ValueError:
            raise ValueError(f"probe port {port!r} is neither a number nor a port name") from None
    if not 0 < number < 65536:
        raise ValueError(f"probe port {number} is not a valid port number (1-65535)")
    return number


def _seconds(probe: Obj, field: str, default: int, minimum: int) -> int:
    raw = probe.get(field)
    if raw in (None, 0):
        return default  # the API defaults a zero to the default
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < minimum:
        raise ValueError(f"probe {field} must be an integer of at least {minimum}, not {raw!r}")
    return raw


def parse_probe(probe: Obj, container: Obj, *, kind: ProbeKind | None = None) -> ProbeSpec:
    """A ``ProbeSpec`` from a probe of ``container``; ValueError with a sentence for a bad probe.

    An exec command's ``$(VAR)`` references expand against the container's literal ``env``
    values only (the kubelet's ExpandContainerCommandOnlyStatic). With ``kind`` given, liveness and
    startup probes must have ``successThreshold`` 1, as the API requires.
    """
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if len(handlers) != 1:
        found = ", ".join(handlers) or "none"
        raise ValueError(f"a probe needs exactly one of exec, httpGet, tcpSocket or grpc (found: {found})")
    handler: Handler = handlers[0]  # type: ignore[assignment]
    body = probe[handler] or {}
    timing: dict[str, Any] = {
        "initial_delay": float(_seconds(probe, "initialDelaySeconds", 0, 0)),
        "period": float(_seconds(probe, "periodSeconds", 10, 1)),
        "timeout": float(_seconds(probe, "timeoutSeconds", 1, 1)),
        "success_threshold": _seconds(probe, "successThreshold", 1, 1),
        "failure_threshold": _seconds(probe, "failureThreshold", 3, 1),
        "termination_grace_period": probe.get("terminationGracePeriodSeconds"),
    }
    if kind in ("liveness", "startup") and timing["success_threshold"] != 1:
        raise ValueError(f"a {kind} probe must have successThreshold 1, not {timing['success_threshold']}")
    if handler == "exec":
        command = [str(c) for c in body.get("command") or []]
        if not command:
            raise ValueError("an exec probe needs a command")
        static = {str(e.get("name")): str(e.get("value") or "") for e in container.get("env") or []}
        return ProbeSpec(kind="exec", command=tuple(expand(c, static) for c in command), **timing)
    if "port" not in body:
        raise ValueError(f"a {handler} probe needs a port")
    port = (
        resolve_port(body["port"], container)
        if handler != "grpc"
        else resolve_port(int(body["port"]), container)
    )
    if handler == "tcpSocket":
        return ProbeSpec(kind="tcpSocket", host=str(body.get("host") or ""), port=port, **timing)
    if handler == "grpc":
        return ProbeSpec(kind="grpc", port=port, service=str(body.get("service") or ""), **timing)
    scheme = str(body.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise ValueError(f"httpGet scheme must be HTTP or HTTPS, not {scheme!r}")
    headers = tuple(
        (str(h.get("name") or ""), str(h.get("value") or "")) for h in body.get("httpHeaders") or []
    )
    return ProbeSpec(
        kind="httpGet",
        host=str(body.get("host") or ""),
        port=port,
        path=str(body.get("path") or "/"),
        scheme=scheme,
        http_headers=headers,
        **timing,
    )


# --- one run ----------------------------------------------------------------------------------------


async def _open(host: str, port: int, timeout: float) -> Streams:  # noqa: ASYNC109
    return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_error(host: str, port: int, exc: BaseException) -> str:
    where = f"dial tcp {_host_port(host, port)}"
    if isinstance(exc, TimeoutError):
        return f"{where}: i/o timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        text = os.strerror(exc.errno)
        return f"{where}: connect: {text[:1].lower()}{text[1:]}"
    return f"{where}: {exc}"


async def _exec_probe(spec: ProbeSpec, executor: ProbeExecutor) -> ProbeResult:
    try:
        code, output = await asyncio.wait_for(
            executor.exec(spec.command, spec.timeout), spec.timeout + EXEC_GRACE
        )
    except TimeoutError:
        return ProbeResult(False, f'command "{" ".join(spec.command)}" timed out')
    return ProbeResult(code == 0, output[:MAX_OUTPUT])


async def _tcp_probe(spec: ProbeSpec, host: str, connect: Connect) -> ProbeResult:
    try:
        _reader, writer = await asyncio.wait_for(connect(host, spec.port, spec.timeout), spec.timeout)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, _dial_error(host, spec.port, exc))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, "")


@dataclass(frozen=True, slots=True)
class _Url:
    scheme: str  # "http" or "https"
    host: str
    port: int
    target: str  # path and query, starting with "/"

    def __str__(self) -> str:
        return f"{self.scheme}://{_host_port(self.host, self.port)}{self.target}"


def _target(path: str) -> str:
    path, sep, query = path.partition("?")
    quoted = urllib.parse.quote(path, safe="/%:@!$&'()*+,;=-._~")
    if not quoted.startswith("/"):
        quoted = "/" + quoted
    return quoted + sep + query


def _follow(url: _Url, location: str) -> _Url | None:
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(str(url), location))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Url(parts.scheme, parts.hostname, port, target)


def _canonical(name: str) -> str:
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def _request(url: _Url, headers: Sequence[tuple[str, str]]) -> bytes:
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(_canonical(name), []).append(value)
    host = fields.pop("Host", [_host_port(url.host, url.port)])[0]
    fields.setdefault("User-Agent", [USER_AGENT])
    if "Accept" not in fields:
        fields["Accept"] = ["*/*"]
    elif not fields["Accept"][0]:
        del fields["Accept"]  # an empty Accept removes the header
    fields["Connection"] = ["close"]
    lines = [f"GET {url.target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, values in fields.items() for value in values]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


class _ResponseError(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    while True:
        line = await reader.readline()
        if not line:
            raise _ResponseError("EOF")
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise _ResponseError(
                f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {line[:40]!r}"
            )
        code = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(200):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _sep, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= code < 200 and code != 101:
            continue  # an informational response: the real one follows
        return code, headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    body = bytearray()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while len(body) < MAX_OUTPUT:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
    elif "content-length" in headers:
        length = int(headers["content-length"] or 0)
        body += await reader.readexactly(min(length, MAX_OUTPUT))
    else:
        while len(body) < MAX_OUTPUT and (chunk := await reader.read(MAX_OUTPUT - len(body))):
            body += chunk
    return bytes(body[:MAX_OUTPUT])


def _insecure_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # probes do not verify certificates
    return ctx


async def _get(url: _Url, spec: ProbeSpec, connect: Connect) -> tuple[int, dict[str, str], bytes]:
    try:
        reader, writer = await connect(url.host, url.port, spec.timeout)
    except TimeoutError:
        raise  # the probe's deadline, reported by the caller
    except OSError as exc:
        raise _ResponseError(_dial_error(url.host, url.port, exc)) from None
    try:
        if url.scheme == "https":
            await writer.start_tls(_insecure_tls(), server_hostname=url.host)  # no SNI for an IP
        writer.write(_request(url, spec.http_headers))
        await writer.drain()
        code, headers = await _read_head(reader)
        body = await _read_body(reader, headers)
        return code, headers, body
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _http_probe(spec: ProbeSpec, host: str, connect: Connect) -> ProbeResult:
    url = _Url(spec.scheme.lower(), host, spec.port, _target(spec.path))
    try:
        async with asyncio.timeout(spec.timeout):
            requests = 0
            while True:
                requests += 1
                code, headers, body = await _get(url, spec, connect)
                nxt = _follow(url, headers.get("location", "")) if code in _REDIRECT_CODES else None
                if nxt is None or nxt.host != host:
                    break
                if requests >= MAX_REDIRECTS:
                    return ProbeResult(False, f'Get "{nxt}": stopped after {MAX_REDIRECTS} redirects')
                url = nxt
    except TimeoutError:
        return ProbeResult(
            False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        )
    except (_ResponseError, asyncio.IncompleteReadError, ValueError, OSError) as exc:
        reason = "unexpected EOF" if isinstance(exc, asyncio.IncompleteReadError) else str(exc)
        return ProbeResult(False, f'Get "{url}": {reason}')
    text = body.decode("utf-8", "replace")
    if 200 <= code < 400:
        if code >= 300:
            return ProbeResult(True, f"Probe terminated redirects, Response body: {text}", warning=True)
        return ProbeResult(True, text)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


# --- gRPC: grpc.health.v1.Health/Check over cleartext HTTP/2 (prior knowledge) -------------------------

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0, 1, 3, 4, 6, 7
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 1, 1, 4, 8
_SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _varint(value: int) -> bytes:
    """A protobuf varint (also the tail of an HPACK integer)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes((*out, value))


def _header(name: str, value: str) -> bytes:
    """HPACK "literal header field without indexing, new name", no Huffman coding."""
    out = b"\x00"
    for text in (name.encode(), value.encode()):  # each a 7-bit-prefix length, then the octets
        out += (bytes((len(text),)) if len(text) < 0x7F else b"\x7f" + _varint(len(text) - 0x7F)) + text
    return out


def _health_status(message: bytes) -> int:
    """``status`` (field 1, a varint) of a HealthCheckResponse; 0 (UNKNOWN) when absent."""
    value = shift = 0
    for byte in message[1:] if message[:1] == b"\x08" else b"":
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value


async def _grpc_check(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str, service: str
) -> int:
    fields = [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check")]
    fields += [(":authority", authority), ("content-type", "application/grpc"), ("te", "trailers")]
    fields += [("user-agent", USER_AGENT)]
    name = service.encode()
    request = b"\x0a" + _varint(len(name)) + name if name else b""
    writer.write(
        _H2_PREFACE
        + _frame(_SETTINGS, 0, 0, b"")
        + _frame(_HEADERS, _END_HEADERS, 1, b"".join(_header(k, v) for k, v in fields))
        + _frame(_DATA, _END_STREAM, 1, b"\x00" + len(request).to_bytes(4, "big") + request)
    )
    await writer.drain()
    data = bytearray()
    while True:
        head = await reader.readexactly(9)
        kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(int.from_bytes(head[:3], "big"))
        if kind in (_SETTINGS, _PING) and not flags & _ACK:
            writer.write(_frame(kind, _ACK, 0, payload if kind == _PING else b""))
        elif kind == _GOAWAY:
            raise _ResponseError("the server closed the connection (GOAWAY)")
        elif stream == 1 and kind == _RST_STREAM:
            raise _ResponseError("the server reset the stream")
        elif stream == 1 and kind == _DATA:
            data += payload[1 : len(payload) - payload[0]] if flags & _PADDED else payload
        if stream == 1 and kind in (_DATA, _HEADERS) and flags & _END_STREAM:
            break
    if len(data) < 5:
        raise _ResponseError(
            "the call ended without a health status: does the server implement grpc.health.v1.Health?"
        )
    return _health_status(bytes(data[5 : 5 + int.from_bytes(data[1:5], "big")]))


async def _grpc_probe(spec: ProbeSpec, host: str, connect: Connect) -> ProbeResult:
    addr = _host_port(host, spec.port)
    try:
        async with asyncio.timeout(spec.timeout):
            try:
                reader, writer = await connect(host, spec.port, spec.timeout)
            except TimeoutError:
                raise
            except OSError as exc:
                reason = _dial_error(host, spec.port, exc)
                return ProbeResult(False, f'error: failed to connect service at "{addr}": {reason}')
            try:
                status = await _grpc_check(reader, writer, addr, spec.service)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        return ProbeResult(False, f"timeout: health rpc did not complete within {go_duration(spec.timeout)}")
    except (_ResponseError, asyncio.IncompleteReadError, OSError) as exc:
        reason = "the connection closed" if isinstance(exc, asyncio.IncompleteReadError) else str(exc)
        return ProbeResult(False, f"error: health rpc probe failed: {reason}")
    if status != 1:
        return ProbeResult(
            False, f'service unhealthy (responded with "{_SERVING_STATUS.get(status, status)}")'
        )
    return ProbeResult(True, "service healthy")


async def run_probe(
    spec: ProbeSpec, *, pod_ip: str, executor: ProbeExecutor, connect: Connect | None = None
) -> ProbeResult:
    """Run the probe once against the pod (``pod_ip``) or inside the container (``executor``).

    ``connect(host, port, timeout)`` opens a TCP connection (default: asyncio streams from the
    agent's network namespace, where pod IPs are routable); tests inject their own.
    """
    dial = connect or _open
    if spec.kind == "exec":
        return await _exec_probe(spec, executor)
    host = spec.host or pod_ip
    if spec.kind == "tcpSocket":
        return await _tcp_probe(spec, host, dial)
    if spec.kind == "httpGet":
        return await _http_probe(spec, host, dial)
    return await _grpc_probe(spec, host, dial)


# --- the worker --------------------------------------------------------------------------------------

_INITIAL: dict[str, bool | None] = {"readiness": False, "liveness": True, "startup": None}


class ProbeWorker:
    """Probes one container for one purpose until cancelled (or until its job is done, see above).

    ``run`` performs one probe; ``on_change(result, output)`` is called when the reported result
    changes (``output`` is the probe's output, "" on success); ``on_result`` (optional) sees every
    single run, e.g. to record an ``Unhealthy`` event per failure. ``elapsed`` is how long the
    container has already been running (initial delays count from the container's start).
    """

    def __init__(
        self,
        spec: ProbeSpec,
        kind: ProbeKind,
        run: Callable[[], Awaitable[ProbeResult]],
        on_change: Callable[[bool, str], None],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_result: Callable[[ProbeResult], None] | None = None,
        elapsed: float = 0.0,
    ) -> None:
        if kind not in _INITIAL:
            raise ValueError(f"probe kind must be readiness, liveness or startup, not {kind!r}")
        self.spec = spec
        self.kind: ProbeKind = kind
        self._run = run
        self._on_change = on_change
        self._on_result = on_result
        self._sleep = sleep
        self._elapsed = elapsed
        self._result: bool | None = _INITIAL[kind]
        self._last: bool | None = None
        self._streak = 0
        self.last_output = ""
        self.probes = 0  # runs that returned a result

    @property
    def result(self) -> bool:
        """The reported result: ready / alive / started."""
        return self._result is True

    @property
    def failure_message(self) -> str:
        """``<Kind> probe failed: <output>`` for the last failed run, else ""."""
        return probe_failed_message(self.kind, self.last_output) if self._last is False else ""

    async def run(self) -> None:
        delay = self.spec.initial_delay - self._elapsed
        if delay > 0:
            await self._sleep(delay)
        while await self._probe_once():
            await self._sleep(self.spec.period)

    async def _probe_once(self) -> bool:
        """One run and its bookkeeping; False when the worker is finished."""
        try:
            res = await self._run()
        except Exception as exc:  # a prober error: the kubelet throws the result away
            log.warning("%s probe errored: %s", self.kind, exc)
            return True
        self.probes += 1
        self.last_output = res.output
        if self._on_result is not None:
            self._on_result(res)
        ok = res.success
        if ok == self._last:
            self._streak += 1
        else:
            self._last, self._streak = ok, 1
        threshold = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self._streak < threshold:
            return True  # below the threshold: the reported result stays
        changed = self._result is not ok
        self._result = ok
        if changed:
            self._on_change(ok, "" if ok else res.output)
        if self.kind == "startup" and ok:
            return False  # started: readiness and liveness take over
        return ok or self.kind == "readiness"
