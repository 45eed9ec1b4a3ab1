"""Real root key providers for the tests: a SoftHSM2 token and a moto stand-alone KMS server.

A test module uses them with ``pytest_plugins = ("tests.provider_fixtures",)`` and imports
names from here only under ``TYPE_CHECKING`` (importing the module first would keep pytest
from rewriting its asserts); everything a test needs comes through the fixtures. The token is
initialised once per test session in a temporary directory named by its own SOFTHSM2_CONF
(the PKCS#11 library reads that file once per process, so a session has one token and each
test names its own key label); the KMS server runs as a subprocess on a free 127.0.0.1 port
and each test makes its own keys. When softhsm2 or moto is missing the tests are skipped with
the reason; under CI they fail instead, since CI installs both.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import boto3
import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

SOFTHSM_MODULE = Path(
    os.environ.get("COFFER_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
)
TOKEN_LABEL = "coffer-test"
TOKEN_PIN = "2468-user-pin"
TOKEN_SO_PIN = "97531-so-pin"
KMS_REGION = "us-east-1"
KMS_TIMEOUT = 1  # seconds: COFFER_KMS_TIMEOUT's minimum, so the unreachable cases stay quick
# What the test AWS client presents; moto accepts any credentials.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": KMS_REGION,
}


def unavailable(reason: str) -> NoReturn:
    """Skips the test with ``reason``; fails it under CI, which must run every provider."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the root key provider tests: {reason}")
    pytest.skip(reason)


# --- SoftHSM2 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised SoftHSM2 token: the PKCS#11 module, the token's label and user PIN."""

    module: Path
    label: str
    pin: str = field(repr=False)

    def env(self, key_label: str, **changes: str) -> dict[str, str]:
        """The COFFER_* variables of a vault whose root is the AES key ``key_label`` in this
        token (``changes`` override or, when empty, drop a variable)."""
        variables = {
            "COFFER_ROOT_PROVIDER": "pkcs11",
            "COFFER_PKCS11_MODULE": str(self.module),
            "COFFER_PKCS11_TOKEN": self.label,
            "COFFER_PKCS11_PIN": self.pin,
            "COFFER_PKCS11_KEY_LABEL": key_label,
        }
        variables.update(changes)
        return {name: value for name, value in variables.items() if value}

    def _session(self) -> pkcs11.Session:
        token = pkcs11.lib(str(self.module)).get_token(token_label=self.label)
        return token.open(user_pin=self.pin, rw=True)

    def aes_key_labels(self) -> list[str]:
        """The labels of the token's AES secret keys, sorted (repeated when keys share one)."""
        with self._session() as session:
            found = session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            )
            return sorted(str(key[Attribute.LABEL]) for key in found)

    def key_attributes(self, label: str) -> dict[str, bool]:
        """Whether the key labelled ``label`` is sensitive and extractable."""
        with self._session() as session:
            key = session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
            )
            return {
                "sensitive": bool(key[Attribute.SENSITIVE]),
                "extractable": bool(key[Attribute.EXTRACTABLE]),
            }

    def destroy_key(self, label: str) -> None:
        """Deletes the AES key labelled ``label`` from the token."""
        with self._session() as session:
            session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
            ).destroy()

    def create_key(self, label: str) -> None:
        """Makes a new AES-256 key labelled ``label`` in the token."""
        with self._session() as session:
            session.generate_key(KeyType.AES, 256, label=label, store=True)


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """A SoftHSM2 token initialised for this session in a temporary token directory."""
    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_MODULE.is_file():
        unavailable(
            f"softhsm2 is not installed (softhsm2-util on PATH and {SOFTHSM_MODULE} are needed)"
        )
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("SOFTHSM2_CONF", str(conf))
    try:
        subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                TOKEN_LABEL,
                "--pin",
                TOKEN_PIN,
                "--so-pin",
                TOKEN_SO_PIN,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        token = SoftHsmToken(module=SOFTHSM_MODULE, label=TOKEN_LABEL, pin=TOKEN_PIN)
        try:
            token.aes_key_labels()
        except pkcs11.exceptions.NoSuchToken:
            pytest.fail(
                "the PKCS#11 library was loaded before the test token existed; the token "
                "fixture must run before anything else opens the library"
            )
        yield token
    finally:
        patch.undo()


@pytest.fixture
def hsm_key_label() -> str:
    """A key label no other test uses (the session's token is shared)."""
    return f"coffer-root-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pkcs11_env(softhsm_token: SoftHsmToken, hsm_key_label: str) -> dict[str, str]:
    """The COFFER_* variables of a vault rooted in the session's token under a new label."""
    return softhsm_token.env(hsm_key_label)


# --- AWS KMS (moto) -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class KmsServer:
    """A moto stand-alone server answering the KMS API at ``endpoint``."""

    endpoint: str
    region: str = KMS_REGION
    timeout: int = KMS_TIMEOUT

    @functools.cached_property
    def client(self) -> Any:
        """A boto3 KMS client on the server (made once: a client takes a while to build)."""
        return boto3.session.Session().client(
            "kms",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def create_key(self, description: str = "coffer test root") -> str:
        """Creates a symmetric KMS key and returns its ARN."""
        made = self.client.create_key(
            Description=description, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT"
        )
        arn: str = made["KeyMetadata"]["Arn"]
        return arn

    def env(self, key_id: str, **changes: str) -> dict[str, str]:
        """The COFFER_* variables of a vault whose root is the KMS key ``key_id`` on this
        server (``changes`` override or, when empty, drop a variable)."""
        variables = {
            "COFFER_ROOT_PROVIDER": "awskms",
            "COFFER_KMS_KEY_ID": key_id,
            "COFFER_KMS_REGION": self.region,
            "COFFER_KMS_ENDPOINT": self.endpoint,
            "COFFER_KMS_TIMEOUT": str(self.timeout),
        }
        variables.update(changes)
        return {name: value for name, value in variables.items() if value}


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"moto_server did not listen on 127.0.0.1:{port} within 30s")


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmsServer]:
    """A moto KMS server on a free 127.0.0.1 port for this session, stopped at the end."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        unavailable("moto[server] is not installed (pip install 'moto[server]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS_TEST_ENV},
        )
    try:
        _wait_until_listening(process, port, log)
        yield KmsServer(endpoint=f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def kms(kms_server: KmsServer, monkeypatch: pytest.MonkeyPatch) -> KmsServer:
    """The session's KMS server, with test AWS credentials in the environment (and no other
    source of credentials: no profile files, no instance metadata)."""
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    isolate_aws_credentials(monkeypatch)
    return kms_server


def isolate_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stops boto3 from finding credentials anywhere but AWS_* variables (a developer's
    ~/.aws, an instance metadata service, which is not on 127.0.0.1)."""
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/coffer-test/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/coffer-test/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_aws_credentials(kms: KmsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS credentials anywhere boto3 looks."""
    for name in AWS_TEST_ENV:
        if name != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(name, raising=False)
    isolate_aws_credentials(monkeypatch)


@pytest.fixture
def kms_key(kms: KmsServer) -> str:
    """A new symmetric KMS key's ARN."""
    return kms.create_key()


@pytest.fixture
def kms_env(kms: KmsServer, kms_key: str) -> dict[str, str]:
    """The COFFER_* variables of a vault rooted in a new KMS key."""
    return kms.env(kms_key)


@pytest.fixture
def closed_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An http URL on 127.0.0.1 whose socket takes connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
