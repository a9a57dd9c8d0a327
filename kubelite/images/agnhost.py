"""An agnhost-compatible image: ``python -m kubelite.images.agnhost <subcommand> [flags]``.

kubelite runs containers as processes on the host, so the Kubernetes e2e test image agnhost
(kubernetes/test/images/agnhost) is re-implemented here with the standard library only. The image
catalog maps ``registry.k8s.io/e2e-test-images/agnhost:*`` (command ``/agnhost``) and
``registry.k8s.io/pause:*`` to this module.

Subcommands: ``netexec`` and the small servers live in sibling modules imported only when chosen;
``pause``, ``etc-hosts``, ``dns-suffix`` and ``dns-server-list`` are here. Start-up cost matters:
``pause`` holds every pod sandbox, so this module imports nothing beyond what the interpreter has
already loaded (``signal`` only when pausing) — see README.md for measured numbers.

Exit codes: 0 after SIGTERM or SIGINT (agnhost's own ``pause`` exits 2 and 1; kubelite's sandbox
wants a clean 0), 1 for an unknown subcommand, bad flags or a failure to start, 0 for ``--help``.
Log lines go to stderr in Go's ``log`` format; what agnhost prints with ``fmt`` goes to stdout.
"""

from __future__ import annotations

import os
import sys

from kubelite.images.goflags import FlagError, Flags, parse_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["RESOLV_CONF", "SUBCOMMANDS", "Subcommand", "dns_search_list", "dns_server_list", "main", "usage"]

VERSION = "2.53"
RESOLV_CONF = "/etc/resolv.conf"
ETC_HOSTS = "/etc/hosts"


class Subcommand:
    """Where a subcommand lives: ``module`` (``None`` = this one) holds ``flags`` (name -> default) and
    ``run(Flags) -> int``. Other modules are imported only when their subcommand runs."""

    __slots__ = ("flags", "module", "run", "summary")

    def __init__(self, module: str | None, flags: str, run: str, summary: str) -> None:
        self.module = module
        self.flags = flags
        self.run = run
        self.summary = summary

    def load(self) -> tuple[Mapping[str, bool | int | str], Callable[[Flags], int]]:
        if self.module is None:
            loaded = sys.modules[__name__]  # also right when this file runs as __main__
        else:
            import importlib

            loaded = importlib.import_module(self.module)
        return getattr(loaded, self.flags), getattr(loaded, self.run)


_HERE = None
_SERVERS = "kubelite.images.agnhost_servers"
SUBCOMMANDS: Mapping[str, Subcommand] = {
    "dns-server-list": Subcommand(
        _HERE, "NO_FLAGS", "run_dns_server_list", "Prints the host's DNS server list"
    ),
    "dns-suffix": Subcommand(_HERE, "NO_FLAGS", "run_dns_suffix", "Prints the host's DNS suffix list"),
    "etc-hosts": Subcommand(_HERE, "NO_FLAGS", "run_etc_hosts", "Prints the host's /etc/hosts file"),
    "liveness": Subcommand(
        _SERVERS, "LIVENESS_FLAGS", "run_liveness", "Starts a server that is alive for 10 seconds"
    ),
    "netexec": Subcommand(
        "kubelite.images.agnhost_netexec",
        "FLAGS",
        "run",
        "Creates HTTP(S) and UDP servers with various endpoints",
    ),
    "pause": Subcommand(_HERE, "PAUSE_FLAGS", "run_pause", "Pauses the execution"),
    "porter": Subcommand(
        _SERVERS, "PORTER_FLAGS", "run_porter", "Serves requested data on ports specified in ENV variables"
    ),
    "serve-hostname": Subcommand(
        _SERVERS, "SERVE_HOSTNAME_FLAGS", "run_serve_hostname", "Serves the hostname"
    ),
    "test-webserver": Subcommand(
        _SERVERS, "TEST_WEBSERVER_FLAGS", "run_test_webserver", "Starts a simple HTTP fileserver"
    ),
}
NO_FLAGS: Mapping[str, bool | int | str] = {}
PAUSE_FLAGS: Mapping[str, bool | int | str] = {"delay-shutdown": 0}


def _out(text: str) -> None:
    os.write(1, text.encode("utf-8", "replace"))


