"""The small network runtime every agnhost server subcommand shares: HTTP/1.1 server and client,
UDP and TCP listeners, Go-style logging, and waiting for SIGTERM/SIGINT.

Why not asyncio, aiohttp or ``http.server``: a hundred agnhost processes start on two vCPUs when a
cluster comes up, and importing asyncio alone costs ~65 ms of CPU there (``http.server`` ~50 ms),
several times the interpreter's own start-up. This module imports only ``os``, ``socket``,
``time`` and ``_thread``; ``json`` and ``ssl`` are imported the first time they are needed.

Model (the same as Go's ``net/http``): one thread accepts on each listening socket and one thread
serves each connection (HTTP/1.1 keep-alive, ``Expect: 100-continue``, chunked or sized request
bodies). A handler is a plain function ``Request -> Response``; it runs on the connection's thread,
so a slow handler (``/dial``, ``/shell``) blocks only its own client. The main thread waits for a
signal through :class:`SignalWaiter`, which works whichever thread the kernel delivers it to.

Listening: ``""`` means every address, as Go's ``":8080"`` does — one dual-stack IPv6 socket when
IPv6 is available, else ``0.0.0.0``. A kubelite extension for tests: the environment variable
``AGNHOST_LISTEN_ADDRESS`` replaces that default (e.g. ``127.0.0.1``).
"""

from __future__ import annotations

import _thread
import os
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from io import BufferedReader
    from ssl import SSLContext

__all__ = [
    "LISTEN_ADDRESS_ENV",
    "HttpError",
    "HttpServer",
    "Request",
    "Response",
    "SignalWaiter",
    "format_addr",
    "go_json",
    "hostname",
    "http_get",
    "listen_tcp",
    "listen_udp",
    "log",
    "parse_query",
    "start_thread",
    "unquote",
]

LISTEN_ADDRESS_ENV = "AGNHOST_LISTEN_ADDRESS"
MAX_LINE = 65536
MAX_HEADERS = 200
MAX_BODY = 32 * 1024 * 1024
IDLE_TIMEOUT = 300.0

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    417: "Expectation Failed",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_HEX = b"0123456789abcdefABCDEF"


# ---------------------------------------------------------------- process helpers


def log(message: str) -> None:
    """One line on stderr in Go's ``log`` format (``2006/01/02 15:04:05 message``); never buffered."""
    line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass


