"""MICE imputation with miceforest (LightGBM random forests), bounded fit, deterministic transform.

How it works (``MiceImputer``):

* **Predictors.** Each measurement column is modelled from the other measurements plus two
  helper predictors per column, both leave-one-out so a known value never predicts itself:
  ``nbr`` - the per-cell linear interpolation in time between the previous and the next
  *other* reading of the cell, and ``str`` - the mean of the *other* cells of the string
  (same DeviceID) at the same timestamp.
* **Fit on a bounded sample.** Rows are chosen by a hash of (cell, timestamp) - the same rows
  whether the table is processed in one pass or streamed in chunks - capped at
  ``sample_rows``. Inside the sample, ``eval_fraction`` of the known values of every imputed
  column are masked before fitting; the kernel never sees them.
* **Honest quality.** The masked values are imputed by the fitted kernel and compared with
  the truth, side by side with per-cell linear interpolation of the same values
  (``quality`` dict: MAE and RMSE of both, per column).
* **Transform.** Every row with a missing measurement is imputed with
  ``kernel.impute_new_data`` using a per-record seed (hash of cell and timestamp), so a row
  gets the same value however the table is chunked. Labels are never modelled or imputed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError
from bms_schema.grouped import cell_ends, cell_starts, epoch_seconds, interpolate_time
from bms_schema.interpolate import add_imputed_flags, impute_columns
from bms_schema.runtime import compute_threads, imports_blocked

log = logging.getLogger("bms.preprocess")

DEFAULT_SAMPLE_ROWS = 20_000
DEFAULT_ITERATIONS = 2
DEFAULT_EVAL_FRACTION = 0.1
TRANSFORM_BLOCK = 100_000
#: Leave-one-out helper predictors per measurement: ``nbr__<col>`` (cell's neighbours in time),
#: ``str__<col>`` (other cells of the string at the same time).
HELPER_PREFIXES = ("nbr__", "str__")
LGB_PARAMS: dict[str, Any] = {"num_iterations": 32, "max_depth": 8, "num_leaves": 64, "min_data_in_leaf": 5}


#: What LightGBM (under miceforest) imports only for its scikit-learn and Dask interfaces, which
#: miceforest does not use (it calls ``lightgbm.train`` on ``Dataset``s).
_LIGHTGBM_OPTIONAL = ("sklearn", "dask", "distributed")


def import_miceforest() -> Any:
    """``miceforest``, imported without the packages of ``_LIGHTGBM_OPTIONAL`` the process has not loaded.

    ``lightgbm.compat`` imports scikit-learn and ``dask.distributed`` when they are installed: about
    1.3 CPU-s of the preprocessing server's first MICE fit (of ~2.1 s for the whole import), for
    interfaces miceforest never calls. While miceforest is first imported they are not importable, so
    LightGBM loads its core only; a package the process already has is used as it is. LightGBM's own
    scikit-learn and Dask estimators are then not usable in this process (nothing here uses them).
    """
    if "miceforest" in sys.modules or "lightgbm" in sys.modules:
        import miceforest as mf

        return mf
    held = tuple(p for p in _LIGHTGBM_OPTIONAL if p not in sys.modules)
    with imports_blocked("miceforest loads (bms_preprocess.mice)", held, lambda m: False):
        import miceforest as mf
    return mf


def row_hash(frame: pd.DataFrame) -> np.ndarray:
    """A stable uint64 per row from (CellID, Timestamp): the same for a row in any chunk."""
    keys = pd.DataFrame(
        {"c": frame[C.CELL_ID].astype(str).to_numpy(), "t": epoch_seconds(frame[C.TIMESTAMP]).astype(np.int64)}
    )
    return pd.util.hash_pandas_object(keys, index=False).to_numpy()


def neighbour_estimate(values: np.ndarray, seconds: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Leave-one-out per-cell interpolation: each row estimated from the other readings of its cell."""
    n = len(values)
    idx = np.arange(n, dtype=np.int64)
    valid = ~np.isnan(values)
    # previous/next valid strictly before/after each row
    prev_incl = np.maximum.accumulate(np.where(valid, idx, -1))
    prev = np.empty(n, dtype=np.int64)
    prev[0:1] = -1
    prev[1:] = prev_incl[:-1]
    next_incl = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
    nxt = np.empty(n, dtype=np.int64)
    nxt[-1:] = n
    nxt[:-1] = next_incl[1:]
    ends = cell_ends(starts)
    has_prev = prev >= starts
    has_next = (nxt <= ends) & (nxt < n)
    out = np.full(n, np.nan)
    both = has_prev & has_next
    p, q = prev[both], nxt[both]
    span = seconds[q] - seconds[p]
    frac = np.divide(seconds[both] - seconds[p], span, out=np.zeros(len(p)), where=span > 0)
    out[both] = values[p] + (values[q] - values[p]) * frac
    only_prev = has_prev & ~has_next
    out[only_prev] = values[prev[only_prev]]
    only_next = ~has_prev & has_next
    out[only_next] = values[nxt[only_next]]
    return out


