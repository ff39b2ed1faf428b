"""In-memory preprocessing chain for other servers: clean + impute + features.

``prepare_readings(frame_or_path)`` accepts raw packets, a minimal table or an already
canonical table (a DataFrame, or a CSV/Parquet path) and returns the cleaned, imputed,
feature-enriched canonical frame sorted by cell, then time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from bms_schema import InputError, read_table

from .clean import clean_readings
from .features import DEFAULT_WINDOW, add_features
from .impute import impute_readings

log = logging.getLogger("bms.preprocess")


def prepare_readings(
    frame_or_path: pd.DataFrame | str | Path,
    impute: str = "interpolate",
    window: int = DEFAULT_WINDOW,
    limits: dict[str, tuple[float, float]] | None = None,
    return_report: bool = False,
    **impute_options: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]:
    """Clean, impute (``"interpolate"`` | ``"mice"`` | ``"none"``) and add features, all in memory.

    A path is read as it is (callers that take user paths resolve them with
    ``bms_schema.resolve_input`` first). With ``return_report=True`` the data-quality report
    of the clean step is returned too: ``(frame, report)``.
    """
    if isinstance(frame_or_path, (str, Path)):
        frame = read_table(frame_or_path)
    elif isinstance(frame_or_path, pd.DataFrame):
        frame = frame_or_path
    else:
        raise InputError(f"prepare_readings needs a DataFrame or a file path, got {type(frame_or_path).__name__}")
    cleaned, report = clean_readings(frame, limits=limits)
    if impute == "mice":
        impute_options.setdefault("total_rows", report["rows_in"])
    imputed = impute_readings(cleaned, impute, **impute_options)
    result = add_features(imputed, window=window)
    return (result, report) if return_report else result
