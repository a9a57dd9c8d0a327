"""The smaller agnhost servers: ``serve-hostname``, ``porter``, ``liveness`` and ``test-webserver``.

Each follows its namesake in kubernetes/test/images/agnhost (read for facts, written afresh):

- ``serve-hostname`` (``--port`` 9376): ``--http`` (default true) answers every request with the host
  name (``--close`` adds ``Connection: close``); ``--tcp`` writes the name and closes; ``--udp``
  answers each datagram with the name. Like agnhost, HTTP and TCP/UDP are exclusive
  (``--tcp --http=false``). On SIGTERM agnhost keeps serving for 60 s "awaiting pod deletion";
  this one exits 0 at once.
- ``porter``: for every environment variable ``SERVE_PORT_<n>`` (or ``SERVE_TCP_PORT_<n>``) an HTTP
  server on port n answers the variable's value; ``SERVE_UDP_PORT_<n>`` answers datagrams;
  ``SERVE_TLS_PORT_<n>`` serves HTTPS with ``CERT_FILE``/``KEY_FILE`` (default ``localhost.crt`` and
  ``localhost.key`` in the working directory, which kubelite does not ship); SCTP is not supported.
  ``--json-response`` answers ``{"Method": ..., "Body": ...}``.
- ``liveness``: port 8080; ``/healthz`` is 200 ``ok`` for the first 10 s, then 500; ``/started``
  gives the time since start; ``/redirect?loc=``. Other paths are 404.
- ``test-webserver`` (``--port`` 80): serves the file named by the URL path (host file system).
"""

from __future__ import annotations

import os
import time

from kubelite.images.agnhost_net import (
    HttpServer,
    Request,
    Response,
    SignalWaiter,
    format_addr,
    go_json,
    hostname,
    listen_tcp,
    listen_udp,
    log,
    start_thread,
)
from kubelite.images.goflags import Flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

__all__ = [
    "LIVENESS_FLAGS",
    "PORTER_FLAGS",
    "SERVE_HOSTNAME_FLAGS",
    "TEST_WEBSERVER_FLAGS",
    "Liveness",
    "porter_plan",
    "run_liveness",
    "run_porter",
    "run_serve_hostname",
    "run_test_webserver",
    "webserver_handler",
]

SERVE_HOSTNAME_FLAGS: dict[str, bool | int | str] = {
    "tcp": False,
    "udp": False,
    "http": True,
    "close": False,
    "port": 9376,
}
PORTER_FLAGS: dict[str, bool | int | str] = {"json-response": False}
LIVENESS_FLAGS: dict[str, bool | int | str] = {}
TEST_WEBSERVER_FLAGS: dict[str, bool | int | str] = {"port": 80}
LIVENESS_PORT = 8080
NOT_FOUND = "404 page not found\n"


def _bind_error(kind: str, port: int | str, exc: OSError) -> str:
    return f"listen {kind} :{port}: bind: {(exc.strerror or str(exc)).lower()}"


def _signal_name(signum: int) -> str:
    import signal

    return (signal.strsignal(signum) or str(signum)).lower()


# ---------------------------------------------------------------- serve-hostname


def _serve_tcp_hostname(listener: socket.socket, name: bytes) -> None:
    while True:
        try:
            conn, peer = listener.accept()
        except OSError:
            time.sleep(0.05)
            continue
        log(f"TCP request from {format_addr(peer)}")
        try:
            conn.sendall(name)
        except OSError:
            pass
        finally:
            conn.close()


def _serve_udp_reply(sock: socket.socket, reply: bytes, what: str) -> None:
    """Answer every datagram with ``reply`` (agnhost reads at most 16 bytes of each)."""
    while True:
        try:
            _, peer = sock.recvfrom(16)
        except OSError:
            time.sleep(0.01)
            continue
        if what:
            log(f"{what} from {format_addr(peer)}")
        try:
            sock.sendto(reply, peer)
        except OSError as exc:
            log(f"UDP: error from WriteTo(): {exc}")


def run_serve_hostname(flags: Flags) -> int:
    do_tcp, do_udp, do_http = flags.get_bool("tcp"), flags.get_bool("udp"), flags.get_bool("http")
    if do_http and (do_tcp or do_udp):
        log("Can't server TCP/UDP mode and HTTP mode at the same time")
        return 1
    waiter = SignalWaiter()
    port = flags.get_int("port")
    name = hostname()
    try:
        if do_tcp:
            start_thread(_serve_tcp_hostname, listen_tcp(port), name.encode())
        if do_udp:
            start_thread(_serve_udp_reply, listen_udp(port), name.encode(), "UDP request")
        if do_http:
            close = flags.get_bool("close")

            def handler(request: Request) -> Response:
                log(f"HTTP request from {request.remote}")
                return Response(200, name, close=close)

            HttpServer(handler).serve(listen_tcp(port))
    except OSError as exc:
        log(_bind_error("tcp", port, exc))
        return 1
    log(f"Serving on port {port}.")
    signum = waiter.wait()
    log(f"Shutting down after receiving signal: {_signal_name(signum)}.")
    return 0


# ---------------------------------------------------------------- porter

PORTER_PREFIXES = (
    ("SERVE_PORT_", "http"),
    ("SERVE_TCP_PORT_", "http"),
    ("SERVE_UDP_PORT_", "udp"),
    ("SERVE_TLS_PORT_", "tls"),
    ("SERVE_SCTP_PORT_", "sctp"),
)


