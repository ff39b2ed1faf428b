"""The raw BMS packet format (73 columns, as in ``bms_packet_sample.csv``) and a deterministic CSV writer.

The real wire files carry 73 header names but only 72 fields per row; the simulator writes a
proper 73-column table (every row has every field) followed by the ground-truth label columns
``IsDead``, ``IsAnomaly`` and ``AnomalyType``.

Writing is done with pyarrow's CSV writer (fast, and byte-identical for identical frames):
booleans are written ``True``/``False`` like the sample, missing values as empty fields,
floats in their shortest round-trip form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from bms_schema import columns as C

#: The 73 raw packet columns, in the order of the real wire format (one list: ``bms_schema.columns``).
RAW_COLUMNS: tuple[str, ...] = C.RAW_PACKET_COLUMNS

#: Ground-truth label columns appended after the raw columns.
LABEL_COLUMNS: tuple[str, ...] = C.LABEL_COLUMNS

#: ``AnomalyType`` of a normal reading (a word, not an empty field, so CSV readers keep it as text).
NO_ANOMALY = "none"

#: 0xFFFF register sentinels written on a dropout row (all three cell measurements at once).
SENTINEL_VOLTAGE = C.SENTINELS[C.VOLTAGE]
SENTINEL_TEMPERATURE = C.SENTINELS[C.TEMPERATURE]
SENTINEL_SG = C.SENTINELS[C.SPECIFIC_GRAVITY]

OUTPUT_COLUMNS: tuple[str, ...] = RAW_COLUMNS + LABEL_COLUMNS


def bools_as_words(table: Any) -> Any:
    """Boolean columns of a pyarrow table as ``True``/``False`` text (like the real packets)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, f in enumerate(table.schema):
        if pa.types.is_boolean(f.type):
            table = table.set_column(i, f.name, pc.if_else(table.column(i), "True", "False"))
    return table


def to_arrow(frame: pd.DataFrame):  # -> pyarrow.Table
    """The frame as a pyarrow table ready for CSV: bools as ``True``/``False``, NaN as empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column.dtype):
            arr = pc.if_else(pa.array(column.to_numpy(dtype=bool)), "True", "False")
        else:
            arr = pa.array(column, from_pandas=True)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def write_packet_csv(frame: Any, path: str | Path) -> Path:
    """Write a packet-format frame (DataFrame or pyarrow Table) to CSV atomically.

    Identical frames give byte-identical files.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from bms_schema.atomic import atomic_path

    path = Path(path)
    table = frame if isinstance(frame, pa.Table) else to_arrow(frame)
    table = bools_as_words(table)
    header = (",".join(table.column_names) + "\n").encode("utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header)
            pacsv.write_csv(
                table,
                handle,
                write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=65536),
            )
    return path
