"""In-memory preprocessing chain with every imputation method (MICE included).

Other servers load readings with :func:`bms_schema.loader.load_canonical`; this adds MICE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from bms_schema.clean import clean_readings
from bms_schema.features import DEFAULT_WINDOW, add_features
from bms_schema.loader import LOADER_IMPUTE, load_canonical, read_input

from .impute import impute_readings


def prepare_readings(
    frame_or_path: pd.DataFrame | str | Path,
    impute: str = "interpolate",
    window: int = DEFAULT_WINDOW,
    limits: dict[str, tuple[float, float]] | None = None,
    return_report: bool = False,
    **impute_options: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]:
    """Clean, impute (``"interpolate"`` | ``"mice"`` | ``"none"``) and add features, all in memory."""
    if impute in LOADER_IMPUTE and not impute_options:
        return load_canonical(frame_or_path, impute=impute, window=window, limits=limits, return_report=return_report)  # type: ignore[call-overload]
    frame, private = read_input(frame_or_path)
    cleaned, report = clean_readings(frame, limits=limits, private_input=private)
    if impute == "mice":
        impute_options.setdefault("total_rows", report["rows_in"])
    imputed = impute_readings(cleaned, impute, **impute_options)
    result = add_features(imputed, window=window)
    return (result, report) if return_report else result
