"""Provider rules for cloud, VCS, CI, registries, databases, connection strings, private keys and
JWTs: realistic fakes are reported under the right rule, documentation placeholders and
look-alikes are not."""

from __future__ import annotations

import json
import random

import pytest

from coffer.scanner.checksums import base62_crc32
from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.rules import builtin_rules

RULES = builtin_rules()
ENGINE = Engine(RULES)
FILES = ("cloud.toml", "vcs.toml", "ci.toml", "registry.toml", "database.toml", "keys.toml")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B64 = _ALNUM + "+/"
_HEX = "0123456789abcdef"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _random(alphabet: str, length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def _github_style(prefix: str, seed: int) -> str:
    body = _random(_ALNUM, 30, seed)
    return prefix + body + base62_crc32(body)


def _scan(text: str, path: str = "config/settings.env") -> list[Finding]:
    return ENGINE.scan(text.encode(), path)


def _pem(label: str, lines: int, seed: int) -> str:
    body = "\n".join(_random(_B64, 64, seed + i) for i in range(lines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def test_these_files_hold_at_least_85_provider_rules_with_unique_kebab_ids() -> None:
    """The six rule files ship at least 85 non-generic rules, each id prefixed by its provider."""
    ours = [rule for rule in RULES.rules if rule.source in FILES]
    assert len(ours) >= 85, len(ours)
    assert not any(rule.generic for rule in ours)
    assert {rule.kind for rule in ours} >= {
        "cloud",
        "vcs",
        "ci",
        "registry",
        "database",
        "connection-string",
        "private-key",
        "jwt",
    }


@pytest.mark.parametrize(
    "decoy",
    [
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "GITHUB_TOKEN=ghp_" + "A" * 36,
        "glpat-xxxxxxxxxxxxxxxxxxxx",
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "DATABASE_URL=postgres://user:password@localhost/db",
        "DATABASE_URL=postgresql://app:${DB_PASS}@db:5432/app",
        "url = mysql://root:%(password)s@localhost/app",
        "REDIS_URL=redis://:changeme@localhost:6379/0",
        "MONGO_URL=mongodb+srv://admin:<password>@cluster0.mongodb.net/test",
        "see https://user:pass@example.com/path for the format",
        "Server=db;Database=app;User Id=sa;Password={0};",
        "jdbc:postgresql://db:5432/app?user=app&password=${JDBC_PASSWORD}",
        "heroku_api_key = ${HEROKU_API_KEY}",
        "dop_v1_" + "0" * 64,
        "AGE-SECRET-KEY-1" + "Q" * 58,
        "AccountName=devstore;AccountKey=<your-account-key>;",
        "PrivateKey = <wireguard private key>",
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA-your-key-here-"
        + "x" * 40
        + "\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_placeholders_and_documentation_examples_are_not_reported(decoy: str) -> None:
    """Placeholders, templated values, vendors' examples and filler characters are not reported
    by these files' rules (the generic rule's decoys are tested with the corpus)."""
    assert [f.rule_id for f in _scan(decoy + "\n") if RULES.by_id(f.rule_id).source in FILES] == []


def test_public_keys_and_certificates_are_not_private_keys() -> None:
    """PUBLIC KEY and CERTIFICATE blocks and an OpenSSH public key line are not reported."""
    text = (
        _pem("PUBLIC KEY", 6, 1)
        + _pem("CERTIFICATE", 12, 2)
        + _pem("RSA PUBLIC KEY", 4, 3)
        + "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"
        + _random(_B64, 43, 4)
        + " dev@laptop\n"
    )
    assert _scan(text, "keys/server.pem") == []


@pytest.mark.parametrize("prefix", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_"])
def test_a_token_with_a_wrong_checksum_is_not_reported(prefix: str) -> None:
    """A GitHub or npm token whose CRC32 does not match its body is a look-alike, not a token."""
    good = _github_style(prefix, 11)
    wrong = good[:-6] + ("000000" if good[-6:] != "000000" else "000001")
    assert [f.verified for f in _scan(f"token: {good}\n")] == [True]
    assert _scan(f"token: {wrong}\n") == []


def test_an_env_file_reports_each_provider_secret_under_its_rule() -> None:
    """A realistic .env file yields one finding per secret, on its line, with the right rule."""
    github = _github_style("ghp_", 21)
    lines = {
        "github-pat": f"GH_TOKEN={github}",
        "gitlab-pat": f"GITLAB_TOKEN=glpat-{_random(_ALNUM, 20, 22)}",
        "aws-access-key-id": f"AWS_ACCESS_KEY_ID=AKIA{_random(_BASE32, 16, 23)}",
        "aws-secret-access-key": f"AWS_SECRET_ACCESS_KEY={_random(_B64, 40, 24)}",
        "postgres-connection-string": (
            f"DATABASE_URL=postgresql://billing:{_random(_ALNUM, 20, 25)}@db.internal:5432/billing"
        ),
        "digitalocean-personal-access-token": f"DO_TOKEN=dop_v1_{_random(_HEX, 64, 26)}",
        "pulumi-access-token": f"PULUMI_ACCESS_TOKEN=pul-{_random(_HEX, 40, 27)}",
        "dockerhub-personal-access-token": f"DOCKER_TOKEN=dckr_pat_{_random(_ALNUM, 27, 28)}",
    }
    text = "\n".join(["# production settings", *lines.values()]) + "\n"
    findings = _scan(text, ".env")
    assert [(f.rule_id, f.line) for f in findings] == [
        (rule_id, number) for number, rule_id in enumerate(lines, start=2)
    ]
    assert all(f.secret in text for f in findings)


def test_a_connection_string_reports_only_the_password() -> None:
    """In a URL with credentials the secret is the password, not the user or the host."""
    password = _random(_ALNUM, 18, 31)
    text = f'amqp_url: "amqps://orders:{password}@mq.internal:5671/orders"\n'
    assert [(f.rule_id, f.secret) for f in _scan(text)] == [("amqp-connection-string", password)]


def test_an_azure_storage_connection_string_is_one_connection_string_finding() -> None:
    """The AccountKey in a storage connection string is reported once, as a connection string."""
    key = _random(_B64, 86, 41) + "=="
    text = (
        "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=invoices;"
        f"AccountKey={key};EndpointSuffix=core.windows.net\n"
    )
    assert [(f.rule_id, f.secret) for f in _scan(text)] == [
        ("azure-storage-connection-string", key)
    ]


def test_a_service_account_file_reports_its_key_id_and_private_key() -> None:
    """A Google service-account JSON file yields its private_key_id and its PEM private key, even
    with the key's newlines escaped inside the JSON string."""
    pem = _pem("PRIVATE KEY", 16, 50)
    document = {
        "type": "service_account",
        "project_id": "billing-prod",
        "private_key_id": _random(_HEX, 40, 51),
        "private_key": pem,
        "client_email": "deployer@billing-prod.iam.gserviceaccount.com",
    }
    text = json.dumps(document, indent=2)
    findings = _scan(text, "deploy/service-account.json")
    assert [f.rule_id for f in findings] == ["gcp-service-account-key-id", "private-key-pkcs8"]
    assert findings[1].secret.startswith("-----BEGIN PRIVATE KEY-----")
    assert findings[1].secret.endswith("-----END PRIVATE KEY-----")


def test_a_private_key_is_reported_on_its_begin_line() -> None:
    """A PEM block in the middle of a file is one finding located at its BEGIN line."""
    text = "# deploy key\n\n" + _pem("OPENSSH PRIVATE KEY", 7, 60) + "# end\n"
    findings = _scan(text, "deploy/id_ed25519")
    assert [(f.rule_id, f.line, f.column) for f in findings] == [("private-key-openssh", 3, 1)]


def test_a_wireguard_config_reports_the_private_and_preshared_keys() -> None:
    """A wg-quick file yields its PrivateKey and PresharedKey, not the peer's PublicKey."""
    text = (
        "[Interface]\n"
        f"PrivateKey = {_random(_B64, 42, 70)}A=\n"
        "Address = 10.8.0.2/24\n\n[Peer]\n"
        f"PublicKey = {_random(_B64, 42, 71)}E=\n"
        f"PresharedKey = {_random(_B64, 42, 72)}I=\n"
    )
    assert [f.rule_id for f in _scan(text, "wg0.conf")] == [
        "wireguard-private-key",
        "wireguard-preshared-key",
    ]


def test_registry_config_files_report_their_credentials() -> None:
    """.npmrc auth tokens, Docker config auths and Maven server passwords are found."""
    npm_token = _github_style("npm_", 80)
    npmrc = f"//registry.npmjs.org/:_authToken={npm_token}\n"
    docker = json.dumps({"auths": {"ghcr.io": {"auth": _random(_B64, 48, 81) + "=="}}}, indent=2)
    maven = (
        "<settings><servers>\n  <server>\n    <id>releases</id>\n"
        f"    <username>deployer</username>\n    <password>{_random(_ALNUM, 20, 82)}</password>\n"
        "  </server>\n</servers></settings>\n"
    )
    assert [f.rule_id for f in _scan(npmrc, ".npmrc")] == ["npm-access-token"]
    assert [f.rule_id for f in _scan(docker, ".docker/config.json")] == ["docker-config-auth"]
    assert [f.rule_id for f in _scan(maven, ".m2/settings.xml")] == ["maven-settings-password"]


def test_a_jwt_is_reported_once_and_a_turso_token_under_turso() -> None:
    """A bare JWT is a jwt finding; the same shape assigned to a Turso variable is a Turso token."""
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI"
        + _random(_ALNUM, 60, 90)
        + "."
        + _random(_ALNUM, 43, 91)
    )
    assert [f.rule_id for f in _scan(f"Authorization: Bearer {token}\n")] == ["jwt"]
    assert [f.rule_id for f in _scan(f"TURSO_AUTH_TOKEN={token}\n")] == ["turso-auth-token"]


def test_context_rules_need_the_provider_name() -> None:
    """A bare UUID or 40-hex value is not a Heroku key or a SonarCloud token without the name."""
    uuid_value = "3f0c6a52-9b7e-4d21-8c3a-5e6f7a8b9c0d"
    hex_value = _random(_HEX, 40, 100)
    assert _scan(f"request_id: {uuid_value}\ncommit: {hex_value}\n") == []
    assert [f.rule_id for f in _scan(f"HEROKU_API_KEY={uuid_value}\n")] == ["heroku-api-key"]
    assert [f.rule_id for f in _scan(f"SONAR_TOKEN={hex_value}\n")] == ["sonarcloud-token"]
