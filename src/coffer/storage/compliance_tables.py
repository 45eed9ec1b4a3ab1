"""The compliance tables: inventory metadata and policies, rotation flags, notices and
rotators, access requests, approvals for separated duties, and access reviews.

Like the rest of the schema (``storage.tables``), times are Unix seconds (float). None of
these rows ever holds a secret value: a rotator's configuration names the vault secret that
holds its admin credential (``project/environment/KEY``), never the credential itself.
"""

from __future__ import annotations

import sqlalchemy as sa

from coffer.storage.schema_base import cascading_fk as _fk
from coffer.storage.schema_base import metadata

# Inventory metadata of one secret (``domain.inventory``). A secret without a row has none
# of it yet. The row goes with the secret.
secret_inventory = sa.Table(
    "secret_inventory",
    metadata,
    sa.Column("secret_id", sa.String(26), _fk("secrets.id"), primary_key=True),
    sa.Column("owner", sa.String(254), nullable=True),
    sa.Column("system", sa.String(128), nullable=True),
    sa.Column("description", sa.String(1024), nullable=True),
    sa.Column("sensitivity", sa.String(16), nullable=True),
    sa.Column("rotation_days", sa.Integer, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(26), nullable=False),
)

# An organization's policy for every environment of this name, in every project (for
# example ``production``): the inventory fields a secret there must have, the longest
# rotation period it may have, whether reads must state a reason, and how many people must
# approve exporting the whole environment (1: the exporter alone; 2: a second approver).
environment_policies = sa.Table(
    "environment_policies",
    metadata,
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), primary_key=True),
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("required_fields", sa.JSON, nullable=False),
    sa.Column("max_rotation_days", sa.Integer, nullable=True),
    sa.Column("require_read_reason", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("export_approvals", sa.Integer, nullable=False, server_default="1"),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(26), nullable=False),
)

# Organization-wide compliance settings: approvals needed to rotate the root key, and how
# many days before its due date a secret's rotation counts as due (the reminder window).
compliance_settings = sa.Table(
    "compliance_settings",
    metadata,
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), primary_key=True),
    sa.Column("root_rotation_approvals", sa.Integer, nullable=False, server_default="1"),
    sa.Column("rotation_reminder_days", sa.Integer, nullable=False, server_default="7"),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(26), nullable=False),
)

# A secret that must be rotated now whatever its schedule says, because of ``reason``
# (``offboarding``: someone who could read it left; ``manual``; exposures have their own
# table). The flag holds while the secret's current version is ``version`` or older: writing
# a new version resolves it, and the row stays as history.
rotation_flags = sa.Table(
    "rotation_flags",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("secret_id", sa.String(26), _fk("secrets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.String(300), nullable=True),
    sa.Column("flagged_at", sa.Float, nullable=False),
    sa.Column("flagged_by", sa.String(26), nullable=True),
    sa.Index("ix_rotation_flags_secret_id", "secret_id"),
)

# The reminders already sent: one ``rotation.due`` and one ``rotation.overdue`` per secret
# version at most.
rotation_notices = sa.Table(
    "rotation_notices",
    metadata,
    sa.Column("secret_id", sa.String(26), _fk("secrets.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), primary_key=True),
    sa.Column("sent_at", sa.Float, nullable=False),
)

# How a secret is rotated at its source (``kind``: ``random`` or ``postgresql``) and how the
# last attempt went. ``config`` holds parameters only (length, alphabet, role name, the
# name of the vault secret holding the admin connection), never a credential.
secret_rotators = sa.Table(
    "secret_rotators",
    metadata,
    sa.Column("secret_id", sa.String(26), _fk("secrets.id"), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(26), nullable=False),
    sa.Column("last_run_at", sa.Float, nullable=True),
    sa.Column("last_status", sa.String(16), nullable=True),
    sa.Column("last_error", sa.String(300), nullable=True),
)

# A member's request for access to a project (``environment`` None) or one environment, for
# a reason and a duration. An approver who is not the requester approves (a grant that
# expires by itself is created: ``grant_id``) or denies it. ``status``: pending, approved,
# denied, cancelled, expired.
access_requests = sa.Table(
    "access_requests",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("requester_id", sa.String(26), nullable=False),
    sa.Column("requester_kind", sa.String(16), nullable=False),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("environment", sa.String(64), nullable=True),
    sa.Column("access", sa.String(8), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("duration_seconds", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("decided_by", sa.String(26), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("decision_note", sa.String(500), nullable=True),
    sa.Column("grant_id", sa.String(26), nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Index("ix_access_requests_org_id_status", "org_id", "status"),
)

# Separation of duties: an operation (``env.export`` of ``project/environment``, or
# ``root.rotate``) that a policy says needs a second person. The requester asks, another
# member approves, and the requester then uses the approval once before it expires.
# ``status``: pending, approved, denied, used, expired.
operation_approvals = sa.Table(
    "operation_approvals",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("requested_by", sa.String(26), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("decided_by", sa.String(26), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Index("ix_operation_approvals_org_id_status", "org_id", "status"),
)

# An access review campaign: every identity of the organization when it started, each with
# its access and last use (``access_review_items``); reviewers keep or revoke each line, and
# someone signs it off. ``digest`` is the SHA-256 of the signed-off review's canonical JSON,
# also written to the audit log, so the evidence kept here can be checked against the log.
access_reviews = sa.Table(
    "access_reviews",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(26), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=True),
    sa.Column("signed_off_by", sa.String(26), nullable=True),
    sa.Column("signed_off_at", sa.Float, nullable=True),
    sa.Column("digest", sa.String(64), nullable=True),
    sa.Index("ix_access_reviews_org_id_created_at", "org_id", "created_at"),
)

access_review_items = sa.Table(
    "access_review_items",
    metadata,
    sa.Column("review_id", sa.String(26), _fk("access_reviews.id"), primary_key=True),
    sa.Column("identity_id", sa.String(26), primary_key=True),
    sa.Column("identity_kind", sa.String(16), nullable=False),
    sa.Column("identity_name", sa.String(254), nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("access", sa.JSON, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("decision", sa.String(8), nullable=True),
    sa.Column("decided_by", sa.String(26), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("note", sa.String(500), nullable=True),
)

# A member who left, and what offboarding them did (counts of what was revoked, and of the
# secrets marked due for rotation), kept as evidence after the user row is gone.
offboardings = sa.Table(
    "offboardings",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("org_id", sa.String(26), _fk("organizations.id"), nullable=False),
    sa.Column("user_id", sa.String(26), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("offboarded_by", sa.String(26), nullable=False),
    sa.Column("offboarded_at", sa.Float, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Index("ix_offboardings_org_id_offboarded_at", "org_id", "offboarded_at"),
)
