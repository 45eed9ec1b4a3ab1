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

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from coffer.domain.durations import parse_duration
from coffer.domain.errors import InvalidInput, PolicyViolation
from coffer.domain.names import display_name, validate_resource_name


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


@dataclass(frozen=True)
class InventoryEntry:
    """One current secret of the inventory: where it lives, its current version, when that
    version was written (``last_rotated``), its metadata, and the rules of its
    environment's policy it breaks (sentences, see ``policy_violations``)."""

    secret_id: str
    project: str
    environment: str
    key: str
    current_version: int
    last_rotated: float
    fields: InventoryFields
    violations: tuple[str, ...] = ()


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


# --- parsing: inventory fields ------------------------------------------------------------

MAX_ROTATION_DAYS = 3650
# The longest text of each text field, in characters (the columns' sizes).
TEXT_LIMITS = {"owner": 254, "system": 128, "description": 1024}
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators; a
# description may hold newlines and tabs, nothing else of these.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DESCRIPTION_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_DAYS = re.compile(r"[0-9]{1,9}")
_SECONDS_PER_DAY = 86400
# The option of `coffer secrets set` that gives each field (a fix named in refusals).
CLI_OPTIONS = {
    "owner": "--owner",
    "system": "--system",
    "description": "--description",
    "sensitivity": "--sensitivity",
    "rotation_days": "--rotate-every",
}


def parse_text(value: object, field: str) -> str:
    """Returns the text of ``owner``, ``system`` or ``description`` without surrounding
    whitespace. Raises InvalidInput naming ``field`` when it is not a string, empty (send
    null to clear a field), longer than its limit (``TEXT_LIMITS``), or holds a control
    character (a description may hold newlines and tabs)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (or null to clear it)", field=field)
    text = value.strip()
    if not text:
        raise InvalidInput(f"{field} must not be empty (send null to clear it)", field=field)
    limit = TEXT_LIMITS[field]
    if len(text) > limit:
        raise InvalidInput(
            f"{field} is {len(text)} characters long; the limit is {limit}", field=field
        )
    pattern = _DESCRIPTION_CONTROL if field == "description" else _CONTROL
    found = pattern.search(text)
    if found is not None:
        raise InvalidInput(
            f"{field} must not contain control characters; found U+{ord(found.group()):04X}",
            field=field,
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} must be valid Unicode text (it contains a lone surrogate)", field=field
        ) from None
    return text


def parse_sensitivity(value: object, field: str = "sensitivity") -> Sensitivity:
    """Returns the sensitivity named by ``value`` in any case; raises InvalidInput naming
    ``field`` for anything else."""
    choices = ", ".join(level.value for level in Sensitivity)
    if not isinstance(value, str) or value.strip().lower() not in {s.value for s in Sensitivity}:
        raise InvalidInput(f"{field} must be one of {choices}", field=field)
    return Sensitivity(value.strip().lower())


def parse_rotation_days(value: object, field: str = "rotation_days") -> int:
    """Returns a rotation period in whole days from a number of days (``90``, ``"90"``) or a
    duration (``"90d"``, ``"2160h"``). Raises InvalidInput naming ``field`` when it is not
    one, is not a whole number of days, or lies outside 1..``MAX_ROTATION_DAYS`` days."""
    rule = (
        f"{field} must be a number of days or a duration such as 90d "
        f"(1 to {MAX_ROTATION_DAYS} days)"
    )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(rule, field=field)
    if isinstance(value, int):
        days = value
    elif _DAYS.fullmatch(value.strip()):
        days = int(value.strip())
    else:
        seconds = parse_duration(value, field=field)
        if seconds % _SECONDS_PER_DAY:
            raise InvalidInput(f"{field} must be a whole number of days", field=field)
        days = seconds // _SECONDS_PER_DAY
    if not 1 <= days <= MAX_ROTATION_DAYS:
        raise InvalidInput(rule, field=field)
    return days


_FIELD_PARSERS: dict[str, Callable[[object, str], object]] = {
    "owner": parse_text,
    "system": parse_text,
    "description": parse_text,
    "sensitivity": parse_sensitivity,
    "rotation_days": parse_rotation_days,
}


def unknown_field(name: object, allowed: tuple[str, ...], what: str) -> InvalidInput:
    """The error for a field that is not one of ``allowed`` (named, safely quoted)."""
    shown = display_name(name) if isinstance(name, str) else repr(name)
    return InvalidInput(
        f"unknown {what} field {shown}; the fields are {', '.join(allowed)}",
        field=name if isinstance(name, str) else what,
    )


@dataclass(frozen=True)
class InventoryChange:
    """A partial update of a secret's inventory: each field named in ``values`` is set to its
    (parsed) value, or cleared where the value is None; other fields stay as they are."""

    values: Mapping[str, object]

    def applied_to(self, fields: InventoryFields) -> InventoryFields:
        """Returns ``fields`` with this change applied."""
        changes: dict[str, Any] = dict(self.values)  # each value parsed for its field
        return replace(fields, **changes)

    def audit_fields(self) -> dict[str, str | int | None]:
        """The metadata of an ``inventory.updated`` entry: the changed field names (in
        display order) and each one's new value (None when cleared). Metadata is not
        secret."""
        names = [name for name in INVENTORY_FIELDS if name in self.values]
        entry: dict[str, str | int | None] = {"fields": ",".join(names)}
        for name in names:
            value = self.values[name]
            entry[name] = value if value is None or isinstance(value, int) else str(value)
        return entry


def parse_inventory_change(given: Mapping[str, object]) -> InventoryChange:
    """Returns the validated change of the fields in ``given`` (None clears a field). Raises
    InvalidInput naming the field for an unknown field or a value that breaks its rule
    (see ``parse_text``, ``parse_sensitivity``, ``parse_rotation_days``), and naming
    ``inventory`` when no field is given."""
    for name in given:
        if name not in INVENTORY_FIELDS:
            raise unknown_field(name, INVENTORY_FIELDS, "inventory")
    if not given:
        raise InvalidInput(
            f"inventory must name at least one of {', '.join(INVENTORY_FIELDS)}",
            field="inventory",
        )
    return InventoryChange(
        {
            name: None if value is None else _FIELD_PARSERS[name](value, name)
            for name, value in given.items()
        }
    )


# --- parsing: policies and settings -------------------------------------------------------


def parse_required_fields(value: object, field: str = "required_fields") -> tuple[str, ...]:
    """Returns the required inventory fields, each once, in ``INVENTORY_FIELDS`` order, from
    a list of names (any case). Raises InvalidInput naming ``field`` when it is not a list
    of strings or names a field that is not one of ``INVENTORY_FIELDS``."""
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{field} must be a list of field names", field=field)
    wanted = {item.strip().lower() for item in value}
    for name in sorted(wanted):
        if name not in INVENTORY_FIELDS:
            raise InvalidInput(
                f"{field}: {display_name(name)} is not an inventory field; the fields are "
                f"{', '.join(INVENTORY_FIELDS)}",
                field=field,
            )
    return tuple(name for name in INVENTORY_FIELDS if name in wanted)


def parse_choice(value: object, field: str, choices: tuple[int, ...]) -> int:
    """Returns ``value`` when it is an integer among ``choices``; raises InvalidInput naming
    ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise InvalidInput(
            f"{field} must be {' or '.join(str(choice) for choice in choices)}", field=field
        )
    return value


