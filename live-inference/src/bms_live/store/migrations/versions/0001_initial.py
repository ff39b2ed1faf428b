"""initial schema: cells, packets, readings, predictions, forecasts, alerts, deliveries, feedback, model decisions

Revision ID: 0001
Revises:
Create Date: 2026-12-01 20:01:31.217794
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cells",
        sa.Column("cell_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("cell_number", sa.Integer(), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("last_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("cell_key", name=op.f("pk_cells")),
        sa.UniqueConstraint("device_id", "cell_number", name=op.f("uq_cells_device_id_cell_number")),
    )
    op.create_table(
        "feedback",
        sa.Column(
            "feedback_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("prediction_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("predicted", sa.Boolean(), nullable=False),
        sa.Column("actual", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("feedback_key", name=op.f("pk_feedback")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_feedback_prediction_id")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_model_created_us", ["model", "created_us"], unique=False)

    op.create_table(
        "model_decisions",
        sa.Column(
            "decision_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("previous", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("decision_key", name=op.f("pk_model_decisions")),
    )
    with op.batch_alter_table("model_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_model_decisions_model_name_created_us", ["model_name", "created_us"], unique=False)

    op.create_table(
        "packets",
        sa.Column(
            "packet_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.Column("cells", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("packet_key", name=op.f("pk_packets")),
        sa.UniqueConstraint("device_id", "ts_us", name=op.f("uq_packets_device_id_ts_us")),
    )
    with op.batch_alter_table("packets", schema=None) as batch_op:
        batch_op.create_index("ix_packets_received_us", ["received_us"], unique=False)

    op.create_table(
        "alerts",
        sa.Column(
            "alert_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("cell_key", sa.BigInteger(), nullable=True),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("last_us", sa.BigInteger(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.String(length=64), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("acknowledged_us", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["cell_key"], ["cells.cell_key"], name=op.f("fk_alerts_cell_key_cells")),
        sa.PrimaryKeyConstraint("alert_key", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_cell_key_kind_status", ["cell_key", "kind", "status"], unique=False)
        batch_op.create_index("ix_alerts_status_created_us", ["status", "created_us"], unique=False)

    op.create_table(
        "forecasts",
        sa.Column(
            "forecast_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("cell_key", sa.BigInteger(), nullable=False),
        sa.Column("origin_us", sa.BigInteger(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("forecast", sa.Float(), nullable=True),
        sa.Column("lower", sa.Float(), nullable=True),
        sa.Column("upper", sa.Float(), nullable=True),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["cell_key"], ["cells.cell_key"], name=op.f("fk_forecasts_cell_key_cells")),
        sa.PrimaryKeyConstraint("forecast_key", name=op.f("pk_forecasts")),
        sa.UniqueConstraint(
            "cell_key",
            "origin_us",
            "target",
            "step",
            "model_version",
            name=op.f("uq_forecasts_cell_key_origin_us_target_step_model_version"),
        ),
    )
    with op.batch_alter_table("forecasts", schema=None) as batch_op:
        batch_op.create_index("ix_forecasts_created_us", ["created_us"], unique=False)

    op.create_table(
        "predictions",
        sa.Column(
            "prediction_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("prediction_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cell_key", sa.BigInteger(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("flag", sa.Boolean(), nullable=True),
        sa.Column("label", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["cell_key"], ["cells.cell_key"], name=op.f("fk_predictions_cell_key_cells")),
        sa.PrimaryKeyConstraint("prediction_key", name=op.f("pk_predictions")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_predictions_prediction_id")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index("ix_predictions_cell_key_kind_ts_us", ["cell_key", "kind", "ts_us"], unique=False)
        batch_op.create_index("ix_predictions_kind_flag_ts_us", ["kind", "flag", "ts_us"], unique=False)
        batch_op.create_index("ix_predictions_ts_us", ["ts_us"], unique=False)

    op.create_table(
        "readings",
        sa.Column(
            "reading_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("cell_key", sa.BigInteger(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("packet_key", sa.BigInteger(), nullable=True),
        sa.Column("voltage", sa.Float(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("specific_gravity", sa.Float(), nullable=True),
        sa.Column("current", sa.Float(), nullable=True),
        sa.Column("ambient", sa.Float(), nullable=True),
        sa.Column("string_voltage", sa.Float(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["cell_key"], ["cells.cell_key"], name=op.f("fk_readings_cell_key_cells")),
        sa.ForeignKeyConstraint(["packet_key"], ["packets.packet_key"], name=op.f("fk_readings_packet_key_packets")),
        sa.PrimaryKeyConstraint("reading_key", name=op.f("pk_readings")),
        sa.UniqueConstraint("cell_key", "ts_us", name=op.f("uq_readings_cell_key_ts_us")),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_ts_us", ["ts_us"], unique=False)

    op.create_table(
        "alert_deliveries",
        sa.Column(
            "delivery_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("alert_key", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_key"], ["alerts.alert_key"], name=op.f("fk_alert_deliveries_alert_key_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("delivery_key", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_alert_deliveries_alert_key", ["alert_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_alert_key")

    op.drop_table("alert_deliveries")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_ts_us")

    op.drop_table("readings")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_ts_us")
        batch_op.drop_index("ix_predictions_kind_flag_ts_us")
        batch_op.drop_index("ix_predictions_cell_key_kind_ts_us")

    op.drop_table("predictions")
    with op.batch_alter_table("forecasts", schema=None) as batch_op:
        batch_op.drop_index("ix_forecasts_created_us")

    op.drop_table("forecasts")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_status_created_us")
        batch_op.drop_index("ix_alerts_cell_key_kind_status")

    op.drop_table("alerts")
    with op.batch_alter_table("packets", schema=None) as batch_op:
        batch_op.drop_index("ix_packets_received_us")

    op.drop_table("packets")
    with op.batch_alter_table("model_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_model_decisions_model_name_created_us")

    op.drop_table("model_decisions")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_model_created_us")

    op.drop_table("feedback")
    op.drop_table("cells")
