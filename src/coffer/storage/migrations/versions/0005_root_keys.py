"""Root-key generations: which provider holds the root and when it changed.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A vault from before this revision gets its first generation when it is next opened
    # with its root key (the check value and the sealed audit keys need the key).
    op.create_table(
        "root_keys",
        sa.Column("generation", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(512), nullable=False),
        sa.Column("wrapped_kek", sa.LargeBinary, nullable=True),
        sa.Column("kek_check", sa.String(64), nullable=False),
        sa.Column("audit_keys_sealed", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("activated_at", sa.Float, nullable=True),
        sa.Column("retired_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("generation", name="pk_root_keys"),
    )


def downgrade() -> None:
    op.drop_table("root_keys")
