"""The one readings loader: any input shape -> the cleaned canonical frame (+ interpolation, + features).

``load_canonical(path_or_frame)`` accepts raw packets, a minimal table or an already
canonical table (a DataFrame, or a CSV/Parquet path) and returns the cleaned, imputed,
feature-enriched canonical frame sorted by cell, then time. Every server and the live
service load readings through it; MICE imputation is the preprocessing server's own tool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd

from .clean import clean_readings
from .errors import InputError
from .features import DEFAULT_WINDOW, add_features
from .interpolate import interpolate_readings
from .reader import read_table

log = logging.getLogger("bms.core")

LOADER_IMPUTE = ("interpolate", "none")


def read_input(path_or_frame: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A DataFrame as it is, or a CSV/Parquet path read as it is (callers resolve user paths first)."""
    if isinstance(path_or_frame, (str, Path)):
        return read_table(path_or_frame)
    if isinstance(path_or_frame, pd.DataFrame):
        return path_or_frame
    raise InputError(f"expected a DataFrame or a file path, got {type(path_or_frame).__name__}")


@overload
def load_canonical(path_or_frame: pd.DataFrame | str | Path, *, features: bool = ..., impute: str = ...,
                   window: int = ..., limits: dict[str, tuple[float, float]] | None = ...,
                   return_report: Literal[False] = ...) -> pd.DataFrame: ...
@overload
def load_canonical(path_or_frame: pd.DataFrame | str | Path, *, features: bool = ..., impute: str = ...,
                   window: int = ..., limits: dict[str, tuple[float, float]] | None = ...,
                   return_report: Literal[True]) -> tuple[pd.DataFrame, dict[str, Any]]: ...
def load_canonical(
    path_or_frame: pd.DataFrame | str | Path,
    *,
    features: bool = True,
    impute: str = "interpolate",
    window: int = DEFAULT_WINDOW,
    limits: dict[str, tuple[float, float]] | None = None,
    return_report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]:
    """Read, normalise and clean, interpolate (``impute="interpolate"`` | ``"none"``), add features.

    With ``return_report=True`` the data-quality report of the clean step is returned too:
    ``(frame, report)``.
    """
    if impute not in LOADER_IMPUTE:
        raise InputError(f"unknown imputation method '{impute}' for the loader: choose one of "
                         f"{', '.join(LOADER_IMPUTE)} (MICE is the preprocessing server's tool)")
    frame = read_input(path_or_frame)
    cleaned, report = clean_readings(frame, limits=limits)
    result = interpolate_readings(cleaned) if impute == "interpolate" else cleaned.copy()
    if features:
        result = add_features(result, window=window)
    return (result, report) if return_report else result
