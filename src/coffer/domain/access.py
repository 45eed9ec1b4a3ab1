"""Who may do what: roles, access levels, grants and the one policy function, ``decide``.

Every request is decided here and nowhere else. Services ask ``decide`` before they touch
anything; routes and CLI commands never decide.

* **Roles** are per organization. ``viewer`` reads every secret; ``admin`` also writes,
  manages projects and the team; ``owner`` also transfers ownership and deletes the
  organization. The bootstrap token created by ``coffer init`` acts as an owner.
* **Machine identities** have no role: they reach only what their grants give them.
* **Grants** narrow or extend a user's or machine's access to one project, or one environment
  of a project, to ``none``, ``read`` or ``write`` (write includes read). The most specific
  unexpired grant wins (environment over project over role). An owner's access is never
  narrowed, so an organization cannot lock itself out.
* **Expiry** is evaluated at decision time, so an expired grant stops working at once.
* **Ephemeral secrets and shares** belong to the organization, not to a project: any of its
  identities may create and read them (``ephemeral.use``); changing or deleting someone
  else's, and pruning, takes an admin (``ephemeral.manage``).

``decide`` is pure: it takes the actor (with its role, grants and restrictions), the action,
the resource names and the request's source address, and returns a ``Decision``.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from coffer.domain.errors import InvalidInput


class Role(StrEnum):
    """An organization role, weakest first."""

    VIEWER = "viewer"
    ADMIN = "admin"
    OWNER = "owner"


class AccessLevel(StrEnum):
    """Access to one project or environment; each level includes the ones before it."""

    NONE = "none"
    READ = "read"
    WRITE = "write"


class Action(StrEnum):
    """What a request wants to do; the policy maps each to the access it needs."""

    PROJECT_VIEW = "project.view"
    PROJECT_MANAGE = "project.manage"
    SECRET_READ = "secret.read"
    SECRET_WRITE = "secret.write"
    TEAM_VIEW = "team.view"
    TEAM_MANAGE = "team.manage"
    ORG_OWN = "org.own"
    SELF_MANAGE = "self.manage"
    MFA_MANAGE = "mfa.manage"
    SESSION_VIEW = "session.view"
    SESSION_END = "session.end"
    AUDIT_VIEW = "audit.view"
    AUDIT_MANAGE = "audit.manage"
    WEBHOOK_MANAGE = "webhook.manage"
    EPHEMERAL_USE = "ephemeral.use"
    EPHEMERAL_MANAGE = "ephemeral.manage"
    KEY_ROTATE = "key.rotate"


_LEVEL_RANK = {AccessLevel.NONE: 0, AccessLevel.READ: 1, AccessLevel.WRITE: 2}
_ROLE_RANK = {Role.VIEWER: 1, Role.ADMIN: 2, Role.OWNER: 3}
_ROLE_ACCESS = {Role.VIEWER: AccessLevel.READ, Role.ADMIN: AccessLevel.WRITE}

# What a person whose organization requires MFA may still do before enrolling.
_BEFORE_ENROLMENT = frozenset({Action.MFA_MANAGE, Action.SESSION_VIEW, Action.SESSION_END})

# Organization-wide actions and the weakest role that may take them.
_ROLE_NEEDED = {
    Action.PROJECT_MANAGE: Role.ADMIN,
    Action.TEAM_VIEW: Role.ADMIN,
    Action.TEAM_MANAGE: Role.ADMIN,
    Action.ORG_OWN: Role.OWNER,
    Action.AUDIT_VIEW: Role.ADMIN,
    Action.AUDIT_MANAGE: Role.OWNER,
    Action.WEBHOOK_MANAGE: Role.ADMIN,
    Action.EPHEMERAL_MANAGE: Role.ADMIN,
    Action.KEY_ROTATE: Role.ADMIN,
}


def parse_role(text: str, *, field: str = "role", allow_owner: bool = False) -> Role:
    """Returns the role named by ``text`` in any case, spacing or Unicode compatibility form
    (``" OWNER "``, full-width letters). Raises InvalidInput naming
    ``field`` for an unknown role, and for ``owner`` unless ``allow_owner`` (ownership moves
    only by transfer)."""
    normalized = (
        "".join(unicodedata.normalize("NFKC", text).split()).casefold()
        if isinstance(text, str)
        else ""
    )
    allowed = [r.value for r in Role if allow_owner or r is not Role.OWNER]
    if normalized not in allowed:
        if normalized == Role.OWNER.value:
            raise InvalidInput(
                "the owner role cannot be given; use `coffer members transfer` to transfer "
                "ownership",
                field=field,
            )
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}", field=field)
    return Role(normalized)


def parse_access(text: str, *, field: str = "access") -> AccessLevel:
    """Returns the access level named by ``text`` (case-insensitive); raises InvalidInput."""
    normalized = (
        unicodedata.normalize("NFKC", text).strip().casefold() if isinstance(text, str) else ""
    )
    if normalized not in {level.value for level in AccessLevel}:
        raise InvalidInput(f"{field} must be one of none, read, write", field=field)
    return AccessLevel(normalized)


def parse_networks(items: Iterable[str], *, field: str = "allowed_ips") -> tuple[str, ...]:
    """Returns the addresses or CIDR networks in canonical form; raises InvalidInput naming
    the first one that is not an IPv4/IPv6 address or network."""
    parsed: list[str] = []
    for item in items:
        try:
            parsed.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise InvalidInput(
                f"{field}: {item!r} is not an IP address or CIDR network", field=field
            ) from None
    return tuple(parsed)


@dataclass(frozen=True)
class Grant:
    """Access of one identity to a project (``environment`` None) or one environment."""

    project: str
    environment: str | None
    access: AccessLevel
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        """True until the grant's expiry (a grant without one never expires)."""
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Restrictions:
    """Limits that apply to every request of an identity, whatever it asks."""

    networks: tuple[str, ...] = ()
    not_before: float | None = None
    not_after: float | None = None
    mfa_enrolment_required: bool = False


