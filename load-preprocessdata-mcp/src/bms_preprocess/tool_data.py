"""Typed ``data`` of load-preprocessdata-mcp's tools (all five share one shape)."""

from __future__ import annotations

from bms_schema.mcp_server import ToolData
from pydantic import Field


class PreprocessData(ToolData):
    output_path: str = Field(description="the cleaned (and imputed/featurised/scaled) table")
    rows: int = Field(description="rows written")
    columns: int
    rows_in: int = Field(description="rows read")
    duplicates_dropped: int
    sentinel_rows: int = Field(description="rows with a 0xFFFF register sentinel (no reading)")
    out_of_range_rows: int = Field(description="rows with a physically impossible value")
    cells: int
    time_gaps: int
    missing_before: dict[str, int] = Field(description="missing values per column before imputation")
    imputed_values: dict[str, int] = Field(description="values filled in per column")
    measurements_without_value: list[str] = Field(
        default_factory=list, description="measurements with no value at all (e.g. CellSpecificGravity on VRLA)"
    )
    skipped_features: dict[str, str] = Field(
        default_factory=dict, description="features that have no value, and why (no SG, no charge/discharge)"
    )
    not_scaled: dict[str, str] = Field(default_factory=dict, description="columns left unscaled, and why")
    peer_fallback: dict[str, object] | None = Field(
        default=None, description="one-cell strings whose peer features come from the cell's own history"
    )
