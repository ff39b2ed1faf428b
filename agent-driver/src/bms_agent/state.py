"""Pipeline options and the persisted state of a pipeline run (what makes ``--resume`` work).

The state lives in ``runs/<run_id>/pipeline/state.json`` next to the servers' step folders:
the options the run was started with and, per stage, its status, the envelopes of its tool
calls and its timings. It is rewritten atomically after every stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bms_schema.atomic import atomic_write_json


@dataclass
class PipelineOptions:
    data: str | None = None
    devices: int = 4
    cells_per_device: int = 24
    days: int = 60
    interval_minutes: int = 15
    seed: int = 7
    skip: list[str] = field(default_factory=list)
    timeout: float = 600.0
    start_timeout: float = 60.0
    sdv_rows: int = 3000
    horizon_days: int = 7
    forecast_cells: int = 3
    forecast_steps: int = 25
    forecast_history_days: float = 7.0  # recent history (of the cells' strings) given to each forecast call
    forecast_train_pairs: int = 60_000  # training examples per parameter for the forecaster (speed vs accuracy)
    # readings of the simulated fleet a small fleet's anomaly detector trains on with its own; 0: none
    anomaly_prior_rows: int = 69_120
    parallel: int = 2  # stages run at once when independent (one per core)
    failure_rate: float | None = None  # simulator: share of cells dying per 30 days (None: its default)
    anomaly_rate: float | None = None  # simulator: share of labelled anomalies (None: its default)
    chemistry: str = "flooded"  # simulator: "flooded" (with SG) or "vrla" (no SG column)
    discharge_every_days: float | None = None  # simulator: mean days between outages; 0 = no discharge
    no_labels: bool = False  # drop IsDead/IsAnomaly/AnomalyType from the simulated readings (as real data)

    @property
    def expected_readings(self) -> int:
        """Readings the simulator will produce (before its duplicates/dropouts)."""
        return self.devices * self.cells_per_device * self.days * (24 * 60 // self.interval_minutes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PipelineOptions":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class CallRecord:
    server: str
    tool: str
    arguments: dict[str, Any]
    envelope: dict[str, Any]
    seconds: float
    tool_seconds: float


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # pending | ok | error | skipped
    calls: list[CallRecord] = field(default_factory=list)
    seconds: float = 0.0
    driver_seconds: float = 0.0  # work the driver did itself (sampling, reading outputs)
    error: str | None = None
    reason: str | None = None  # why a stage was skipped
    note: str = ""  # one line on what the stage produced (from the tools' messages)

    def line(self) -> str:
        """What to show for this stage in a summary: the error, the skip reason, or the note."""
        text = (
            self.error or self.reason or self.note or (self.calls[-1].envelope.get("message", "") if self.calls else "")
        )
        return text.splitlines()[0] if text else ""

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        return [c.envelope for c in self.calls]

    @property
    def tool_seconds(self) -> float:
        return sum(c.tool_seconds for c in self.calls)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StageRecord":
        calls = [CallRecord(**c) for c in values.get("calls", [])]
        return cls(**{**values, "calls": calls})


@dataclass
class PipelineState:
    run_id: str
    run_dir: Path
    options: PipelineOptions
    stages: dict[str, StageRecord] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    server_start_seconds: dict[str, float] = field(default_factory=dict)
    attempts: int = 1
    wall_seconds: float = 0.0  # summed over every attempt (a resumed run adds to it)

    @property
    def dir(self) -> Path:
        return self.run_dir / "pipeline"

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    def ok(self, name: str) -> bool:
        return name in self.stages and self.stages[name].status == "ok"

    def envelopes(self, name: str) -> list[dict[str, Any]]:
        record = self.stages.get(name)
        return record.envelopes if record and record.status == "ok" else []

    def save(self) -> None:
        payload = {
            "run_id": self.run_id,
            "options": self.options.to_dict(),
            "started": self.started,
            "attempts": self.attempts,
            "wall_seconds": round(self.wall_seconds, 4),
            "server_start_seconds": self.server_start_seconds,
            "stages": {name: asdict(rec) for name, rec in self.stages.items()},
        }
        atomic_write_json(self.path, payload)

    @classmethod
    def load(cls, run_dir: Path) -> "PipelineState":
        path = run_dir / "pipeline" / "state.json"
        values = json.loads(path.read_text())
        state = cls(
            run_id=values["run_id"],
            run_dir=run_dir,
            options=PipelineOptions.from_dict(values["options"]),
            started=values.get("started", time.time()),
            attempts=values.get("attempts", 1) + 1,
            server_start_seconds=values.get("server_start_seconds", {}),
            wall_seconds=values.get("wall_seconds", 0.0),
        )
        state.stages = {name: StageRecord.from_dict(rec) for name, rec in values.get("stages", {}).items()}
        return state
