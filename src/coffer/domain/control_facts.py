"""The facts each SOC 2 control of ``domain.controls`` is evaluated from, read from live
state by the services (``services.compliance_facts``), and the thresholds the checks use.
Failing items are named sentences (``alice@example.com``, ``app/production/DB v3 ...``)."""

from __future__ import annotations

from dataclasses import dataclass, field

STALE_REQUEST_DAYS = 7
REVIEW_MAX_AGE_DAYS = 90
CHECKPOINT_MAX_LAG_SECONDS = 3600.0


@dataclass(frozen=True)
class LogicalAccessFacts:
    """CC6.1: how secrets are stored and how people sign in."""

    secret_versions: int = 0
    unprotected_versions: tuple[str, ...] = ()
    require_mfa: bool = False
    admins: int = 0
    admins_without_mfa: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthorisationFacts:
    """CC6.2: requests, approvals and the grants given to people in the period."""

    pending_requests: int = 0
    stale_requests: tuple[str, ...] = ()
    requests_approved: int = 0
    requests_denied: int = 0
    operations_approved: int = 0
    grants_in_period: int = 0
    unauthorised_grants: tuple[str, ...] = ()
    self_approvals: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemovalFacts:
    """CC6.3: access reviews, their revoke decisions, and offboarded members."""

    last_review: str | None = None
    last_signed_off_at: float | None = None
    revoke_decisions: int = 0
    unapplied_revokes: tuple[str, ...] = ()
    offboardings: int = 0
    offboarded_with_access: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalAccessFacts:
    """CC6.6: live credentials and machine identities."""

    live_tokens: int = 0
    tokens_without_expiry: tuple[str, ...] = ()
    machines: int = 0
    machines_without_allow_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataMovementFacts:
    """CC6.7: export approvals of production environments and transport security.
    ``export_approvals`` pairs each production environment name in use with the number of
    people its policy requires to export it whole (1 without a policy)."""

    export_approvals: tuple[tuple[str, int], ...] = ()
    tls: bool = False
    trusted_proxies: bool = False


@dataclass(frozen=True)
class DetectionFacts:
    """CC7.1: secrets the scanner found outside the vault."""

    exposures_recorded: int = 0
    exposed_current: tuple[str, ...] = ()
    last_match_at: float | None = None


@dataclass(frozen=True)
class MonitoringFacts:
    """CC7.2: the audit log's integrity, its checkpoints, and who is alerted.
    ``checkpoint_lag_allowed``: how long an entry may wait for a signed checkpoint (an hour,
    or longer when the deployment signs less often)."""

    log_verified: bool = True
    verify_problem: str | None = None
    entries: int = 0
    last_checkpoint_at: float | None = None
    oldest_unsigned_at: float | None = None
    active_webhooks: int = 0
    siem_streams: int = 0
    anomaly_environments: tuple[str, ...] = ()
    checkpoint_lag_allowed: float = CHECKPOINT_MAX_LAG_SECONDS


@dataclass(frozen=True)
class ChangeFacts:
    """CC8.1: rotation on schedule, environment policies, authorship of versions."""

    secrets: int = 0
    due: int = 0
    overdue: tuple[str, ...] = ()
    flagged: tuple[str, ...] = ()
    policy_breaches: tuple[str, ...] = ()
    versions: int = 0
    versions_without_author: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlFacts:
    """Everything the controls are evaluated from, as of ``now``; ``period_start`` and
    ``period_end`` bound the checks about what happened in a period."""

    now: float
    period_start: float
    period_end: float
    logical_access: LogicalAccessFacts = field(default_factory=LogicalAccessFacts)
    authorisation: AuthorisationFacts = field(default_factory=AuthorisationFacts)
    removal: RemovalFacts = field(default_factory=RemovalFacts)
    external_access: ExternalAccessFacts = field(default_factory=ExternalAccessFacts)
    data_movement: DataMovementFacts = field(default_factory=DataMovementFacts)
    detection: DetectionFacts = field(default_factory=DetectionFacts)
    monitoring: MonitoringFacts = field(default_factory=MonitoringFacts)
    change: ChangeFacts = field(default_factory=ChangeFacts)
