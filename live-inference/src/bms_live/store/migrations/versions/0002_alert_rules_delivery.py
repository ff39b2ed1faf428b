"""alert rules and delivery: an alert's recommended action and triggering values; one delivery row per
(alert, channel, target), with when it is next tried and when it last changed

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("details", sa.Text(), nullable=True))
        batch_op.create_index("ix_alerts_kind_status", ["kind", "status"], unique=False)
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_us", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("updated_us", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "uq_alert_deliveries_alert_key_channel_target", ["alert_key", "channel", "target"], unique=True
        )
        batch_op.create_index("ix_alert_deliveries_status_next_attempt_us", ["status", "next_attempt_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_status_next_attempt_us")
        batch_op.drop_index("uq_alert_deliveries_alert_key_channel_target")
        batch_op.drop_column("updated_us")
        batch_op.drop_column("next_attempt_us")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_kind_status")
        batch_op.drop_column("details")
        batch_op.drop_column("action")