def porter_plan(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(kind, port, value)`` for every ``SERVE_*_PORT_<n>`` variable; kind is http/udp/tls/sctp."""
    plan: list[tuple[str, str, str]] = []
    for key, value in sorted(environ.items()):
        for prefix, kind in PORTER_PREFIXES:
            if key.startswith(prefix):
                plan.append((kind, key[len(prefix) :], value))
                break
    return plan


def _porter_handler(value: str, json_response: bool) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        if json_response:
            body = go_json({"Body": value, "Method": request.method})
            return Response(200, body, [("Content-Type", "application/json")])
        return Response(200, value)

    return handler


def run_porter(flags: Flags) -> int:
    waiter = SignalWaiter()
    json_response = flags.get_bool("json-response")
    for kind, port_text, value in porter_plan(os.environ):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            log(f"server on port {port_text!r} failed: listen tcp: address 0.0.0.0:{port_text}: invalid port")
            continue
        port = int(port_text)
        try:
            if kind == "http":
                HttpServer(_porter_handler(value, json_response)).serve(listen_tcp(port))
                log(f"Serving HTTP on port {port}")
            elif kind == "udp":
                start_thread(_serve_udp_reply, listen_udp(port), value.encode(), "")
                log(f"Started UDP server on port {port}")
            elif kind == "tls":
                _serve_porter_tls(port, value, json_response)
            else:
                log(f"SCTP is not supported by kubelite's agnhost: SERVE_SCTP_PORT_{port} is ignored")
        except OSError as exc:
            failure = _bind_error("udp" if kind == "udp" else "tcp", port, exc)
            log(f"server on port {port_text!r} failed: {failure}")
    log("Porter is serving")
    waiter.wait()
    return 0


def _serve_porter_tls(port: int, value: str, json_response: bool) -> None:
    import ssl

    cert = os.environ.get("CERT_FILE") or "localhost.crt"
    key = os.environ.get("KEY_FILE") or "localhost.key"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        log(
            f"tls server on port {str(port)!r} with certFile={cert!r}, keyFile={key!r} failed: {exc}; "
            "set CERT_FILE and KEY_FILE to a certificate and key in the pod's file system"
        )
        return
    HttpServer(_porter_handler(value, json_response), context).serve(listen_tcp(port))
    log(f"Serving HTTPS on port {port}")


# ---------------------------------------------------------------- liveness


class Liveness:
    """The ``liveness`` handler; ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, healthy_for: float = 10.0) -> None:
        self._clock = clock
        self._started = clock()
        self._healthy_for = healthy_for

    def handle(self, request: Request) -> Response:
        elapsed = self._clock() - self._started
        if request.path == "/started":
            return Response(200, f"{elapsed:.9f}s")
        if request.path == "/healthz":
            if elapsed > self._healthy_for:
                return Response(500, f"error: {elapsed}")
            return Response(200, "ok")
        if request.path == "/redirect":
            location = request.form_value("loc")
            return Response(302, b"", [("Location", location)])
        return Response(404, NOT_FOUND)


def run_liveness(flags: Flags) -> int:
    waiter = SignalWaiter()
    try:
        HttpServer(Liveness().handle).serve(listen_tcp(LIVENESS_PORT))
    except OSError as exc:
        log(_bind_error("tcp", LIVENESS_PORT, exc))
        return 1
    waiter.wait()
    return 0


# ---------------------------------------------------------------- test-webserver

_WEBSERVER_HEADERS = (
    ("Cache-Control", "private"),
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Credentials", "true"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type",
    ),
)


def webserver_handler(root: str = "/") -> Callable[[Request], Response]:
    """Go's ``http.FileServer(http.Dir(root))``: files, ``index.html``, directory listings."""
    base = os.path.realpath(root)

    def handler(request: Request) -> Response:
        headers = list(_WEBSERVER_HEADERS)
        relative = os.path.normpath("/" + request.path.lstrip("/")).lstrip("/")
        target = os.path.join(base, relative)
        if os.path.isdir(target):
            if not request.path.endswith("/"):
                return Response(301, b"", [*headers, ("Location", request.path + "/")])
            index = os.path.join(target, "index.html")
            if not os.path.isfile(index):
                names = sorted(
                    n + "/" if os.path.isdir(os.path.join(target, n)) else n for n in os.listdir(target)
                )
                listing = "".join(f'<a href="{n}">{n}</a>\n' for n in names)
                return Response(200, f"<pre>\n{listing}</pre>\n", [*headers, _HTML])
            target = index
        try:
            with open(target, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return Response(404, NOT_FOUND, headers)
        except OSError:
            return Response(403, "403 Forbidden\n", headers)
        return Response(200, data, [*headers, ("Content-Type", _content_type(target, data))])

    return handler


_HTML = ("Content-Type", "text/html; charset=utf-8")


def _content_type(path: str, data: bytes) -> str:
    import mimetypes

    guessed, _ = mimetypes.guess_type(path)
    if guessed:
        return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")
    return "application/octet-stream" if b"\x00" in data[:512] else "text/plain; charset=utf-8"


def run_test_webserver(flags: Flags) -> int:
    waiter = SignalWaiter()
    port = flags.get_int("port")
    try:
        HttpServer(webserver_handler("/")).serve(listen_tcp(port))
    except OSError as exc:
        log(_bind_error("tcp", port, exc))
        return 1
    waiter.wait()
    return 0
