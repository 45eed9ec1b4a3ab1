"""A root key held in an HSM through PKCS#11 (python-pkcs11): a non-extractable AES-256 key
that wraps the key-encryption key with AES-GCM inside the token. Tested against SoftHSM2."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

from coffer.crypto.aead import KEY_BYTES
from coffer.crypto.keys import KeyEncryptionKey
from coffer.crypto.providers.base import NewRootKek, kek_context
from coffer.domain.errors import ConfigError, WrongRootKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord

IV_BYTES = 12


class Pkcs11RootProvider:
    """An AES key labelled ``key_label`` in the token labelled ``token_label``."""

    name = ProviderName.PKCS11

    def __init__(self, *, module: Path, token_label: str, pin: str, key_label: str) -> None:
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._key_label = key_label
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Pkcs11RootProvider(token={self._token_label!r}, key={self._key_label!r}, "
            "pin='********')"
        )

    @contextmanager
    def _session(self) -> Iterator[pkcs11.Session]:
        """A logged-in read-write session; raises ConfigError naming the setting at fault."""
        if not self._module.is_file():
            raise ConfigError(f"COFFER_PKCS11_MODULE {self._module} does not exist")
        with self._lock:
            try:
                library = pkcs11.lib(str(self._module))
            except (PKCS11Error, RuntimeError, OSError) as exc:
                raise ConfigError(
                    f"COFFER_PKCS11_MODULE {self._module} cannot be loaded: {type(exc).__name__}"
                ) from None
            try:
                token = library.get_token(token_label=self._token_label)
            except pkcs11.exceptions.NoSuchToken:
                raise ConfigError(
                    f"COFFER_PKCS11_TOKEN: no PKCS#11 token is labelled {self._token_label!r}"
                ) from None
            except PKCS11Error as exc:
                raise ConfigError(
                    f"the PKCS#11 token cannot be found: {type(exc).__name__}"
                ) from None
            try:
                session = token.open(user_pin=self._pin, rw=True)
            except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange):
                raise ConfigError(
                    f"COFFER_PKCS11_PIN is wrong for token {self._token_label!r}"
                ) from None
            except PKCS11Error as exc:
                raise ConfigError(
                    f"cannot log in to token {self._token_label!r}: {type(exc).__name__}"
                ) from None
            try:
                yield session
            finally:
                session.close()

    def _key(self, session: pkcs11.Session, label: str, *, create: bool) -> Any:
        try:
            return session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
            )
        except pkcs11.exceptions.NoSuchKey:
            if not create:
                raise ConfigError(
                    f"no AES key labelled {label!r} in PKCS#11 token {self._token_label!r}"
                ) from None
        except pkcs11.exceptions.MultipleObjectsReturned:
            raise ConfigError(
                f"several AES keys are labelled {label!r} in token {self._token_label!r}"
            ) from None
        key: Any = session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
            },
        )
        return key

    def new_kek(self, generation: int, *, rotate: bool) -> NewRootKek:
        """A random KEK wrapped by the HSM key: the configured label at init (created when the
        token has none), ``<label>-g<generation>`` for a rotation."""
        label = f"{self._key_label}-g{generation}" if rotate else self._key_label
        kek = KeyEncryptionKey.generate()
        iv = os.urandom(IV_BYTES)
        with self._session() as session:
            key = self._key(session, label, create=True)
            body = key.encrypt(
                kek._material,
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(iv, kek_context(generation), 128),
            )
        return NewRootKek(kek=kek, key_id=label, wrapped_kek=iv + bytes(body))

    def open_kek(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """Unwraps the generation's KEK inside the HSM; WrongRootKey when it does not open."""
        wrapped = record.wrapped_kek
        if wrapped is None or len(wrapped) <= IV_BYTES:
            raise WrongRootKey(f"generation {record.generation} has no HSM-wrapped key")
        with self._session() as session:
            key = self._key(session, record.key_id, create=False)
            try:
                material = key.decrypt(
                    wrapped[IV_BYTES:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(wrapped[:IV_BYTES], kek_context(record.generation)),
                )
            except PKCS11Error:
                material = b""
        if len(material) != KEY_BYTES:
            raise WrongRootKey(
                f"the HSM key {record.key_id!r} does not open generation {record.generation}"
            )
        return KeyEncryptionKey(bytes(material))

    def finish_rotation(self, record: RootKeyRecord) -> None:
        """Nothing to do: the new key's label is recorded in the vault. The old HSM key is
        left in the token for its owner to destroy (older backups need it)."""

    def describe(self) -> dict[str, str]:
        """The module and token (never the PIN)."""
        return {"module": str(self._module), "token": self._token_label}
