"""Secret exposures: stored secret versions that a scan found outside the vault.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nothing to fill in: exposures are recorded by the scans that run after the upgrade.
    op.create_table(
        "secret_exposures",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("secret_id", sa.String(26), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("detected_at", sa.Float, nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("location", sa.String(1024), nullable=False),
        sa.Column("reported_by", sa.String(26), nullable=True),
        sa.Column("reported_by_kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_secret_exposures"),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name="fk_secret_exposures_secret_id_secrets",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "secret_id",
            "version",
            "location",
            name="uq_secret_exposures_secret_id_version_location",
        ),
    )


def downgrade() -> None:
    op.drop_table("secret_exposures")
