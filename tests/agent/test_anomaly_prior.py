"""What the pipeline reads from the readings to decide on a small fleet's prior fleet (stage anomaly_prior)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from bms_agent.sampling import fleet_shape


def test_fleet_shape_of_a_csv_with_local_offsets_and_of_a_parquet_table(tmp_path: Path) -> None:
    stamps = ["2025-01-01T00:00:00+02:00"] * 3 + ["2025-01-01T00:05:00+02:00"] * 3 + ["2025-01-01T00:10:00+02:00"] * 3
    frame = pd.DataFrame(
        {
            "DeviceID": ["A"] * 9,
            "CellID": ["A-1", "A-2", "A-3"] * 3,
            "Timestamp": stamps,
            "CellVoltage": [2.2] * 9,
            "CellSpecificGravity": [1.215] + [None] * 8,
        }
    )
    frame.to_csv(tmp_path / "r.csv", index=False)
    shape = fleet_shape(tmp_path / "r.csv")
    assert shape == {"rows": 9, "has_sg": True, "cells_per_string": 3.0, "interval_minutes": 5.0}
    vrla = frame.drop(columns=["CellSpecificGravity"]).assign(Timestamp=pd.to_datetime(frame["Timestamp"], utc=True))
    vrla.to_parquet(tmp_path / "r.parquet")
    assert fleet_shape(tmp_path / "r.parquet") == {
        "rows": 9,
        "has_sg": False,
        "cells_per_string": 3.0,
        "interval_minutes": 5.0,
    }


def test_fleet_shape_of_one_cell_read_every_minute(tmp_path: Path) -> None:
    times = pd.date_range("2025-01-01", periods=120, freq="1min", tz="UTC")
    one = pd.DataFrame({"DeviceID": "UPS", "CellID": "UPS-1", "Timestamp": times, "CellVoltage": 2.25})
    one.to_parquet(tmp_path / "one.parquet")
    shape = fleet_shape(tmp_path / "one.parquet")
    assert shape["cells_per_string"] == 1.0 and shape["interval_minutes"] == 1.0 and shape["rows"] == 120


def test_table_rows_from_parquet_metadata_only(tmp_path: Path) -> None:
    from bms_agent.sampling import table_rows

    pd.DataFrame({"CellVoltage": [2.2] * 7}).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"CellVoltage": [2.2] * 7}).to_csv(tmp_path / "t.csv", index=False)
    assert table_rows(tmp_path / "t.parquet") == 7
    assert table_rows(tmp_path / "t.csv") is None  # a CSV is read to count (fleet_shape)
