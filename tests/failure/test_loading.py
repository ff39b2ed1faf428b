"""Reading input files for the failure tools: only the needed columns, normalised, de-duplicated."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from bms_failure.api import load_readings_frame
from bms_schema import write_table
from failure.fleet import synthetic_fleet


def test_raw_packets_read_only_needed_columns(sample_csv: Path) -> None:
    frame, report = load_readings_frame(sample_csv)
    assert report["input_format"] == "raw_packet"
    assert report["rows_out"] == len(frame) == 750
    assert report["cells"] == 15 and report["devices"] == 3
    assert report["columns_read"] == 11  # of 73 in the packet format
    assert report["sentinel_rows"] == int(frame["SensorFault"].sum()) > 0
    assert frame["CellID"].str.match(r"^\d+-\d+$").all()


def test_minimal_table_keeps_labels_and_drops_duplicates(tmp_path: Path) -> None:
    fleet = synthetic_fleet(devices=1, cells_per_device=3, days=20, seed=0)
    doubled = pd.concat([fleet, fleet.head(7)], ignore_index=True)
    path = write_table(doubled, tmp_path / "fleet.csv")
    frame, report = load_readings_frame(path)
    assert report["input_format"] == "minimal"
    assert report["duplicates_dropped"] == 7
    assert len(frame) == len(fleet)
    assert frame["IsDead"].sum() == fleet["IsDead"].sum()
