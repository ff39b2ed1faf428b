"""``POST /v1/ingest``: raw BMS packets or canonical readings -> the store, scored, answered.

Three bodies are accepted, all turned into the canonical table by the data core
(``bms_schema``), never by a parser of our own:

* ``text/csv``: the 73-column packet format (or the minimal table), read by
  ``bms_schema.reader.read_table`` and normalised by ``bms_schema.normalize``;
* ``application/json`` ``{"rows": [...]}``: packet rows (any of the raw/minimal/canonical
  column names) as JSON objects, normalised by ``bms_schema.normalize``;
* ``application/json`` ``{"readings": [...]}``: canonical readings, validated like
  ``/v1/anomaly``'s (strict numbers, bounded ids and times).

The readings are stored idempotently (unique per cell and timestamp: a resent packet stores
nothing), the new ones are scored by the served anomaly model and the predictions and alerts
are written in the same transaction; the answer is sent after the commit.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .schemas import MAX_CELL_NUMBER, MAX_ID_LENGTH, MAX_TIMESTAMP, MIN_TIMESTAMP, LiveReading

MAX_ROWS_JSON_FIELDS = 200


class IngestRequest(BaseModel):
    """Either ``readings`` (canonical, validated) or ``rows`` (raw packet rows, any BMS column names)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "readings": [
                        {
                            "DeviceID": "A",
                            "CellNumber": 3,
                            "Timestamp": "2026-01-01T00:15:00Z",
                            "CellVoltage": 2.231,
                            "CellTemperature": 25.4,
                            "CellSpecificGravity": 1.221,
                            "InstantaneousCurrent": 0.4,
                            "AmbientTemperature": 24.1,
                        }
                    ]
                }
            ]
        },
    )

    readings: list[LiveReading] | None = Field(
        default=None, min_length=1, description="canonical readings (as for /v1/anomaly)"
    )
    rows: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        description="raw packet rows: one JSON object per cell row with the packet's column names "
        "(PacketDateTime, DeviceID, CellNumber, CellVoltage, ...), as in the CSV format",
    )

    @model_validator(mode="after")
    def _one_of(self) -> "IngestRequest":
        if (self.readings is None) == (self.rows is None):
            raise ValueError("send exactly one of 'readings' (canonical) or 'rows' (raw packet rows)")
        return self


class IngestResponse(BaseModel):
    received: int = Field(description="readings in the request")
    stored: int = Field(description="new readings stored (committed before this answer)")
    duplicates: int = Field(description="readings already stored for their cell and time (not stored again)")
    packets: int = Field(description="new packets (device, time) stored")
    scored: int = Field(description="new readings scored by the anomaly model")
    flagged: int
    unknown: int = Field(description="new readings answered unknown (inputs missing)")
    model: dict[str, str] | None = Field(description="the anomaly model version that scored them")
    not_scored: str | None = Field(default=None, description="why the new readings were not scored, if not")
    anomalies: list[dict[str, Any]] = Field(default_factory=list, description="flagged readings")
    alerts: list[dict[str, Any]] = Field(default_factory=list, description="alerts opened or repeated")
    dropped_rows: int = Field(default=0, description="rows the data core could not use (no time or cell id)")


def _check_bounds(frame: pd.DataFrame) -> None:
    """The bounds ``LiveReading`` enforces, for rows that came through the data core."""
    devices = frame[C.DEVICE_ID].astype(str)
    long = devices.str.len() > MAX_ID_LENGTH
    if long.any():
        i = int(np.flatnonzero(long.to_numpy())[0])
        raise InputError(f"rows.{i}.DeviceID: {len(devices.iat[i])} characters, at most {MAX_ID_LENGTH} are accepted")
    empty = devices.str.len() == 0
    if empty.any():
        raise InputError(f"rows.{int(np.flatnonzero(empty.to_numpy())[0])}.DeviceID: empty device id")
    numbers = frame[C.CELL_NUMBER].to_numpy()
    bad = (numbers < 0) | (numbers > MAX_CELL_NUMBER)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"rows.{i}.CellNumber: {numbers[i]} is outside 0 .. {MAX_CELL_NUMBER}")
    ts = frame[C.TIMESTAMP]
    out = ((ts < pd.Timestamp(MIN_TIMESTAMP)) | (ts >= pd.Timestamp(MAX_TIMESTAMP))).to_numpy()
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise InputError(f"rows.{i}.Timestamp: {ts.iat[i]} is outside 1900-01-01 .. 2261-12-31 (UTC)")


def _normalized(frame: pd.DataFrame, limits: Any) -> tuple[pd.DataFrame, int]:
    from bms_schema.normalize import normalize

    canonical, report = normalize(frame, limits, drop_unknown=True)
    _check_bounds(canonical)
    return canonical.reset_index(drop=True), int(report.rows_in - report.rows_out)


def frame_from_csv(body: bytes, limits: Any) -> tuple[pd.DataFrame, int]:
    """A CSV body (packet format or minimal table) -> canonical frame, via ``bms_schema.reader``."""
    from bms_schema.reader import read_table

    if not body.strip():
        raise InputError("body: the CSV body is empty; send the packet's header line and its cell rows")
    fd, name = tempfile.mkstemp(suffix=".csv", prefix="bms-ingest-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        frame = read_table(name)
    finally:
        os.unlink(name)
    return _normalized(frame, limits)


def frame_from_rows(rows: list[dict[str, Any]], limits: Any) -> tuple[pd.DataFrame, int]:
    """JSON packet rows -> canonical frame, via ``bms_schema.normalize``."""
    wide = [i for i, row in enumerate(rows) if len(row) > MAX_ROWS_JSON_FIELDS]
    if wide:
        raise InputError(
            f"rows.{wide[0]}: {len(rows[wide[0]])} fields, a packet row has at most {MAX_ROWS_JSON_FIELDS}"
        )
    return _normalized(pd.DataFrame.from_records(rows), limits)


def prediction_rows(new_rows: pd.DataFrame, answer: dict[str, Any], created_us: int) -> list[dict[str, Any]]:
    model = answer["model"]
    keys = new_rows["cell_key"].to_numpy(dtype=np.int64).tolist()
    ts = new_rows["ts_us"].to_numpy(dtype=np.int64).tolist()
    return [
        {
            "prediction_id": r["prediction_id"],
            "kind": "anomaly",
            "cell_key": keys[i],
            "ts_us": ts[i],
            "model_name": model["name"],
            "model_version": model["version"],
            "score": r["AnomalyScore"],
            "flag": None if r["AnomalyFlag"] is None else bool(r["AnomalyFlag"]),
            "label": r["AnomalyKind"],
            "reason": r["reason"],
            "created_us": created_us,
        }
        for i, r in enumerate(answer["results"])
    ]
