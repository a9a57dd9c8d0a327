"""The agnhost-compatible image, run the way the agent runs it (argv and env from the catalog).

Every server listens on 127.0.0.1 only (``AGNHOST_LISTEN_ADDRESS``) on ports found free by binding
port 0; every process is started by a fixture that kills it by PID afterwards. No root needed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubelite.images.agnhost import dns_search_list, dns_server_list, main
from kubelite.images.agnhost_net import LISTEN_ADDRESS_ENV, Request, format_addr, parse_query, unquote
from kubelite.images.agnhost_netexec import Netexec, go_time_now, parse_go_duration
from kubelite.images.agnhost_servers import Liveness, porter_plan, webserver_handler
from kubelite.images.catalog import ImageCatalog
from kubelite.images.goflags import FlagError, parse_flags

AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.47"
LOOPBACK = "127.0.0.1"
HOSTNAME = os.uname().nodename


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Agnhost:
    """One running agnhost process with its stdout and stderr captured in files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    ports: dict[str, int] = field(default_factory=dict)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, *, stream: str = "err", timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (self.stderr() if stream == "err" else self.stdout()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"agnhost did not log {text!r} (exit {self.proc.poll()}):\n{self.stdout()}\n{self.stderr()}"
        )

    def exit_code(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout)

    def signal(self, signum: int) -> int:
        self.proc.send_signal(signum)
        return self.exit_code()


Start = Callable[..., Agnhost]


def _start(tmp: Path, procs: list[subprocess.Popen[bytes]], args: list[str], env: dict[str, str]) -> Agnhost:
    resolved = ImageCatalog(busybox_bin_dir=None).resolve(AGNHOST_IMAGE, ["/agnhost", *args], [])
    full_env = {**dict(resolved.env), LISTEN_ADDRESS_ENV: LOOPBACK, **env}
    n = len(procs)
    out, err = tmp / f"agnhost-{n}.out", tmp / f"agnhost-{n}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(list(resolved.argv), stdout=o, stderr=e, env=full_env, cwd=tmp)
    procs.append(proc)
    return Agnhost(proc, out, err)


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()  # by PID: only processes this fixture started
            proc.wait(10)


@pytest.fixture
def start_agnhost(tmp_path: Path) -> Iterator[Start]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Agnhost:
        return _start(tmp_path, procs, list(args), env or {})

    try:
        yield start
    finally:
        _stop_all(procs)


def _netexec(start: Start, *extra: str) -> Agnhost:
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    host = start("netexec", f"--http-port={http_port}", "--udp-port", str(udp_port), *extra)
    host.ports = {"http": http_port, "udp": udp_port}
    host.wait_for(f"Started HTTP server on port {http_port}")
    return host