def string_loo_mean(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Mean of the other cells of the string at the same timestamp (NaN when no other cell has a value)."""
    return string_loo_means(frame, [column])[column]


def string_loo_means(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    """:func:`string_loo_mean` of each of ``columns``, from one grouping of the rows by string and time."""
    groups = frame.groupby([C.DEVICE_ID, C.TIMESTAMP], sort=False, observed=True)[list(columns)]
    totals = groups.transform("sum")
    counts = groups.transform("count")
    out: dict[str, np.ndarray] = {}
    for column in columns:
        own = frame[column].to_numpy(dtype=np.float64)
        known = ~np.isnan(own)
        total = totals[column].to_numpy(dtype=np.float64) - np.where(known, own, 0.0)
        count = counts[column].to_numpy(dtype=np.float64) - known
        with np.errstate(invalid="ignore", divide="ignore"):
            out[column] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def design_matrix(frame: pd.DataFrame, columns: list[str], values: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The measurement columns plus leave-one-out ``nbr__<col>`` and ``str__<col>`` helpers.

    ``values`` can replace column values (for example with evaluation masks applied).
    ``frame`` must be sorted by cell, then time.
    """
    starts = cell_starts(frame[C.CELL_ID])
    seconds = epoch_seconds(frame[C.TIMESTAMP])
    data: dict[str, np.ndarray] = {}
    for name in columns:
        data[name] = (values or {}).get(name, frame[name].to_numpy(dtype=np.float64))
    helper_frame = frame[[C.DEVICE_ID, C.TIMESTAMP]].assign(**{name: data[name] for name in columns})
    means = string_loo_means(helper_frame, columns)
    for name in columns:
        data[f"nbr__{name}"] = neighbour_estimate(data[name], seconds, starts)
        data[f"str__{name}"] = means[name]
    return pd.DataFrame(data, index=frame.index)


def _errors(truth: np.ndarray, guess: np.ndarray) -> dict[str, float | None]:
    ok = ~np.isnan(guess)
    if not ok.any():
        return {"mae": None, "rmse": None, "n": 0}
    diff = guess[ok] - truth[ok]
    return {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff * diff))), "n": int(ok.sum())}


