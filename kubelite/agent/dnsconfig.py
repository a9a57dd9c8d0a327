"""A pod's resolver configuration, ``/etc/hosts`` and hostname, as the kubelet writes them (pure).

    pod.spec.dnsPolicy ─┬─ ClusterFirst (default) ─► cluster DNS servers, search <ns>.svc.<zone> svc.<zone> <zone> + node's, ndots:5
                        ├─ ClusterFirstWithHostNet ─► the same, also for hostNetwork pods
                        ├─ Default ────────────────► the node's resolv.conf (also ClusterFirst + hostNetwork)
                        └─ None ───────────────────► only spec.dnsConfig
    then spec.dnsConfig is merged in (nameservers, searches appended without duplicates; options by name),
    then the kubelet's limits: 3 nameservers, 32 search domains / 2048 characters, no domain > 253.

The text follows the container runtime's layout (containerd): ``search …``, ``nameserver …`` lines,
``options …``. :func:`pod_dns_config` also returns the warnings the kubelet records as
``DNSConfigForming`` / ``MissingClusterDNS`` events.

``hosts_file`` is the kubelet's managed ``/etc/hosts`` (``managedHostsFileContent``); ``pod_hostname``
its ``GeneratePodHostNameAndDomain``; ``kernel_hostname`` what the pod's UTS namespace gets.
Invalid input a user can write (bad dnsPolicy, dnsPolicy None without nameservers, a hostname that
is not a DNS label) raises ValueError with a sentence.
"""  # noqa: E501

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ClusterDNS",
    "ResolverConfig",
    "hosts_file",
    "kernel_hostname",
    "parse_resolv_conf",
    "pod_dns_config",
    "pod_hostname",
    "resolv_conf",
]

Obj = Mapping[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_DOMAIN_LENGTH = 253  # a search path longer than this makes glibc abort
DEFAULT_OPTIONS = ("ndots:5",)
HOSTNAME_MAX = 63
FQDN_MAX = 64
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True, slots=True)
class ClusterDNS:
    """The agent's DNS settings: ``servers`` for ClusterFirst pods, the cluster ``domain``, and the
    node's resolver file (Default pods; "" means none: queries go to the node's localhost)."""

    servers: tuple[str, ...] = ("10.96.0.10",)
    domain: str = "cluster.local"
    host_resolv_conf: str = "/etc/resolv.conf"


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines.extend(f"nameserver {ns}" for ns in self.nameservers)
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> ResolverConfig:
    """Nameservers accumulate; the last ``search`` and ``options`` lines win (kubelet parseResolvConf).
    Search domains lose a trailing dot, so ``a.`` and ``a`` count once."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.strip().split()
        if not fields or fields[0].startswith("#") or fields[0].startswith(";"):
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return ResolverConfig(tuple(nameservers), tuple(searches), tuple(options))


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(existing: Sequence[str], extra: Sequence[Obj]) -> tuple[str, ...]:
    """Options by name; ``dnsConfig.options`` override (in place) or are appended."""
    merged: dict[str, str | None] = {}
    for text in existing:
        name, sep, value = text.partition(":")
        merged[name] = value if sep else None
    for option in extra:
        raw = option.get("value")
        merged[str(option.get("name") or "")] = None if raw in (None, "") else str(raw)
    return tuple(name if value is None else f"{name}:{value}" for name, value in merged.items() if name)


def _fit_searches(searches: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """The kubelet's search-line limits: first 32 domains, none over 253 chars, the line ≤ 2048."""
    out = list(searches)
    exceeded = False
    if len(out) > MAX_SEARCH_PATHS:
        out, exceeded = out[:MAX_SEARCH_PATHS], True
    kept = [s for s in out if len(s) <= MAX_DOMAIN_LENGTH]
    exceeded = exceeded or len(kept) != len(out)
    while kept and len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()  # drop from the end until the line fits
        exceeded = True
    return tuple(kept), exceeded


