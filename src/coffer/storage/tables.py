"""The relational schema, as SQLAlchemy Core tables. Alembic migrations create exactly this.

Times are Unix seconds (float). Audit rows keep names, not foreign keys, so the log outlives
the projects and secrets it speaks of.
"""

from __future__ import annotations

import sqlalchemy as sa

from coffer.storage.json_text import CanonicalJSON
from coffer.storage.schema_base import cascading_fk as _fk
from coffer.storage.schema_base import metadata as metadata
from coffer.storage.schema_base import read_limit_columns as read_limit_columns

vault_meta = sa.Table(
    "vault_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

root_keys = sa.Table(
    "root_keys",
    metadata,
    sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(512), nullable=False),
    sa.Column("wrapped_kek", sa.LargeBinary, nullable=True),
    sa.Column("kek_check", sa.String(64), nullable=False),
    sa.Column("audit_keys_sealed", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("activated_at", sa.Float, nullable=True),
    sa.Column("retired_at", sa.Float, nullable=True),
)

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("require_mfa", sa.Boolean, nullable=False, server_default=sa.false()),
    # "Mon-Fri 09:00-18:00 UTC": reads outside these hours are flagged as anomalies.
    sa.Column("working_hours", sa.String(64), nullable=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column(
        "org_id",
        sa.String(26),
        _fk("organizations.id"),
        nullable=False,
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("identity_id", sa.String(26), nullable=False),
    sa.Column("identity_kind", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("idle_timeout", sa.Float, nullable=True),
    sa.Index("ix_api_tokens_identity_id", "identity_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("password_changed_at", sa.Float, nullable=False),
    sa.Column("mfa_seed", sa.LargeBinary, nullable=True),
    sa.Column("mfa_enabled_at", sa.Float, nullable=True),
    sa.Column("mfa_last_step", sa.Integer, nullable=True),
)

mfa_recovery_codes = sa.Table(
    "mfa_recovery_codes",
    metadata,
    sa.Column("user_id", sa.String(26), _fk("users.id"), primary_key=True),
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.Float, nullable=True),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("invited_by", sa.String(26), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("accepted_at", sa.Float, nullable=True),
)

machines = sa.Table(
    "machines",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.String(256), nullable=True),
    sa.Column("allowed_ips", sa.JSON, nullable=False),
    sa.Column("valid_after", sa.Float, nullable=True),
    sa.Column("valid_before", sa.Float, nullable=True),
    sa.Column("created_by", sa.String(26), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("org_id", "name"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column(
        "org_id",
        sa.String(26),
        _fk("organizations.id"),
        nullable=False,
    ),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("org_id", "name"),
)

data_keys = sa.Table(
    "data_keys",
    metadata,
    sa.Column(
        "project_id",
        sa.String(26),
        _fk("projects.id"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column(
        "project_id",
        sa.String(26),
        _fk("projects.id"),
        nullable=False,
    ),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column(
        "environment_id",
        sa.String(26),
        _fk("environments.id"),
        nullable=False,
    ),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    *read_limit_columns(),
    sa.UniqueConstraint("environment_id", "key"),
    sa.Index("ix_secrets_expires_at", "expires_at"),
)

secret_versions = sa.Table(
    "secret_versions",
    metadata,
    sa.Column(
        "secret_id",
        sa.String(26),
        _fk("secrets.id"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("author_id", sa.String(26), nullable=False),
    sa.Column("author_kind", sa.String(16), nullable=False),
    sa.Column("comment", sa.String(1024), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("identity_id", sa.String(26), nullable=False),
    sa.Column("identity_kind", sa.String(16), nullable=False),
    sa.Column("project_id", sa.String(26), _fk("projects.id"), nullable=False),
    sa.Column("environment_id", sa.String(26), _fk("environments.id"), nullable=True),
    sa.Column("access", sa.String(8), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("created_by", sa.String(26), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_grants_identity_id", "identity_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(26), nullable=False, unique=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("actor_id", sa.String(26), nullable=True),
    sa.Column("actor_kind", sa.String(16), nullable=True),
    sa.Column("org_id", sa.String(26), nullable=True),
    sa.Column("project", sa.String(64), nullable=True),
    sa.Column("environment", sa.String(64), nullable=True),
    sa.Column("key", sa.String(256), nullable=True),
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(256), nullable=True),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("metadata", CanonicalJSON, nullable=False),
    # HMAC of the entry as written (without its index): the sealer refuses rows coffer did
    # not write. The index and leaf hash are set when the sealer adds the entry to the tree.
    sa.Column("mac", sa.LargeBinary, nullable=True),
    sa.Column("leaf_index", sa.BigInteger, nullable=True),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=True),
    sa.Index("ix_audit_log_timestamp", "timestamp"),
    sa.Index("ix_audit_log_leaf_index", "leaf_index", unique=True),
    sa.Index("ix_audit_log_org_id_seq", "org_id", "seq"),
    sa.Index("ix_audit_log_action_seq", "action", "seq"),
    sa.Index("ix_audit_log_actor_id_seq", "actor_id", "seq"),
    sa.Index("ix_audit_log_key_seq", "key", "seq"),
    sa.Index("ix_audit_log_project_environment_seq", "project", "environment", "seq"),
)

# The signed tree heads. Each signs (seq, tree_size, root_hash, timestamp); ``frontier``
# holds the perfect-subtree roots at ``tree_size`` so that entries before it can be pruned
# and the rest still verified from here.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("root_hash", sa.LargeBinary, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("frontier", sa.JSON, nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

# One row (id = 1): the tree as sealed so far. Sealers lock it, so one seals at a time.
audit_tree = sa.Table(
    "audit_tree",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.JSON, nullable=False),
    sa.Column("pruned_before", sa.BigInteger, nullable=False),
    # Entries up to this seq were written before entries carried a MAC (an upgraded vault);
    # the sealer takes them as they are, once.
    sa.Column("legacy_through", sa.BigInteger, nullable=False),
)

# Where each consumer of the sealed log (a SIEM stream, the webhook dispatcher, the anomaly
# detector) has got to: the next leaf index it will take. The log itself is the spool.
audit_cursors = sa.Table(
    "audit_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.String(300), nullable=True),
)

# The addresses each identity has been seen reading from (for the new-address anomaly).
audit_seen_addresses = sa.Table(
    "audit_seen_addresses",
    metadata,
    sa.Column("actor_id", sa.String(26), primary_key=True),
    sa.Column("source_ip", sa.String(64), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("project", sa.String(64), nullable=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
    sa.Column("description", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(26), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Index("ix_webhooks_org_id", "org_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("webhook_id", sa.String(26), _fk("webhooks.id"), nullable=False),
    sa.Column("entry_id", sa.String(26), nullable=False),
    sa.Column("leaf_index", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.String(300), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
)

# Standalone ephemeral secrets (``kind`` "secret", named by ``key`` within the organization,
# sealed by the server) and shares (``kind`` "share", client-side ciphertext the server
# cannot open, found by the hash of the link's token, opened only by a caller who proves it
# holds the key: ``proof_hash`` is the hash of that proof). Each always expires.
ephemeral_secrets = sa.Table(
    "ephemeral_secrets",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("lookup_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("proof_hash", sa.String(64), nullable=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.String(26), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    *read_limit_columns(),
    sa.UniqueConstraint("org_id", "kind", "key"),
    sa.Index("ix_ephemeral_secrets_expires_at", "expires_at"),
)

# Which node runs each background job (the audit sealer, the pruner, each consumer of the log),
# until when. A node renews its lease before every step of the job; a lease that has run out
# (its node died) goes to the first other node that asks. See ``storage/lease_store.py``.
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(160), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# A stored secret's version found outside the vault by a scan (``coffer scan --match-vault``):
# where, by which rule, reported by whom. Never the value or any fingerprint of it. A row
# stays when a new version is written (the rotation report then says the exposure is
# resolved); it goes with the secret. One row per version and place.
secret_exposures = sa.Table(
    "secret_exposures",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("secret_id", sa.String(26), _fk("secrets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("location", sa.String(1024), nullable=False),
    sa.Column("reported_by", sa.String(26), nullable=True),
    sa.Column("reported_by_kind", sa.String(16), nullable=False),
    sa.UniqueConstraint("secret_id", "version", "location"),
)

# The compliance tables (inventory, policies, rotation, requests, reviews) live in their own
# module; importing it here registers them on ``metadata`` wherever the schema is used.
from coffer.storage import compliance_tables as compliance_tables  # noqa: E402