@dataclass
class MiceImputer:
    """Fit a miceforest kernel on a bounded sample; impute any cleaned canonical frame.

    Parameters follow scikit-learn conventions: constructor arguments are settings,
    ``fit`` learns, ``transform`` applies. Fitted attributes end with ``_``.
    """

    sample_rows: int = DEFAULT_SAMPLE_ROWS
    iterations: int = DEFAULT_ITERATIONS
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    random_state: int = 0
    columns: list[str] | None = None
    lgb_params: dict[str, Any] = field(default_factory=lambda: dict(LGB_PARAMS))

    def _validate(self) -> None:
        if self.sample_rows < 50:
            raise InputError(f"sample_rows must be at least 50, got {self.sample_rows}")
        if self.iterations < 1:
            raise InputError(f"iterations must be at least 1, got {self.iterations}")
        if not 0.0 <= self.eval_fraction < 0.5:
            raise InputError(f"eval_fraction must be in [0, 0.5), got {self.eval_fraction}")

    def sample_mask(self, frame: pd.DataFrame, total_rows: int | None = None) -> np.ndarray:
        """Rows that belong to the fitting sample: ``hash(cell, time) < rate``, independent of chunking."""
        total = total_rows if total_rows is not None else len(frame)
        rate = min(1.0, self.sample_rows / max(total, 1))
        hashed = row_hash(frame) ^ np.uint64(self.random_state * 0x9E3779B97F4A7C15 % (1 << 64))
        return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53) < rate

    def select_sample(self, frame: pd.DataFrame, total_rows: int | None = None) -> np.ndarray:
        """Positions of the fitting sample: hashed rows, trimmed to ``sample_rows`` by smallest hash."""
        in_sample = self.sample_mask(frame, total_rows)
        rows = np.flatnonzero(in_sample)
        if len(rows) > self.sample_rows:  # a hash sample can overshoot a little: trim deterministically
            hashed = row_hash(frame.iloc[rows])
            rows = np.sort(rows[np.argsort(hashed, kind="stable")[: self.sample_rows]])
        return rows

    def fit(
        self, frame: pd.DataFrame, total_rows: int | None = None, design: pd.DataFrame | None = None
    ) -> "MiceImputer":
        """Fit on the hashed sample of a cleaned, cell-sorted canonical ``frame``.

        ``design`` (``design_matrix(frame, self.columns or impute_columns(frame))``) can be passed
        when the caller also needs it for :meth:`transform`, so it is built once.
        """
        self._validate()
        columns = self.columns or impute_columns(frame)
        missing_any = [c for c in columns if frame[c].isna().any()]
        design = design_matrix(frame, columns) if design is None else design
        rows = self.select_sample(frame, total_rows)
        return self.fit_sample(design.iloc[rows].reset_index(drop=True), columns, missing_any)

    def fit_sample(self, sample: pd.DataFrame, columns: list[str], missing_any: list[str]) -> "MiceImputer":
        """Fit on design rows already drawn (``design_matrix`` rows of the sample)."""
        mf = import_miceforest()

        self._validate()
        sample = sample.copy()
        too_few = [c for c in missing_any if sample[c].notna().sum() < 10]
        core_too_few = [c for c in too_few if c in C.REQUIRED_MEASUREMENTS]
        if core_too_few:
            raise InputError(
                f"column '{core_too_few[0]}' has fewer than 10 known values in the fitting sample: "
                "too few to model it; use impute='interpolate'"
            )
        if too_few:  # an optional measurement that is (almost) never reported: left as it is
            log.warning("not imputing %s: fewer than 10 known values", ", ".join(too_few))
            helpers = {f"{p}{t}" for t in too_few for p in HELPER_PREFIXES}
            sample = sample.drop(columns=[c for c in sample.columns if c in too_few or c in helpers])
            columns = [c for c in columns if c not in too_few]
            missing_any = [c for c in missing_any if c not in too_few]
        self.columns_ = list(columns)
        self.imputed_columns_ = list(missing_any)
        self.sample_size_ = int(len(sample))
        rng = np.random.default_rng(self.random_state)
        masks: dict[str, np.ndarray] = {}
        truth: dict[str, np.ndarray] = {}
        masked_values: dict[str, np.ndarray] = {}
        for name in missing_any:
            known = np.flatnonzero(sample[name].notna().to_numpy())
            k = int(round(self.eval_fraction * len(known)))
            chosen = rng.choice(known, size=k, replace=False) if k > 0 else np.zeros(0, dtype=np.int64)
            mask = np.zeros(len(sample), dtype=bool)
            mask[chosen] = True
            masks[name] = mask
            truth[name] = sample[name].to_numpy()[mask]
            masked_values[name] = sample[name].to_numpy().copy()
            masked_values[name][mask] = np.nan
        # the interpolation baseline for a masked value: the cell's other readings (= nbr helper)
        baseline = {name: sample[f"nbr__{name}"].to_numpy()[masks[name]] for name in missing_any}
        for name in missing_any:
            sample[name] = masked_values[name]
        if not missing_any:
            self.kernel_ = None
            self.quality_ = {}
            return self
        schema = {name: [c for c in sample.columns if c != name] for name in missing_any}
        kernel = mf.ImputationKernel(
            sample,
            num_datasets=1,
            variable_schema=schema,
            mean_match_candidates=0,
            random_state=self.random_state,
            save_all_iterations_data=True,
        )
        kernel.mice(self.iterations, num_threads=compute_threads(), **self.lgb_params)
        self.kernel_ = kernel
        completed = kernel.complete_data(dataset=0)
        self.quality_ = {
            name: {
                "masked_values": int(masks[name].sum()),
                "mice": _errors(truth[name], completed[name].to_numpy()[masks[name]]),
                "interpolation": _errors(truth[name], baseline[name]),
            }
            for name in missing_any
        }
        log.info("MICE fitted on %d rows (%s); quality %s", len(sample), ", ".join(missing_any), self.quality_)
        return self

    def transform(self, frame: pd.DataFrame, design: pd.DataFrame | None = None, copy: bool = True) -> pd.DataFrame:
        """Impute every missing measurement of a cleaned, sorted frame; adds ``<col>_Imputed`` flags.

        ``copy=False`` fills ``frame`` itself (the streaming engine's blocks are not reused).
        """
        if not hasattr(self, "columns_"):
            raise InputError("MiceImputer is not fitted: call fit() first")
        out = frame.copy() if copy else frame
        before = {name: out[name].isna().to_numpy() for name in self.columns_ if name in out.columns}
        if self.kernel_ is None:
            return add_imputed_flags(out, before)
        design = design_matrix(out, self.columns_) if design is None else design
        targets = [c for c in self.imputed_columns_ if c in out.columns]
        need = np.zeros(len(out), dtype=bool)
        for name in targets:
            need |= before[name]
        rows = np.flatnonzero(need)
        seeds = row_hash(out.iloc[rows]) if len(rows) else np.zeros(0, dtype=np.uint64)
        model_cols = list(self.kernel_.working_data.columns)
        for lo in range(0, len(rows), TRANSFORM_BLOCK):
            part = rows[lo : lo + TRANSFORM_BLOCK]
            block = design.iloc[part][model_cols].reset_index(drop=True)
            imputed = self.kernel_.impute_new_data(
                block,
                datasets=[0],
                random_state=self.random_state,
                random_seed_array=seeds[lo : lo + TRANSFORM_BLOCK].astype(np.uint64),
            ).complete_data(dataset=0)
            for name in targets:
                col = out.columns.get_loc(name)
                values = out.iloc[part, col].to_numpy(dtype=np.float64)
                fill = np.isnan(values)
                values[fill] = imputed[name].to_numpy()[fill]
                out.iloc[part, col] = values
        # columns the kernel did not model (no gaps when it was fitted) fall back to interpolation
        leftover = [c for c in self.columns_ if c in out.columns and c not in targets and out[c].isna().any()]
        if leftover:
            starts = cell_starts(out[C.CELL_ID])
            seconds = epoch_seconds(out[C.TIMESTAMP])
            for name in leftover:
                values = out[name].to_numpy(dtype=np.float64)
                helper = f"nbr__{name}"
                if helper in design.columns:  # the interpolation with the streamed context
                    values = np.where(np.isnan(values), design[helper].to_numpy(dtype=np.float64), values)
                    out[name] = values
                else:
                    out[name] = interpolate_time(values, seconds, starts)
        return add_imputed_flags(out, before)

    def fit_transform(self, frame: pd.DataFrame, total_rows: int | None = None) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` of the same frame, building its design matrix once."""
        design = design_matrix(frame, self.columns or impute_columns(frame))
        return self.fit(frame, total_rows, design=design).transform(frame, design=design)


def mice_impute(
    frame: pd.DataFrame,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    iterations: int = DEFAULT_ITERATIONS,
    random_state: int = 0,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    total_rows: int | None = None,
    return_imputer: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, MiceImputer]:
    """Fit :class:`MiceImputer` on a bounded sample of ``frame`` and impute all of it.

    ``total_rows`` (default ``len(frame)``) sets the sampling rate ``sample_rows / total_rows``;
    the tools pass the raw input row count so streamed and one-pass runs draw the same sample.
    """
    imputer = MiceImputer(
        sample_rows=sample_rows, iterations=iterations, random_state=random_state, eval_fraction=eval_fraction
    )
    out = imputer.fit_transform(frame, total_rows=total_rows)
    return (out, imputer) if return_imputer else out
