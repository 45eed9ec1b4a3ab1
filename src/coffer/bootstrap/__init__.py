"""Wires the object graph once: settings -> engine, keys, audit writer -> services."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import Engine

from coffer import __version__
from coffer.audit.outbound import parse_allow_list
from coffer.audit.sealer import AuditSealer, CheckpointPolicy
from coffer.audit.writer import AuditWriter
from coffer.bootstrap.sqlite_files import create_private_sqlite_file, sqlite_file
from coffer.config import Settings
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.keys import KeyEncryptionKey, RootKey, load_root_key, write_root_key_file
from coffer.crypto.passwords import Argon2Parameters, PasswordHasher
from coffer.crypto.providers.configured import RootProviders
from coffer.crypto.providers.shamir import validate_split
from coffer.domain.identity import normalize_email, validate_password
from coffer.domain.root_keys import ProviderName, RootKeyRecord
from coffer.services import anomalies, webhook_delivery
from coffer.services.access import AccessGate
from coffer.services.access_requests import AccessRequestService
from coffer.services.access_reviews import AccessReviewService
from coffer.services.anomalies import AnomalyDetector, burst_rule
from coffer.services.approvals import ApprovalService
from coffer.services.audit import AuditService
from coffer.services.audit_batcher import AuditBatcher
from coffer.services.audit_streams import AuditStream, LogConsumers, stream_addresses
from coffer.services.auth import Authenticator
from coffer.services.background import BackgroundJobs, Job, JobLeases
from coffer.services.cache_epochs import Epochs, epochs_for
from coffer.services.compliance import ComplianceService
from coffer.services.container import Services
from coffer.services.ephemeral import EphemeralService
from coffer.services.ephemeral_rows import EphemeralRows
from coffer.services.exposures import ExposureService
from coffer.services.fast_read import FastSecretReader
from coffer.services.inventory import InventoryService
from coffer.services.key_rotation import KeyRotationService
from coffer.services.keyring import Keyring
from coffer.services.login import LoginService, SessionPolicy
from coffer.services.machines import AccessService
from coffer.services.mfa import MfaService
from coffer.services.offboarding import OffboardingService
from coffer.services.password_pool import PasswordPool
from coffer.services.projects import ProjectService
from coffer.services.pruner import Pruner
from coffer.services.read_cache import EpochCache
from coffer.services.readiness import Readiness
from coffer.services.rotation_report import RotationReportService
from coffer.services.rotation_schedule import RotationService
from coffer.services.rotators import RotatorService
from coffer.services.secret_cipher import SecretCipher
from coffer.services.secret_ops import Limits, SecretOps
from coffer.services.secrets import SecretService
from coffer.services.shares import ShareService
from coffer.services.team import TeamService
from coffer.services.throttle import RateRules, Throttle, parse_rate
from coffer.services.token_holders import TokenHolders
from coffer.services.tokens import TokenService
from coffer.services.transfer import TransferService
from coffer.services.vault_setup import (
    InitResult,
    OwnerAccount,
    active_root,
    expect_shamir_split,
    initialise,
    is_initialised,
    open_vault,
)
from coffer.services.webhook_delivery import WebhookDispatcher, WebhookSender
from coffer.services.webhooks import WebhookPoster, WebhookService
from coffer.storage.change_tracking import CacheFamily, track_changes
from coffer.storage.database import check_connection, create_engine, libpq_url


def load_settings_root_key(settings: Settings) -> RootKey:
    """Returns the root key named by the settings; raises ConfigError saying what is wrong."""
    return load_root_key(env_value=settings.root_key_b64, key_file=settings.root_key_file)


def build_services(settings: Settings, providers: RootProviders | None = None) -> Services:
    """Opens the vault named by ``settings`` and returns its services. Raises ConfigError
    when the database cannot be opened, the key is missing or belongs to another vault.
    ``providers`` are the process's root key providers (a Shamir one already unsealed)."""
    providers = providers or RootProviders(settings)
    rate_rules(settings)  # a bad rate setting fails before the database is touched
    sinks = stream_addresses(settings.audit_streams)
    burst = burst_rule(settings.anomaly_read_burst)
    parse_allow_list(settings.outbound_allow)
    engine = create_engine(settings.database_url)
    with ExitStack() as on_failure:
        on_failure.callback(engine.dispose)
        opened = open_vault(engine, providers)
        on_failure.pop_all()
    keks, audit_keys = opened.keks, opened.audit_keys
    audit = AuditWriter(audit_keys)
    epochs = node_epochs(settings, engine)
    keyring = Keyring(keks, epochs)
    limits = Limits(max_value_bytes=settings.max_value_bytes)
    cipher = SecretCipher(keyring)
    ops = SecretOps(cipher, audit)
    gate = AccessGate(engine, audit)
    throttle = Throttle(rate_rules(settings), settings.redis_url or "memory://")
    mfa = MfaService(engine, keks, audit, gate)
    passwords = PasswordPool(password_hasher(settings), concurrency=settings.hash_concurrency)
    sessions = SessionPolicy(
        cli_token_ttl=settings.cli_token_ttl,
        session_idle=settings.session_idle,
        session_max=settings.session_max,
    )
    sealer = AuditSealer(
        engine,
        audit_keys,
        CheckpointPolicy(
            every_entries=settings.audit_checkpoint_entries,
            every_seconds=settings.audit_checkpoint_seconds,
        ),
    )
    audit_service = AuditService(
        engine,
        audit_keys,
        audit,
        sealer,
        gate,
        retention_days=settings.audit_retention_days,
        version=__version__,
    )
    webhooks = WebhookService(
        engine, keks, audit, gate, WebhookPoster(allow=settings.outbound_allow)
    )
    ephemeral_rows = EphemeralRows(engine, audit)
    pruner = Pruner(engine, ops, ephemeral_rows, gate)
    consumers = LogConsumers(
        engine,
        WebhookDispatcher(engine, audit_service),
        WebhookSender(engine, webhooks, audit),
        AnomalyDetector(
            engine,
            audit_service,
            audit,
            production_environments=settings.production_environments,
            burst=burst,
        ),
        [AuditStream(engine, audit_service, sink) for sink in sinks],
    )
    batcher = AuditBatcher(engine, audit)
    rotation = RotationService(engine, audit, gate)
    holders = TokenHolders(
        engine, EpochCache(epochs, CacheFamily.ACCESS, max_age=settings.cache_seconds)
    )
    return Services(
        engine=engine,
        auth=Authenticator(engine, holders),
        gate=gate,
        throttle=throttle,
        readiness=Readiness(
            engine,
            keks,
            audit,
            redis_url=settings.redis_url,
            # A sealer that stops is taken over by another node once its lease runs out.
            seal_deadline=10 * settings.audit_seal_interval + settings.job_lease_seconds,
        ),
        login=LoginService(engine, passwords, mfa, throttle, audit, gate, sessions),
        mfa=mfa,
        team=TeamService(engine, audit, gate, settings.invitation_ttl),
        tokens=TokenService(engine, audit, gate),
        access=AccessService(engine, audit, gate),
        projects=ProjectService(engine, keyring, audit, gate),
        key_rotation=KeyRotationService(engine, keyring, audit, gate),
        secrets=SecretService(engine, ops, limits, gate),
        ephemeral=EphemeralService(engine, keks, ephemeral_rows, gate, limits),
        shares=ShareService(engine, ephemeral_rows, gate, limits),
        pruner=pruner,
        transfer=TransferService(engine, ops, limits, gate),
        fast_reader=FastSecretReader(
            engine,
            cipher,
            audit,
            batcher,
            throttle,
            holders,
            bundles=EpochCache(epochs, CacheFamily.SECRETS, max_age=settings.cache_seconds),
        ),
        epochs=epochs,
        audit_batcher=batcher,
        audit=audit_service,
        background=background_jobs(
            settings,
            audit_service,
            sealer,
            consumers,
            pruner,
            rotation=rotation,
            leases=JobLeases(engine, job_holder(settings), settings.job_lease_seconds, gate),
        ),
        webhooks=webhooks,
        consumers=consumers,
        exposures=ExposureService(engine, keyring, cipher, audit, gate),
        rotation_report=RotationReportService(engine, gate),
        inventory=InventoryService(engine, audit, gate),
        rotation=rotation,
        rotators=RotatorService(engine, ops, gate),
        access_requests=AccessRequestService(engine, audit, gate),
        approvals=ApprovalService(engine, audit, gate),
        reviews=AccessReviewService(
            engine, audit, gate, offboarding := OffboardingService(engine, audit, gate)
        ),
        offboarding=offboarding,
        compliance=ComplianceService.for_settings(engine, audit, audit_service, gate, settings),
    )


