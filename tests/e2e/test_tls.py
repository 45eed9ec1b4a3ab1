"""HTTPS end to end: ``coffer server`` with a certificate, reached by httpx and by the CLI
trusting it through COFFER_CA_CERT; plain HTTP to a remote host is refused by the CLI."""

from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import Cli, base_env, bootstrap_token, spawn_server


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """Writes a certificate for 127.0.0.1 and its key; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coffer test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_server_serves_https_and_the_cli_trusts_its_ca(tmp_path: Path) -> None:
    """With COFFER_TLS_CERT/KEY the server speaks HTTPS (with HSTS), refuses to be reached
    without trusting the certificate, and the CLI works through COFFER_CA_CERT."""
    home = tmp_path / "home"
    home.mkdir()
    cert, key = _self_signed(tmp_path)
    server = spawn_server(
        tmp_path / "vault",
        None,
        tmp_path / "server.log",
        home,
        extra_env={"COFFER_TLS_CERT": str(cert), "COFFER_TLS_KEY": str(key)},
    )
    url = f"https://127.0.0.1:{server.port}"
    try:
        deadline = time.monotonic() + 20
        response = None
        while time.monotonic() < deadline and response is None:
            assert server.process.poll() is None, server.log_text()
            try:
                response = httpx.get(f"{url}/healthz", verify=str(cert), timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, server.log_text()
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2.0)  # untrusted certificate
        token = bootstrap_token(server.log_text())
        assert token
        cli = Cli(base_env(home, {"COFFER_ADDR": url, "COFFER_TOKEN": token}), home)
        plain = cli("projects", "list", "--json")
        assert plain.returncode != 0  # the certificate is not trusted without the CA
        trusted = cli.with_env(COFFER_CA_CERT=str(cert))("projects", "list", "--json")
        assert trusted.returncode == 0, trusted.stderr
    finally:
        server.stop()


def test_cli_refuses_plain_http_to_a_remote_host(tmp_path: Path) -> None:
    """Credentials never travel over plain HTTP except to loopback: exit 7, nothing sent."""
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(
        base_env(
            home,
            {
                "COFFER_ADDR": "http://vault.example.invalid:8390",
                "COFFER_TOKEN": "coffer_boot_00000000000000000000000000000000_000000",
            },
        ),
        home,
    )
    result = cli("projects", "list")
    assert result.returncode == 7, result.stderr
    assert "https://" in result.stderr