def _policy(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    policy = str(spec.get("dnsPolicy") or "ClusterFirst")
    if policy not in POLICIES:
        raise ValueError(f"dnsPolicy {policy!r} is not one of {', '.join(POLICIES)}; fix spec.dnsPolicy")
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        return "Default"  # a hostNetwork pod resolves like its node unless ClusterFirstWithHostNet
    if policy == "ClusterFirstWithHostNet":
        return "ClusterFirst"
    return policy


def pod_dns_config(pod: Obj, dns: ClusterDNS, *, host_resolv_text: str) -> tuple[ResolverConfig, list[str]]:
    """The pod's resolver settings and the warnings (event messages) forming them produced."""
    spec = pod.get("spec") or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    warnings: list[str] = []
    policy = _policy(pod)
    dns_config = spec.get("dnsConfig") or {}
    if policy == "None" and not (dns_config.get("nameservers") or []):
        raise ValueError(
            "dnsPolicy None takes the resolver settings from spec.dnsConfig only, and it has no "
            "nameservers: add at least one to spec.dnsConfig.nameservers"
        )

    if dns.host_resolv_conf:
        host = parse_resolv_conf(host_resolv_text)
    else:  # no node resolver file: the node's localhost, no search (kubelet --resolv-conf="")
        host = ResolverConfig(("127.0.0.1",), (".",), ())

    if policy == "None":
        base = ResolverConfig()
    elif policy == "ClusterFirst" and dns.servers:
        searches: tuple[str, ...] = host.searches
        if dns.domain:
            cluster = (f"{namespace}.svc.{dns.domain}", f"svc.{dns.domain}", dns.domain)
            searches = _unique([*cluster, *host.searches])
        base = ResolverConfig(tuple(dns.servers), searches, DEFAULT_OPTIONS)
    else:
        if policy == "ClusterFirst":
            warnings.append(
                'kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                'policy. Falling back to "Default" policy.'
            )
        base = host

    if dns_config:
        base = ResolverConfig(
            _unique([*base.nameservers, *(str(s) for s in dns_config.get("nameservers") or [])]),
            _unique([*base.searches, *(str(s) for s in dns_config.get("searches") or [])]),
            _merge_options(base.options, dns_config.get("options") or []),
        )

    nameservers = base.nameservers
    if len(nameservers) > MAX_NAMESERVERS:
        nameservers = nameservers[:MAX_NAMESERVERS]
        warnings.append(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied "
            f"nameserver line is: {' '.join(nameservers)}"
        )
    searches, exceeded = _fit_searches(base.searches)
    if exceeded:
        warnings.append(
            "Search Line limits were exceeded, some search paths have been omitted, the applied "
            f"search line is: {' '.join(searches)}"
        )
    return ResolverConfig(nameservers, searches, base.options), warnings


def resolv_conf(pod: Obj, dns: ClusterDNS, *, host_resolv_text: str) -> str:
    """The pod's ``/etc/resolv.conf`` text; ``host_resolv_text`` is the node's file (Default policy)."""
    config, _warnings = pod_dns_config(pod, dns, host_resolv_text=host_resolv_text)
    return config.render()


# --- hostname and /etc/hosts ----------------------------------------------------------------------


def _truncate(hostname: str, pod_name: str) -> str:
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    truncated = hostname[:HOSTNAME_MAX].rstrip("-.")
    if not truncated:
        raise ValueError(f"hostname for pod {pod_name!r} was invalid: {hostname!r}")
    return truncated


def _host_domain(pod: Obj, domain: str) -> str:
    """``<subdomain>.<ns>.svc.<domain>`` when the pod has a subdomain, else ""."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    subdomain = str(spec.get("subdomain") or "")
    if not subdomain:
        return ""
    if not (len(subdomain) <= HOSTNAME_MAX and _DNS_LABEL.match(subdomain)):
        raise ValueError(
            f"pod Subdomain {subdomain!r} is not a valid DNS label: use lower-case letters, digits and '-'"
        )
    return f"{subdomain}.{meta.get('namespace', '')}.svc.{domain}"


def pod_hostname(pod: Obj, *, domain: str) -> tuple[str, str]:
    """``(hostname, fqdn)``: ``spec.hostname`` or the pod name, cut to 63 characters (trailing
    ``-``/``.`` removed); the FQDN ``<hostname>.<subdomain>.<ns>.svc.<domain>`` when
    ``spec.subdomain`` is set, else "". ``domain`` is the cluster domain."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    pod_name = str(meta.get("name") or "")
    override = spec.get("hostnameOverride")
    if override:
        override = str(override)
        if not (len(override) <= MAX_DOMAIN_LENGTH and _DNS_SUBDOMAIN.match(override)):
            raise ValueError(f"pod HostnameOverride {override!r} is not a valid DNS subdomain")
        return _truncate(override, pod_name), ""
    hostname = pod_name
    if spec.get("hostname"):
        hostname = str(spec["hostname"])
        if not (len(hostname) <= HOSTNAME_MAX and _DNS_LABEL.match(hostname)):
            raise ValueError(
                f"pod Hostname {hostname!r} is not a valid DNS label: use lower-case letters, digits and '-'"
            )
    hostname = _truncate(hostname, pod_name)
    host_domain = _host_domain(pod, domain)
    return hostname, (f"{hostname}.{host_domain}" if host_domain else "")


def kernel_hostname(pod: Obj, *, domain: str) -> str:
    """The pod's UTS hostname: the FQDN with ``setHostnameAsFQDN`` (at most 64 characters), else
    the short hostname (kubelet ``GetNodenameForKernel``)."""
    hostname, fqdn = pod_hostname(pod, domain=domain)
    if fqdn and (pod.get("spec") or {}).get("setHostnameAsFQDN"):
        if len(fqdn) > FQDN_MAX:
            raise ValueError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
                f"({FQDN_MAX} characters is the max, {len(fqdn)} characters requested)"
            )
        return fqdn
    return hostname


def _host_aliases(pod: Obj) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines.extend(
        f"{a.get('ip', '')}\t" + "\t".join(str(h) for h in a.get("hostnames") or []) for a in aliases
    )
    return "\n".join(lines) + "\n"


def hosts_file(
    pod: Obj, *, pod_ips: Sequence[str], hostname: str, domain: str, node_hosts_text: str | None = None
) -> str:
    """The pod's ``/etc/hosts`` (``domain`` is the cluster domain; the FQDN comes from the pod's
    subdomain). A hostNetwork pod given ``node_hosts_text`` gets the node's file plus its aliases."""
    if (pod.get("spec") or {}).get("hostNetwork") and node_hosts_text is not None:
        return "# Kubernetes-managed hosts file (host network).\n" + node_hosts_text + _host_aliases(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    host_domain = _host_domain(pod, domain)
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{host_domain}\t{hostname}" if host_domain else f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n" + _host_aliases(pod)
