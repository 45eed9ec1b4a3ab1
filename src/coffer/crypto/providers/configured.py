"""The providers the settings configure, built on first use and kept for the process (an HSM
session or a KMS client is made once; Shamir shares given to ``unseal`` stay in memory)."""

from __future__ import annotations

from coffer.config import Settings
from coffer.crypto.providers.base import RootKeyProvider
from coffer.crypto.providers.local import LocalRootProvider
from coffer.crypto.providers.shamir import ShamirRootProvider
from coffer.domain.errors import ConfigError
from coffer.domain.root_keys import ProviderName


class RootProviders:
    """Hands out the provider for each name, built from the settings."""

    def __init__(self, settings: Settings, *, shares: int = 5, threshold: int = 3) -> None:
        self._settings = settings
        self._split = (shares, threshold)
        self._built: dict[ProviderName, RootKeyProvider] = {}

    def __repr__(self) -> str:
        return f"RootProviders(configured={self._settings.root_provider!r})"

    @property
    def configured(self) -> ProviderName:
        """The provider COFFER_ROOT_PROVIDER names (used by init and rotate-root)."""
        return ProviderName(self._settings.root_provider)

    def get(self, name: ProviderName) -> RootKeyProvider:
        """The provider called ``name``; raises ConfigError naming a missing variable."""
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def shamir(self) -> ShamirRootProvider:
        """The process's Shamir unsealer."""
        provider = self.get(ProviderName.SHAMIR)
        assert isinstance(provider, ShamirRootProvider)
        return provider

    def _build(self, name: ProviderName) -> RootKeyProvider:
        settings = self._settings
        if name is ProviderName.LOCAL:
            return LocalRootProvider(
                env_value=settings.root_key_b64, key_file=settings.root_key_file
            )
        if name is ProviderName.SHAMIR:
            shares, threshold = self._split
            return ShamirRootProvider(shares=shares, threshold=threshold)
        if name is ProviderName.PKCS11:
            from coffer.crypto.providers.pkcs11_hsm import Pkcs11RootProvider  # loads lazily

            _require(settings.pkcs11_token, "COFFER_PKCS11_TOKEN", name)
            _require(settings.pkcs11_pin, "COFFER_PKCS11_PIN", name)
            assert settings.pkcs11_token is not None and settings.pkcs11_pin is not None
            return Pkcs11RootProvider(
                module=settings.pkcs11_module,
                token_label=settings.pkcs11_token,
                pin=settings.pkcs11_pin,
                key_label=settings.pkcs11_key_label,
            )
        from coffer.crypto.providers.aws_kms import AwsKmsRootProvider  # boto3 loads slowly

        _require(settings.kms_key_id, "COFFER_KMS_KEY_ID", name)
        assert settings.kms_key_id is not None
        return AwsKmsRootProvider(
            key_id=settings.kms_key_id,
            region=settings.kms_region,
            endpoint=settings.kms_endpoint,
            timeout=settings.kms_timeout,
        )


def _require(value: str | None, variable: str, provider: ProviderName) -> None:
    if not value:
        raise ConfigError(f"{variable} must be set to use the {provider.value} root key provider")
