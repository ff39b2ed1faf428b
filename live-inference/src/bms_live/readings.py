"""Validated request readings -> the canonical table: the data core's fast path.

The live service normalises request readings with :func:`bms_schema.normalize.normalize_readings`
(the same per-column rule as :func:`bms_schema.normalize`: 0xFFFF sentinels and physically
impossible values become NaN with ``<core>_Quality`` codes and the ``SensorFault`` /
``OutOfRange`` row flags). This module only names it for the service.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from bms_schema import columns as C
from bms_schema.models import Reading
from bms_schema.normalize import READING_NUMERIC, normalize_readings

NUMERIC = READING_NUMERIC

__all__ = ["NUMERIC", "readings_to_frame"]


def readings_to_frame(readings: Sequence[Reading], limits: C.Limits) -> pd.DataFrame:
    """The canonical frame of validated readings, in request order (index = request position)."""
    return normalize_readings(readings, limits)
