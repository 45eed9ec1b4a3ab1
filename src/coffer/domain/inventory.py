"""Inventory metadata of a secret and the organization's environment policies.

* **Inventory fields**: ``owner`` (who answers for the secret: an e-mail address or a team
  name), ``system`` (what it unlocks), ``description``, ``sensitivity`` (``public``,
  ``internal``, ``confidential`` or ``secret``) and ``rotation_days`` (how often it must be
  rotated). Any may be unset.
* **Environment policies** apply to every environment of a name (``production``) in every
  project of the organization: the fields a secret there must have, the longest rotation
  period it may have, whether reads must state a reason, and how many people must approve
  exporting the whole environment.

A write that would leave a secret breaking its environment's policy is refused with the rule
named (``policy_violations``); a policy change that existing secrets already break is
reported with those secrets, not silently accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Sensitivity(StrEnum):
    """How much harm a leak of the secret would do, least first."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"


# The inventory fields a policy may require, in display order.
INVENTORY_FIELDS = ("owner", "system", "description", "sensitivity", "rotation_days")


@dataclass(frozen=True)
class InventoryFields:
    """The inventory metadata of one secret; None where unset."""

    owner: str | None = None
    system: str | None = None
    description: str | None = None
    sensitivity: Sensitivity | None = None
    rotation_days: int | None = None

    def value_of(self, field: str) -> object:
        """The value of one of ``INVENTORY_FIELDS``."""
        return getattr(self, field)


@dataclass(frozen=True)
class EnvironmentPolicy:
    """An organization's rules for every environment called ``environment``."""

    environment: str
    required_fields: tuple[str, ...] = ()
    max_rotation_days: int | None = None
    require_read_reason: bool = False
    export_approvals: int = 1


def policy_violations(policy: EnvironmentPolicy, fields: InventoryFields) -> list[str]:
    """The rules of ``policy`` that a secret with ``fields`` breaks, each as a sentence that
    names the rule (``production requires owner``); empty when it complies."""
    broken = [
        f"{policy.environment} requires {name}"
        for name in policy.required_fields
        if fields.value_of(name) in (None, "")
    ]
    limit = policy.max_rotation_days
    if limit is not None:
        if fields.rotation_days is None:
            if "rotation_days" not in policy.required_fields:
                broken.append(
                    f"{policy.environment} requires rotation_days of at most {limit} days"
                )
        elif fields.rotation_days > limit:
            broken.append(
                f"{policy.environment} requires rotation at most every {limit} days "
                f"(rotation_days is {fields.rotation_days})"
            )
    return broken
