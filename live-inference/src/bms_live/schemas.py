"""Request and response bodies of the HTTP API (pydantic; they also document ``/docs``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from bms_schema.models import Reading, reading_alias
from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

#: Longest accepted device id (characters): ids are kept in memory and in the store.
MAX_ID_LENGTH = 128
#: Highest accepted cell number (a string has at most a few hundred cells).
MAX_CELL_NUMBER = 1_000_000
#: Accepted timestamps (UTC): inside what int64 nanoseconds and the store can represent.
MIN_TIMESTAMP = datetime(1900, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP = datetime(2262, 1, 1, tzinfo=timezone.utc)

#: A measurement: a JSON number (int or float, finite), never a boolean or a string.
Measurement = Annotated[float | None, Strict()]

READING_EXAMPLE: dict[str, Any] = {
    "DeviceID": "A",
    "CellNumber": 3,
    "Timestamp": "2026-01-01T00:15:00Z",
    "CellVoltage": 2.231,
    "CellTemperature": 25.4,
    "CellSpecificGravity": 1.221,
    "InstantaneousCurrent": 0.4,
    "AmbientTemperature": 24.1,
}


class LiveReading(Reading):
    """:class:`bms_schema.Reading` with the bounds a long-running service needs: numbers are
    strict JSON numbers (``true`` is not 1.0), ids are bounded in length, cell numbers and
    timestamps in range (so nothing wraps around or grows memory without bound)."""

    DeviceID: str = Field(
        default="default",
        min_length=1,
        max_length=MAX_ID_LENGTH,
        validation_alias=reading_alias("DeviceID"),
        description=f"device (string) id, 1 to {MAX_ID_LENGTH} characters",
    )
    CellNumber: Annotated[int, Strict()] = Field(
        ge=0,
        le=MAX_CELL_NUMBER,
        validation_alias=reading_alias("CellNumber"),
        description=f"cell number within its device, 0 to {MAX_CELL_NUMBER}",
    )
    Timestamp: datetime = Field(
        validation_alias=reading_alias("Timestamp"), description="ISO 8601 time (no zone = UTC), between 1900 and 2261"
    )
    CellVoltage: Measurement = Field(default=None, allow_inf_nan=False, validation_alias=reading_alias("CellVoltage"))
    CellTemperature: Measurement = Field(
        default=None, allow_inf_nan=False, validation_alias=reading_alias("CellTemperature")
    )
    CellSpecificGravity: Measurement = Field(
        default=None, allow_inf_nan=False, validation_alias=reading_alias("CellSpecificGravity")
    )
    InstantaneousCurrent: Measurement = Field(
        default=None, allow_inf_nan=False, validation_alias=reading_alias("InstantaneousCurrent")
    )
    AmbientTemperature: Measurement = Field(
        default=None, allow_inf_nan=False, validation_alias=reading_alias("AmbientTemperature")
    )
    StringVoltage: Measurement = Field(
        default=None, allow_inf_nan=False, validation_alias=reading_alias("StringVoltage")
    )

    @field_validator("Timestamp")
    @classmethod
    def _timestamp_in_range(cls, value: datetime) -> datetime:
        utc = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        if not MIN_TIMESTAMP <= utc < MAX_TIMESTAMP:
            raise ValueError(f"timestamp {value.isoformat()} is outside 1900-01-01 .. 2261-12-31 (UTC)")
        return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadingsRequest(_Strict):
    """Readings in canonical form (raw packet field names such as ``PacketDateTime``,
    ``Cell ID``, ``Cell Voltage`` are accepted too)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"readings": [READING_EXAMPLE]}]})

    readings: list[LiveReading] = Field(min_length=1, description="one object per cell reading")


class FailureRequest(ReadingsRequest):
    """Recent history of one or more cells (hours to days of readings per cell)."""

    horizon_days: float | None = Field(default=None, gt=0, description="override the model's horizon, if it allows")


class ForecastRequest(ReadingsRequest):
    """A cell's recent history (its string's other cells help) and how far to forecast."""

    cell_id: str | int = Field(description="canonical id '<DeviceID>-<CellNumber>' or a bare cell number")
    steps: int = Field(default=25, ge=1, le=96, description="future readings to forecast")
    coverage: float = Field(default=0.8, ge=0.5, le=0.98, description="nominal coverage of the interval")


class FeedbackItem(_Strict):
    prediction_id: str = Field(min_length=3, description="a prediction_id returned by /v1/anomaly or /v1/failure")
    actual: bool = Field(description="ground truth: was the reading anomalous / did the cell fail in the horizon")


class FeedbackRequest(_Strict):
    feedback: list[FeedbackItem] = Field(min_length=1)


class ModelRef(BaseModel):
    name: str
    version: str


class AnomalyResult(BaseModel):
    prediction_id: str
    CellID: str
    Timestamp: str
    AnomalyScore: float | None
    AnomalyFlag: int | None = Field(description="1 anomalous, 0 normal, null unknown (its inputs are missing)")
    AnomalyKind: str | None = None
    reason: str | None = None
    missing: list[str] = Field(default_factory=list, description="measurements this reading did not carry")
    scores: dict[str, float | None] = Field(default_factory=dict, description="each detector's calibrated score")
    imputed: bool = Field(default=False, description="a missing or faulty value of this reading was filled in")


class AnomalyResponse(BaseModel):
    model: ModelRef
    count: int
    flagged: int
    unknown: int = Field(default=0, description="readings answered unknown because their inputs are missing")
    results: list[AnomalyResult]


class FailureResult(BaseModel):
    prediction_id: str
    CellID: str
    DeviceID: str
    CellNumber: int
    FailureProbability: float | None
    RiskBand: str
    alarm: bool
    reasons: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


class FailureResponse(BaseModel):
    model: ModelRef
    horizon_days: float | None
    results: list[FailureResult]


class ForecastRow(BaseModel):
    Timestamp: str
    Target: str
    Step: int
    Forecast: float | None
    Lower: float | None
    Upper: float | None


class ForecastResponse(BaseModel):
    model: ModelRef
    cell_id: str
    steps: int
    coverage: float
    forecast: list[ForecastRow]
    unknown_targets: dict[str, str] = Field(
        default_factory=dict, description="targets the model forecasts that this cell's history cannot, and why"
    )


class FeedbackResponse(BaseModel):
    accepted: int
    unknown_ids: list[str]
    metrics: dict[str, dict[str, Any]]


class ErrorItem(BaseModel):
    field: str
    reason: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)