def say(message: str) -> None:
    """One line on stdout (Go's ``fmt.Println``); unbuffered so a container log shows it at once."""
    try:
        os.write(1, (message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def hostname() -> str:
    """The kernel's host name (Go's ``os.Hostname``); a pod's UTS namespace gives the pod name."""
    return os.uname().nodename


def start_thread(function: Callable[..., object], *args: object) -> None:
    """Run ``function(*args)`` on a new daemon thread (``_thread``: cheaper to import than ``threading``)."""
    _thread.start_new_thread(function, args)


def go_json(value: object) -> str:
    """JSON as Go's ``json.Marshal`` writes it: compact, map keys sorted, ``<>&`` escaped."""
    import json

    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class SignalWaiter:
    """Catches SIGTERM and SIGINT from construction on; :meth:`wait` blocks until one arrives.

    Build it on the main thread before starting servers. A signal may be delivered to any thread;
    the C-level handler writes its number to a wake-up pipe that the main thread reads, so no
    thread needs the signals blocked (a blocked mask would be inherited by ``/shell`` children).
    """

    __slots__ = ("_read_fd",)

    def __init__(self) -> None:
        import signal

        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        wanted = {signal.SIGTERM, signal.SIGINT}
        for signum in wanted:
            signal.signal(signum, _ignore_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)  # in case the parent left them blocked
        self._read_fd = read_fd

    def wait(self) -> int:
        """Block until SIGTERM or SIGINT; return its number."""
        import signal

        wanted = {int(signal.SIGTERM), int(signal.SIGINT)}
        while True:
            for signum in os.read(self._read_fd, 64):
                if signum in wanted:
                    return signum


def _ignore_signal(signum: int, frame: object) -> None:
    """Python-level handler: the wake-up pipe carries the signal to :meth:`SignalWaiter.wait`."""


# ---------------------------------------------------------------- addresses and listeners


def format_addr(address: tuple[object, ...]) -> str:
    """``ip:port`` as Go prints a peer: IPv4-mapped IPv6 shown as IPv4, IPv6 in brackets."""
    host, port = str(address[0]), address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _bind(kind: int, address: str, port: int) -> socket.socket:
    if not address:
        address = os.environ.get(LISTEN_ADDRESS_ENV, "")
    families: list[tuple[int, str]]
    if address:
        families = [(socket.AF_INET6 if ":" in address else socket.AF_INET, address)]
    else:
        families = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    last: OSError | None = None
    for family, host in families:
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if address:
                break
    assert last is not None
    raise last


def listen_tcp(port: int, address: str = "") -> socket.socket:
    """A listening TCP socket on ``address`` (``""`` = every address) and ``port``; raises OSError."""
    sock = _bind(socket.SOCK_STREAM, address, port)
    sock.listen(socket.SOMAXCONN)
    return sock


def listen_udp(port: int, address: str = "") -> socket.socket:
    """A bound UDP socket on ``address`` (``""`` = every address) and ``port``; raises OSError."""
    return _bind(socket.SOCK_DGRAM, address, port)


# ---------------------------------------------------------------- URLs and forms


def unquote(text: str, *, plus: bool = True) -> str:
    """Percent-decoding (and ``+`` as space when ``plus``), as Go's ``url.QueryUnescape``."""
    if plus and "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    pieces = text.encode("utf-8").split(b"%")
    out = bytearray(pieces[0])
    for piece in pieces[1:]:
        if len(piece) >= 2 and piece[0] in _HEX and piece[1] in _HEX:
            out.append(int(piece[:2], 16))
            out += piece[2:]
        else:
            out += b"%" + piece
    return out.decode("utf-8", "replace")


def parse_query(query: str) -> list[tuple[str, str]]:
    """``a=1&b=x+y`` -> ``[("a", "1"), ("b", "x y")]``; order and repeated keys kept."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


# ---------------------------------------------------------------- HTTP messages


class HttpError(Exception):
    """A malformed HTTP message; the server answers 400 (or ``status``) and closes the connection."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """One HTTP request as a handler sees it; ``path`` is decoded, ``remote`` is ``ip:port``."""

    __slots__ = ("body", "headers", "method", "path", "query", "raw_query", "remote", "target", "version")

    def __init__(
        self,
        method: str,
        target: str,
        version: str = "HTTP/1.1",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        remote: str = "",
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers or []
        self.body = body
        self.remote = remote
        path = target
        if "://" in path:  # absolute-form (a proxy's request): keep the path only
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        path, _, self.raw_query = path.partition("?")
        self.path = unquote(path, plus=False)
        self.query = parse_query(self.raw_query)

    def header(self, name: str) -> str:
        """The first value of header ``name`` (any case), or ``""``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return ""

    def form_value(self, name: str) -> str:
        """Go's ``FormValue``: a URL-encoded body's value first, then the query's; ``""`` if absent."""
        for key, value in self.form():
            if key == name:
                return value
        return ""

    def form(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        if self.method in ("POST", "PUT", "PATCH") and self.header("content-type").lower().startswith(
            "application/x-www-form-urlencoded"
        ):
            pairs = parse_query(self.body.decode("utf-8", "replace"))
        return pairs + self.query


class Response:
    """What a handler returns; ``after`` runs once the response has been sent (``/exit``)."""

    __slots__ = ("after", "body", "close", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes | str = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = list(headers)
        self.close = close
        self.after = after


def _read_line(reader: BufferedReader) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise HttpError("line too long")
    return line


def _read_headers(reader: BufferedReader) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = _read_line(reader)
        if not line:
            raise HttpError("connection closed inside the headers")
        if line in (b"\r\n", b"\n"):
            return headers
        if len(headers) >= MAX_HEADERS:
            raise HttpError("too many headers", 431)
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))


def _read_exact(reader: BufferedReader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise HttpError("connection closed inside the body")
    return data


def _read_chunked(reader: BufferedReader) -> bytes:
    body = bytearray()
    while True:
        size_text = _read_line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            _read_headers(reader)  # trailers, up to the blank line
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise HttpError("body too large", 413)
        body += _read_exact(reader, size)
        _read_line(reader)


def _read_body(reader: BufferedReader, headers: list[tuple[str, str]], lookup: Callable[[str], str]) -> bytes:
    if "chunked" in lookup("transfer-encoding").lower():
        return _read_chunked(reader)
    length_text = lookup("content-length")
    if not length_text:
        return b""
    if not length_text.isdigit():
        raise HttpError(f"bad Content-Length {length_text[:20]!r}")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError("body too large", 413)
    return _read_exact(reader, length)


def _encode_response(response: Response, head_only: bool, keep_alive: bool, http10: bool) -> bytes:
    status = response.status
    reason = REASONS.get(status, f"status code {status}")
    names = {name.lower() for name, _ in response.headers}
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if "date" not in names:
        lines.append("Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    no_body = status < 200 or status in (204, 304)
    if not no_body:
        if response.body and "content-type" not in names:
            lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    if head_only or no_body:
        return head
    return head + response.body


# ---------------------------------------------------------------- HTTP server


class HttpServer:
    """Serves ``handler`` on listening sockets, one thread per connection (see the module doc)."""

    __slots__ = ("_active", "_closing", "_handler", "_lock", "_sockets", "_tls")

    def __init__(self, handler: Callable[[Request], Response], tls: SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._sockets: list[socket.socket] = []
        self._lock = _thread.allocate_lock()
        self._active = 0  # requests being handled, for a graceful stop
        self._closing = False

    def serve(self, listener: socket.socket) -> None:
        """Accept on ``listener`` (already listening) from a new thread."""
        self._sockets.append(listener)
        start_thread(self._accept_loop, listener)

    def stop(self, timeout: float) -> None:
        """Stop accepting, then wait up to ``timeout`` seconds for requests in progress to finish."""
        self._closing = True
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while self._active > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closing:
            try:
                conn, address = listener.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.05)  # EMFILE and the like: back off as Go's server does
                continue
            start_thread(self._serve_connection, conn, format_addr(address))

    def _serve_connection(self, conn: socket.socket, remote: str) -> None:
        reader: BufferedReader | None = None
        try:
            if self._tls is not None:
                conn.settimeout(30.0)
                conn = self._tls.wrap_socket(conn, server_side=True)
            conn.settimeout(IDLE_TIMEOUT)
            reader = conn.makefile("rb")
            while not self._closing and self._serve_one(conn, reader, remote):
                pass
        except (OSError, ValueError):
            pass
        finally:
            try:
                if reader is not None:
                    reader.close()
                conn.close()
            except OSError:
                pass

    def _serve_one(self, conn: socket.socket, reader: BufferedReader, remote: str) -> bool:
        """Read, handle and answer one request; False when the connection should close."""
        line = _read_line_or_eof(reader)
        while line in (b"\r\n", b"\n"):  # stray CRLF between requests is allowed
            line = _read_line_or_eof(reader)
        if not line:
            return False
        try:
            parts = line.decode("latin-1").rstrip("\r\n").split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise HttpError(f"malformed request line {line[:80]!r}")
            method, target, version = parts
            headers = _read_headers(reader)
            request = Request(method, target, version, headers, b"", remote)
            if request.header("expect").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.body = _read_body(reader, headers, request.header)
        except HttpError as exc:
            status = exc.status
            message = f"{status} {REASONS.get(status, 'Bad Request')}"
            conn.sendall(_encode_response(Response(status, message), False, False, False))
            return False
        connection = request.header("connection").lower()
        http10 = version == "HTTP/1.0"
        keep_alive = "keep-alive" in connection if http10 else "close" not in connection
        with self._lock:
            self._active += 1
        try:
            try:
                response = self._handler(request)
            except Exception as exc:  # a handler bug must not take the server down (Go recovers too)
                log(f"http: panic serving {remote}: {exc!r}")
                response = Response(500, "Internal Server Error\n", close=True)
            keep_alive = keep_alive and not response.close and not self._closing
            conn.sendall(_encode_response(response, method == "HEAD", keep_alive, http10))
        finally:
            with self._lock:
                self._active -= 1
        if response.after is not None:
            response.after()
        return keep_alive


def _read_line_or_eof(reader: BufferedReader) -> bytes:
    try:
        return _read_line(reader)
    except TimeoutError:
        return b""


# ---------------------------------------------------------------- HTTP client (for /dial)


def http_get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """GET ``http://host:port<path>`` over a new connection; returns (status, body). Raises OSError
    or :class:`HttpError`. ``host`` should be an address: resolution is the caller's business."""
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: Go-http-client/1.1\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request.encode("utf-8"))
        with conn.makefile("rb") as reader:
            return _read_response(reader)


def _read_response(reader: BufferedReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.x response (sized, chunked, or up to the connection's end)."""
    status_line = _read_line(reader)
    while status_line.startswith(b"HTTP/1.1 1") and not status_line.startswith(b"HTTP/1.1 101"):
        _read_headers(reader)  # interim 1xx response
        status_line = _read_line(reader)
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"malformed HTTP response {status_line[:80]!r}")
    headers = _read_headers(reader)
    lookup = Request("GET", "/", headers=headers).header
    if "chunked" in lookup("transfer-encoding").lower() or lookup("content-length"):
        body = _read_body(reader, headers, lookup)
    else:
        body = reader.read(MAX_BODY)
    return int(parts[1]), body
