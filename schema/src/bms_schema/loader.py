"""The one readings loader: any input shape -> the cleaned canonical frame (+ interpolation, + features).

``load_canonical(source)`` accepts raw packets, a minimal table or an already canonical table,
as a DataFrame, a CSV/Parquet file or a dataset folder of either, and returns the cleaned
(normalised, de-duplicated, sorted by cell then time) canonical frame, interpolated and with
the data-core features unless asked otherwise. The format is detected once; features are added
once (a canonical input that already has every feature column keeps its own). Every server and
the live service load readings through it; MICE imputation is the preprocessing server's tool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeAlias, overload

import pandas as pd

from . import columns as C
from .clean import clean_readings
from .errors import InputError
from .features import DEFAULT_WINDOW, FEATURE_COLUMNS, add_features, skipped_features
from .interpolate import interpolate_readings
from .normalize import detect_format
from .reader import column_names, read_table
from .state import OPERATING_STATE, add_operating_state

log = logging.getLogger("bms.core")

LOADER_IMPUTE = ("interpolate", "none")
Source: TypeAlias = pd.DataFrame | str | Path
ColumnChoice: TypeAlias = Literal["all", "used"]


def used_columns(names: Iterable[str]) -> list[str]:
    """The columns of ``names`` the data core reads: ids, measurements (any alias), quality codes,
    row flags, labels and the ``Date``/``Time`` pair. Everything else of a raw packet is skipped."""
    wanted = {alias for aliases in C.ALIASES.values() for alias in aliases}
    wanted |= {*C.LABEL_COLUMNS, C.SENSOR_FAULT, C.OUT_OF_RANGE, "Date", "Time"}
    wanted |= {C.quality_column(c) for c in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC)}
    return [n for n in names if n in wanted]


def read_input(source: Source, columns: ColumnChoice = "all") -> tuple[pd.DataFrame, bool]:
    """``(frame, private)``: a DataFrame as it is, or a file / dataset folder read as it is.

    ``private`` is true for a frame just read (no caller holds it). ``columns="used"`` reads
    only :func:`used_columns` of a file. Callers resolve user paths first (``resolve_input``).
    """
    if isinstance(source, (str, Path)):
        wanted = None
        if columns == "used":
            names = column_names(source)
            keep = used_columns(names)
            wanted = keep if keep and len(keep) < len(names) else None
        return read_table(source, columns=wanted), True
    if isinstance(source, pd.DataFrame):
        return source, False
    raise InputError(f"expected a DataFrame, a CSV/Parquet file or a dataset folder, got {type(source).__name__}")


def has_features(frame: pd.DataFrame, input_format: str) -> bool:
    """A canonical table that already carries every feature column (the preprocessing output)."""
    return input_format == "canonical" and all(c in frame.columns for c in FEATURE_COLUMNS)


@overload
def load_canonical(
    source: Source,
    *,
    features: bool = ...,
    impute: str = ...,
    window: int = ...,
    limits: dict[str, tuple[float, float]] | None = ...,
    columns: ColumnChoice = ...,
    check: bool = ...,
    operating_state: bool | None = ...,
    return_report: Literal[False] = ...,
) -> pd.DataFrame: ...
@overload
def load_canonical(
    source: Source,
    *,
    features: bool = ...,
    impute: str = ...,
    window: int = ...,
    limits: dict[str, tuple[float, float]] | None = ...,
    columns: ColumnChoice = ...,
    check: bool = ...,
    operating_state: bool | None = ...,
    return_report: Literal[True],
) -> tuple[pd.DataFrame, dict[str, Any]]: ...
def load_canonical(
    source: Source,
    *,
    features: bool = True,
    impute: str = "interpolate",
    window: int = DEFAULT_WINDOW,
    limits: dict[str, tuple[float, float]] | None = None,
    columns: ColumnChoice = "all",
    check: bool = True,
    operating_state: bool | None = None,
    return_report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]:
    """Read, normalise and clean, interpolate (``impute="interpolate"`` | ``"none"``), add features.

    - ``features``: add :data:`bms_schema.features.FEATURE_COLUMNS` (kept as they are when the
      input is canonical and already has all of them, e.g. the preprocessing output).
    - ``columns="used"``: read only the columns the core uses from a file (a raw packet file has 73).
    - ``check``: refuse a single-row table or a required measurement with no value at all.
    - ``operating_state`` (default: as ``features``): add the ``OperatingState`` column of each
      string at each time (:mod:`bms_schema.state`) unless the input has it.
    - ``return_report``: also return the data-quality report of the clean step, with
      ``input_format``, ``columns_read``, ``features_added``, ``skipped_features`` (feature ->
      why it has no value: no specific gravity, no current step...), ``single_cell_strings`` /
      ``peer_fallback`` and ``operating_state`` (per-string details).
    """
    if impute not in LOADER_IMPUTE:
        raise InputError(
            f"unknown imputation method '{impute}' for the loader: choose one of "
            f"{', '.join(LOADER_IMPUTE)} (MICE is the preprocessing server's tool)"
        )
    frame, private = read_input(source, columns)
    fmt = detect_format(frame) if frame.shape[1] else "empty"
    featured = features and has_features(frame, fmt)
    cleaned, report = clean_readings(frame, limits=limits, check=check, input_format=fmt, private_input=private)
    result = interpolate_readings(cleaned) if impute == "interpolate" else cleaned
    added = features and not featured
    if added:
        result = add_features(result, window=window)
    if features:
        empty = [c for c in FEATURE_COLUMNS if c in result.columns and result[c].isna().all()]
        report["skipped_features"] = skipped_features(report.get("measurements_without_value", []), empty)
    if (features if operating_state is None else operating_state) and OPERATING_STATE not in result.columns:
        result = add_operating_state(result)
        report["operating_state"] = result.attrs.get("operating_state")
    report["columns_read"] = int(frame.shape[1])
    report["features_added"] = bool(added)
    return (result, report) if return_report else result
