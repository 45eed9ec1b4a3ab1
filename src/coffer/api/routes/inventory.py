"""Inventory and policies: one secret's metadata
(``/api/v1/projects/{p}/environments/{e}/inventory/{key}``), the inventory
(``/api/v1/inventory``), environment policies (``/api/v1/policies``) and compliance settings
(``/api/v1/compliance-settings``).

The key is the last path segment(s) of a route, as in ``/history/{key}``: keys may contain
"/", so ``/secrets/{key}/inventory`` could not be told from a secret called ``.../inventory``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.key_path import register_secret_key_convertor
from coffer.api.serialize import iso
from coffer.domain.inventory import (
    EnvironmentPolicy,
    InventoryChange,
    InventoryEntry,
    parse_inventory_change,
    parse_policy,
)
from coffer.storage.settings_store import ComplianceSettings

register_secret_key_convertor()
router = APIRouter(prefix="/api/v1", tags=["inventory"])

# Any JSON value: the domain's parsers name the field in their errors whatever the type.
Text = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})]
Days = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
]
Number = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "null"}]})]


class InventoryBody(BaseModel):
    """A change of a secret's inventory metadata: only the fields sent count; ``null``
    clears one."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not pass unnoticed

    owner: Text = Field(default=None, description="Who answers for it (at most 254 characters)")
    system: Text = Field(default=None, description="What it unlocks (at most 128 characters)")
    description: Text = Field(default=None, description="At most 1024 characters")
    sensitivity: Text = Field(default=None, description="public, internal, confidential or secret")
    rotation_days: Days = Field(
        default=None, description="Rotation period: days, or a duration such as 90d (1-3650 d)"
    )

    def change(self) -> InventoryChange:
        """The validated change of the fields the request actually sent."""
        return parse_inventory_change({name: getattr(self, name) for name in self.model_fields_set})


class PolicyBody(BaseModel):
    """An environment policy; with ``allow_existing_violations`` it is saved even when
    existing secrets break it (they are listed in the answer)."""

    model_config = ConfigDict(extra="forbid")

    required_fields: Annotated[
        Any, WithJsonSchema({"type": "array", "items": {"type": "string"}})
    ] = Field(default_factory=list, description="Inventory fields every secret there must have")
    max_rotation_days: Days = Field(
        default=None, description="Longest rotation period: days, or a duration such as 90d"
    )
    require_read_reason: Annotated[Any, WithJsonSchema({"type": "boolean"})] = Field(
        default=False, description="Reads there must state a reason"
    )
    export_approvals: Annotated[Any, WithJsonSchema({"type": "integer", "enum": [1, 2]})] = Field(
        default=1, description="People who must approve exporting a whole environment"
    )
    allow_existing_violations: StrictBool = False


class SettingsBody(BaseModel):
    """A change of the compliance settings: only the fields sent count."""

    model_config = ConfigDict(extra="forbid")

    root_rotation_approvals: Number = Field(
        default=None, description="People who must approve a root key rotation (1 or 2)"
    )
    rotation_reminder_days: Number = Field(
        default=None, description="Days before its due date a rotation counts as due (0-90)"
    )


def entry_json(entry: InventoryEntry) -> dict[str, Any]:
    """One secret of the inventory: where it is, its metadata, its current version, when
    that was written (``last_rotated``) and the policy rules it breaks."""
    fields = entry.fields
    return {
        "project": entry.project,
        "environment": entry.environment,
        "key": entry.key,
        "owner": fields.owner,
        "system": fields.system,
        "description": fields.description,
        "sensitivity": None if fields.sensitivity is None else fields.sensitivity.value,
        "rotation_days": fields.rotation_days,
        "current_version": entry.current_version,
        "last_rotated": iso(entry.last_rotated),
        "violations": list(entry.violations),
    }


def policy_json(policy: EnvironmentPolicy) -> dict[str, Any]:
    """One environment policy."""
    return {
        "environment": policy.environment,
        "required_fields": list(policy.required_fields),
        "max_rotation_days": policy.max_rotation_days,
        "require_read_reason": policy.require_read_reason,
        "export_approvals": policy.export_approvals,
    }


def settings_json(settings: ComplianceSettings) -> dict[str, Any]:
    """The compliance settings."""
    return {
        "root_rotation_approvals": settings.root_rotation_approvals,
        "rotation_reminder_days": settings.rotation_reminder_days,
    }


SECRET_ROUTE = "/projects/{project}/environments/{environment}/inventory/{key:secretkey}"


@router.get(SECRET_ROUTE)
async def secret_inventory(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """The secret's inventory metadata and the policy rules it breaks (needs read access;
    records no read)."""
    entry = await run(services.inventory.secret_inventory, caller, project, environment, key)
    return entry_json(entry)


@router.put(SECRET_ROUTE)
async def update_secret_inventory(
    project: str,
    environment: str,
    key: str,
    body: InventoryBody,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Changes the fields sent (``null`` clears one); needs write access. Refused (400
    ``policy_violation``, naming the rule) when the secret would break its environment's
    policy."""
    change = body.change()
    entry = await run(services.inventory.update, caller, project, environment, key, change)
    return entry_json(entry)


@router.get("/inventory")
async def inventory(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    project: str | None = Query(default=None, description="Only this project"),
    environment: str | None = Query(default=None, description="Only environments of this name"),
) -> dict[str, Any]:
    """Every unexpired secret in every environment the caller may read, with its metadata,
    current version, last rotation and the policy rules it breaks. Records no read."""
    entries = await run(services.inventory.inventory, caller, project, environment)
    return {"generated_at": iso(time.time()), "secrets": [entry_json(e) for e in entries]}


@router.get("/policies")
async def list_policies(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """The organization's environment policies, by environment name."""
    policies = await run(services.inventory.policies, caller)
    return {"policies": [policy_json(policy) for policy in policies]}


@router.get("/policies/violations")
async def policy_violations(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Every unexpired secret the caller may read that breaks its environment's policy,
    with the rules it breaks."""
    entries = await run(services.inventory.violations, caller)
    return {"generated_at": iso(time.time()), "secrets": [entry_json(e) for e in entries]}


@router.put("/policies/{environment}")
async def set_policy(
    environment: str, body: PolicyBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Creates or replaces the policy for every environment of this name (admins). 409 when
    existing secrets already break it, naming them, unless ``allow_existing_violations``."""
    policy = parse_policy(
        environment,
        required_fields=body.required_fields,
        max_rotation_days=body.max_rotation_days,
        require_read_reason=body.require_read_reason,
        export_approvals=body.export_approvals,
    )
    saved = await run(
        services.inventory.set_policy,
        caller,
        policy,
        allow_existing_violations=body.allow_existing_violations,
    )
    return {
        "policy": policy_json(saved.policy),
        "existing_violations": [entry_json(entry) for entry in saved.violations],
    }


@router.delete("/policies/{environment}")
async def delete_policy(
    environment: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Removes the policy for environments of this name (admins)."""
    await run(services.inventory.delete_policy, caller, environment)
    return {"environment": environment, "deleted": True}


@router.get("/compliance-settings")
async def compliance_settings(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Approvals needed to rotate the root key, and the rotation reminder window in days."""
    return settings_json(await run(services.inventory.settings, caller))


@router.put("/compliance-settings")
async def change_compliance_settings(
    body: SettingsBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Changes the settings sent (admins; lowering root key approvals from 2 to 1 takes the
    owner)."""
    changed = await run(
        services.inventory.change_settings,
        caller,
        root_rotation_approvals=body.root_rotation_approvals,
        rotation_reminder_days=body.rotation_reminder_days,
    )
    return settings_json(changed)
