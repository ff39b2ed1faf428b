"""Fit SDV 2.0 synthesizers on prepared tables and sample from them, reproducibly for a seed.

- ``gaussian_copula`` (default for one table): the copula models the dependence; every numerical
  column (and every timestamp, modelled as epoch seconds) keeps its empirical marginal through
  :class:`~bms_datagen.empirical_normalizer.EmpiricalNormalizer`. Battery readings are bimodal
  (float vs discharge) and spiky, which parametric marginals (beta, truncnorm) cannot follow.
  When the labels ``IsDead``/``IsAnomaly`` are present with enough rows per class, one copula is
  fitted per regime (dead cells and anomalies behave differently) and rows are drawn from each in
  the real proportions.
- ``ctgan`` / ``tvae``: SDV's neural synthesizers (CPU, ``epochs`` configurable).
- ``par``: per-cell sequences (sequence key = cell id, sequence index = timestamp); columns that
  are constant within every sequence (device, cell number, serial) become context columns.
- ``hma``: several related tables (e.g. devices + readings).

The seed fixes NumPy, torch and the synthesizers' own random states, so the same seed gives
the same synthetic tables.
"""

from __future__ import annotations

import io
import logging
import random
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd
from bms_schema.errors import InputError

from .sdv_import import attach_torch, import_sdv

log = logging.getLogger("bms.datagen")

SYNTHESIZERS = ("auto", "gaussian_copula", "ctgan", "tvae", "par", "hma")
SEQUENCE_KEYS = ("CellID", "Cell ID", "cell_id", "CellId")
SEQUENCE_INDEXES = ("Timestamp", "PacketDateTime", "timestamp", "DateTime", "datetime")
EPOCH = pd.Timestamp("1970-01-01")
#: Boolean labels that split the default GaussianCopula into one copula per regime.
REGIME_COLUMNS = ("IsDead", "IsAnomaly")
MIN_REGIME_ROWS = 50


@dataclass
class SynthesisSpec:
    """What was fitted (JSON in the registry; enough to refit the same model)."""

    synthesizer: str
    seed: int = 0
    epochs: int = 100
    sequence_key: str | None = None
    sequence_index: str | None = None
    context_columns: list[str] | None = None
    default_distribution: str = "truncnorm"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_synthesizer(requested: str, n_tables: int) -> str:
    if requested not in SYNTHESIZERS:
        raise InputError(f"unknown synthesizer '{requested}': use one of {', '.join(SYNTHESIZERS)}")
    if n_tables > 1:
        if requested not in ("auto", "hma"):
            raise InputError(
                f"the folder holds {n_tables} tables: only 'hma' (or 'auto') models several "
                f"related tables; '{requested}' needs a folder with one CSV"
            )
        return "hma"
    if requested == "hma":
        raise InputError("'hma' needs several related tables (e.g. devices.csv + readings.csv); the folder holds one")
    return "gaussian_copula" if requested == "auto" else requested


@contextmanager
def seeded(seed: int, torch_needed: bool = False) -> Iterator[None]:
    """Seed Python, NumPy (and torch) for a block; restore NumPy's global state afterwards."""
    state = np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if torch_needed:
        import torch
        from bms_schema.runtime import torch_threads

        torch_threads()
        torch.manual_seed(seed)
        attach_torch()  # SDV may have been imported without torch (bms_datagen.sdv_import)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        np.random.set_state(state)


