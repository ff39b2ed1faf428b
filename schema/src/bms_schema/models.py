"""Pydantic models of the shared contracts: one reading, the tool envelope, the run manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


class Artifact(BaseModel):
    """A file a tool wrote: where it is, what kind, what it is."""

    path: str
    kind: str = Field(description="table | report | plot | html | model | log | data")
    description: str = ""


class Envelope(BaseModel):
    """What every tool returns."""

    status: Literal["ok", "error"]
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    log_path: str | None = None
    run_id: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)


class StepRecord(BaseModel):
    step: str
    tool: str
    status: str
    started: str
    seconds: float | None = None


class RunManifest(BaseModel):
    """``manifest.json`` of one tool call (a step of a run)."""

    run_id: str
    step: str
    tool: str
    server: str
    status: Literal["running", "ok", "error"]
    message: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    models: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Reading(BaseModel):
    """One cell reading in canonical form (raw packet field names accepted too)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    DeviceID: str = Field(default="default", validation_alias=_alias("DeviceID", "device_id", "Device ID"))
    CellNumber: int = Field(ge=0, validation_alias=_alias("CellNumber", "Cell ID", "cell_id", "CellId"))
    Timestamp: datetime = Field(validation_alias=_alias("Timestamp", "PacketDateTime", "timestamp"))
    CellVoltage: float | None = Field(default=None, validation_alias=_alias("CellVoltage", "Cell Voltage"))
    CellTemperature: float | None = Field(default=None, validation_alias=_alias("CellTemperature", "Cell Temperature"))
    CellSpecificGravity: float | None = Field(
        default=None, validation_alias=_alias("CellSpecificGravity", "Cell Specific Gravity", "SG")
    )
    InstantaneousCurrent: float | None = Field(
        default=None, validation_alias=_alias("InstantaneousCurrent", "Instantaneous Current")
    )
    AmbientTemperature: float | None = Field(
        default=None, validation_alias=_alias("AmbientTemperature", "Ambient Temperature")
    )
    StringVoltage: float | None = Field(default=None, validation_alias=_alias("StringVoltage", "String Voltage"))

    @field_validator("DeviceID", mode="before")
    @classmethod
    def _device_to_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value
