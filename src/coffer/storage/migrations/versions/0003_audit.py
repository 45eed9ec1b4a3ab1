"""Tamper-evident audit log: entry MACs and leaf indexes, signed checkpoints, the sealed
tree's state, consumer cursors, webhooks and their deliveries, seen addresses, working hours.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_AUDIT_INDEXES = {
    "ix_audit_log_org_id_seq": ["org_id", "seq"],
    "ix_audit_log_action_seq": ["action", "seq"],
    "ix_audit_log_actor_id_seq": ["actor_id", "seq"],
    "ix_audit_log_key_seq": ["key", "seq"],
    "ix_audit_log_project_environment_seq": ["project", "environment", "seq"],
}


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode (see 0002): a SQLite rebuild would cascade-delete.
    op.add_column("organizations", sa.Column("working_hours", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("mac", sa.LargeBinary, nullable=True))
    op.add_column("audit_log", sa.Column("leaf_index", sa.BigInteger, nullable=True))
    op.add_column("audit_log", sa.Column("leaf_hash", sa.LargeBinary, nullable=True))
    op.create_index("ix_audit_log_leaf_index", "audit_log", ["leaf_index"], unique=True)
    for name, columns in _AUDIT_INDEXES.items():
        op.create_index(name, "audit_log", columns)
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
        sa.Column("frontier", sa.JSON, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_checkpoints"),
    )
    tree = op.create_table(
        "audit_tree",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.JSON, nullable=False),
        sa.Column("pruned_before", sa.BigInteger, nullable=False),
        sa.Column("legacy_through", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_tree"),
    )
    # Entries written before this revision carry no MAC; the sealer takes them once, as is.
    legacy = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(seq), 0) FROM audit_log"))
    op.bulk_insert(
        tree,
        [
            {
                "id": 1,
                "size": 0,
                "frontier": [],
                "pruned_before": 0,
                "legacy_through": int(legacy.scalar_one()),
            }
        ],
    )
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_audit_cursors"),
    )
    op.create_table(
        "audit_seen_addresses",
        sa.Column("actor_id", sa.String(26), nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("actor_id", "source_ip", name="pk_audit_seen_addresses"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("org_id", sa.String(26), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(26), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            ondelete="CASCADE",
            name="fk_webhooks_org_id_organizations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_org_id", "webhooks", ["org_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("webhook_id", sa.String(26), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            ondelete="CASCADE",
            name="fk_webhook_deliveries_webhook_id_webhooks",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
    )
    op.create_index(
        "ix_webhook_deliveries_state_next_attempt_at",
        "webhook_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_id_created_at",
        "webhook_deliveries",
        ["webhook_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    for table in ("audit_seen_addresses", "audit_cursors", "audit_tree", "audit_checkpoints"):
        op.drop_table(table)
    for name in (*_AUDIT_INDEXES, "ix_audit_log_leaf_index"):
        op.drop_index(name, table_name="audit_log")
    for column in ("leaf_hash", "leaf_index", "mac"):
        op.drop_column("audit_log", column)
    op.drop_column("organizations", "working_hours")
