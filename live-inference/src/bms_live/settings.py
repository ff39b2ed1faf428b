"""Service settings: defaults, environment variables and command-line overrides.

| setting | environment | default | meaning |
|---|---|---|---|
| ``host`` | ``BMS_LIVE_HOST`` | ``127.0.0.1`` | bind address (loopback unless you mean it) |
| ``port`` | ``BMS_LIVE_PORT`` | ``8000`` | TCP port |
| ``api_key`` | ``BMS_API_KEY`` | unset | when set, every ``/v1``, ``/models`` and ``/metrics`` call needs it |
| ``max_body_bytes`` | ``BMS_LIVE_MAX_BODY_BYTES`` | 8 MiB | larger request bodies get 413 |
| ``max_readings`` | ``BMS_LIVE_MAX_READINGS`` | 20,000 | more readings in one request get 422 |
| ``poll_seconds`` | ``BMS_LIVE_POLL_SECONDS`` | 3 | how often the ``latest`` links are checked (0 = never) |
| ``prediction_capacity`` | ``BMS_LIVE_PREDICTIONS`` | 100,000 | predictions kept for feedback |
| ``feedback_window`` | ``BMS_LIVE_FEEDBACK_WINDOW`` | 1,000 | feedback items in the rolling precision/recall |
| ``drift_window`` | ``BMS_LIVE_DRIFT_WINDOW`` | 5,000 | recent input rows kept per model for drift |
| ``history_per_cell`` | ``BMS_LIVE_HISTORY`` | 128 | recent readings kept per cell as context for features (at least what the anomaly model's history features need) |
| ``history_rows`` | ``BMS_LIVE_HISTORY_ROWS`` | 1,000,000 | readings kept in all (least recently updated devices are dropped) |
| ``store`` | ``BMS_LIVE_STORE`` | 1 | keep what is ingested in the database (0 = memory only) |
| ``database_url`` | ``BMS_DATABASE_URL`` | SQLite ``$BMS_WORKSPACE/bms.db`` | the store (``postgresql://...`` for PostgreSQL) |
| ``stream_queue`` | ``BMS_STREAM_QUEUE`` | 256 | events queued per ``WS /v1/stream`` client (oldest dropped beyond) |
| ``stream_stuck_seconds`` | ``BMS_STREAM_STUCK_SECONDS`` | 10 | a stream client that accepts no message for this long is disconnected |
| ``history_bytes`` | ``BMS_LIVE_HISTORY_BYTES`` | 512 MiB | the same bound in estimated bytes (values, times, ids) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bms_schema.errors import InputError


def _env_number(name: str, default: float, minimum: float, kind: type, what: str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise InputError(f"{name}={raw!r} is not {what}") from exc
    if value < minimum:
        raise InputError(f"{name}={value} must be at least {minimum}")
    return value


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    return int(_env_number(name, default, minimum, int, "a whole number"))


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    return float(_env_number(name, default, minimum, float, "a number"))


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted (see ``bms_live.drift``)."""

    ks_max_window: int = 500  # windows up to this size use the two-sample KS test
    ks_pvalue: float = 0.01  # KS: flagged when p < ks_pvalue ...
    ks_statistic: float = 0.1  # ... and the KS distance D >= ks_statistic (ignore tiny but "significant" shifts)
    psi: float = 0.2  # larger windows: flagged when PSI >= 0.2 (the usual "significant shift" line)
    psi_bins: int = 10  # quantile bins of the reference for PSI
    min_window: int = 30  # fewer recent rows: no verdict ("insufficient data")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_readings: int = 20_000
    poll_seconds: float = 3.0
    prediction_capacity: int = 100_000
    feedback_window: int = 1_000
    drift_window: int = 5_000
    history_per_cell: int = 128
    history_rows: int = 1_000_000
    history_bytes: int = 512 * 1024 * 1024
    workspace: Path | None = None
    #: keep readings, predictions, alerts and feedback in the database (``BMS_DATABASE_URL``,
    #: default SQLite in the workspace); ``BMS_LIVE_STORE=0`` serves from memory only.
    store: bool = True
    database_url: str | None = None
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    stream_queue: int = 256
    stream_stuck_seconds: float = 10.0
    models: tuple[str, ...] = ("anomaly", "failure", "forecast")

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Settings from the environment, then ``overrides`` (ignored when ``None``)."""
        ws = os.environ.get("BMS_WORKSPACE")
        base = cls(
            host=os.environ.get("BMS_LIVE_HOST", "127.0.0.1"),
            port=_env_int("BMS_LIVE_PORT", 8000, 1),
            api_key=os.environ.get("BMS_API_KEY") or None,
            max_body_bytes=_env_int("BMS_LIVE_MAX_BODY_BYTES", 8 * 1024 * 1024, 1024),
            max_readings=_env_int("BMS_LIVE_MAX_READINGS", 20_000, 1),
            poll_seconds=_env_float("BMS_LIVE_POLL_SECONDS", 3.0),
            prediction_capacity=_env_int("BMS_LIVE_PREDICTIONS", 100_000, 1),
            feedback_window=_env_int("BMS_LIVE_FEEDBACK_WINDOW", 1_000, 1),
            drift_window=_env_int("BMS_LIVE_DRIFT_WINDOW", 5_000, 10),
            history_per_cell=_env_int("BMS_LIVE_HISTORY", 128, 1),
            history_rows=_env_int("BMS_LIVE_HISTORY_ROWS", 1_000_000, 1000),
            history_bytes=_env_int("BMS_LIVE_HISTORY_BYTES", 512 * 1024 * 1024, 1024 * 1024),
            workspace=Path(ws).expanduser() if ws else None,
            store=os.environ.get("BMS_LIVE_STORE", "1").strip().lower() not in ("0", "false", "no", "off"),
            database_url=os.environ.get("BMS_DATABASE_URL") or None,
            stream_queue=_env_int("BMS_STREAM_QUEUE", 256, 1),
            stream_stuck_seconds=_env_float("BMS_STREAM_STUCK_SECONDS", 10.0, 0.1),
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
