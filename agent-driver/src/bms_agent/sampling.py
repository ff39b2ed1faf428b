"""Write a sample of readings into a folder for ``sdv_generate`` (which takes a folder of CSVs)."""

from __future__ import annotations

from pathlib import Path

#: Columns of the canonical table worth synthesising (those present are kept).
SDV_COLUMNS = (
    "DeviceID",
    "CellNumber",
    "CellID",
    "Timestamp",
    "CellVoltage",
    "CellTemperature",
    "CellSpecificGravity",
    "InstantaneousCurrent",
    "AmbientTemperature",
    "IsDead",
)


def write_sdv_sample(table: Path, folder: Path, rows: int, seed: int, name: str = "readings") -> dict[str, int]:
    """Sample ``rows`` readings of ``table`` (canonical columns only) into ``folder/<name>.csv``.

    Returns the number of rows read and written. Rows with a missing core value are left out:
    the synthesizer should learn clean readings.
    """
    from bms_schema.atomic import atomic_path
    from bms_schema.reader import read_table

    present = set(table_columns(table))
    keep = [c for c in SDV_COLUMNS if c in present]
    if not keep:
        from bms_schema import InputError

        raise InputError(f"{table} has none of the columns {', '.join(SDV_COLUMNS)} to sample for SDV")
    frame = read_table(table, columns=keep)[keep]
    measured = [
        c for c in keep if c.startswith(("Cell", "Instantaneous", "Ambient")) and c not in ("CellID", "CellNumber")
    ]
    clean = frame.dropna(subset=measured) if measured else frame
    sample = clean.sample(n=min(rows, len(clean)), random_state=seed) if len(clean) else clean
    if "CellID" in sample.columns and "Timestamp" in sample.columns:
        sample = sample.sort_values(["CellID", "Timestamp"], kind="stable")
    if "IsDead" in sample.columns:
        sample["IsDead"] = sample["IsDead"].astype("Int64")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.csv"
    with atomic_path(target) as tmp:
        sample.to_csv(tmp, index=False)
    return {"rows_read": int(len(frame)), "rows_written": int(len(sample))}


def table_columns(table: Path) -> list[str]:
    """The column names of a CSV or Parquet table (header only)."""
    if table.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(table).names)
    import pandas as pd

    return list(pd.read_csv(table, nrows=0).columns)


def write_recent_history(table: Path, target: Path, cell_ids: list[str], days: float) -> dict[str, int]:
    """The last ``days`` of readings of every device that holds one of ``cell_ids``, into ``target`` (Parquet).

    A forecast needs one cell's recent history and its string peers at the same timestamps (the
    string median is a feature), not the whole fleet: this keeps each forecast call from reading
    the full table again. Canonical cell ids are ``<DeviceID>-<CellNumber>``. Returns rows written.
    """
    import datetime

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from bms_schema.atomic import atomic_path
    from bms_schema.reader import read_table

    devices = sorted({cell.rsplit("-", 1)[0] for cell in cell_ids})
    if table.suffix.lower() == ".parquet":
        has_device = "DeviceID" in pq.read_schema(table).names
        data = pq.read_table(table, filters=[("DeviceID", "in", devices)] if has_device and devices else None)
    else:
        data = pa.Table.from_pandas(read_table(table), preserve_index=False)  # copes with real packet files
        if "DeviceID" in data.column_names and devices:
            data = data.filter(pc.is_in(pc.cast(data["DeviceID"], pa.string()), value_set=pa.array(devices)))
    if "Timestamp" in data.column_names and data.num_rows and pa.types.is_timestamp(data["Timestamp"].type):
        stamps = data["Timestamp"]
        cut = pa.scalar(pc.max(stamps).as_py() - datetime.timedelta(days=days), type=stamps.type)
        data = data.filter(pc.greater_equal(stamps, cut))
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        pq.write_table(data, tmp)
    return {"rows_written": int(data.num_rows)}


def table_rows(table: Path) -> int | None:
    """Rows of a Parquet table from its metadata (None for other formats: they must be read to count)."""
    if table.suffix.lower() != ".parquet" or not table.is_file():
        return None
    import pyarrow.parquet as pq

    return int(pq.read_metadata(table).num_rows)


def fleet_shape(table: Path) -> dict[str, float | int | bool]:
    """What the prior-fleet decision needs from a readings table: ``rows``, ``cells_per_string`` (median cells
    per string packet), ``has_sg`` (any specific gravity) and ``interval_minutes`` (median step of a cell)."""
    import numpy as np
    from bms_schema.reader import read_table

    present = set(table_columns(table))
    wanted: list[str] = [c for c in ("DeviceID", "CellID", "Timestamp", "CellSpecificGravity") if c in present]
    frame = read_table(table, columns=wanted)
    shape: dict[str, float | int | bool] = {
        "rows": int(len(frame)),
        "has_sg": bool("CellSpecificGravity" in frame.columns and frame["CellSpecificGravity"].notna().any()),
        "cells_per_string": 0.0,
        "interval_minutes": 15.0,
    }
    if len(frame) and {"DeviceID", "Timestamp"} <= set(frame.columns):
        shape["cells_per_string"] = float(frame.groupby(["DeviceID", "Timestamp"], sort=False).size().median())
    if len(frame) > 1 and {"CellID", "Timestamp"} <= set(frame.columns):
        import pandas as pd

        times = pd.to_datetime(frame["Timestamp"], errors="coerce", utc=True)
        ordered = pd.DataFrame({"cell": frame["CellID"].astype(str).to_numpy(), "t": times}).dropna()
        ordered = ordered.sort_values(["cell", "t"], kind="stable")
        stamps = ordered["t"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        same = ordered["cell"].to_numpy()[1:] == ordered["cell"].to_numpy()[:-1]
        steps = np.diff(stamps)[same]
        steps = steps[steps > 0]
        if len(steps):
            shape["interval_minutes"] = float(np.median(steps) / 60e9)
    return shape
