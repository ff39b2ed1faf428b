"""Pydantic models of the shared contracts: one reading, the tool envelope, the run manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from . import columns as C


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


def reading_alias(name: str) -> AliasChoices:
    """The accepted input names of a :class:`Reading` field: ``columns.ALIASES``, the one table."""
    return AliasChoices(*C.ALIASES.get(name, (name,)))


#: Fields a reading may carry besides its measurements: labels, the raw packet's other fields,
#: and the columns the canonical table derives (kept as extras, never parsed as measurements).
PASS_THROUGH: frozenset[str] = frozenset(
    {
        *C.LABEL_COLUMNS,
        *C.RAW_PACKET_COLUMNS,
        C.CELL_ID,
        C.SENSOR_FAULT,
        C.OUT_OF_RANGE,
        *(C.quality_column(c) for c in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC)),
    }
)


class Reading(BaseModel):
    """One cell reading in canonical form; raw packet field names and every alias of
    ``columns.ALIASES`` are accepted too (also with other case or spacing: ``"cell voltage"``).

    A field that is neither a reading field, an alias nor a known pass-through field (labels,
    raw packet fields) is refused with its name: a value is never silently parked aside.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    DeviceID: str = Field(default="default", validation_alias=reading_alias(C.DEVICE_ID))
    CellNumber: int = Field(ge=0, validation_alias=reading_alias(C.CELL_NUMBER))
    Timestamp: datetime = Field(validation_alias=reading_alias(C.TIMESTAMP))
    CellVoltage: float | None = Field(default=None, validation_alias=reading_alias(C.VOLTAGE))
    CellTemperature: float | None = Field(default=None, validation_alias=reading_alias(C.TEMPERATURE))
    CellSpecificGravity: float | None = Field(default=None, validation_alias=reading_alias(C.SPECIFIC_GRAVITY))
    InstantaneousCurrent: float | None = Field(default=None, validation_alias=reading_alias(C.CURRENT))
    AmbientTemperature: float | None = Field(default=None, validation_alias=reading_alias(C.AMBIENT))
    StringVoltage: float | None = Field(default=None, validation_alias=reading_alias(C.STRING_VOLTAGE))

    @model_validator(mode="before")
    @classmethod
    def _canonical_names(cls, data: Any) -> Any:
        """Map every input name to its field through ``columns.ALIASES``; refuse unknown names."""
        if not isinstance(data, dict):
            return data
        fields = set(cls.model_fields)
        out: dict[str, Any] = {}
        source: dict[str, str] = {}
        unknown: list[str] = []
        for key, value in data.items():
            name = key if key in fields else C.canonical_name(key) if isinstance(key, str) else None
            if name in fields:
                if name in source and out[name] != value:
                    raise ValueError(
                        f"fields {source[name]!r} and {key!r} both give {name} "
                        f"({out[name]!r} vs {value!r}): send one of them"
                    )
                out[name], source[name] = value, key
            elif key in PASS_THROUGH or name == C.CELL_ID:
                out[key] = value
            else:
                unknown.append(str(key))
        if unknown:
            accepted = "; ".join(f"{f}: {', '.join(repr(a) for a in C.ALIASES.get(f, (f,)))}" for f in cls.model_fields)
            raise ValueError(
                f"unrecognised field(s) {', '.join(repr(u) for u in unknown)}: not a reading field, "
                f"an accepted alias or a raw packet field; accepted names are {accepted}"
            )
        return out

    @field_validator("DeviceID", mode="before")
    @classmethod
    def _device_to_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value
