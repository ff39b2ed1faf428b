"""Privacy check: does the synthetic table copy real rows?

Two figures per table, over the columns both tables share (``id`` columns excluded, since
synthetic ids are new by construction):

- ``copied_share``: share of synthetic rows identical to some real row (floats compared at 6
  decimals). A synthesizer that memorises its training data scores near 1.
- distance to closest record (DCR): each synthetic row's distance to its nearest real row in a
  standardised space (numbers and timestamps scaled by the real median/IQR, categories one-hot,
  missing values as their own indicator). It is compared with the same distance from a real
  *holdout* (real rows not used as reference) - synthetic rows much closer than real holdout
  rows are to each other means copying.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAX_REFERENCE = 20_000
MAX_QUERY = 3_000
TOP_CATEGORIES = 20


def _row_keys(frame: pd.DataFrame) -> pd.Series:
    normalised = frame.copy()
    for column in normalised.columns:
        values = normalised[column]
        if pd.api.types.is_float_dtype(values):
            normalised[column] = values.round(6)
        normalised[column] = normalised[column].astype(str)
    return pd.util.hash_pandas_object(normalised, index=False)


def _encode(reference: pd.DataFrame, frames: list[pd.DataFrame], sdtypes: dict[str, str]) -> list[np.ndarray]:
    """Encode frames in a space fitted on ``reference`` (scaled numbers, one-hot categories)."""
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for column in reference.columns:
        kind = sdtypes.get(column, "categorical")
        if kind in ("numerical", "datetime"):

            def numeric(values: pd.Series) -> np.ndarray:
                if kind == "datetime":
                    stamp = pd.to_datetime(values, errors="coerce", format="mixed", utc=True).dt.tz_localize(None)
                    return (stamp - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=float)
                return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)

            ref = numeric(reference[column])
            centre = np.nanmedian(ref) if np.isfinite(ref).any() else 0.0
            q75, q25 = np.nanpercentile(ref, [75, 25]) if np.isfinite(ref).any() else (1.0, 0.0)
            scale = (q75 - q25) or (np.nanstd(ref) if np.isfinite(ref).any() else 1.0) or 1.0
            for i, frame in enumerate(frames):
                values = (numeric(frame[column]) - centre) / scale
                missing = ~np.isfinite(values)
                blocks[i].append(np.where(missing, 0.0, values)[:, None])
                blocks[i].append(missing.astype(float)[:, None])
        else:
            top = reference[column].astype(str).value_counts().index[:TOP_CATEGORIES]
            for i, frame in enumerate(frames):
                text = frame[column].astype(str)
                blocks[i].append(
                    np.column_stack(
                        [(text == t).to_numpy(dtype=float) for t in top] + [(~text.isin(top)).to_numpy(dtype=float)]
                    )
                )
    return [np.hstack(b) if b else np.zeros((len(f), 1)) for b, f in zip(blocks, frames)]


def privacy_check(
    real: pd.DataFrame, synthetic: pd.DataFrame, sdtypes: dict[str, str], seed: int = 0
) -> dict[str, Any]:
    """Copied-row share and distance-to-closest-record of ``synthetic`` against ``real``."""
    from sklearn.neighbors import NearestNeighbors

    columns = [c for c in real.columns if c in synthetic.columns and sdtypes.get(c) != "id"]
    if not columns:
        return {"columns": [], "copied_share": None, "note": "no shared non-id columns to compare"}
    real = real[columns].reset_index(drop=True)
    synthetic = synthetic[columns].reset_index(drop=True)
    real_keys = set(_row_keys(real).tolist())
    synthetic_keys = _row_keys(synthetic)
    copied = synthetic_keys.isin(real_keys)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    holdout_n = min(MAX_QUERY, len(real) // 5)
    holdout = real.iloc[order[:holdout_n]]
    reference = real.iloc[order[holdout_n : holdout_n + MAX_REFERENCE]]
    everything = real.iloc[order[:MAX_REFERENCE]]
    query = synthetic.iloc[rng.permutation(len(synthetic))[:MAX_QUERY]]
    all_x, ref_x, syn_x, hold_x = _encode(everything, [everything, reference, query, holdout], sdtypes)
    nearest = NearestNeighbors(n_neighbors=1).fit(all_x).kneighbors(syn_x, return_distance=False)[:, 0]
    syn_d = np.sqrt(((syn_x - all_x[nearest]) ** 2).sum(axis=1))  # exact (brute force carries ~1e-7 noise)
    nn = NearestNeighbors(n_neighbors=1).fit(ref_x) if len(ref_x) else None
    result: dict[str, Any] = {
        "columns": columns,
        "synthetic_rows": int(len(synthetic)),
        "copied_rows": int(copied.sum()),
        "copied_share": round(float(copied.mean()), 6),
        "dcr_median": round(float(np.median(syn_d)), 6),
        "dcr_p05": round(float(np.percentile(syn_d, 5)), 6),
        "dcr_zero_share": round(float((syn_d < 1e-9).mean()), 6),
    }
    if len(hold_x) and nn is not None:
        hold_d = nn.kneighbors(hold_x)[0][:, 0]
        holdout_keys = _row_keys(holdout)
        result.update(
            {
                "holdout_dcr_median": round(float(np.median(hold_d)), 6),
                "holdout_dcr_p05": round(float(np.percentile(hold_d, 5)), 6),
                "holdout_copied_share": round(float(holdout_keys.isin(set(_row_keys(reference).tolist())).mean()), 6),
            }
        )
        baseline = result["holdout_dcr_median"]
        result["dcr_ratio"] = round(result["dcr_median"] / baseline, 4) if baseline > 0 else None
    result["copies_real_rows"] = bool(
        result["copied_share"] > result.get("holdout_copied_share", 0.0) + 0.05
        or (result.get("dcr_ratio") is not None and result["dcr_ratio"] < 0.5)
    )
    return result
