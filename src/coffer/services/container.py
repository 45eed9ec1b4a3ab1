"""The services of one running vault, built once by ``bootstrap``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.services.access import AccessGate
from coffer.services.access_requests import AccessRequestService
from coffer.services.access_reviews import AccessReviewService
from coffer.services.approvals import ApprovalService
from coffer.services.audit import AuditService
from coffer.services.audit_batcher import AuditBatcher
from coffer.services.audit_streams import LogConsumers
from coffer.services.auth import Authenticator
from coffer.services.background import BackgroundJobs
from coffer.services.cache_epochs import Epochs
from coffer.services.compliance import ComplianceService
from coffer.services.ephemeral import EphemeralService
from coffer.services.exposures import ExposureService
from coffer.services.fast_read import FastSecretReader
from coffer.services.inventory import InventoryService
from coffer.services.key_rotation import KeyRotationService
from coffer.services.login import LoginService
from coffer.services.machines import AccessService
from coffer.services.mfa import MfaService
from coffer.services.offboarding import OffboardingService
from coffer.services.projects import ProjectService
from coffer.services.pruner import Pruner
from coffer.services.readiness import Readiness
from coffer.services.rotation_report import RotationReportService
from coffer.services.rotation_schedule import RotationService
from coffer.services.rotators import RotatorService
from coffer.services.secrets import SecretService
from coffer.services.shares import ShareService
from coffer.services.team import TeamService
from coffer.services.throttle import Throttle
from coffer.services.tokens import TokenService
from coffer.services.transfer import TransferService
from coffer.services.webhooks import WebhookService


@dataclass(frozen=True)
class Services:
    """Everything an entry point may call."""

    engine: Engine
    auth: Authenticator
    gate: AccessGate
    throttle: Throttle
    readiness: Readiness
    login: LoginService
    mfa: MfaService
    team: TeamService
    tokens: TokenService
    access: AccessService
    projects: ProjectService
    key_rotation: KeyRotationService
    secrets: SecretService
    ephemeral: EphemeralService
    shares: ShareService
    pruner: Pruner
    transfer: TransferService
    fast_reader: FastSecretReader
    audit: AuditService
    background: BackgroundJobs
    webhooks: WebhookService
    consumers: LogConsumers
    epochs: Epochs
    audit_batcher: AuditBatcher
    exposures: ExposureService
    rotation_report: RotationReportService
    inventory: InventoryService
    rotation: RotationService
    rotators: RotatorService
    access_requests: AccessRequestService
    approvals: ApprovalService
    reviews: AccessReviewService
    offboarding: OffboardingService
    compliance: ComplianceService

    def close(self) -> None:
        """Stops background jobs and releases network and database connections."""
        self.background.stop()
        self.audit_batcher.close()
        self.epochs.close()
        self.consumers.close()
        self.webhooks.poster.close()
        self.engine.dispose()
