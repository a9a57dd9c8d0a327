"""``agnhost netexec``: the HTTP + UDP test server most Kubernetes network e2e tests talk to.

Behaviour follows kubernetes/test/images/agnhost/netexec (read for facts, written afresh):

HTTP (``--http-port``, default 8080; HTTPS with ``--tls-cert-file``/``--tls-private-key-file``):
``/`` ``NOW: <time>``; ``/echo?msg=&code=``; ``/clientip`` ``ip:port`` of the peer; ``/header?key=``
(one header, or all as JSON); ``/hostname`` and ``/hostName``; ``/healthz`` (200 once the UDP server
is up, 412 before); ``/readyz`` (200 ``ok``, 503 ``shutting down`` after SIGTERM);
``/redirect?location=&code=``; ``/shell?cmd=`` (``/bin/sh -c``, JSON ``{"output", "error"}``);
``/dial?request=&host=&port=&protocol=&tries=`` (JSON ``{"responses": [...], "errors": [...]}``);
``/exit?code=&timeout=&wait=``; ``/shutdown``.
Any other path answers like ``/`` (Go's ``ServeMux`` falls back to the ``/`` pattern).
``--http-override=/path?query`` serves every request as if it were that one.

UDP (``--udp-port``, default 8081, ``-1`` = off; ``--udp-listen-addresses``): datagrams ``hostname``,
``echo <text>`` and ``clientip``; like agnhost the text is trimmed and lower-cased first, so the echo
comes back in lower case.

Differences, all deliberate: SCTP (``--sctp-port``) is accepted and ignored with a log line; ``/upload``
answers 501; with ``--udp-port=-1`` ``/healthz`` is 200 (agnhost stays 412 forever); ``/dial`` lists
``responses`` whenever any try succeeded (agnhost only when the last one did); SIGINT exits 0.
On SIGTERM the process keeps serving for ``--delay-shutdown`` seconds with ``/readyz`` at 503, then
exits 0, as agnhost does.
"""

from __future__ import annotations

import os
import time

from kubelite.images.agnhost_net import (
    REASONS,
    HttpError,
    HttpServer,
    Request,
    Response,
    SignalWaiter,
    format_addr,
    go_json,
    hostname,
    http_get,
    listen_tcp,
    listen_udp,
    log,
    start_thread,
)
from kubelite.images.goflags import Flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = ["FLAGS", "Netexec", "go_time_now", "parse_go_duration", "run"]