def parse_policy(
    environment: str,
    *,
    required_fields: object = (),
    max_rotation_days: object = None,
    require_read_reason: object = False,
    export_approvals: object = 1,
) -> EnvironmentPolicy:
    """Returns the validated policy for environments called ``environment``. Raises
    InvalidInput naming the field: ``environment`` (not a valid environment name),
    ``required_fields`` (see ``parse_required_fields``), ``max_rotation_days`` (1 to 3650
    days, or a duration such as 90d), ``require_read_reason`` (not a boolean),
    ``export_approvals`` (not 1 or 2)."""
    validate_resource_name(environment, field="environment")
    if not isinstance(require_read_reason, bool):
        raise InvalidInput("require_read_reason must be true or false", field="require_read_reason")
    return EnvironmentPolicy(
        environment=environment,
        required_fields=parse_required_fields(
            list(required_fields) if isinstance(required_fields, tuple) else required_fields
        ),
        max_rotation_days=(
            None
            if max_rotation_days is None
            else parse_rotation_days(max_rotation_days, "max_rotation_days")
        ),
        require_read_reason=require_read_reason,
        export_approvals=parse_choice(export_approvals, "export_approvals", (1, 2)),
    )


MAX_REMINDER_DAYS = 90


def parse_reminder_days(value: object, field: str = "rotation_reminder_days") -> int:
    """Returns a reminder window of 0 to ``MAX_REMINDER_DAYS`` days; raises InvalidInput
    naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REMINDER_DAYS:
        raise InvalidInput(
            f"{field} must be a whole number of days from 0 to {MAX_REMINDER_DAYS}", field=field
        )
    return value


# --- refusals -------------------------------------------------------------------------------


def violated_fields(policy: EnvironmentPolicy, fields: InventoryFields) -> list[str]:
    """The inventory fields a secret with ``fields`` must set or change to comply with
    ``policy``, in display order."""
    missing = {name for name in policy.required_fields if fields.value_of(name) in (None, "")}
    limit = policy.max_rotation_days
    if limit is not None and (fields.rotation_days is None or fields.rotation_days > limit):
        missing.add("rotation_days")
    return [name for name in INVENTORY_FIELDS if name in missing]


def write_refusal(
    policy: EnvironmentPolicy, fields: InventoryFields, key: str
) -> PolicyViolation | None:
    """The error refusing a write that would leave secret ``key`` with ``fields`` breaking
    ``policy``: the rules it breaks and how to fix them; None when it complies."""
    broken = policy_violations(policy, fields)
    if not broken:
        return None
    fix = violated_fields(policy, fields) or ["rotation_days"]
    options = " ".join(CLI_OPTIONS[name] for name in fix)
    return PolicyViolation(
        f"secret {display_name(key)} would break the {policy.environment} policy: "
        f"{'; '.join(broken)}. Set {', '.join(fix)} with the write (coffer secrets set "
        f"{options}) or with coffer inventory set {options}",
        field=fix[0],
    )