@dataclass(frozen=True)
class Decision:
    """The answer of ``decide``: allowed, or denied with a reason fit to show the caller."""

    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def effective_access(
    role: Role | None, grants: Iterable[Grant], project: str, environment: str, now: float
) -> AccessLevel:
    """Returns the access an identity has to one environment of one project."""
    if role is Role.OWNER:
        return AccessLevel.WRITE
    project_grant: AccessLevel | None = None
    for grant in grants:
        if grant.project != project or not grant.active(now):
            continue
        if grant.environment == environment:
            return grant.access
        if grant.environment is None:
            project_grant = grant.access
    if project_grant is not None:
        return project_grant
    return _ROLE_ACCESS.get(role, AccessLevel.NONE) if role else AccessLevel.NONE


def can_see_project(
    role: Role | None,
    grants: Iterable[Grant],
    project: str,
    environments: Iterable[str],
    now: float,
) -> bool:
    """True when the identity has some access to the project or to one of its environments."""
    grants = tuple(grants)
    return any(
        effective_access(role, grants, project, env, now) is not AccessLevel.NONE
        for env in environments
    ) or (
        role is not None
        and any(
            g.project == project and g.active(now) and g.access is not AccessLevel.NONE
            for g in grants
        )
    )


def _address_allowed(networks: tuple[str, ...], source_ip: str | None) -> bool:
    if not networks:
        return True
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in networks)


def decide(
    role: Role | None,
    grants: Iterable[Grant],
    restrictions: Restrictions,
    action: Action,
    *,
    is_person: bool,
    is_machine: bool = False,
    project: str | None = None,
    environment: str | None = None,
    source_ip: str | None = None,
    now: float,
) -> Decision:
    """Decides whether an identity may take ``action`` (on ``project``/``environment`` for
    secret actions). Returns ``ALLOW`` or a denial whose reason names what is missing."""
    if not _address_allowed(restrictions.networks, source_ip):
        return Decision(False, f"requests from {source_ip or 'this address'} are not allowed")
    if restrictions.not_before is not None and now < restrictions.not_before:
        return Decision(False, "this identity is not valid yet (valid_after is in the future)")
    if restrictions.not_after is not None and now >= restrictions.not_after:
        return Decision(False, "this identity is no longer valid (valid_before has passed)")
    if restrictions.mfa_enrolment_required and action not in _BEFORE_ENROLMENT:
        return Decision(
            False, "your organization requires MFA: enable it with `coffer mfa setup` first"
        )
    if action in (Action.SESSION_VIEW, Action.EPHEMERAL_USE):
        return ALLOW
    if action is Action.SESSION_END:
        if not is_machine:
            return ALLOW
        return Decision(False, "a machine's tokens are revoked by an admin, not by logging out")
    if action is Action.MFA_MANAGE:
        if is_person:
            return ALLOW
        return Decision(False, "only a person signed in as themselves may manage MFA")
    if action is Action.SELF_MANAGE:
        if not is_machine:
            return ALLOW
        return Decision(False, "a machine identity may not manage tokens or API keys")
    needed_role = _ROLE_NEEDED.get(action)
    if needed_role is not None:
        if role is not None and _ROLE_RANK[role] >= _ROLE_RANK[needed_role]:
            return ALLOW
        return Decision(False, f"{action.value} needs the {needed_role.value} role")
    if action is Action.PROJECT_VIEW:
        return ALLOW  # listings are filtered by can_see_project
    if project is None or environment is None:
        raise ValueError(f"{action.value} needs a project and an environment")
    level = effective_access(role, grants, project, environment, now)
    needed = AccessLevel.WRITE if action is Action.SECRET_WRITE else AccessLevel.READ
    if _LEVEL_RANK[level] >= _LEVEL_RANK[needed]:
        return ALLOW
    return Decision(
        False, f"{needed.value} access to {project}/{environment} is not granted to this identity"
    )
