"""Figures: anomaly score over time for the worst cells (PNG), and a 3D scatter (HTML + PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.atomic import atomic_path, atomic_savefig
from bms_schema.errors import InputError

from .hybrid import FLAG, KIND, SCORE

DEFAULT_AXES = (C.VOLTAGE, C.CURRENT, C.TEMPERATURE)
KIND_COLOURS = {"normal": "#5b6b7b", "statistical": "#d62728", "sensor_fault": "#ff7f0e", "out_of_range": "#9467bd"}


def plot_scores_over_time(table: pd.DataFrame, cells: list[str], threshold: float, path: Path) -> Path:
    """One panel per cell: fused score over time, the threshold, flagged readings marked by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = cells or table[C.CELL_ID].drop_duplicates().astype(str).head(1).tolist()
    fig, axes = plt.subplots(len(cells), 1, figsize=(11, 2.4 * len(cells) + 0.6), sharex=True, squeeze=False)
    by_cell = table[table[C.CELL_ID].astype(str).isin(cells)].sort_values(C.TIMESTAMP)
    for ax, cell in zip(axes[:, 0], cells):
        rows = by_cell[by_cell[C.CELL_ID].astype(str) == cell]
        ax.plot(rows[C.TIMESTAMP], rows[SCORE], lw=0.8, color="#1f77b4", label="AnomalyScore")
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label=f"threshold {threshold:.2f}")
        for kind in ("statistical", "out_of_range"):
            hit = rows[(rows[FLAG] == 1) & (rows[KIND] == kind)]
            if len(hit):
                ax.scatter(hit[C.TIMESTAMP], hit[SCORE], s=12, color=KIND_COLOURS[kind], label=kind, zorder=3)
        faults = rows[rows[KIND] == "sensor_fault"]
        if len(faults):  # data-quality events as ticks along the bottom, not on the (imputed) score
            ax.scatter(
                faults[C.TIMESTAMP],
                np.zeros(len(faults)),
                marker="|",
                s=30,
                lw=0.6,
                color=KIND_COLOURS["sensor_fault"],
                label="sensor_fault (0xFFFF)",
                zorder=2,
            )
        ax.set_ylabel(f"{cell}\nscore")
        ax.legend(loc="upper right", fontsize=7, ncol=5)
    axes[0, 0].set_title("Fused anomaly score (mean -log10 tail probability) over time, worst cells")
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=110)


def check_axes(frame: pd.DataFrame, axes: tuple[str, str, str]) -> None:
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    for name, column in zip(("x", "y", "z"), axes):
        if column not in frame.columns:
            raise InputError(
                f"{name} axis column '{column}' is not in the result table; numeric columns are: {', '.join(numeric)}"
            )
        if column not in numeric:
            raise InputError(f"{name} axis column '{column}' is not numeric")
    if len(set(axes)) < 3:
        raise InputError(f"x, y and z must be three different columns, got {axes}")


#: Columns that make a table a detect_anomalies result (what the 3D plot colours and labels by).
RESULT_COLUMNS = ("AnomalyFlag", "AnomalyScore")
#: Beyond this magnitude a value is no measurement (1e308, overflowed registers): not plotted.
PLOT_LIMIT = 1e12


def check_result_table(frame: pd.DataFrame, name: str) -> None:
    """Refuse a table that is not an anomaly result, naming the missing columns."""
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"'{name}' is not an anomaly result: it lacks column(s) {', '.join(missing)} that "
            "detect_anomalies writes; run detect_anomalies on it first and plot its anomalies table"
        )