def node_epochs(settings: Settings, engine: Engine) -> Epochs:
    """This process's cache epochs (see ``services.cache_epochs``), moved by every committed
    change ``engine`` makes to the tables caches are built from, here and on other nodes."""
    epochs = epochs_for(
        cache_seconds=settings.cache_seconds,
        sqlite_file=sqlite_file(settings.database_url) if settings.is_sqlite else None,
        postgres_conninfo=None if settings.is_sqlite else libpq_url(engine),
        redis_url=settings.redis_url,
    )
    track_changes(engine, epochs.changed)
    return epochs


def sealed_root(settings: Settings) -> tuple[RootProviders, RootKeyRecord] | None:
    """For a vault whose root key is split into Shamir shares: the providers (their unsealer
    told which share set is the vault's) and the active root record; None for any other."""
    providers = RootProviders(settings)
    engine = create_engine(settings.database_url)
    try:
        record = active_root(engine, providers)
        if record.provider is not ProviderName.SHAMIR:
            return None
        expect_shamir_split(engine, providers)
    finally:
        engine.dispose()
    return providers, record


def background_jobs(
    settings: Settings,
    audit: AuditService,
    sealer: AuditSealer,
    consumers: LogConsumers | None = None,
    pruner: Pruner | None = None,
    *,
    rotation: RotationService | None = None,
    leases: JobLeases | None = None,
) -> BackgroundJobs:
    """The server's background jobs: sealing, retention, the pruner of expired secrets, the
    rotation reminders and the log's consumers (webhook dispatch and delivery, anomaly
    detection, SIEM streams), which poll as often as the sealer runs. With ``leases`` each
    job runs on one node at a time (see ``services.background``)."""
    jobs = BackgroundJobs(leases=leases)
    # Webhooks and anomaly detection concern what happens from now on, never the history.
    jobs.before_start(lambda: audit.follow_from_head((webhook_delivery.CURSOR, anomalies.CURSOR)))
    jobs.add(Job("audit-sealer", settings.audit_seal_interval, lambda: _seal(sealer)))
    if settings.audit_retention_days > 0:
        jobs.add(Job("audit-retention", 3600.0, lambda: _prune(audit)))
    if pruner is not None and settings.prune_interval > 0:
        jobs.add(
            Job("secret-pruner", float(settings.prune_interval), lambda: _prune_secrets(pruner))
        )
    if rotation is not None and settings.rotation_check_seconds > 0:
        jobs.add(
            Job(
                "rotation-reminders",
                float(settings.rotation_check_seconds),
                lambda: _remind(rotation),
            )
        )
    for job in consumers.jobs(settings.audit_seal_interval) if consumers else []:
        jobs.add(job)
    return jobs


