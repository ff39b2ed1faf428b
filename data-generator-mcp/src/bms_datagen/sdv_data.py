"""Input folders for SDV: reading the tables, metadata (given or detected), battery-aware preparation.

A folder holds one CSV per table (the table name is the file stem) and, optionally, an SDV
``metadata.json``. Without one, metadata is detected with ``Metadata.detect_from_dataframes``
and then fixed for battery data:

- 0xFFFF register sentinels (65.535 V, 65535 degC, 59.749 SG) are "no reading": modelled as
  missing values and written back as sentinels in the same share;
- id-like columns (``...ID``, ``SerialNumber``) are ``id`` when nearly unique, ``categorical``
  when they only name a few devices/cells (a key of a relationship is always left as SDV set it);
- 0/1 and true/false columns (``IsDead``, ``IsAnomaly``, BMS alarm flags) are ``boolean``;
- timestamps (ISO ``PacketDateTime``, dd/mm/yyyy dates) are ``datetime`` with an explicit format;
  timestamps with a UTC offset (``+00:00``, ``Z``) are modelled as naive UTC and written back in
  their own notation (:mod:`bms_datagen.sdv_timestamps`).

Preparation for fitting (undone after sampling, all recorded as JSON): columns derived from
others (``Date``/``Time`` from ``PacketDateTime``), constant columns, and per-device attributes
(``SerialNumber``, ``SiteID``, ... that are a function of ``DeviceID``) are removed and rebuilt,
so synthetic rows stay consistent.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError

from .sdv_import import import_sdv
from .sdv_timestamps import TimestampStyle, from_model_text, learn_style, to_model_text, wall_time

log = logging.getLogger("bms.datagen")

METADATA_FILE = "metadata.json"
SENTINEL_SOURCES = C.SENTINELS  # 0xFFFF registers of the measurements, by canonical name
DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%Y-%m-%d",
)
ID_NAME = re.compile(r"(?:^id$|_id$|ID$|Id$|^Serial|Serial(?:Number|No)$|^Cell ID$)")
DEVICE_KEYS = C.ALIASES[C.DEVICE_ID]
BOOL_TEXT = {"true": True, "false": False}


@dataclass
class TablePrep:
    """How one table was prepared for fitting, to undo after sampling (JSON-serialisable)."""

    columns: list[str]
    sentinels: dict[str, dict[str, float]] = field(default_factory=dict)
    derived: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    device_key: str | None = None
    device_columns: list[str] = field(default_factory=list)
    device_lookup: dict[str, dict[str, Any]] = field(default_factory=dict)
    bool_kind: dict[str, str] = field(default_factory=dict)  # boolean columns stored as "text" or "int"
    timestamps: dict[str, dict[str, Any]] = field(default_factory=dict)  # offset timestamps: TimestampStyle

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TablePrep":
        return cls(**data)

    @property
    def removed(self) -> list[str]:
        return list(self.derived) + list(self.constants) + list(self.device_columns)


# -- reading ---------------------------------------------------------------------------------
def read_folder(folder: Path) -> tuple[dict[str, pd.DataFrame], Path | None]:
    """The tables (CSV per table, name = file stem) and the metadata.json path if there is one."""
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder: pass a folder holding one CSV per table")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise InputError(
            f"folder '{folder}' has no CSV files (found: {', '.join(found) or 'nothing'}): "
            "put one CSV per table in it, optionally with an SDV metadata.json"
        )
    tables: dict[str, pd.DataFrame] = {}
    for path in files:
        if path.stat().st_size == 0:
            raise InputError(f"table file '{path.name}' in '{folder}' is empty (0 bytes)")
        try:
            frame = pd.read_csv(path, low_memory=False)
        except pd.errors.EmptyDataError as exc:
            raise InputError(f"table file '{path.name}' in '{folder}' has no header and no rows") from exc
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"table file '{path.name}' in '{folder}' is not a readable CSV: {exc}") from exc
        if len(frame) == 0:
            raise InputError(f"table file '{path.name}' in '{folder}' has a header but no rows")
        if len(frame) < 2:
            raise InputError(f"table '{path.stem}' has only {len(frame)} row: SDV needs at least 2 rows to learn from")
        tables[path.stem] = frame
    metadata_path = folder / METADATA_FILE
    return tables, (metadata_path if metadata_path.is_file() else None)


# -- metadata ----------------------------------------------------------------------------------
def load_metadata(path: Path, tables: dict[str, pd.DataFrame]) -> Any:
    """Load a user metadata.json and check it matches the CSVs (names the table/column that differs)."""
    import_sdv()
    from sdv.metadata import Metadata

    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"metadata.json in '{path.parent}' is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        raise InputError(
            "metadata.json is not SDV metadata: expected an object with a 'tables' mapping "
            "(SDV 2.0 format, METADATA_SPEC_VERSION 'V1')"
        )
    missing = sorted(set(raw["tables"]) - set(tables))
    extra = sorted(set(tables) - set(raw["tables"]))
    if missing:
        raise InputError(
            f"metadata.json describes table(s) {missing} but the folder has no CSV for them "
            f"(CSV tables: {sorted(tables)})"
        )
    if extra:
        raise InputError(
            f"table(s) {extra} have a CSV but are not described in metadata.json (described: {sorted(raw['tables'])})"
        )
    for name, spec in raw["tables"].items():
        declared = set((spec or {}).get("columns", {}))
        present = set(tables[name].columns)
        if declared - present:
            raise InputError(
                f"metadata.json: table '{name}' declares column(s) {sorted(declared - present)} "
                f"that are not in {name}.csv"
            )
        if present - declared:
            raise InputError(
                f"metadata.json: table '{name}' does not describe column(s) {sorted(present - declared)} of {name}.csv"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metadata = Metadata.load_from_dict(raw)
            metadata.validate()
    except Exception as exc:  # SDV raises several types for bad metadata
        raise InputError(f"metadata.json is invalid: {_sdv_message(exc)}") from exc
    return metadata


def _sdv_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:600]


def detect_metadata(tables: dict[str, pd.DataFrame]) -> tuple[Any, list[str]]:
    """Detect SDV metadata for the (sentinel-cleaned) tables and apply the battery fixes."""
    import_sdv()
    from sdv.metadata import Metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metadata = Metadata.detect_from_dataframes(tables)
    fixes: list[str] = _link_tables(metadata, tables) if len(tables) > 1 else []
    for name, frame in tables.items():
        table = metadata.tables[name]
        keys = _key_columns(metadata, name)
        for column in frame.columns:
            sdtype = table.columns[column]["sdtype"]
            values = frame[column]
            new: dict[str, Any] | None = None
            if column in keys:
                continue
            fmt = _datetime_format(values)
            if fmt is not None:
                new = {"sdtype": "datetime", "datetime_format": fmt}
            elif ID_NAME.search(str(column)):
                distinct = values.nunique()
                if distinct / max(len(values), 1) > 0.5:
                    new = {"sdtype": "id"}  # nearly unique: a real identifier
                elif distinct <= 50:
                    new = {"sdtype": "categorical"}  # names a few devices/chargers
                # else: a counter such as PacketID - keep what SDV detected
            elif _is_boolean(values, str(column)):
                new = {"sdtype": "boolean"}
            elif column == "AnomalyType" or column == C.CELL_NUMBER:
                new = {"sdtype": "categorical"}
            elif sdtype == "ordinal":
                new = (
                    {"sdtype": "numerical"}
                    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 20
                    else {"sdtype": "categorical"}
                )
            if new is not None and (new.get("sdtype") != sdtype or "datetime_format" in new):
                metadata.update_column(column, table_name=name, **new)
                fmt_note = f" ({new['datetime_format']})" if "datetime_format" in new else ""
                fixes.append(f"{name}.{column}: {sdtype} -> {new['sdtype']}{fmt_note}")
    return metadata, fixes


def _link_tables(metadata: Any, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Relationships SDV missed: an id column unique in one table whose values the other tables reference."""
    fixes: list[str] = []
    linked = {(r["parent_table_name"], r["child_table_name"]) for r in metadata.relationships}
    for parent, frame in tables.items():
        if metadata.tables[parent].primary_key:
            continue
        for column in frame.columns:
            values = frame[column]
            if not ID_NAME.search(str(column)) or values.isna().any() or not values.is_unique:
                continue
            children = [
                c
                for c, f in tables.items()
                if c != parent
                and column in f.columns
                and (parent, c) not in linked
                and f[column].dropna().isin(set(values)).all()
            ]
            if not children:
                continue
            metadata.update_column(column, table_name=parent, sdtype="id")
            metadata.set_primary_key(column, table_name=parent)
            for child in children:
                if metadata.tables[child].columns[column]["sdtype"] != "id":
                    metadata.update_column(column, table_name=child, sdtype="id")
                metadata.add_relationship(
                    parent_table_name=parent,
                    child_table_name=child,
                    parent_primary_key=column,
                    child_foreign_key=column,
                )
                fixes.append(f"relationship {parent}.{column} -> {child}.{column}")
            break
    return fixes


