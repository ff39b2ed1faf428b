"""Typed ``data`` of data-generator-mcp's tools (the ``data`` part of each tool's outputSchema)."""

from __future__ import annotations

from typing import Any

from bms_schema.mcp_server import ToolData
from pydantic import BaseModel, Field


class SimulateData(ToolData):
    path: str = Field(description="raw 73-column BMS packet CSV with ground-truth labels")
    ground_truth_path: str = Field(description="per-cell ground truth: fate, failure mode, death time")
    rows: int = Field(description="rows written (packets x cells, duplicates included)")
    devices: int
    readings_per_cell: int
    failed_cells: int = Field(description="cells that die within the simulated span")
    anomaly_rows: int = Field(description="readings labelled IsAnomaly")
    dropout_rows: int | None = Field(default=None, description="rows with 0xFFFF sensor dropouts")


class SdvTable(BaseModel):
    real_rows: int
    synthetic_rows: int
    path: str


class SdvGenerateData(ToolData):
    synthesizer: str
    tables: dict[str, SdvTable]
    synthetic_folder: str
    metadata_path: str


class SdvModelRef(BaseModel):
    name: str
    version: str
    synthesizer: str | None = None


class SdvSampleData(ToolData):
    model: SdvModelRef
    rows: dict[str, int]
    paths: dict[str, str]
    synthetic_folder: str


class SdvEvaluateData(ToolData):
    overall_score: float = Field(description="SDV quality score (0-1)")
    diagnostic_score: float = Field(description="SDV diagnostic score (0-1)")
    properties: dict[str, float | None]
    privacy: dict[str, dict[str, Any]] = Field(description="per table: copied rows, distances to closest real row")
    report_path: str


class SdvVisualizeData(ToolData):
    png_path: str
    html_path: str = Field(description="interactive HTML; loads plotly.js from plotly_js (offline)")
    plotly_js: str
    sdtype: str | None = None
    kind: str = Field(description="numerical, categorical or datetime")


class CycleRecordData(ToolData):
    path: str = Field(description="the charge/discharge record (canonical readings with IsAnomaly/AnomalyType)")
    faults_path: str = Field(description="the injected faults: cell, kind, start, end")
    rows: int
    cells: int
    readings_per_cell: int
    interval_seconds: float
    hours: float
    anomaly_rows: int = Field(description="readings inside an injected fault")
