"""Plain records passed between layers. Values are ``SecretValue``; nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from coffer.domain.secret_value import SecretValue

DEFAULT_ENVIRONMENTS = ("development", "staging", "production")


class ActorKind(StrEnum):
    """What kind of identity acts. Users, API keys and machines arrive with access control."""

    BOOTSTRAP = "bootstrap"


@dataclass(frozen=True)
class Actor:
    """An authenticated identity acting inside one organization."""

    id: str
    kind: ActorKind
    org_id: str
    name: str


@dataclass(frozen=True)
class CallContext:
    """Who asks, and from where; passed into every service call and into every audit entry."""

    actor: Actor
    source_ip: str | None = None
    user_agent: str | None = None


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


@dataclass(frozen=True)
class WriteResult:
    """What a write did: ``created``, ``updated`` or ``unchanged``, and the version now current."""

    key: str
    outcome: str
    version: int


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