FLAGS: dict[str, bool | int | str] = {
    "http-port": 8080,
    "udp-port": 8081,
    "sctp-port": -1,
    "tls-cert-file": "",
    "tls-private-key-file": "",
    "http-override": "",
    "udp-listen-addresses": "",
    "delay-shutdown": 0,
}
SHELL = "/bin/sh"
DIAL_TIMEOUT = 5.0
_STARTED = time.monotonic()
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration (``1.5s``, ``300ms``, ``1h2m``, ``0``); raises ValueError."""
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0.0
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, rest = rest[:i], rest[i:]
        j = 0
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        unit, rest = rest[:j], rest[j:]
        if not number or number == "." or unit not in _DURATION_UNITS:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(number) * _DURATION_UNITS[unit]
    return sign * total


def go_time_now() -> str:
    """``time.Now()`` as Go's ``%v`` prints it: ``2006-01-02 15:04:05.999999999 -0700 MST m=+0.5``."""
    ns = time.time_ns()
    local = time.localtime(ns // 1_000_000_000)
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    offset = local.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local) + (f".{fraction}" if fraction else "")
    return f"{stamp} {sign}{hours:02d}{minutes:02d} {local.tm_zone} m=+{time.monotonic() - _STARTED:.9f}"


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_header(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``x-forwarded-for`` -> ``X-Forwarded-For``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _status_code(code_text: str, default: int) -> int | Response:
    """The ``code`` argument of /echo and /redirect (``default`` when empty), or agnhost's answer
    to one that is not an integer."""
    if not code_text:
        return default
    try:
        return int(code_text)
    except ValueError:
        return Response(200, f"argument 'code' must be an integer or empty, got {_go_quote(code_text)}\n")


def _http_error(status: int, message: str) -> Response:
    """Go's ``http.Error``: the message and a newline, as plain text."""
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
    return Response(status, message + "\n", headers)


def _exit_now(code: int) -> None:
    os._exit(code)


class Netexec:
    """The HTTP handler and UDP server of one netexec process."""

    def __init__(self, *, override: str = "", shell: str = SHELL) -> None:
        self.override = override
        self.shell = shell
        self.ready = False  # the UDP server is up (or disabled)
        self.terminating = False  # SIGTERM seen: /readyz says 503
        self.server: HttpServer | None = None
        self.exit: Callable[[int], None] = _exit_now
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/clientip": self.clientip,
            "/dial": self.dial,
            "/echo": self.echo,
            "/exit": self.exit_handler,
            "/header": self.header,
            "/healthz": self.healthz,
            "/hostName": self.hostname,
            "/hostname": self.hostname,
            "/readyz": self.readyz,
            "/redirect": self.redirect,
            "/shell": self.shell_handler,
            "/shutdown": self.shutdown,
            "/upload": self.upload,
        }

    # ------------------------------------------------------------ HTTP

    def handle(self, request: Request) -> Response:
        if self.override:
            request = Request("GET", self.override, headers=request.headers, remote=request.remote)
        return self.routes.get(request.path, self.root)(request)

    def root(self, request: Request) -> Response:
        log("GET /")
        return Response(200, f"NOW: {go_time_now()}")

    def echo(self, request: Request) -> Response:
        msg, code_text = request.form_value("msg"), request.form_value("code")
        log(f"GET /echo?msg={msg}&code={code_text}")
        status = _status_code(code_text, 200)
        if isinstance(status, Response):
            return status
        if not 100 <= status <= 999:
            return _http_error(400, f"invalid status code {status}")
        return Response(status, msg)

    def clientip(self, request: Request) -> Response:
        log("GET /clientip")
        return Response(200, request.remote)

    def header(self, request: Request) -> Response:
        key = request.form_value("key")
        if key:
            log(f"GET /header?key={key}")
            return Response(200, request.header(key))
        log("GET /header")
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            canonical = _canonical_header(name)
            if canonical != "Host":  # Go moves Host out of the header map
                headers.setdefault(canonical, []).append(value)
        return Response(200, go_json(headers))

    def hostname(self, request: Request) -> Response:
        log(f"GET {request.path}")
        return Response(200, hostname())

    def healthz(self, request: Request) -> Response:
        log("GET /healthz")
        return Response(200 if self.ready else 412)

    def readyz(self, request: Request) -> Response:
        log("GET /readyz")
        if self.terminating:
            return Response(503, "shutting down")
        if self.ready:
            return Response(200, "ok")
        return Response(412)

    def redirect(self, request: Request) -> Response:
        location, code_text = request.form_value("location"), request.form_value("code")
        log(f"{request.method} /redirect?msg={location}&code={code_text}")
        status = _status_code(code_text, 302)
        if isinstance(status, Response):
            return status
        headers = [("Location", location)]
        if request.method not in ("GET", "HEAD"):
            return Response(status, b"", headers)
        escaped = (
            location.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
        )
        body = f'<a href="{escaped}">{_reason(status)}</a>.\n\n'
        return Response(status, body, [*headers, ("Content-Type", "text/html; charset=utf-8")])

    def shell_handler(self, request: Request) -> Response:
        command = request.form_value("shellCommand") or request.form_value("cmd")
        log(f"GET /shell?cmd={command}")
        import subprocess

        output: dict[str, str] = {}
        try:
            done = subprocess.run(
                [self.shell, "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except OSError as exc:
            output["error"] = f"fork/exec {self.shell}: {(exc.strerror or str(exc)).lower()}"
        else:
            if done.stdout:
                output["output"] = done.stdout.decode("utf-8", "replace")
            if done.returncode > 0:
                output["error"] = f"exit status {done.returncode}"
            elif done.returncode < 0:
                output["error"] = f"signal: {_signal_name(-done.returncode)}"
        log(f"Output: {output}")
        return Response(200, go_json(output))

    def upload(self, request: Request) -> Response:
        log(f"{request.method} /upload")
        error = "kubelite's agnhost does not implement /upload; use /shell to write files instead."
        return Response(501, go_json({"error": error}))

    def shutdown(self, request: Request) -> Response:
        log("GET /shutdown")
        self.exit(0)
        return Response(200)  # reached only when self.exit is replaced (tests)

    def exit_handler(self, request: Request) -> Response:
        wait_text, timeout_text, code_text = (request.form_value(k) for k in ("wait", "timeout", "code"))
        log(f"GET /exit?code={code_text}&timeout={timeout_text}&wait={wait_text}")
        try:
            timeout = parse_go_duration(timeout_text) if timeout_text else 0.0
        except ValueError:
            quoted = _go_quote(timeout_text)
            return Response(
                200, f"argument 'timeout' must be a valid golang duration or empty, got {quoted}\n"
            )
        try:
            wait = parse_go_duration(wait_text) if wait_text else 0.0
        except ValueError:
            quoted = _go_quote(wait_text)
            return Response(200, f"argument 'wait' must be a valid golang duration or empty, got {quoted}\n")
        try:
            code = int(code_text) if code_text else 0
        except ValueError:
            return Response(
                200, f"argument 'code' must be an integer [0-127] or empty, got {_go_quote(code_text)}\n"
            )
        log(
            f"Will begin shutdown in {wait_text or '0s'}, allowing {timeout_text or '0s'} for connections "
            f"to close, then will exit with {code}"
        )
        if wait > 0:
            time.sleep(wait)
        if timeout <= 0:
            self.exit(code)  # like agnhost: no reply at all
            return Response(200)

        def graceful() -> None:
            if self.server is not None:
                self.server.stop(timeout)
            log("Graceful shutdown completed with: <nil>")
            self.exit(code)

        return Response(200, after=graceful)

    def dial(self, request: Request) -> Response:
        query = dict(reversed(request.query))  # first value wins, as url.Values.Get
        host, port = query.get("host", ""), query.get("port", "")
        what, protocol = query.get("request", ""), query.get("protocol", "")
        tries_text = query.get("tries", "")
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={what}&tries={tries_text}")
        tries = 1
        if tries_text:
            try:
                tries = int(tries_text)
            except ValueError:
                return _http_error(
                    400,
                    f"tries parameter is invalid. "
                    f"strconv.Atoi: parsing {_go_quote(tries_text)}: invalid syntax",
                )
        if not what:
            return _http_error(400, "request parameter not specified. <nil>")
        protocol = protocol.lower()
        if protocol not in ("", "http", "udp"):
            if protocol == "sctp":
                return _http_error(400, "unsupported protocol. sctp (kubelite's agnhost has no SCTP)")
            return _http_error(400, f"unsupported protocol. {protocol}")
        try:
            address = _resolve(host, port, udp=protocol == "udp")
        except (OSError, ValueError) as exc:
            return _http_error(400, f"host and/or port param are invalid. {exc}")
        dialer = _dial_udp if protocol == "udp" else _dial_http
        responses: list[str] = []
        errors: list[str] = []
        for _ in range(tries):
            try:
                responses.append(dialer(what, address))
            except _DialError as exc:
                errors.append(str(exc))
        output: dict[str, list[str]] = {}
        if responses:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return Response(200, go_json(output))

    # ------------------------------------------------------------ UDP

    def serve_udp(self, sock: socket.socket) -> None:
        """Answer ``hostname``, ``echo <text>`` and ``clientip`` datagrams until the socket closes."""
        while True:
            try:
                data, peer = sock.recvfrom(2048)
            except OSError as exc:
                if sock.fileno() < 0:
                    return
                log(f"UDP read failed: {exc}")
                time.sleep(0.01)
                continue
            text = data.decode("utf-8", "replace").strip().lower()
            client = format_addr(peer)
            if text == "hostname":
                log("Sending udp hostName response")
                reply = hostname()
            elif text.startswith("echo "):
                reply = text.split(" ", 1)[1]
                log(f"Echoing {reply} to UDP client {client}")
            elif text == "clientip":
                log(f"Sending clientip back to UDP client {client}")
                reply = client
            else:
                if text:
                    log(f"Unknown UDP command received from {client}: {text}")
                continue
            try:
                sock.sendto(reply.encode("utf-8"), peer)
            except OSError as exc:
                log(f"failed to write to UDP client {client}: {exc}")


class _DialError(Exception):
    pass


def _reason(status: int) -> str:
    return REASONS.get(status, "")


def _signal_name(signum: int) -> str:
    import signal

    try:
        name = signal.strsignal(signum)
    except ValueError:
        name = None
    return (name or f"signal {signum}").lower()


def _resolve(host: str, port: str, *, udp: bool) -> tuple[str, int]:
    """Resolve once, as Go's ``ResolveTCPAddr``/``ResolveUDPAddr`` do, preferring IPv4."""
    import socket

    if not port:
        raise ValueError(f"address {host}:: missing port in address")
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind)
    except socket.gaierror as exc:
        raise ValueError(f"lookup {host}: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0]), int(infos[0][4][1])


def _dial_http(what: str, address: tuple[str, int]) -> str:
    url = f"http://{format_addr(address)}/{what}"
    try:
        _, body = http_get(address[0], address[1], "/" + what, DIAL_TIMEOUT)
    except TimeoutError:
        raise _DialError(
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        ) from None
    except OSError as exc:
        detail = (exc.strerror or str(exc)).lower()
        raise _DialError(f'Get "{url}": dial tcp {format_addr(address)}: connect: {detail}') from None
    except HttpError as exc:
        raise _DialError(f'Get "{url}": {exc}') from None
    return body.decode("utf-8", "replace")


def _dial_udp(what: str, address: tuple[str, int]) -> str:
    import socket

    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.connect(address)
    except OSError as exc:
        raise _DialError(f"udp dial failed. err:{exc}") from None
    with sock:
        local = format_addr(sock.getsockname())
        try:
            sock.sendall(what.encode("utf-8"))
        except OSError as exc:
            raise _DialError(f"udp connection write failed. err:{exc}") from None
        sock.settimeout(DIAL_TIMEOUT)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            detail = "i/o timeout"
        except OSError as exc:
            detail = "read: " + (exc.strerror or str(exc)).lower()
        else:
            if data:
                return data.decode("utf-8", "replace")
            detail = "empty reply"
    raise _DialError(
        f"reading from udp connection failed. err:'read udp {local}->{format_addr(address)}: {detail}'"
    )


def run(flags: Flags) -> int:
    """The ``netexec`` subcommand: start the servers, serve until SIGTERM/SIGINT, return the exit code."""
    waiter = SignalWaiter()
    netexec = Netexec(override=flags.get_str("http-override"))
    tls = None
    cert, key = flags.get_str("tls-cert-file"), flags.get_str("tls-private-key-file")
    if cert:
        import ssl

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            log(f"Cannot load the TLS certificate {cert!r} / key {key!r}: {exc}")
            return 1
    udp_port = flags.get_int("udp-port")
    if udp_port != -1:
        addresses = [a.strip() for a in flags.get_str("udp-listen-addresses").split(",") if a.strip()] or [""]
        for address in sorted(set(addresses)):
            try:
                sock = listen_udp(udp_port, address)
            except OSError as exc:
                log(f"Error occurred: failed to create listener for UDP address {address}:{udp_port}:{exc}")
                return 1
            start_thread(netexec.serve_udp, sock)
            log(
                f"Started UDP server on port {address} {udp_port}"
                if address
                else f"Started UDP server on port {udp_port}"
            )
    netexec.ready = True
    sctp_port = flags.get_int("sctp-port")
    if sctp_port != -1:
        log(f"SCTP is not supported by kubelite's agnhost: --sctp-port={sctp_port} is ignored")
    http_port = flags.get_int("http-port")
    try:
        listener = listen_tcp(http_port)
    except OSError as exc:
        log(f"listen tcp :{http_port}: bind: {(exc.strerror or str(exc)).lower()}")
        return 1
    server = HttpServer(netexec.handle, tls)
    netexec.server = server
    server.serve(listener)
    log(f"Started HTTP server on port {http_port}")
    import signal

    if waiter.wait() == signal.SIGTERM:
        netexec.terminating = True
        delay = flags.get_int("delay-shutdown")
        if delay > 0:
            log(f"Sleeping {delay} seconds before terminating...")
            time.sleep(delay)
    return 0
