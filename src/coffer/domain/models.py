"""Plain records passed between layers. Values are ``SecretValue``; nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from coffer.domain.access import Grant, Restrictions, Role
from coffer.domain.read_limits import NO_LIMITS, LimitState
from coffer.domain.secret_value import SecretValue

DEFAULT_ENVIRONMENTS = ("development", "staging", "production")


class ActorKind(StrEnum):
    """What kind of identity acts: the bootstrap token, a person, or a machine identity."""

    BOOTSTRAP = "bootstrap"
    USER = "user"
    MACHINE = "machine"
    ANONYMOUS = "anonymous"  # whoever holds a share link


@dataclass(frozen=True)
class Actor:
    """An authenticated identity acting inside one organization, with what the policy needs
    to decide its requests: its role (None for machines), grants and restrictions, and the
    token it presented."""

    id: str
    kind: ActorKind
    org_id: str
    name: str
    role: Role | None = None
    grants: tuple[Grant, ...] = ()
    restrictions: Restrictions = field(default_factory=Restrictions)
    token_id: str | None = None
    token_kind: str | None = None

    @property
    def is_person(self) -> bool:
        """True for a user signed in as themselves (not the bootstrap token or a machine)."""
        return self.kind is ActorKind.USER


@dataclass(frozen=True)
class CallContext:
    """Who asks, and from where; passed into every service call and into every audit entry.
    ``reason`` is why the caller says they ask (a read where a policy requires one; it is
    recorded in the audit entries of the call)."""

    actor: Actor
    source_ip: str | None = None
    user_agent: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Organization:
    """The top of the tree; tokens belong to one organization."""

    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class Project:
    """A project of an organization with its current data-key version."""

    id: str
    org_id: str
    name: str
    created_at: float
    key_version: int


@dataclass(frozen=True)
class Environment:
    """An environment (development, staging, ...) of a project."""

    id: str
    project_id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class SecretInfo:
    """A secret's metadata without its value."""

    key: str
    version: int
    created_at: float
    updated_at: float
    limits: LimitState = NO_LIMITS


@dataclass(frozen=True)
class SecretVersionInfo:
    """One version's metadata: who wrote it, when, and why. Never the value."""

    version: int
    author_id: str
    author_kind: str
    created_at: float
    comment: str | None


@dataclass(frozen=True)
class RevealedSecret:
    """A secret version together with its decrypted value."""

    key: str
    version: int
    value: SecretValue
    created_at: float
    comment: str | None
    limits: LimitState = NO_LIMITS


@dataclass(frozen=True)
class WriteResult:
    """What a write did: ``created``, ``updated`` or ``unchanged``, and the version now current."""

    key: str
    outcome: str
    version: int
    limits: LimitState = NO_LIMITS


@dataclass(frozen=True)
class EnvironmentDiff:
    """Keys only on one side and keys whose values differ. Never values."""

    only_in_from: list[str]
    only_in_to: list[str]
    different: list[str]
    same: list[str]


@dataclass(frozen=True)
class PromotionReport:
    """What a promotion did (or would do, on a dry run), key by key."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True)
class ImportReport:
    """What an import did, key by key."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class EphemeralKind(StrEnum):
    """A standalone ephemeral secret (sealed by the server) or a share (sealed by the client,
    whose key the server never sees)."""

    SECRET = "secret"
    SHARE = "share"


@dataclass(frozen=True)
class EphemeralInfo:
    """An ephemeral secret's or share's metadata and limits, never its value."""

    key: str
    kind: EphemeralKind
    created_by: str
    created_at: float
    updated_at: float
    limits: LimitState


@dataclass(frozen=True)
class RevealedEphemeral:
    """An ephemeral secret's value after a counted read, with its limits after that read."""

    key: str
    value: SecretValue
    limits: LimitState


@dataclass(frozen=True)
class CreatedShare:
    """A new share: the token of its link (shown once, stored only as a hash) and its info."""

    token: str = field(repr=False)
    info: EphemeralInfo


@dataclass(frozen=True)
class OpenedShare:
    """A share's client-side ciphertext after a counted read, with its limits after it."""

    ciphertext: bytes
    limits: LimitState


@dataclass(frozen=True)
class PruneReport:
    """What a prune destroyed: vault secrets, ephemeral secrets and shares past their TTL."""

    secrets: int = 0
    ephemeral: int = 0
    shares: int = 0
