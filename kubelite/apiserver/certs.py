"""Cluster credentials in the data dir: a CA, the API server's serving certificate, an admin
bearer token, and the admin kubeconfig that kubectl uses unchanged.

    DIR/pki/ca.crt, ca.key            self-signed CA (10 years)
    DIR/pki/apiserver.crt, .key       serving cert for every address the server answers on
    DIR/pki/tokens                    "token,user" lines (the admin token first)
    DIR/kubeconfig                    written last, when the server is ready to serve

Files are created once and reused on restart, so clients keep working across restarts.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    tokens: dict[str, str]
    """token -> user name"""

    @property
    def admin_token(self) -> str:
        return next(iter(self.tokens))

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        return ctx


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca(pki: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelite-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(pki / "ca.key", _key_pem(key))
    (pki / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san_list(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def _new_serving_cert(pki: Path, hosts: list[str]) -> None:
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(_san_list(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki / "apiserver.key", _key_pem(key))
    (pki / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.hosts").write_text("\n".join(hosts) + "\n")


def serving_hosts(listen_host: str, extra: list[str] | None = None) -> list[str]:
    hosts = [
        "127.0.0.1",
        "localhost",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        socket.gethostname(),
    ]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.append(listen_host)
    return hosts + list(extra or [])


def ensure_credentials(data_dir: Path, hosts: list[str]) -> Credentials:
    """Create what is missing (CA, serving cert covering ``hosts``, admin token); reuse the rest."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists() or not (pki / "ca.key").exists():
        _new_ca(pki)
    hosts_file = pki / "apiserver.hosts"
    known = set(hosts_file.read_text().split()) if hosts_file.exists() else set()
    if not (pki / "apiserver.crt").exists() or not set(hosts) <= known:
        _new_serving_cert(pki, sorted(known | set(hosts)))
    tokens_file = pki / "tokens"
    if not tokens_file.exists():
        _write_private(tokens_file, f"{secrets.token_urlsafe(32)},admin\n".encode())
    tokens: dict[str, str] = {}
    for line in tokens_file.read_text().splitlines():
        if "," in line:
            token, user = line.split(",", 1)
            tokens[token.strip()] = user.strip()
    return Credentials(pki / "ca.crt", pki / "apiserver.crt", pki / "apiserver.key", tokens)


def kubeconfig(creds: Credentials, server_url: str, *, cluster: str = "kubelite") -> str:
    ca_data = base64.b64encode(creds.ca_cert.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server_url, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": "admin", "user": {"token": creds.admin_token}}],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": "admin", "namespace": "default"}}
        ],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    _write_private(tmp, text.encode())
    tmp.replace(path)
