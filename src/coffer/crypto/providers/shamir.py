"""A local root key split into Shamir shares (SLIP-39 mnemonics, through the
``shamir-mnemonic`` library: no hand-rolled field arithmetic).

The key is never written down whole. The server starts sealed and opens once enough shares
have been given; each share carries a checksum, so a mistyped word is refused at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shamir_mnemonic import MnemonicError, combine_mnemonics, generate_mnemonics
from shamir_mnemonic.share import Share

from coffer.crypto.keys import KeyEncryptionKey, RootKey, key_check_value
from coffer.crypto.providers.base import NewRootKek
from coffer.domain.errors import ConfigError, InvalidInput, WrongRootKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord

MAX_SHARES = 16


def validate_split(shares: int, threshold: int) -> None:
    """Raises InvalidInput naming the field when the split cannot be made: 2 to 16 shares,
    a threshold of 2 up to the number of shares."""
    if not 2 <= shares <= MAX_SHARES:
        raise InvalidInput(f"shares must be between 2 and {MAX_SHARES}", field="shares")
    if not 2 <= threshold <= shares:
        raise InvalidInput(
            f"threshold must be between 2 and the number of shares ({shares})", field="threshold"
        )


def split_root(root: RootKey, *, shares: int, threshold: int) -> tuple[str, ...]:
    """Returns ``shares`` SLIP-39 mnemonics of which any ``threshold`` rebuild ``root``."""
    validate_split(shares, threshold)
    groups = generate_mnemonics(1, [(threshold, shares)], root._material)
    return tuple(groups[0])


def split_identity(share: str) -> tuple[int, int]:
    """The (identifier, threshold) a set of shares shares; raises InvalidInput for a share
    that does not parse."""
    parsed = _parse(share)
    return parsed.identifier, parsed.member_threshold


def _parse(mnemonic: str) -> Share:
    try:
        return Share.from_mnemonic(" ".join(mnemonic.split()).lower())
    except (MnemonicError, ValueError):
        raise InvalidInput(
            "share is not a valid SLIP-39 share (a word is wrong or missing)", field="share"
        ) from None


@dataclass(frozen=True)
class UnsealProgress:
    """How far unsealing has come: distinct shares received and how many are needed."""

    received: int
    threshold: int
    unsealed: bool


class ShamirRootProvider:
    """A root key rebuilt from shares given to the running server (``coffer unseal``)."""

    name = ProviderName.SHAMIR

    def __init__(self, *, shares: int = 5, threshold: int = 3) -> None:
        self._split = (shares, threshold)
        self._lock = threading.Lock()
        self._shares: dict[int, str] = {}
        self._identifier: int | None = None
        self._threshold = 0
        self._root: RootKey | None = None

    def __repr__(self) -> str:
        return "ShamirRootProvider(<shares hidden>)"

    @property
    def sealed(self) -> bool:
        """True until enough shares rebuilt the root key."""
        return self._root is None

    def expect(self, identifier: int, threshold: int) -> None:
        """Takes only shares of the vault's own split (recorded at init), so nobody can lock
        the unseal by sending a share of another one first."""
        with self._lock:
            self._identifier, self._threshold = identifier, threshold

    def progress(self) -> UnsealProgress:
        """The shares received so far and the threshold (0 before the first share)."""
        with self._lock:
            return UnsealProgress(len(self._shares), self._threshold, self._root is not None)

    def add_share(self, mnemonic: str, record: RootKeyRecord) -> UnsealProgress:
        """Takes one share; once ``threshold`` distinct shares are in, rebuilds the root key
        and checks it against ``record``. Raises InvalidInput (field ``share``) for a share
        that does not parse or belongs to another split; WrongRootKey when the shares rebuild
        a key that is not this vault's (the shares given so far are then forgotten)."""
        share = _parse(mnemonic)
        words = " ".join(mnemonic.split()).lower()
        with self._lock:
            if self._root is not None:
                return UnsealProgress(len(self._shares), self._threshold, True)
            if self._identifier is None:
                raise ConfigError("the vault's share set is unknown; cannot unseal")
            if share.identifier != self._identifier:
                raise InvalidInput(
                    "share belongs to another set of shares, not this vault's", field="share"
                )
            self._shares[share.index] = words
            if len(self._shares) < self._threshold:
                return UnsealProgress(len(self._shares), self._threshold, False)
            try:
                root = RootKey(combine_mnemonics(list(self._shares.values())))
            except (MnemonicError, ValueError):
                self._forget()
                raise InvalidInput("shares do not combine", field="share") from None
            if key_check_value(root) != record.key_id:
                self._forget()
                raise WrongRootKey("the shares rebuild a root key that is not this vault's")
            self._root = root
            return UnsealProgress(len(self._shares), self._threshold, True)

    def _forget(self) -> None:
        self._shares.clear()

    def new_kek(self, generation: int, *, rotate: bool) -> NewRootKek:
        """At init, a new random root split into shares (returned once). Rotating a split root
        is not supported yet."""
        if rotate:
            raise ConfigError(
                "rotate-root does not yet support a Shamir-split root key; move it to another "
                "provider with COFFER_ROOT_PROVIDER"
            )
        shares, threshold = self._split
        root = RootKey.generate()
        return NewRootKek(
            kek=KeyEncryptionKey.derive(root),
            key_id=key_check_value(root),
            shares=split_root(root, shares=shares, threshold=threshold),
        )

    def open_kek(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """The KEK of the rebuilt root; raises ConfigError while sealed."""
        root = self._root
        if root is None:
            raise ConfigError("the vault is sealed; run `coffer unseal` with enough shares")
        if key_check_value(root) != record.key_id:
            raise WrongRootKey("the unsealed root key is not this generation's")
        return KeyEncryptionKey.derive(root)

    def finish_rotation(self, record: RootKeyRecord) -> None:
        """Nothing to do: shares are never stored."""

    def describe(self) -> dict[str, str]:
        """The provider is the shares given at unseal time."""
        return {"source": "Shamir shares (coffer unseal)"}
