"""What the vault says about a finding: ``VaultMatch`` names the stored secret a leak matches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VaultMatch:
    """A finding whose secret equals a value stored in the vault.

    ``fingerprint`` is the finding's content fingerprint (``Finding.fingerprint``); ``version`` is
    the matching secret version and ``current`` tells whether it is still the live value.
    """

    fingerprint: str
    project: str
    environment: str
    key: str
    version: int
    current: bool
