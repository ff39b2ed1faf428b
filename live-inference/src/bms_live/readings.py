"""Validated request readings -> the canonical table, fast enough for one reading at a time.

``bms_schema.normalize`` is the reference (about 1.5 ms however small the table); the live
path does the same work on the handful of fields a :class:`bms_schema.Reading` has, with
the same per-column rule (``bms_schema.normalize.flag_values``): 0xFFFF
sentinels and physically impossible values become NaN with ``<core>_Quality`` codes and
the ``SensorFault`` / ``OutOfRange`` row flags. ``tests/live/test_logic.py`` checks
the result equals ``bms_schema.normalize`` on the same readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.models import Reading
from bms_schema.normalize import flag_values

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
NUMERIC = (*C.CORE_COLUMNS, C.STRING_VOLTAGE)
QUALITY_LEVELS = np.asarray(C.QUALITY_LEVELS, dtype=object)


def _epoch_ns(stamps: Sequence[datetime]) -> np.ndarray:
    """Integer nanoseconds since the epoch; a naive timestamp is taken as UTC."""
    micros = [
        ((ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)) - EPOCH) // _MICROSECOND for ts in stamps
    ]
    return np.asarray(micros, dtype=np.int64) * 1000


def readings_to_frame(readings: Sequence[Reading], limits: C.Limits) -> pd.DataFrame:
    """The canonical frame of validated readings, in request order (index = request position)."""
    n = len(readings)
    device = np.asarray([r.DeviceID.strip() for r in readings], dtype=object)
    number = np.asarray([r.CellNumber for r in readings], dtype=np.int64)
    cell_id = np.char.add(np.char.add(device.astype(str), "-"), number.astype(str)).astype(object)
    out: dict[str, object] = {
        C.CELL_ID: cell_id,
        C.DEVICE_ID: device,
        C.CELL_NUMBER: number,
        C.TIMESTAMP: pd.DatetimeIndex(_epoch_ns([r.Timestamp for r in readings]).view("datetime64[ns]"), tz="UTC"),
    }
    sensor_fault = np.zeros(n, dtype=bool)
    out_of_range = np.zeros(n, dtype=bool)
    quality: dict[str, np.ndarray] = {}
    for name in NUMERIC:
        raw = [getattr(r, name) for r in readings]
        values = np.asarray([np.nan if v is None else v for v in raw], dtype=np.float64)
        if name == C.STRING_VOLTAGE and np.isnan(values).all():
            continue  # optional column absent from every reading
        values, level = flag_values(name, values, limits)
        sentinel, impossible = level == 2, level == 3
        codes = QUALITY_LEVELS[level]
        out[name] = values
        quality[C.quality_column(name)] = codes
        sensor_fault |= sentinel
        out_of_range |= impossible
    out[C.SENSOR_FAULT] = sensor_fault
    out[C.OUT_OF_RANGE] = out_of_range
    out.update(quality)
    return pd.DataFrame(out)
