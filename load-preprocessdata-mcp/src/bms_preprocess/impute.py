"""Imputation dispatcher of the preprocessing server: interpolation (data core) or MICE (miceforest)."""

from __future__ import annotations

import pandas as pd
from bms_schema.errors import InputError
from bms_schema.interpolate import interpolate_readings

from .mice import mice_impute

IMPUTE_METHODS = ("interpolate", "mice", "none")


def impute_readings(frame: pd.DataFrame, method: str = "interpolate", **options: object) -> pd.DataFrame:
    """Impute a cleaned, cell-sorted canonical frame with ``method`` (interpolate | mice | none)."""
    if method not in IMPUTE_METHODS:
        raise InputError(f"unknown imputation method '{method}': choose one of {', '.join(IMPUTE_METHODS)}")
    if method == "none":
        return frame.copy()
    if method == "interpolate":
        return interpolate_readings(frame)
    return mice_impute(frame, **options)  # type: ignore[arg-type]
