"""Ephemeral secrets: time to live and read limits on vault secrets, and the table of
standalone ephemeral secrets and shares.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _limit_columns() -> list[sa.Column[object]]:
    # Written out here (not imported from tables.py) so this revision never changes.
    return [
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("max_reads", sa.Integer, nullable=True),
        sa.Column("read_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("burn", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("sealed_at", sa.Float, nullable=True),
    ]


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode (see 0002): a SQLite rebuild would cascade-delete.
    for column in _limit_columns():
        op.add_column("secrets", column)
    op.create_index("ix_secrets_expires_at", "secrets", ["expires_at"])
    op.create_table(
        "ephemeral_secrets",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("lookup_hash", sa.String(64), nullable=True),
        sa.Column("proof_hash", sa.String(64), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.String(26), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        *_limit_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_ephemeral_secrets"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_ephemeral_secrets_org_id_organizations",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("org_id", "kind", "key", name="uq_ephemeral_secrets_org_id_kind_key"),
        sa.UniqueConstraint("lookup_hash", name="uq_ephemeral_secrets_lookup_hash"),
    )
    op.create_index("ix_ephemeral_secrets_expires_at", "ephemeral_secrets", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_ephemeral_secrets_expires_at", table_name="ephemeral_secrets")
    op.drop_table("ephemeral_secrets")
    op.drop_index("ix_secrets_expires_at", table_name="secrets")
    for column in reversed(_limit_columns()):
        op.drop_column("secrets", column.name)