def _key_columns(metadata: Any, table_name: str) -> set[str]:
    table = metadata.tables[table_name]
    keys: set[str] = set()
    for key in (table.primary_key, table.sequence_key, table.sequence_index):
        if isinstance(key, (list, tuple)):
            keys.update(key)
        elif key:
            keys.add(key)
    keys.update(table.alternate_keys or [])
    for rel in metadata.relationships:
        if rel["parent_table_name"] == table_name:
            keys.add(rel["parent_primary_key"])
        if rel["child_table_name"] == table_name:
            keys.add(rel["child_foreign_key"])
    return keys


def sdtypes(metadata: Any) -> dict[str, dict[str, str]]:
    return {
        name: {col: spec["sdtype"] for col, spec in table.columns.items()} for name, table in metadata.tables.items()
    }


def _datetime_format(values: pd.Series) -> str | None:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    sample = values.dropna().astype(str).head(200)
    if sample.empty:
        return None
    for fmt in DATETIME_FORMATS:
        parsed = pd.to_datetime(sample, format=fmt, errors="coerce")
        if parsed.notna().all():
            return fmt
    return None


def _is_boolean(values: pd.Series, name: str = "") -> bool:
    """True/false text, or 0/1 numbers (both present, or a label such as IsDead)."""
    if pd.api.types.is_bool_dtype(values):
        return True
    present = values.dropna()
    if present.empty:
        return False
    if pd.api.types.is_numeric_dtype(present):
        if not present.isin([0, 1]).all():
            return False
        return present.nunique() == 2 or name.startswith("Is")
    return bool(present.astype(str).str.lower().isin(list(BOOL_TEXT)).all())


