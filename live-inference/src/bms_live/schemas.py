"""Request and response bodies of the HTTP API (pydantic; they also document ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bms_schema.models import Reading

READING_EXAMPLE = {
    "DeviceID": "A", "CellNumber": 3, "Timestamp": "2026-01-01T00:15:00Z", "CellVoltage": 2.231,
    "CellTemperature": 25.4, "CellSpecificGravity": 1.221, "InstantaneousCurrent": 0.4, "AmbientTemperature": 24.1,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadingsRequest(_Strict):
    """Readings in canonical form (raw packet field names such as ``PacketDateTime``,
    ``Cell ID``, ``Cell Voltage`` are accepted too)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"readings": [READING_EXAMPLE]}]})

    readings: list[Reading] = Field(min_length=1, description="one object per cell reading")


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
    AnomalyFlag: int
    AnomalyKind: str | None = None
    reason: str | None = None
    scores: dict[str, float | None] = Field(default_factory=dict, description="each detector's calibrated score")
    imputed: bool = Field(default=False, description="a missing or faulty value of this reading was filled in")


class AnomalyResponse(BaseModel):
    model: ModelRef
    count: int
    flagged: int
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
