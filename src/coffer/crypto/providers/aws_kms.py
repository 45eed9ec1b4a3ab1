"""A root key in AWS KMS (boto3): ``GenerateDataKey`` makes the key-encryption key and
``Decrypt`` opens it at start-up, both bound to an encryption context naming the generation.
Calls time out instead of hanging; tested against moto's stand-alone server."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
)

from coffer.crypto.aead import KEY_BYTES
from coffer.crypto.keys import KeyEncryptionKey
from coffer.crypto.providers.base import KEK_CONTEXT, NewRootKek
from coffer.domain.errors import ConfigError, WrongRootKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord


def _context(generation: int) -> dict[str, str]:
    return {"coffer": KEK_CONTEXT, "generation": str(generation)}


class AwsKmsRootProvider:
    """The KMS key ``key_id`` (id, ARN or alias) in ``region``, at ``endpoint`` when set."""

    name = ProviderName.AWSKMS

    def __init__(self, *, key_id: str, region: str, endpoint: str | None, timeout: float) -> None:
        self._key_id = key_id
        self._region = region
        self._endpoint = endpoint
        self._timeout = timeout
        self._client: Any = None

    def __repr__(self) -> str:
        return f"AwsKmsRootProvider(key_id={self._key_id!r}, region={self._region!r})"

    def _kms(self) -> Any:
        if self._client is None:
            self._client = boto3.session.Session().client(
                "kms",
                region_name=self._region,
                endpoint_url=self._endpoint,
                config=Config(
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            )
        return self._client

    def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """Calls KMS; raises ConfigError naming the cause (unreachable, no credentials, no
        such key) and WrongRootKey when KMS refuses the ciphertext."""
        where = self._endpoint or f"region {self._region}"
        try:
            answer: dict[str, Any] = getattr(self._kms(), operation)(**arguments)
            return answer
        except NoCredentialsError:
            raise ConfigError(
                "AWS KMS: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or an AWS profile)"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise WrongRootKey(
                    f"AWS KMS refused the vault's wrapped key ({code}); check COFFER_KMS_KEY_ID"
                ) from None
            if code == "NotFoundException":
                raise ConfigError(
                    f"COFFER_KMS_KEY_ID: KMS key {arguments.get('KeyId')!r} not found"
                ) from None
            raise ConfigError(f"AWS KMS {operation} failed at {where}: {code}") from None
        except (InvalidRegionError, NoRegionError):
            raise ConfigError(
                f"COFFER_KMS_REGION {self._region!r} is not a valid AWS region name"
            ) from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"AWS KMS at {where} is unreachable ({type(exc).__name__}, timeout "
                f"{self._timeout:g}s); check COFFER_KMS_ENDPOINT and the network"
            ) from None

    def new_kek(self, generation: int, *, rotate: bool) -> NewRootKek:
        """A KEK from ``GenerateDataKey`` under the configured key (for a rotation too: the
        new key is the one COFFER_KMS_KEY_ID names now)."""
        answer = self._call(
            "generate_data_key",
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext=_context(generation),
        )
        plaintext = bytes(answer["Plaintext"])
        if len(plaintext) != KEY_BYTES:
            raise ConfigError("AWS KMS returned a data key of the wrong size")
        return NewRootKek(
            kek=KeyEncryptionKey(plaintext),
            key_id=str(answer["KeyId"]),
            wrapped_kek=bytes(answer["CiphertextBlob"]),
        )

    def open_kek(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """``Decrypt`` of the generation's wrapped KEK under its recorded key."""
        if record.wrapped_kek is None:
            raise WrongRootKey(f"generation {record.generation} has no KMS-wrapped key")
        answer = self._call(
            "decrypt",
            CiphertextBlob=record.wrapped_kek,
            KeyId=record.key_id,
            EncryptionContext=_context(record.generation),
        )
        plaintext = bytes(answer["Plaintext"])
        if len(plaintext) != KEY_BYTES:
            raise WrongRootKey("AWS KMS returned a key of the wrong size")
        return KeyEncryptionKey(plaintext)

    def finish_rotation(self, record: RootKeyRecord) -> None:
        """Nothing to do: the vault records the new key's ARN; the old KMS key stays until its
        owner schedules its deletion (older backups need it)."""

    def describe(self) -> dict[str, str]:
        """Region and endpoint."""
        return {"region": self._region, "endpoint": self._endpoint or "AWS"}