# -- preparation -------------------------------------------------------------------------------
def clean_sentinels(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Replace 0xFFFF sentinels in measurement columns by NaN; report per column."""
    frame = frame.copy()
    found: dict[str, dict[str, float]] = {}
    for canonical, value in SENTINEL_SOURCES.items():
        for alias in C.ALIASES.get(canonical, (canonical,)):
            if alias in frame.columns and pd.api.types.is_numeric_dtype(frame[alias]):
                column = frame[alias]
                hit = np.isclose(column.to_numpy(dtype=float), value, rtol=0, atol=1e-3)
                if hit.any():
                    found[alias] = {"value": value, "count": int(hit.sum()), "nulls_before": int(column.isna().sum())}
                    frame[alias] = column.mask(hit)
                break
    return frame, found


def prepare_table(
    frame: pd.DataFrame, metadata: Any, table_name: str, single_table: bool
) -> tuple[pd.DataFrame, TablePrep]:
    """Sentinel-cleaned frame reduced to the columns to model, and how to rebuild the rest."""
    cleaned, sentinels = clean_sentinels(frame)
    prep = TablePrep(columns=[str(c) for c in frame.columns], sentinels=sentinels)
    keys = _key_columns(metadata, table_name)
    table_sdtypes = {c: s["sdtype"] for c, s in metadata.tables[table_name].columns.items()}
    # derived Date/Time from an ISO timestamp column
    source = next((c for c in ("PacketDateTime", "Timestamp") if c in cleaned.columns), None)
    if source is not None and table_sdtypes.get(source) == "datetime":
        stamp = wall_time(cleaned[source])
        for column, fmt in (("Date", "%d/%m/%Y"), ("Time", "%H:%M:%S")):
            if column in cleaned.columns and column not in keys:
                rebuilt = stamp.dt.strftime(fmt)
                same = (rebuilt == cleaned[column].astype(str)) | (cleaned[column].isna() & stamp.isna())
                if same.mean() > 0.999:
                    prep.derived[column] = {"from": source, "format": fmt}
    for column in cleaned.columns:
        if column in keys or column in prep.derived:
            continue
        if cleaned[column].nunique(dropna=False) <= 1:
            value = cleaned[column].iloc[0]
            prep.constants[column] = None if pd.isna(value) else _plain(value)
    # per-device attributes (single table only: several tables keep their own structure)
    device = next((c for c in DEVICE_KEYS if c in cleaned.columns), None)
    if single_table and device is not None and cleaned[device].nunique() > 1:
        candidates = [
            c
            for c in cleaned.columns
            if c != device
            and c not in keys
            and c not in prep.derived
            and c not in prep.constants
            and c not in C.LABEL_COLUMNS
            and c not in C.CORE_COLUMNS
            and table_sdtypes.get(c) in ("categorical", "id", "datetime", "boolean")
        ]
        if candidates:
            per_device = cleaned.groupby(device, dropna=False)[candidates].nunique(dropna=False)
            fixed = [c for c in candidates if (per_device[c] <= 1).all()]
            if fixed:
                first = cleaned.drop_duplicates(device).set_index(device)[fixed]
                prep.device_key = device
                prep.device_columns = fixed
                prep.device_lookup = {
                    str(k): {c: (None if pd.isna(v) else _plain(v)) for c, v in row.items()}
                    for k, row in first.iterrows()
                }
    model = cleaned.drop(columns=prep.removed)
    columns_spec = metadata.tables[table_name].columns
    for column in model.columns:
        if columns_spec.get(column, {}).get("sdtype") != "datetime":
            continue
        style = learn_style(model[column], columns_spec[column].get("datetime_format"))
        if style is not None:
            prep.timestamps[column] = style.to_dict()
            model[column] = to_model_text(model[column], style)
    for column in model.columns:
        if table_sdtypes.get(column) != "boolean" or pd.api.types.is_bool_dtype(model[column]):
            continue
        if pd.api.types.is_numeric_dtype(model[column]):
            prep.bool_kind[column] = "int"
            model[column] = model[column].map({1: True, 0: False})  # 1.0 == 1 and 0.0 == 0 as keys
        else:
            prep.bool_kind[column] = "text"
            model[column] = model[column].astype(str).str.lower().map(BOOL_TEXT)
    return model, prep


def model_metadata(metadata: Any, preps: dict[str, TablePrep]) -> Any:
    """A copy of ``metadata`` without the columns the preparation removed (offset timestamps: naive UTC)."""
    import_sdv()
    from sdv.metadata import Metadata

    reduced = Metadata.load_from_dict(metadata.to_dict())
    for name, prep in preps.items():
        for column in prep.removed:
            reduced.remove_column(column, table_name=name)
        for column, style in prep.timestamps.items():
            reduced.update_column(column, table_name=name, sdtype="datetime", datetime_format=style["model_format"])
    return reduced


def restore_table(sampled: pd.DataFrame, prep: TablePrep, seed: int) -> pd.DataFrame:
    """Undo :func:`prepare_table` on sampled rows: sentinels, derived, constant and device columns."""
    out = sampled.reset_index(drop=True).copy()
    for column, kind in prep.bool_kind.items():
        if column in out.columns:
            mapping = {True: 1, False: 0} if kind == "int" else {True: "True", False: "False"}
            out[column] = out[column].map(mapping)
            if kind == "int" and out[column].notna().all():
                out[column] = out[column].astype("int64")
    for column, style in prep.timestamps.items():
        if column in out.columns:
            out[column] = from_model_text(out[column], TimestampStyle.from_dict(style))
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=len(out))
    for column, info in prep.sentinels.items():
        if column in out.columns:
            total = info["count"] + info["nulls_before"]
            share = info["count"] / total if total else 1.0
            put = out[column].isna().to_numpy() & (u < share)
            out.loc[put, column] = info["value"]
    for column, spec in prep.derived.items():
        stamp = wall_time(out[spec["from"]])
        out[column] = stamp.dt.strftime(spec["format"])
    for column, value in prep.constants.items():
        out[column] = value
    if prep.device_key is not None and prep.device_key in out.columns:
        keys = out[prep.device_key].astype(str)
        for column in prep.device_columns:
            per_device = {k: v.get(column) for k, v in prep.device_lookup.items()}
            out[column] = keys.map(per_device)
    return out[[c for c in prep.columns if c in out.columns]]


def analysis_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as evaluated: sentinels are 'no reading' (missing), not numbers."""
    return clean_sentinels(frame)[0]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
