"""Identity and access: users, MFA recovery codes, invitations, machines, grants; session
columns on tokens; the organization's MFA requirement.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        ondelete="CASCADE",
        name=f"fk_{table}_{column}_{target}",
    )


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode: on SQLite a batch rebuild drops and recreates the
    # table, and with foreign keys on, dropping ``organizations`` would cascade-delete
    # every project, secret and token of an existing vault.
    op.add_column(
        "organizations",
        sa.Column("require_mfa", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("api_tokens", sa.Column("last_used_at", sa.Float, nullable=True))
    op.add_column("api_tokens", sa.Column("idle_timeout", sa.Float, nullable=True))
    op.create_index("ix_api_tokens_identity_id", "api_tokens", ["identity_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("password_changed_at", sa.Float, nullable=False),
        sa.Column("mfa_seed", sa.LargeBinary, nullable=True),
        sa.Column("mfa_enabled_at", sa.Float, nullable=True),
        sa.Column("mfa_last_step", sa.Integer, nullable=True),
        _fk("org_id", "users", "organizations"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("user_id", sa.String(26), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        _fk("user_id", "mfa_recovery_codes", "users"),
        sa.PrimaryKeyConstraint("user_id", "code_hash", name="pk_mfa_recovery_codes"),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("invited_by", sa.String(26), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("accepted_at", sa.Float, nullable=True),
        _fk("org_id", "invitations", "organizations"),
        sa.PrimaryKeyConstraint("id", name="pk_invitations"),
        sa.UniqueConstraint("token_hash", name="uq_invitations_token_hash"),
    )
    op.create_table(
        "machines",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("allowed_ips", sa.JSON, nullable=False),
        sa.Column("valid_after", sa.Float, nullable=True),
        sa.Column("valid_before", sa.Float, nullable=True),
        sa.Column("created_by", sa.String(26), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        _fk("org_id", "machines", "organizations"),
        sa.PrimaryKeyConstraint("id", name="pk_machines"),
        sa.UniqueConstraint("org_id", "name", name="uq_machines_org_id_name"),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("identity_id", sa.String(26), nullable=False),
        sa.Column("identity_kind", sa.String(16), nullable=False),
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("environment_id", sa.String(26), nullable=True),
        sa.Column("access", sa.String(8), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("created_by", sa.String(26), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        _fk("org_id", "grants", "organizations"),
        _fk("project_id", "grants", "projects"),
        _fk("environment_id", "grants", "environments"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_identity_id", "grants", ["identity_id"])


def downgrade() -> None:
    op.drop_index("ix_grants_identity_id", table_name="grants")
    for table in ("grants", "machines", "invitations", "mfa_recovery_codes", "users"):
        op.drop_table(table)
    op.drop_index("ix_api_tokens_identity_id", table_name="api_tokens")
    # Plain DROP COLUMN (SQLite 3.35+), for the same reason as in upgrade().
    op.drop_column("api_tokens", "idle_timeout")
    op.drop_column("api_tokens", "last_used_at")
    op.drop_column("organizations", "require_mfa")