def _err(text: str) -> None:
    os.write(2, text.encode("utf-8", "replace"))


def usage() -> str:
    lines = [
        "agnhost (kubelite): the Kubernetes e2e test image agnhost, as host processes.",
        "",
        "Usage:",
        "  agnhost <subcommand> [flags]",
        "",
        "Subcommands:",
    ]
    width = max(len(name) for name in SUBCOMMANDS)
    lines.extend(f"  {name:<{width}}  {sub.summary}" for name, sub in sorted(SUBCOMMANDS.items()))
    lines += ["", 'Use "agnhost <subcommand> --help" for the flags of a subcommand.', ""]
    return "\n".join(lines)


def _subcommand_usage(name: str, spec: Mapping[str, bool | int | str]) -> str:
    lines = [f"Usage:\n  agnhost {name} [flags]\n", "Flags:"]
    for flag, default in sorted(spec.items()):
        kind = "" if isinstance(default, bool) else " int" if isinstance(default, int) else " string"
        shown = str(default).lower() if isinstance(default, bool) else '""' if default == "" else default
        lines.append(f"  --{flag}{kind}  (default {shown})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pause


def run_pause(flags: Flags) -> int:
    """Print ``Paused``, sleep until SIGTERM or SIGINT, wait ``--delay-shutdown`` seconds, exit 0."""
    import signal

    wanted = {signal.SIGTERM, signal.SIGINT}
    for signum in wanted:  # a shell starting us in the background may have set SIGINT to ignore
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)  # single-threaded: sigwait gets them
    _out("Paused\n")
    signal.sigwait(wanted)
    delay = flags.get_int("delay-shutdown")
    if delay > 0:
        import time

        _out(f"Sleeping {delay} seconds before exit ...")
        time.sleep(delay)
    _out("exiting 0\n")
    return 0


# ---------------------------------------------------------------- DNS and /etc/hosts


def _first_line_fields(text: str, keyword: str) -> list[str] | None:
    for line in text.splitlines():
        if line.startswith(keyword):
            return line.split()[1:]
    return None


def dns_search_list(resolv_conf: str) -> list[str] | None:
    """The first ``search`` line's domains (agnhost reads only the first such line)."""
    return _first_line_fields(resolv_conf, "search")


def dns_server_list(resolv_conf: str) -> list[str] | None:
    """The first ``nameserver`` line's addresses (agnhost reads only the first such line)."""
    return _first_line_fields(resolv_conf, "nameserver")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        _err(f"agnhost: cannot read {path}: {exc.strerror or exc}\n")
        return None


def run_dns_suffix(flags: Flags) -> int:
    text = _read(RESOLV_CONF)
    found = None if text is None else dns_search_list(text)
    if found is None:
        if text is not None:
            _err(f"agnhost: {RESOLV_CONF} has no search line: could not find the DNS search list\n")
        return 1
    _out(",".join(found) + "\n")
    return 0


def run_dns_server_list(flags: Flags) -> int:
    text = _read(RESOLV_CONF)
    found = None if text is None else dns_server_list(text)
    if found is None:
        if text is not None:
            _err(f"agnhost: {RESOLV_CONF} has no nameserver line: could not find the DNS server list\n")
        return 1
    _out(",".join(found) + "\n")
    return 0


def run_etc_hosts(flags: Flags) -> int:
    text = _read(ETC_HOSTS)
    if text is None:
        return 1
    _out(text + "\n")
    return 0


# ---------------------------------------------------------------- entry


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        _out(usage())
        return 0
    if args[0] == "--version":
        _out(f"agnhost version {VERSION} (kubelite)\n")
        return 0
    name = args[0]
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        _err(f'Error: unknown command "{name}" for "agnhost"\n\n{usage()}')
        return 1
    spec, run = sub.load()
    try:
        flags = parse_flags(spec, args[1:])
    except FlagError as exc:
        _err(f"Error: {exc}\n{_subcommand_usage(name, spec)}")
        return 1
    if flags.get_bool("help"):
        _out(_subcommand_usage(name, spec))
        return 0
    return run(flags)


if __name__ == "__main__":
    code = main()
    # Server threads may still be blocked in accept(); leave without joining them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
