"""The anomaly model's own features, computed on the live path's sorted NumPy arrays.

``bms_anomaly`` derives two kinds of features itself when they are missing from a frame:

* peer features (``PEER_FEATURES``): a reading's value, optionally in decades
  ``log10(max(x, 0) + eps)``, minus the median of its string at the same timestamp;
* history features (``HISTORY_FEATURES``, ``UNCHANGED_RUN``): a peer deviation minus its
  trailing mean over the cell's previous readings (``trailing_mean``), and the run of
  unchanged readings (``unchanged_run``).

``derive_features(frame, wanted)`` computes them over the frame it is given (plus a pandas
frame round trip per call).
Here they are computed on the arrays the service already holds, with the string including
remembered peers and the history the remembered readings; the history features call
``bms_anomaly``'s own ``trailing_mean`` / ``unchanged_run``.

Because the definitions belong to another package, :func:`fast_peer_spec` and
:func:`fast_history_spec` accept them only after checking, on a small synthetic table, that
this module reproduces ``bms_anomaly.features.derive_features`` exactly; otherwise the service
leaves those features to the model (``derive_features`` on the remembered rows).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from bms_schema import columns as C

log = logging.getLogger("bms.live")

#: name -> (source column, eps or None for a plain difference)
PeerSpec = dict[str, tuple[str, float | None]]


def peer_values(median: Any, columns: dict[str, np.ndarray], spec: PeerSpec) -> dict[str, np.ndarray]:
    """The peer features whose source column is present; ``median(values)`` is the string median."""
    out: dict[str, np.ndarray] = {}
    for name, (source, eps) in spec.items():
        values = columns.get(source)
        if values is None:
            continue
        if eps is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log10(np.clip(values, 0.0, None) + eps)
        out[name] = values - median(values)
    return out


def _parse(raw: Any) -> PeerSpec | None:
    if not isinstance(raw, dict):
        return None
    spec: PeerSpec = {}
    for name, value in raw.items():
        if isinstance(value, str):
            spec[str(name)] = (value, None)
        elif isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str) \
                and (value[1] is None or isinstance(value[1], (int, float))):
            spec[str(name)] = (value[0], None if value[1] is None else float(value[1]))
        else:
            return None
    return spec


def _check_table(spec: PeerSpec) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 24
    frame = pd.DataFrame({
        C.DEVICE_ID: np.repeat(["A", "B"], n // 2).astype(object),
        C.TIMESTAMP: pd.to_datetime(np.tile(np.repeat([0, 900, 1800], 4), 2), unit="s", utc=True),
    })
    for source in {s for s, _ in spec.values()}:
        values = np.abs(rng.normal(0.01, 0.02, n))
        values[[3, 17]] = np.nan
        values[5] = 0.0
        frame[source] = values
    return frame


def fast_peer_spec() -> PeerSpec | None:
    """The anomaly package's peer features if this module computes them identically, else None."""
    try:
        from bms_anomaly.features import PEER_FEATURES, derive_features
    except ImportError:
        return None
    spec = _parse(PEER_FEATURES)
    if not spec:
        log.warning("bms_anomaly.features.PEER_FEATURES has an unknown shape: peer features are left to the model")
        return None
    frame = _check_table(spec)
    try:
        theirs = derive_features(frame, list(spec))
    except Exception as exc:  # never let a check break the service
        log.warning("peer feature check failed (%s): peer features are left to the model", exc)
        return None
    from .context import StringGroups

    groups = StringGroups(frame[C.DEVICE_ID].to_numpy(object), frame[C.TIMESTAMP].array.asi8)
    columns = {s: frame[s].to_numpy(dtype=np.float64) for s, _ in spec.values()}
    ours = peer_values(groups.median, columns, spec)
    for name in spec:
        if name not in theirs.columns or name not in ours or not np.allclose(
                theirs[name].to_numpy(dtype=np.float64), ours[name], rtol=1e-9, atol=1e-12, equal_nan=True):
            log.warning("peer feature %s differs from bms_anomaly's definition: peer features are left to the model",
                        name)
            return None
    return spec


# -- history features ---------------------------------------------------------------------
class HistorySpec:
    """How to compute ``bms_anomaly``'s history features from cell-sorted arrays."""

    def __init__(self, module: Any):
        self.changes: dict[str, str] = dict(module.HISTORY_FEATURES)  # name -> peer deviation it detrends
        self.run_name: str = module.UNCHANGED_RUN
        self.run_sources: tuple[str, ...] = tuple(module.UNCHANGED_SOURCES)
        self.window = int(module.BASELINE_READINGS)
        self.min_count = int(module.BASELINE_MIN_READINGS)
        self._trailing_mean = module.trailing_mean
        self._unchanged_run = module.unchanged_run

    @property
    def names(self) -> list[str]:
        return [*self.changes, self.run_name]

    def compute(self, columns: dict[str, np.ndarray], starts: np.ndarray,
                wanted: list[str] | None = None) -> dict[str, np.ndarray]:
        """History features of cell-sorted rows (``starts`` from ``bms_preprocess.grouped.cell_starts``)."""
        out: dict[str, np.ndarray] = {}
        for name, source in self.changes.items():
            if (wanted is None or name in wanted) and source in columns:
                dev = columns[source]
                out[name] = dev - self._trailing_mean(dev, starts, self.window, self.min_count)
        if (wanted is None or self.run_name in wanted) and all(c in columns for c in self.run_sources):
            runs = [self._unchanged_run(columns[c], starts) for c in self.run_sources]
            out[self.run_name] = np.maximum.reduce(runs)
        return out


def fast_history_spec() -> HistorySpec | None:
    """``bms_anomaly``'s history features if :class:`HistorySpec` reproduces them exactly, else None."""
    try:
        from bms_anomaly import features as module

        spec = HistorySpec(module)
        derive_features = module.derive_features
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    rng = np.random.default_rng(1)
    n_cells, n_rows = 3, 40
    frame = pd.DataFrame({
        C.CELL_ID: np.repeat(["A-1", "A-2", "B-1"], n_rows).astype(object),
        C.DEVICE_ID: np.repeat(["A", "A", "B"], n_rows).astype(object),
        C.TIMESTAMP: pd.to_datetime(np.tile(np.arange(n_rows) * 900, n_cells), unit="s", utc=True),
    })
    for source in {*spec.changes.values(), *spec.run_sources}:
        values = np.round(rng.normal(0, 1, n_cells * n_rows), 1)  # rounding makes unchanged runs
        values[[4, 50]] = np.nan
        frame[source] = values
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # theirs sorts internally
    try:
        theirs = derive_features(frame, spec.names)
    except Exception as exc:  # never let a check break the service
        log.warning("history feature check failed (%s): history features are left to the model", exc)
        return None
    ordered = frame.assign(_row=np.arange(len(frame))).sort_values([C.CELL_ID, C.TIMESTAMP], kind="stable")
    from bms_preprocess.grouped import cell_starts

    starts = cell_starts(ordered[C.CELL_ID].to_numpy())
    ours = spec.compute({c: ordered[c].to_numpy(dtype=np.float64) for c in ordered.columns
                         if c not in (C.CELL_ID, C.DEVICE_ID, C.TIMESTAMP, "_row")}, starts)
    rows = ordered["_row"].to_numpy()
    for name in spec.names:
        if name not in theirs.columns or name not in ours or not np.allclose(
                theirs[name].to_numpy(dtype=np.float64)[rows], ours[name], rtol=1e-9, atol=1e-12, equal_nan=True):
            log.warning("history feature %s differs from bms_anomaly's definition: left to the model", name)
            return None
    return spec
