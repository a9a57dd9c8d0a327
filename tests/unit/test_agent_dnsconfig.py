"""resolv.conf for every dnsPolicy, /etc/hosts and the pod's hostname, as the kubelet writes them."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.agent.dnsconfig import (
    ClusterDNS,
    ResolverConfig,
    hosts_file,
    kernel_hostname,
    parse_resolv_conf,
    pod_dns_config,
    pod_hostname,
    resolv_conf,
)

Obj = dict[str, Any]
DNS = ClusterDNS(servers=("10.96.0.10",), domain="cluster.local")
HOST = """# managed by the node
nameserver 192.168.1.1
nameserver 192.168.1.2
search old.example
search corp.example. lab.example
options timeout:2 attempts:3
"""


def _pod(name: str = "web-1", namespace: str = "shop", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_parse_resolv_conf() -> None:
    assert parse_resolv_conf(HOST) == ResolverConfig(
        ("192.168.1.1", "192.168.1.2"), ("corp.example", "lab.example"), ("timeout:2", "attempts:3")
    )


def test_cluster_first_is_the_default() -> None:
    assert resolv_conf(_pod(), DNS, host_resolv_text=HOST) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_cluster_first_drops_duplicate_host_searches() -> None:
    text = resolv_conf(_pod(), DNS, host_resolv_text="search cluster.local example.org\nnameserver 1.1.1.1\n")
    assert text.splitlines()[0] == "search shop.svc.cluster.local svc.cluster.local cluster.local example.org"


def test_host_network_cluster_first_resolves_like_the_node() -> None:
    expected = (
        "search corp.example lab.example\n"
        "nameserver 192.168.1.1\nnameserver 192.168.1.2\n"
        "options timeout:2 attempts:3\n"
    )
    assert resolv_conf(_pod(hostNetwork=True), DNS, host_resolv_text=HOST) == expected
    assert resolv_conf(_pod(dnsPolicy="Default"), DNS, host_resolv_text=HOST) == expected


def test_cluster_first_with_host_net_uses_the_cluster_dns() -> None:
    text = resolv_conf(
        _pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), DNS, host_resolv_text=HOST
    )
    assert "nameserver 10.96.0.10\n" in text
    assert text.startswith("search shop.svc.cluster.local ")


def test_policy_none_uses_only_dns_config() -> None:
    pod = _pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.1.1.1"],
            "searches": ["resolv.conf.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    )
    assert resolv_conf(pod, DNS, host_resolv_text=HOST) == (
        "search resolv.conf.local\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
    )


@pytest.mark.parametrize("dns_config", [None, {}, {"searches": ["a.example"]}])
def test_policy_none_needs_a_nameserver(dns_config: Obj | None) -> None:
    pod = _pod(dnsPolicy="None", dnsConfig=dns_config)
    with pytest.raises(ValueError, match="no nameservers"):
        resolv_conf(pod, DNS, host_resolv_text=HOST)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="dnsPolicy 'Cluster' is not one of"):
        resolv_conf(_pod(dnsPolicy="Cluster"), DNS, host_resolv_text=HOST)


def test_dns_config_merges_into_cluster_first() -> None:
    pod = _pod(
        dnsConfig={
            "nameservers": ["10.96.0.10", "1.1.1.1"],
            "searches": ["cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }
    )
    assert resolv_conf(pod, DNS, host_resolv_text="") == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
        "nameserver 10.96.0.10\nnameserver 1.1.1.1\n"
        "options ndots:1 single-request-reopen\n"
    )


def test_dns_config_merges_into_default() -> None:
    pod = _pod(dnsPolicy="Default", dnsConfig={"options": [{"name": "attempts", "value": "5"}]})
    assert resolv_conf(pod, DNS, host_resolv_text=HOST).splitlines()[-1] == "options timeout:2 attempts:5"


def test_limits_on_nameservers_and_search_paths() -> None:
    pod = _pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
            "searches": [f"d{i}.example" for i in range(40)],
        },
    )
    config, warnings = pod_dns_config(pod, DNS, host_resolv_text="")
    assert config.nameservers == ("1.1.1.1", "2.2.2.2", "3.3.3.3")
    assert config.searches == tuple(f"d{i}.example" for i in range(32))
    assert warnings == [
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line "
        "is: 1.1.1.1 2.2.2.2 3.3.3.3",
        "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "
        + " ".join(config.searches),
    ]


def test_search_line_length_and_overlong_domains() -> None:
    long_label = "a" * 63
    too_long = ".".join([long_label] * 4)  # 255 characters: dropped
    domains = [".".join([long_label] * 3) + f".d{i}" for i in range(12)]  # ~195 characters each
    pod = _pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": [too_long, *domains]})
    config, warnings = pod_dns_config(pod, DNS, host_resolv_text="")
    assert too_long not in config.searches
    assert len(" ".join(config.searches)) <= 2048
    assert config.searches == tuple(domains[: len(config.searches)])
    assert len(config.searches) == 10
    assert len(warnings) == 1


def test_no_cluster_dns_falls_back_to_the_node() -> None:
    config, warnings = pod_dns_config(_pod(), ClusterDNS(servers=()), host_resolv_text=HOST)
    assert config.nameservers == ("192.168.1.1", "192.168.1.2")
    assert 'Falling back to "Default" policy' in warnings[0]


def test_no_node_resolv_conf_means_localhost() -> None:
    dns = ClusterDNS(host_resolv_conf="")
    text = resolv_conf(_pod(dnsPolicy="Default"), dns, host_resolv_text=HOST)
    assert text == "search .\nnameserver 127.0.0.1\n"


# --- hostname and /etc/hosts --------------------------------------------------------------------

LOCALHOST = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def test_hosts_file_without_subdomain() -> None:
    text = hosts_file(_pod(), pod_ips=["10.244.1.7"], hostname="web-1", domain="cluster.local")
    assert text == LOCALHOST + "10.244.1.7\tweb-1\n"


def test_hosts_file_with_subdomain_and_host_aliases() -> None:
    pod = _pod(
        hostname="db-0",
        subdomain="db",
        hostAliases=[
            {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
            {"ip": "10.1.2.3", "hostnames": ["foo.remote"]},
        ],
    )
    hostname, fqdn = pod_hostname(pod, domain="cluster.local")
    assert (hostname, fqdn) == ("db-0", "db-0.db.shop.svc.cluster.local")
    text = hosts_file(pod, pod_ips=["10.244.1.7", "fd00::7"], hostname=hostname, domain="cluster.local")
    assert text == LOCALHOST + (
        "10.244.1.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"
        "fd00::7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "127.0.0.1\tfoo.local\tbar.local\n"
        "10.1.2.3\tfoo.remote\n"
    )


def test_hosts_file_of_a_host_network_pod() -> None:
    pod = _pod(hostNetwork=True, hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x"]}])
    text = hosts_file(
        pod, pod_ips=[], hostname="n", domain="cluster.local", node_hosts_text="127.0.0.1 localhost\n"
    )
    assert text == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        "\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
    )


def test_pod_hostname_defaults_to_the_pod_name_cut_to_63() -> None:
    assert pod_hostname(_pod(), domain="cluster.local") == ("web-1", "")
    name = "a" * 62 + "-bcd"  # character 63 is "-": dropped after the cut
    assert pod_hostname(_pod(name=name), domain="cluster.local") == ("a" * 62, "")


@pytest.mark.parametrize(("field", "value"), [("hostname", "Web_1"), ("subdomain", "no.dots")])
def test_invalid_hostname_or_subdomain(field: str, value: str) -> None:
    with pytest.raises(ValueError, match="is not a valid DNS label"):
        pod_hostname(_pod(**{field: value}), domain="cluster.local")


def test_kernel_hostname_with_set_hostname_as_fqdn() -> None:
    pod = _pod(hostname="db-0", subdomain="db", setHostnameAsFQDN=True)
    assert kernel_hostname(pod, domain="cluster.local") == "db-0.db.shop.svc.cluster.local"
    assert kernel_hostname(_pod(hostname="db-0", subdomain="db"), domain="cluster.local") == "db-0"
    long = _pod(hostname="h" * 40, subdomain="db", setHostnameAsFQDN=True)
    with pytest.raises(
        ValueError, match="is too long \\(64 characters is the max, 66 characters requested\\)"
    ):
        kernel_hostname(long, domain="cluster.local")