def roundtrip(frame: pd.DataFrame) -> tuple[pd.DataFrame, bytes]:
    """The frame as it will be stored (Parquet) and read back, so a refit sees identical input."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    return pd.read_parquet(io.BytesIO(data)), data


def _table(metadata: Any) -> tuple[str, Any]:
    name = next(iter(metadata.tables))
    return name, metadata.tables[name]


class FittedSynthesizer:
    """A fitted SDV synthesizer plus the glue to sample tables in the prepared format."""

    def __init__(self, spec: SynthesisSpec, metadata: Any, tables: dict[str, pd.DataFrame]):
        self.spec = spec
        self.metadata = metadata
        self.tables = tables
        self.model: Any = None
        self.datetime_formats: dict[str, str] = {}
        self.sequence_count = 0
        self.sequence_mean_length = 0.0
        self.regime_columns: list[str] = []
        self.regimes: list[tuple[Any, float, Any]] = []

    # -- fitting -----------------------------------------------------------------------------
    def fit(self) -> "FittedSynthesizer":
        kind = self.spec.synthesizer
        torch_needed = kind in ("ctgan", "tvae", "par")
        with seeded(self.spec.seed, torch_needed):
            try:
                getattr(self, f"_fit_{kind}")()
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"SDV could not fit {kind}: {' '.join(str(exc).split())[:500]}") from exc
        return self

    def _fit_gaussian_copula(self) -> None:
        import_sdv()
        from sdv.metadata import Metadata

        name, table = _table(self.metadata)
        frame = self.tables[name].copy()
        meta = Metadata.load_from_dict(self.metadata.to_dict())
        for column, spec in table.columns.items():
            if spec["sdtype"] == "datetime":
                fmt = spec.get("datetime_format")
                self.datetime_formats[column] = fmt or "%Y-%m-%dT%H:%M:%S"
                frame[column] = epoch_seconds(frame[column], fmt)
                meta.update_column(column, table_name=name, sdtype="numerical")
        numerical = [c for c, s in meta.tables[name].columns.items() if s["sdtype"] == "numerical"]
        self.regime_columns = regime_columns(frame, meta.tables[name].columns, numerical)
        groups = [(None, frame)] if not self.regime_columns else list(frame.groupby(self.regime_columns, sort=True))
        self.regimes = []
        for key, part in groups:
            model = self._gaussian_copula(meta, name, part.reset_index(drop=True), numerical)
            self.regimes.append((key, len(part) / len(frame), model))
        self.model = self.regimes[0][2]

    def _gaussian_copula(self, meta: Any, name: str, frame: pd.DataFrame, numerical: list[str]) -> Any:
        import_sdv()
        from sdv.single_table import GaussianCopulaSynthesizer

        from .empirical_normalizer import EmpiricalNormalizer, FastUniformEncoder

        model = GaussianCopulaSynthesizer(
            meta,
            default_distribution=self.spec.default_distribution,
            numerical_distributions={c: "norm" for c in numerical},
        )
        # auto_assign_transformers() validates the whole table against the metadata, and fit() does it
        # again (per-value Python checks: ~1.5 s per 100k rows); assign without the first validation.
        assign = getattr(model, "_auto_assign_transformers", model.auto_assign_transformers)
        assign({name: frame})
        custom: dict[str, Any] = {c: EmpiricalNormalizer(seed=self.spec.seed) for c in numerical}
        for column, transformer in model.get_transformers().items():
            if type(transformer).__name__ == "UniformEncoder":
                custom[column] = FastUniformEncoder()
        if custom:
            model.update_transformers(custom)
        model.fit({name: frame})
        return model

    def _sample_gaussian_copula(self, name: str, rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        shares = np.array([share for _, share, _ in self.regimes])
        counts = rng.multinomial(rows, shares / shares.sum())
        parts = []
        for (_, _, model), count in zip(self.regimes, counts):
            if count == 0:
                continue
            if hasattr(model, "_set_random_state"):
                model._set_random_state(seed)
            parts.append(model.sample(num_rows=int(count))[name])
        sampled = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        if len(parts) > 1:
            sampled = sampled.iloc[rng.permutation(len(sampled))].reset_index(drop=True)
        for column, fmt in self.datetime_formats.items():
            sampled[column] = format_epoch_seconds(sampled[column], fmt)
        return sampled

    def _fit_ctgan(self) -> None:
        import_sdv()
        from sdv.single_table import CTGANSynthesizer

        name, _ = _table(self.metadata)
        self.model = CTGANSynthesizer(self.metadata, epochs=self.spec.epochs, enable_gpu=False, verbose=False)
        self.model.fit({name: self.tables[name]})

    def _fit_tvae(self) -> None:
        import_sdv()
        from sdv.single_table import TVAESynthesizer

        name, _ = _table(self.metadata)
        self.model = TVAESynthesizer(self.metadata, epochs=self.spec.epochs, enable_gpu=False, verbose=False)
        self.model.fit({name: self.tables[name]})

    def _fit_par(self) -> None:
        import_sdv()
        from sdv.metadata import Metadata
        from sdv.sequential import PARSynthesizer

        name, table = _table(self.metadata)
        frame = self.tables[name]
        key, index = self.spec.sequence_key, self.spec.sequence_index
        if key is None or index is None:  # sequence_columns() resolves both before a PAR fit
            raise InputError("PAR needs a sequence key and index; resolve them with sequence_columns() first")
        meta = Metadata.load_from_dict(self.metadata.to_dict())
        if table.primary_key:
            meta.remove_primary_key(table_name=name)
        if meta.tables[name].columns[key]["sdtype"] != "id":
            meta.update_column(key, table_name=name, sdtype="id")
        meta.set_sequence_key(key, table_name=name)
        meta.set_sequence_index(index, table_name=name)
        if self.spec.context_columns is None:
            self.spec.context_columns = context_columns(frame, key, index)
        sizes = frame.groupby(key).size()
        self.sequence_count, self.sequence_mean_length = int(len(sizes)), float(sizes.mean())
        self.model = PARSynthesizer(
            meta, epochs=self.spec.epochs, context_columns=self.spec.context_columns, cuda=False, verbose=False
        )
        self.model.fit({name: frame})

    def _fit_hma(self) -> None:
        import_sdv()
        from sdv.multi_table import HMASynthesizer

        self.model = HMASynthesizer(self.metadata, verbose=False)
        for name in self.metadata.tables:
            self.model.set_table_parameters(name, {"default_distribution": self.spec.default_distribution})
        self.model.fit(self.tables)

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, seed: int, num_rows: int | None = None, scale: float = 1.0) -> dict[str, pd.DataFrame]:
        """Synthetic tables (prepared format). ``num_rows`` for one table, else ``scale`` x the real size."""
        kind = self.spec.synthesizer
        with seeded(seed, kind in ("ctgan", "tvae", "par")):
            try:
                if kind == "hma":
                    for synth in getattr(self.model, "_table_synthesizers", {}).values():
                        if hasattr(synth, "_set_random_state"):
                            synth._set_random_state(seed)
                    return self.model.sample_scale(scale=float(scale))
                name, _ = _table(self.metadata)
                if kind == "par":
                    context = getattr(self.model, "_context_synthesizer", None)
                    if context is not None and hasattr(context, "_set_random_state"):
                        context._set_random_state(seed)
                    if num_rows is not None:
                        sequences = max(1, int(round(num_rows / max(self.sequence_mean_length, 1.0))))
                    else:
                        sequences = max(1, int(round(scale * self.sequence_count)))
                    return self.model.sample_sequences(num_sequences=sequences)
                rows = num_rows if num_rows is not None else max(1, int(round(scale * len(self.tables[name]))))
                if kind == "gaussian_copula":
                    return {name: self._sample_gaussian_copula(name, rows, seed)}
                if hasattr(self.model, "_set_random_state"):
                    self.model._set_random_state(seed)
                return {name: self.model.sample(num_rows=rows)[name]}
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"SDV could not sample from {kind}: {' '.join(str(exc).split())[:500]}") from exc


def regime_columns(frame: pd.DataFrame, columns: dict[str, dict[str, Any]], numerical: list[str]) -> list[str]:
    """Label columns that split the readings into physically different regimes (dead cells, anomalies).

    One Gaussian copula cannot hold a dead cell's narrow voltage/SG cluster next to healthy float
    readings; a copula per regime can. A label is used when each resulting group keeps at least
    ``MIN_REGIME_ROWS`` rows and a value in every numerical column.
    """
    chosen: list[str] = []
    for column in REGIME_COLUMNS:
        if column not in frame.columns or columns.get(column, {}).get("sdtype") != "boolean":
            continue
        if frame[column].isna().any() or frame[column].nunique() < 2:
            continue
        trial = chosen + [column]
        groups = frame.groupby(trial, sort=True)
        if groups.size().min() < MIN_REGIME_ROWS:
            continue
        if numerical and (groups[numerical].count() == 0).any().any():
            continue
        chosen = trial
    return chosen


def epoch_seconds(values: pd.Series, fmt: str | None) -> pd.Series:
    """Timestamps (text in ``fmt``, naive or with an offset) as UTC epoch seconds; unparseable -> NaN."""
    stamp = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    return (stamp.dt.tz_localize(None) - EPOCH).dt.total_seconds()


def format_epoch_seconds(values: pd.Series, fmt: str) -> pd.Series:
    """Inverse of :func:`epoch_seconds`: text in ``fmt`` (in UTC when the format carries an offset)."""
    stamp = EPOCH + pd.to_timedelta(pd.to_numeric(values, errors="coerce").round(), unit="s")
    if "%z" in fmt or "%Z" in fmt:
        stamp = stamp.dt.tz_localize("UTC")
    return stamp.dt.strftime(fmt)


def context_columns(frame: pd.DataFrame, key: str, index: str) -> list[str]:
    """Columns constant within every sequence (device id, cell number, serial): PAR context."""
    candidates = [c for c in frame.columns if c not in (key, index)]
    if not candidates:
        return []
    per_key = frame.groupby(key, dropna=False)[candidates].nunique(dropna=False)
    return [c for c in candidates if (per_key[c] <= 1).all() and frame[c].nunique(dropna=False) > 1]


def sequence_columns(
    frame: pd.DataFrame, metadata: Any, key: str | None, index: str | None
) -> tuple[str, str, pd.DataFrame]:
    """The sequence key and index for PAR (adding ``CellID`` = DeviceID-CellNumber when needed)."""
    from bms_schema import columns as C

    name, table = _table(metadata)
    if key is None:
        key = next((c for c in SEQUENCE_KEYS if c in frame.columns), None)
        if key is None:
            device = next((c for c in C.ALIASES[C.DEVICE_ID] if c in frame.columns), None)
            number = next((c for c in C.ALIASES[C.CELL_NUMBER] if c in frame.columns), None)
            if number is None:
                raise InputError(
                    f"PAR needs a sequence key: table '{name}' has no cell id column "
                    f"({', '.join(SEQUENCE_KEYS)}) or CellNumber; pass sequence_key"
                )
            frame = frame.copy()
            frame["CellID"] = (frame[device].astype(str) + "-" if device else "") + frame[number].astype(str)
            metadata.add_column("CellID", table_name=name, sdtype="id")
            key = "CellID"
    elif key not in frame.columns:
        raise InputError(
            f"sequence_key '{key}' is not a column of table '{name}' (columns: {', '.join(map(str, frame.columns[:15]))})"
        )
    if index is None:
        index = next(
            (
                c
                for c in SEQUENCE_INDEXES
                if c in frame.columns and table.columns.get(c, {}).get("sdtype") == "datetime"
            ),
            None,
        )
        if index is None:
            raise InputError(
                f"PAR needs a sequence index: table '{name}' has no timestamp column "
                f"({', '.join(SEQUENCE_INDEXES)}) detected as datetime; pass sequence_index"
            )
    elif index not in frame.columns:
        raise InputError(f"sequence_index '{index}' is not a column of table '{name}'")
    return key, index, frame