def plottable_rows(frame: pd.DataFrame, axes: tuple[str, str, str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows whose three axis values are finite numbers of sane magnitude; counts of dropped values per axis."""
    keep = np.ones(len(frame), dtype=bool)
    dropped: dict[str, int] = {}
    for column in axes:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isnan(values) & ~(np.abs(values) < PLOT_LIMIT)  # inf, -inf, 1e308 (missing stays: plotted as gap)
        if bad.any():
            dropped[column] = int(bad.sum())
        keep &= ~bad
    if not keep.any():
        detail = ", ".join(f"{c}: {n}" for c, n in dropped.items())
        raise InputError(
            f"no reading can be plotted: every row has an infinite or out-of-range value "
            f"(|value| >= {PLOT_LIMIT:g}) on an axis ({detail}); pick other axes or fix the data"
        )
    return frame.loc[keep], dropped


def sample_for_plot(frame: pd.DataFrame, max_points: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows, drawn uniformly at random (no kind is favoured), so the share
    of anomalies in the picture is the share in the data."""
    if len(frame) <= max_points:
        return frame
    rng = np.random.default_rng(seed)
    return frame.iloc[np.sort(rng.choice(len(frame), max_points, replace=False))]


def axis_label(column: str) -> str:
    """``CellVoltage [V]``: the column with its unit when the schema knows one."""
    units = {
        **C.UNITS,
        "VoltageRate": "V/h",
        "TemperatureRate": "degC/h",
        "TempAboveAmbient": "degC",
        "VoltageDevString": "V",
        "ResistanceProxy": "ohm",
        "StateOfCharge": "%",
    }
    unit = units.get(column, "")
    return f"{column} [{unit}]" if unit else column


def plot_3d(
    frame: pd.DataFrame,
    axes: tuple[str, str, str],
    html_path: Path,
    png_path: Path,
    embed_plotly: bool = False,
    total_rows: int | None = None,
) -> dict[str, int]:
    """Interactive plotly 3D scatter (HTML) and a static matplotlib one (PNG), coloured by anomaly kind.

    The HTML loads plotly.js from ``plotly.min.js`` copied beside it from the installed plotly
    package (or embeds it with ``embed_plotly``): it works offline and names no other host.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from bms_schema.offline import PLOTLY_JS, plotly_js_beside

    x, y, z = axes
    total = total_rows if total_rows is not None else len(frame)
    shown = "all" if total == len(frame) else f"a uniform random sample of {len(frame):,} of {total:,}"
    title = f"BMS readings coloured by anomaly kind ({shown} readings)"
    kinds = frame[KIND].astype(str) if KIND in frame.columns else pd.Series("normal", index=frame.index)
    hover_cols = [c for c in (C.CELL_ID, C.TIMESTAMP, SCORE) if c in frame.columns]
    fig = go.Figure()
    counts: dict[str, int] = {}
    for kind, colour in KIND_COLOURS.items():
        part = frame[kinds == kind]
        if part.empty:
            continue
        counts[kind] = len(part)
        text = None
        for col in hover_cols:
            values = part[col].round(3) if col == SCORE else part[col]
            piece = col + "=" + values.astype(str)
            text = piece if text is None else text + " | " + piece
        if kind == "statistical" and "AnomalyReason" in part.columns:  # the reason only where it is short and useful
            text = text + " | " + part["AnomalyReason"].astype(str) if text is not None else part["AnomalyReason"]
        fig.add_trace(
            go.Scatter3d(
                x=part[x],
                y=part[y],
                z=part[z],
                mode="markers",
                name=f"{kind} ({len(part)})",
                text=text,
                marker={
                    "size": 2 if kind == "normal" else 4,
                    "color": colour,
                    "opacity": 0.35 if kind == "normal" else 0.9,
                },
            )
        )
    fig.update_layout(
        scene={"xaxis_title": axis_label(x), "yaxis_title": axis_label(y), "zaxis_title": axis_label(z)},
        title=title,
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
    )
    if embed_plotly:
        include: bool | str = True
    else:
        plotly_js_beside(Path(html_path).parent)
        include = PLOTLY_JS
    with atomic_path(html_path) as tmp:
        fig.write_html(tmp, include_plotlyjs=include, full_html=True)

    mfig = plt.figure(figsize=(8, 6.5))
    ax = mfig.add_subplot(projection="3d")
    for kind, colour in KIND_COLOURS.items():
        part = frame[kinds == kind]
        if part.empty:
            continue
        ax.scatter(
            part[x],
            part[y],
            part[z],
            s=4 if kind == "normal" else 8,
            c=colour,
            alpha=0.5 if kind == "normal" else 0.9,
            label=f"{kind} ({len(part)})",
        )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.set_zlabel(axis_label(z))
    ax.legend(loc="upper left", fontsize=7)
    atomic_savefig(mfig, png_path, dpi=110)
    return counts
