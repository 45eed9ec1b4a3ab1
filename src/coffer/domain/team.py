"""Records about people, machines, tokens and grants, as services return them. No secrets:
token values and password hashes never appear here."""

from __future__ import annotations

from dataclasses import dataclass

from coffer.domain.access import AccessLevel, Role


@dataclass(frozen=True)
class TokenInfo:
    """A token's metadata: kind (``cli``, ``sess``, ``key``, ``mach``, ``boot``), name and
    lifetime. Never the token itself."""

    id: str
    kind: str
    name: str
    identity_id: str
    identity_kind: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: shown to the caller once, stored only as a hash."""

    info: TokenInfo
    token: str

    def __repr__(self) -> str:
        return f"IssuedToken(info={self.info!r}, token='********')"


@dataclass(frozen=True)
class MemberInfo:
    """A person in an organization."""

    id: str
    email: str
    role: Role
    created_at: float
    mfa_enabled: bool


@dataclass(frozen=True)
class InvitationInfo:
    """An invitation not yet accepted."""

    id: str
    email: str
    role: Role
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class IssuedInvitation:
    """An invitation with its one-time token (shown once)."""

    info: InvitationInfo
    token: str

    def __repr__(self) -> str:
        return f"IssuedInvitation(info={self.info!r}, token='********')"


@dataclass(frozen=True)
class MachineInfo:
    """A machine identity (service account) and its restrictions."""

    id: str
    name: str
    description: str | None
    allowed_ips: tuple[str, ...]
    valid_after: float | None
    valid_before: float | None
    created_at: float


@dataclass(frozen=True)
class GrantInfo:
    """A grant as listed: whom it is for, where, what access, until when."""

    id: str
    identity_id: str
    identity_kind: str
    identity_name: str
    project: str
    environment: str | None
    access: AccessLevel
    expires_at: float | None
    created_at: float


@dataclass(frozen=True)
class MfaEnrolment:
    """A TOTP seed waiting for its first code (shown once)."""

    secret: str
    otpauth_uri: str

    def __repr__(self) -> str:
        return "MfaEnrolment(secret='********')"


@dataclass(frozen=True)
class LoginResult:
    """A successful login: the new token or session and who it belongs to."""

    issued: IssuedToken
    email: str
    role: Role
    org_id: str
