"""Small running summaries for the plots: quality timeline per cell, value histograms before/after.

Filled block by block (bounded memory): the timeline keeps at most ``max_bins`` time bins
per cell by doubling the bin width when needed; histograms use fixed edges chosen from the
first block (values outside are counted in the edge bins).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.grouped import epoch_seconds
from bms_schema.interpolate import imputed_column

HIST_BINS = 60


class DataProfile:
    def __init__(self, start_bin_seconds: float = 5.0, max_bins: int = 240):
        self.bin_seconds = start_bin_seconds
        self.max_bins = max_bins
        self.timeline: pd.DataFrame | None = None  # index (cell, bin) -> rows, sentinel, out_of_range, missing
        self.edges: dict[str, np.ndarray] = {}
        self.before: dict[str, np.ndarray] = {}
        self.after: dict[str, np.ndarray] = {}
        self.imputed: dict[str, np.ndarray] = {}

    # -- accumulate ------------------------------------------------------------------------
    def _hist(self, name: str, values: np.ndarray) -> np.ndarray:
        values = values[np.isfinite(values)]
        edges = self.edges.get(name)
        if edges is None:
            if len(values) == 0:
                return np.zeros(0)
            lo, hi = np.percentile(values, [0.5, 99.5])
            pad = (hi - lo) * 0.15 or max(abs(lo) * 0.01, 1e-3)
            edges = np.linspace(lo - pad, hi + pad, HIST_BINS + 1)
            self.edges[name] = edges
        clipped = np.clip(values, edges[0], edges[-1])
        return np.histogram(clipped, bins=edges)[0]

    def _add_hist(self, store: dict[str, np.ndarray], name: str, values: np.ndarray) -> None:
        counts = self._hist(name, values)
        if len(counts) == 0:
            return
        store[name] = store[name] + counts if name in store else counts

    def add_clean(self, block: pd.DataFrame, columns: list[str]) -> None:
        """A cleaned block before imputation: timeline counts and 'before' histograms."""
        seconds = epoch_seconds(block[C.TIMESTAMP])
        missing = np.zeros(len(block), dtype=bool)
        for name in columns:
            missing |= block[name].isna().to_numpy()
        part = (
            pd.DataFrame(
                {
                    "cell": block[C.CELL_ID].to_numpy(),
                    "bin": np.floor(seconds / self.bin_seconds).astype(np.int64),
                    "rows": 1,
                    "sentinel": block[C.SENSOR_FAULT].to_numpy(dtype=bool) if C.SENSOR_FAULT in block else False,
                    "out_of_range": block[C.OUT_OF_RANGE].to_numpy(dtype=bool) if C.OUT_OF_RANGE in block else False,
                    "missing": missing,
                }
            )
            .groupby(["cell", "bin"])
            .sum()
        )
        self.timeline = part if self.timeline is None else self.timeline.add(part, fill_value=0)
        while self.timeline.index.get_level_values("bin").nunique() > self.max_bins:
            self._coarsen()
        for name in columns:
            self._add_hist(self.before, name, block[name].to_numpy(dtype=np.float64))

    def _coarsen(self) -> None:
        assert self.timeline is not None
        frame = self.timeline.reset_index()
        frame["bin"] = frame["bin"] // 2
        self.bin_seconds *= 2
        self.timeline = frame.groupby(["cell", "bin"]).sum()

    def add_final(self, block: pd.DataFrame, columns: list[str]) -> None:
        """A block after imputation: 'after' histograms and histograms of imputed values only."""
        for name in columns:
            values = block[name].to_numpy(dtype=np.float64)
            self._add_hist(self.after, name, values)
            flag = imputed_column(name)
            if flag in block.columns:
                self._add_hist(self.imputed, name, values[block[flag].to_numpy(dtype=bool)])

    # -- read out ------------------------------------------------------------------------------
    def timeline_matrix(self, field: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(cells, bin start times in epoch seconds, fraction matrix cells x bins) of ``field``."""
        if self.timeline is None:
            return [], np.zeros(0), np.zeros((0, 0))
        frame = self.timeline.reset_index()
        bins = np.sort(frame["bin"].unique())
        cells = sorted(frame["cell"].unique(), key=_cell_key)
        rows = frame.pivot_table(index="cell", columns="bin", values="rows", aggfunc="sum").reindex(
            index=cells, columns=bins
        )
        vals = frame.pivot_table(index="cell", columns="bin", values=field, aggfunc="sum").reindex(
            index=cells, columns=bins
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = (vals / rows).to_numpy(dtype=np.float64)
        return cells, bins * self.bin_seconds, fraction


def _cell_key(cell: str) -> tuple[str, int, str]:
    device, _, number = str(cell).rpartition("-")
    return (device, int(number) if number.isdigit() else 0, number)