def job_holder(settings: Settings) -> str:
    """This process's name in job leases: COFFER_NODE_ID, else ``host:pid``. With several
    worker processes (COFFER_WORKERS) each one is a node of its own, so the pid follows the
    node id."""
    if not settings.node_id:
        return f"{socket.gethostname()[:128]}:{os.getpid()}"
    if settings.workers > 1:
        return f"{settings.node_id}:{os.getpid()}"
    return settings.node_id


def _seal(sealer: AuditSealer) -> bool:
    sealer.seal()
    return False


def _prune(audit: AuditService) -> bool:
    audit.prune(None)
    return False


def _prune_secrets(pruner: Pruner) -> bool:
    pruner.prune(None)
    return False


def _remind(rotation: RotationService) -> bool:
    rotation.notify(None)
    return False


def audit_keys_for(root: RootKey) -> AuditKeys:
    """The audit keys of a vault initialised with the local root key ``root`` (they stay
    the same through root rotations)."""
    return AuditKeys.derive(KeyEncryptionKey.derive(root))


def password_hasher(settings: Settings) -> PasswordHasher:
    """Returns the Argon2id hasher with the settings' cost parameters."""
    return PasswordHasher(
        Argon2Parameters(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=1,
        )
    )


def rate_rules(settings: Settings) -> RateRules:
    """Returns the rate limits the settings name; raises ConfigError naming a bad one."""
    return RateRules(
        api_per_ip=parse_rate(settings.rate_limit_ip, variable="COFFER_RATE_LIMIT_IP"),
        api_per_identity=parse_rate(
            settings.rate_limit_identity, variable="COFFER_RATE_LIMIT_IDENTITY"
        ),
        login_per_ip=parse_rate(settings.login_rate_limit, variable="COFFER_LOGIN_RATE_LIMIT"),
        login_failures_per_account=parse_rate(
            settings.login_failure_limit, variable="COFFER_LOGIN_FAILURE_LIMIT"
        ),
    )


