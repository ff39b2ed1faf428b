"""One PNG per forecast: a panel per parameter with recent history, forecast and interval."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from bms_schema import columns as C
from bms_schema.atomic import atomic_savefig


def plot_forecast(
    history: pd.DataFrame, forecast: pd.DataFrame, cell_id: str, path: Path, coverage: float, history_points: int = 96
) -> Path:
    """``history``: the cell's canonical rows; ``forecast``: the long forecast table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(forecast["Target"]))
    fig, axes = plt.subplots(len(targets), 1, figsize=(10, 2.4 * len(targets)), sharex=True, squeeze=False)
    recent = history.sort_values(C.TIMESTAMP).tail(history_points)
    for ax, target in zip(axes[:, 0], targets):
        part = forecast.loc[forecast["Target"] == target]
        ax.plot(recent[C.TIMESTAMP], recent[target], color="0.3", lw=1, label="history")
        ax.plot(part["Timestamp"], part["Forecast"], color="tab:blue", lw=1.5, label="forecast")
        ax.fill_between(
            part["Timestamp"],
            part["Lower"],
            part["Upper"],
            color="tab:blue",
            alpha=0.2,
            label=f"{coverage:.0%} interval",
        )
        unit = C.UNITS.get(target, "")
        ax.set_ylabel(f"{target}\n({unit})" if unit else target, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[0, 0].set_title(f"Cell {cell_id}: {len(forecast) // max(len(targets), 1)}-step forecast")
    fig.autofmt_xdate()
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=90)
