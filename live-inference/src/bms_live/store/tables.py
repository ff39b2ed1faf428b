"""The database schema (SQLAlchemy Core tables); Alembic migrations create exactly these.

Times are stored as integer microseconds since the Unix epoch (UTC) in ``*_us`` columns: the
same type, precision and ordering on SQLite and PostgreSQL, compact, and fast to index.

Sizing: months of 1-minute data of 100 strings x 24 cells is ~100 M readings per month. A
reading is one narrow row keyed by ``(cell_key, ts_us)`` (a small integer for the cell instead
of its id strings); that unique index serves the idempotent insert, per-cell time-range
queries and the latest reading per cell. ``ts_us`` alone is indexed for retention
(``bms cleanup --days N``) and fleet-wide time windows. Predictions are keyed the same way
plus the model kind, so an anomaly list of one cell or one time window is an index range.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: An auto-incrementing 64-bit key (SQLite only auto-increments an ``INTEGER PRIMARY KEY``).
Key = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

cells = Table(
    "cells",
    metadata,
    Column("cell_key", Key, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False),
    Column("cell_number", Integer, nullable=False),
    Column("first_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    UniqueConstraint("device_id", "cell_number"),
)

packets = Table(
    "packets",
    metadata,
    Column("packet_key", Key, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("cells", Integer, nullable=False),
    Column("source", String(16), nullable=False),  # packet_csv | packet_rows | readings
    UniqueConstraint("device_id", "ts_us"),
    Index("ix_packets_received_us", "received_us"),
)

readings = Table(
    "readings",
    metadata,
    Column("reading_key", Key, primary_key=True, autoincrement=True),
    Column("cell_key", BigInteger, ForeignKey("cells.cell_key"), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("packet_key", BigInteger, ForeignKey("packets.packet_key"), nullable=True),
    Column("voltage", Float),
    Column("temperature", Float),
    Column("specific_gravity", Float),
    Column("current", Float),
    Column("ambient", Float),
    Column("string_voltage", Float),
    Column("quality", Integer, nullable=False, default=0),  # bit flags, see store.QUALITY_BITS
    Column("received_us", BigInteger, nullable=False),
    UniqueConstraint("cell_key", "ts_us"),
    Index("ix_readings_ts_us", "ts_us"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("prediction_key", Key, primary_key=True, autoincrement=True),
    Column("prediction_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # anomaly | failure
    Column("cell_key", BigInteger, ForeignKey("cells.cell_key"), nullable=False),
    Column("ts_us", BigInteger, nullable=False),  # the reading's time (anomaly) or the data's end (failure)
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("score", Float),  # AnomalyScore | FailureProbability; NULL = unknown
    Column("flag", Boolean),  # flagged / alarm; NULL = unknown
    Column("label", String(32)),  # AnomalyKind | RiskBand
    Column("reason", Text),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("prediction_id"),
    Index("ix_predictions_cell_key_kind_ts_us", "cell_key", "kind", "ts_us"),
    Index("ix_predictions_kind_flag_ts_us", "kind", "flag", "ts_us"),
    Index("ix_predictions_ts_us", "ts_us"),
)

forecasts = Table(
    "forecasts",
    metadata,
    Column("forecast_key", Key, primary_key=True, autoincrement=True),
    Column("cell_key", BigInteger, ForeignKey("cells.cell_key"), nullable=False),
    Column("origin_us", BigInteger, nullable=False),  # time of the last reading the forecast starts from
    Column("ts_us", BigInteger, nullable=False),
    Column("target", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("forecast", Float),
    Column("lower", Float),
    Column("upper", Float),
    Column("coverage", Float, nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("cell_key", "origin_us", "target", "step", "model_version"),
    Index("ix_forecasts_created_us", "created_us"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_key", Key, primary_key=True, autoincrement=True),
    Column("cell_key", BigInteger, ForeignKey("cells.cell_key"), nullable=True),
    Column("device_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),  # anomaly kind, failure_risk, ...
    Column("severity", String(16), nullable=False),  # info | warning | critical
    Column("message", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | acknowledged | resolved
    Column("first_us", BigInteger, nullable=False),  # data time of the first occurrence
    Column("last_us", BigInteger, nullable=False),  # data time of the latest occurrence
    Column("occurrences", Integer, nullable=False),
    Column("prediction_id", String(64)),
    Column("created_us", BigInteger, nullable=False),
    Column("acknowledged_us", BigInteger),
    Column("acknowledged_by", String(128)),
    Column("resolved_us", BigInteger),
    Column("action", Text),  # recommended action (the rule's wording)
    Column("details", Text),  # JSON: the values that triggered the rule
    Index("ix_alerts_status_created_us", "status", "created_us"),
    Index("ix_alerts_cell_key_kind_status", "cell_key", "kind", "status"),
    Index("ix_alerts_kind_status", "kind", "status"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("delivery_key", Key, primary_key=True, autoincrement=True),
    Column("alert_key", BigInteger, ForeignKey("alerts.alert_key", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),  # webhook | slack | email
    Column("target", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger),
    Column("next_attempt_us", BigInteger),  # pending: when the worker tries again
    Column("updated_us", BigInteger),
    Index("ix_alert_deliveries_alert_key", "alert_key"),
    # an alert is delivered once per channel and target (idempotent across retries and restarts)
    Index("uq_alert_deliveries_alert_key_channel_target", "alert_key", "channel", "target", unique=True),
    Index("ix_alert_deliveries_status_next_attempt_us", "status", "next_attempt_us"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("feedback_key", Key, primary_key=True, autoincrement=True),
    Column("prediction_id", String(64), nullable=False),
    Column("model", String(16), nullable=False),  # anomaly | failure
    Column("model_version", String(32), nullable=False),
    Column("predicted", Boolean, nullable=False),
    Column("actual", Boolean, nullable=False),
    Column("score", Float),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("prediction_id"),
    Index("ix_feedback_model_created_us", "model", "created_us"),
)

model_decisions = Table(
    "model_decisions",
    metadata,
    Column("decision_key", Key, primary_key=True, autoincrement=True),
    Column("model_name", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("decision", String(32), nullable=False),  # served | load_failed | promoted | ...
    Column("previous", String(32)),
    Column("detail", Text),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_model_decisions_model_name_created_us", "model_name", "created_us"),
)