def initialise_vault(
    settings: Settings,
    org_name: str = "default",
    *,
    owner_email: str | None = None,
    owner_password: str | None = None,
    split: tuple[int, int] | None = None,
) -> InitResult:
    """Initialises a new vault under the root key provider the settings name: creates the
    vault directory (0700) and, for the local provider unless ``COFFER_ROOT_KEY`` is set, a
    new root key file (0600) when there is none; then the schema, the first organization
    and its bootstrap token. With ``split`` (shares, threshold) the root key is a new
    random key split into Shamir shares (returned once in the result) and never stored.
    Raises Conflict when the database already holds a vault, ConfigError when it or the
    provider cannot be opened; in either case no directory or key file is left behind. With
    ``owner_email`` (and ``owner_password``) the organization's owner account is created."""
    if split is not None:
        validate_split(*split)
        providers = RootProviders(settings, shares=split[0], threshold=split[1])
        provider_name = ProviderName.SHAMIR
    else:
        providers = RootProviders(settings)
        provider_name = providers.configured
    provider = providers.get(provider_name)
    owner = None
    if owner_email is not None:
        address = normalize_email(owner_email)
        password = validate_password(owner_password)
        owner = OwnerAccount(email=address, password_hash=password_hasher(settings).hash(password))
    database_file = sqlite_file(settings.database_url) if settings.is_sqlite else None
    created_dir = None
    if database_file is not None and database_file.parent == settings.directory:
        if not settings.directory.exists():
            created_dir = settings.directory
        settings.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_key_file = (
        provider_name is ProviderName.LOCAL
        and settings.root_key_b64 is None
        and not settings.root_key_file.exists()
    )
    with ExitStack() as on_failure:
        on_failure.callback(
            _undo_partial_init, created_dir, settings.root_key_file if new_key_file else None
        )
        engine = create_engine(settings.database_url)
        try:
            if database_file is not None:
                create_private_sqlite_file(settings.database_url)
            check_connection(engine)
            if new_key_file:
                write_root_key_file(settings.root_key_file, RootKey.generate())
            root = provider.new_kek(1, rotate=False)
            result = initialise(engine, root, provider_name, org_name, owner)
            result = replace(result, shares=root.shares)
        finally:
            engine.dispose()
        on_failure.pop_all()
        return result


def _undo_partial_init(created_dir: Path | None, new_key_file: Path | None) -> None:
    """Removes what a failed ``initialise_vault`` created: its key file and its directory
    (only when empty apart from the database files it made itself: the directory is new, so
    they hold no vault)."""
    if new_key_file is not None:
        new_key_file.unlink(missing_ok=True)
    if created_dir is None or not created_dir.is_dir():
        return
    for leftover in created_dir.iterdir():
        if leftover.name.startswith("coffer.db"):
            leftover.unlink()
    if not any(created_dir.iterdir()):
        created_dir.rmdir()


def vault_exists(settings: Settings) -> bool:
    """True when the settings' database holds an initialised vault (False if unreachable
    SQLite file does not exist yet)."""
    path = sqlite_file(settings.database_url) if settings.is_sqlite else None
    if path is not None and not path.exists():
        return False
    engine = create_engine(settings.database_url)
    try:
        check_connection(engine)
        return is_initialised(engine)
    finally:
        engine.dispose()