@pytest.fixture(scope="module")
def netexec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agnhost]:
    """One netexec shared by the tests that only read from it."""
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tmp_path_factory.mktemp("netexec")
    try:
        yield _netexec(lambda *args, env=None: _start(tmp, procs, list(args), env or {}))
    finally:
        _stop_all(procs)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def udp_ask(port: int, text: str, timeout: float = 5.0) -> tuple[str, str]:
    """Send one datagram; return the reply and this socket's ``ip:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((LOOPBACK, port))
        s.send(text.encode())
        return s.recv(2048).decode(), format_addr(s.getsockname())


# ---------------------------------------------------------------- netexec over HTTP


def test_netexec_root_and_unknown_paths_give_the_time(netexec: Agnhost) -> None:
    for path in ("/", "/no/such/path"):
        status, _, body = get(netexec.ports["http"], path)
        assert status == 200
        assert body.startswith("NOW: 20")


def test_netexec_echo(netexec: Agnhost) -> None:
    assert get(netexec.ports["http"], "/echo?msg=hello%20world")[::2] == (200, "hello world")
    assert get(netexec.ports["http"], "/echo?msg=gone&code=404")[::2] == (404, "gone")
    status, _, body = get(netexec.ports["http"], "/echo?msg=x&code=abc")
    assert status == 200
    assert "argument 'code' must be an integer" in body


def test_netexec_echo_reads_a_posted_form(netexec: Agnhost) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, netexec.ports["http"], timeout=10)
    try:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/echo?msg=query", body="msg=from+body", headers=form)
        assert conn.getresponse().read() == b"from body"
    finally:
        conn.close()


def test_netexec_clientip_is_the_peer(netexec: Agnhost) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, netexec.ports["http"], timeout=10)
    try:
        conn.request("GET", "/clientip")
        body = conn.getresponse().read().decode()
        assert conn.sock is not None
        assert body == format_addr(conn.sock.getsockname())
        conn.request("GET", "/hostname")  # the same connection: keep-alive works
        assert conn.getresponse().read().decode() == HOSTNAME
    finally:
        conn.close()


def test_netexec_hostname(netexec: Agnhost) -> None:
    assert get(netexec.ports["http"], "/hostname")[::2] == (200, HOSTNAME)
    assert get(netexec.ports["http"], "/hostName")[::2] == (200, HOSTNAME)


def test_netexec_header(netexec: Agnhost) -> None:
    port = netexec.ports["http"]
    assert get(port, "/header?key=x-test", {"X-Test": "one"})[2] == "one"
    status, _, body = get(port, "/header", {"x-forwarded-for": "10.0.0.1"})
    headers = json.loads(body)
    assert status == 200
    assert headers["X-Forwarded-For"] == ["10.0.0.1"]
    assert "Host" not in headers


def test_netexec_health_and_readiness(netexec: Agnhost) -> None:
    assert get(netexec.ports["http"], "/healthz")[0] == 200
    assert get(netexec.ports["http"], "/readyz")[::2] == (200, "ok")


def test_netexec_redirect(netexec: Agnhost) -> None:
    status, headers, _ = get(netexec.ports["http"], "/redirect?location=/echo%3Fmsg%3Dx&code=307")
    assert status == 307
    assert headers["Location"] == "/echo?msg=x"


def test_netexec_shell(netexec: Agnhost) -> None:
    status, _, body = get(netexec.ports["http"], "/shell?cmd=echo+out%3B+echo+err+1%3E%262")
    assert status == 200
    assert json.loads(body) == {"output": "out\nerr\n"}
    _, _, body = get(netexec.ports["http"], "/shell?shellCommand=exit+3")
    assert json.loads(body) == {"error": "exit status 3"}


def test_netexec_dial_http_and_udp_to_a_second_netexec(netexec: Agnhost, start_agnhost: Start) -> None:
    other = _netexec(start_agnhost)
    port = netexec.ports["http"]
    target = f"host={LOOPBACK}&port={other.ports['http']}"
    status, _, body = get(port, f"/dial?request=hostname&{target}&protocol=http&tries=3")
    assert status == 200
    assert json.loads(body) == {"responses": [HOSTNAME] * 3}
    _, _, body = get(port, f"/dial?request=echo%3Fmsg%3Dpong&{target}")
    assert json.loads(body) == {"responses": ["pong"]}
    udp = f"host={LOOPBACK}&port={other.ports['udp']}&protocol=udp"
    _, _, body = get(port, f"/dial?request=echo%20Hello&{udp}&tries=2")
    assert json.loads(body) == {"responses": ["hello", "hello"]}  # agnhost lower-cases UDP text
    _, _, body = get(port, f"/dial?request=hostname&{udp}")
    assert json.loads(body) == {"responses": [HOSTNAME]}
    assert "GET /hostname" in other.stderr()


def test_netexec_dial_errors(netexec: Agnhost) -> None:
    port, closed = netexec.ports["http"], free_port()
    _, _, body = get(port, f"/dial?request=hostname&host={LOOPBACK}&port={closed}&protocol=http")
    result = json.loads(body)
    assert "responses" not in result
    assert "connection refused" in result["errors"][0]
    assert get(port, f"/dial?host={LOOPBACK}&port={closed}")[0] == 400  # no request
    assert get(port, f"/dial?request=x&host={LOOPBACK}&port={closed}&tries=many")[0] == 400
    assert get(port, f"/dial?request=x&host={LOOPBACK}&port={closed}&protocol=quic")[0] == 400


def test_netexec_udp_commands(netexec: Agnhost) -> None:
    port = netexec.ports["udp"]
    assert udp_ask(port, "hostname")[0] == HOSTNAME
    assert udp_ask(port, "echo Some Text\n")[0] == "some text"
    reply, mine = udp_ask(port, "clientip")
    assert reply == mine


def test_netexec_logs_like_agnhost(netexec: Agnhost) -> None:
    log = netexec.stderr()
    assert f"Started UDP server on port {netexec.ports['udp']}" in log
    assert f"Started HTTP server on port {netexec.ports['http']}" in log


# ---------------------------------------------------------------- netexec lifecycle


def test_netexec_exit_without_timeout_exits_at_once(start_agnhost: Start) -> None:
    host = _netexec(start_agnhost)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(host.ports["http"], "/exit?code=3")
    assert host.exit_code() == 3


def test_netexec_exit_with_timeout_replies_first(start_agnhost: Start) -> None:
    host = _netexec(start_agnhost)
    assert get(host.ports["http"], "/exit?code=4&timeout=2s")[0] == 200
    assert host.exit_code() == 4
    assert "Graceful shutdown completed" in host.stderr()


def test_netexec_shutdown_exits_zero(start_agnhost: Start) -> None:
    host = _netexec(start_agnhost)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(host.ports["http"], "/shutdown")
    assert host.exit_code() == 0


def test_netexec_sigterm_with_delay_reports_unready_then_exits_zero(start_agnhost: Start) -> None:
    host = _netexec(start_agnhost, "--delay-shutdown=1")
    started = time.monotonic()
    host.proc.send_signal(signal.SIGTERM)
    host.wait_for("Sleeping 1 seconds before terminating")
    assert get(host.ports["http"], "/readyz")[::2] == (503, "shutting down")
    assert get(host.ports["http"], "/healthz")[0] == 200
    assert host.exit_code() == 0
    assert time.monotonic() - started >= 0.9


def test_netexec_sigint_and_udp_off(start_agnhost: Start) -> None:
    port = free_port()
    host = start_agnhost("netexec", f"-http-port={port}", "--udp-port=-1", "--sctp-port=9000")
    host.wait_for(f"Started HTTP server on port {port}")
    assert get(port, "/healthz")[0] == 200
    assert "SCTP is not supported" in host.stderr()
    assert "Started UDP server" not in host.stderr()
    assert host.signal(signal.SIGINT) == 0


def test_netexec_http_override(start_agnhost: Start) -> None:
    host = _netexec(start_agnhost, "--http-override=/echo?msg=fixed")
    assert get(host.ports["http"], "/hostname")[::2] == (200, "fixed")


def test_netexec_port_in_use_fails(start_agnhost: Start) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        host = start_agnhost("netexec", f"--http-port={busy.getsockname()[1]}", "--udp-port=-1")
        assert host.exit_code() == 1
    assert "address already in use" in host.stderr()


# ---------------------------------------------------------------- serve-hostname, porter, pause


def test_serve_hostname_http(start_agnhost: Start) -> None:
    port = free_port()
    host = start_agnhost("serve-hostname", f"--port={port}", "--close")
    host.wait_for(f"Serving on port {port}.")
    status, headers, body = get(port, "/anything")
    assert (status, body) == (200, HOSTNAME)
    assert headers["Connection"] == "close"
    assert host.signal(signal.SIGTERM) == 0


def test_serve_hostname_tcp_and_udp(start_agnhost: Start) -> None:
    port = free_port()
    host = start_agnhost("serve-hostname", "--port", str(port), "--tcp", "--udp", "--http=false")
    host.wait_for(f"Serving on port {port}.")
    with socket.create_connection((LOOPBACK, port), timeout=5) as conn:
        data = b""
        while chunk := conn.recv(1024):
            data += chunk
    assert data.decode() == HOSTNAME
    assert udp_ask(port, "anything")[0] == HOSTNAME
    assert host.signal(signal.SIGTERM) == 0


def test_serve_hostname_refuses_http_with_tcp(start_agnhost: Start) -> None:
    host = start_agnhost("serve-hostname", "--tcp")
    assert host.exit_code() == 1
    assert "Can't server TCP/UDP mode and HTTP mode at the same time" in host.stderr()


def test_porter_serves_each_env_port(start_agnhost: Start) -> None:
    http_port, udp_port, json_port = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    env = {
        f"SERVE_PORT_{http_port}": "foo",
        f"SERVE_UDP_PORT_{udp_port}": "bar",
        f"SERVE_TLS_PORT_{free_port()}": "tls",
        "SERVE_SCTP_PORT_9999": "sctp",
    }
    host = start_agnhost("porter", env=env)
    host.wait_for("Porter is serving")
    assert get(http_port, "/whatever")[::2] == (200, "foo")
    assert udp_ask(udp_port, "x")[0] == "bar"
    assert "SCTP is not supported" in host.stderr()
    assert "set CERT_FILE and KEY_FILE" in host.stderr()
    assert host.signal(signal.SIGTERM) == 0
    other = start_agnhost("porter", "--json-response", env={f"SERVE_TCP_PORT_{json_port}": "v"})
    other.wait_for("Porter is serving")
    assert json.loads(get(json_port, "/")[2]) == {"Body": "v", "Method": "GET"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_pause_exits_zero_on_signal(start_agnhost: Start, signum: int) -> None:
    host = start_agnhost("pause")
    host.wait_for("Paused", stream="out")
    assert host.signal(signum) == 0


def test_unknown_subcommand_exits_one_with_usage(start_agnhost: Start) -> None:
    host = start_agnhost("no-such-thing")
    assert host.exit_code() == 1
    assert 'unknown command "no-such-thing"' in host.stderr()
    for name in ("netexec", "pause", "serve-hostname", "porter"):
        assert name in host.stderr()


def test_bad_flag_exits_one(start_agnhost: Start) -> None:
    host = start_agnhost("pause", "--no-such-flag")
    assert host.exit_code() == 1
    assert "unknown flag: --no-such-flag" in host.stderr()


def test_etc_hosts_and_dns_server_list(start_agnhost: Start) -> None:
    hosts = start_agnhost("etc-hosts")
    assert hosts.exit_code() == 0
    assert hosts.stdout() == Path("/etc/hosts").read_text() + "\n"
    resolv = Path("/etc/resolv.conf")
    if not resolv.exists():
        pytest.skip("this machine has no /etc/resolv.conf")
    servers = start_agnhost("dns-server-list")
    expected = dns_server_list(resolv.read_text())
    assert servers.exit_code() == (0 if expected is not None else 1)
    if expected is not None:
        assert servers.stdout() == ",".join(expected) + "\n"


# ---------------------------------------------------------------- in-process pieces


def test_main_help_and_version(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["netexec", "--help"]) == 0
    assert main(["--version"]) == 0
    out = capfd.readouterr().out
    assert "Subcommands:" in out
    assert "--http-port int  (default 8080)" in out


def test_flags_accept_go_and_pflag_forms() -> None:
    spec: dict[str, bool | int | str] = {"http-port": 8080, "tcp": False, "name": ""}
    for argv in (["--http-port=9"], ["--http-port", "9"], ["-http-port=9"], ["-http-port", "9"]):
        assert parse_flags(spec, argv).get_int("http-port") == 9
    flags = parse_flags(spec, ["--tcp", "--name=a=b", "--v=2", "--logtostderr"])
    assert (flags.get_bool("tcp"), flags.get_str("name"), flags.get_int("http-port")) == (True, "a=b", 8080)
    assert flags.explicit == {"tcp", "name", "v", "logtostderr"}
    assert parse_flags(spec, ["--tcp=false"]).get_bool("tcp") is False
    assert parse_flags(spec, ["--http-port=0x10"]).get_int("http-port") == 16
    assert parse_flags(spec, ["--", "x"], max_args=None).args == ["x"]
    assert parse_flags(spec, ["-h"]).get_bool("help")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unknown flag: --nope"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["--http-port"], "flag needs an argument: --http-port"),
        (["--http-port=abc"], 'invalid argument "abc" for "--http-port" flag'),
        (["--tcp=maybe"], 'invalid argument "maybe" for "--tcp" flag'),
        (["--tcp", "false"], "accepts at most 0 arg(s), received 1"),
    ],
)
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_flags({"http-port": 8080, "tcp": False}, argv)


def test_go_durations_and_time() -> None:
    assert parse_go_duration("0") == 0
    assert parse_go_duration("1.5s") == 1.5
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("250ms") == pytest.approx(0.25)
    for bad in ("", "5", "1x", "s"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_go_duration(bad)
    assert " m=+" in go_time_now()


def test_request_parsing_helpers() -> None:
    assert unquote("a+b%20c%zz%") == "a b c%zz%"
    assert unquote("a+b", plus=False) == "a+b"
    assert parse_query("a=1&b=x+y&a=2&&c") == [("a", "1"), ("b", "x y"), ("a", "2"), ("c", "")]
    request = Request("GET", "http://proxy.example/p%20q?k=v", headers=[("X-A", "1")])
    assert (request.path, request.form_value("k"), request.header("x-a")) == ("/p q", "v", "1")
    assert format_addr(("::ffff:10.0.0.1", 80)) == "10.0.0.1:80"
    assert format_addr(("fd00::1", 80, 0, 0)) == "[fd00::1]:80"


def test_netexec_handler_in_process() -> None:
    exits: list[int] = []
    netexec = Netexec()
    netexec.exit = exits.append
    assert netexec.handle(Request("GET", "/healthz")).status == 412  # before the UDP server is up
    netexec.ready = True
    netexec.terminating = True
    assert netexec.handle(Request("GET", "/readyz")).status == 503
    netexec.handle(Request("GET", "/shutdown"))
    assert exits == [0]
    assert netexec.handle(Request("GET", "/upload")).status == 501


def test_liveness_turns_unhealthy_after_ten_seconds() -> None:
    now = [100.0]
    liveness = Liveness(clock=lambda: now[0])
    assert liveness.handle(Request("GET", "/healthz")).status == 200
    now[0] += 10.5
    assert liveness.handle(Request("GET", "/healthz")).status == 500
    assert liveness.handle(Request("GET", "/started")).body.startswith(b"10.5")
    assert liveness.handle(Request("GET", "/redirect?loc=/x")).headers == [("Location", "/x")]
    assert liveness.handle(Request("GET", "/other")).status == 404


def test_webserver_serves_files_and_listings(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("hello")
    handler = webserver_handler(str(tmp_path))
    assert handler(Request("GET", "/sub/a.txt")).body == b"hello"
    assert handler(Request("GET", "/sub")).status == 301
    assert b'<a href="a.txt">a.txt</a>' in handler(Request("GET", "/sub/")).body
    assert handler(Request("GET", "/missing")).status == 404
    assert handler(Request("GET", "/../../etc/passwd")).status == 404  # stays under the root


def test_porter_plan_and_dns_parsing() -> None:
    environ = {"SERVE_PORT_80": "a", "SERVE_UDP_PORT_81": "b", "OTHER": "c", "SERVE_TLS_PORT_443": "d"}
    assert porter_plan(environ) == [("http", "80", "a"), ("tls", "443", "d"), ("udp", "81", "b")]
    resolv = "# x\nnameserver 10.96.0.10\nnameserver 1.1.1.1\nsearch ns.svc.cluster.local svc.cluster.local\n"
    assert dns_server_list(resolv) == ["10.96.0.10"]  # agnhost reads the first line only
    assert dns_search_list(resolv) == ["ns.svc.cluster.local", "svc.cluster.local"]
    assert dns_search_list("nameserver 1.1.1.1\n") is None
