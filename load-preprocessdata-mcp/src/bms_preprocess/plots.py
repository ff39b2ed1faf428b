"""PNG figures a person would look at: data quality per cell over time, distributions before/after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bms_schema.atomic import atomic_savefig

from .profile import DataProfile


def _pyplot():  # lazy: matplotlib is heavy and needs the Agg backend in a server
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def human_duration(seconds: float) -> str:
    """``40960`` -> ``11.4 h``; ``900`` -> ``15 min``; ``172800`` -> ``2 days``."""
    seconds = float(seconds)
    for size, unit in ((86_400, "days"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            value = seconds / size
            text = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
            return f"{text} {'day' if unit == 'days' and text == '1' else unit}"
    return f"{seconds:g} s"


def plot_quality_timeline(profile: DataProfile, path: Path) -> Path:
    """Heatmaps (cells x time): share of sentinel (0xFFFF) readings and of readings with a missing value."""
    import pandas as pd

    plt = _pyplot()
    cells, starts, sentinel = profile.timeline_matrix("sentinel")
    _, _, missing = profile.timeline_matrix("missing")
    height = max(3.0, 0.22 * len(cells) + 1.8)
    fig, axes = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    fig.subplots_adjust(left=0.08, right=0.94, bottom=0.22, top=0.9, wspace=0.22)
    times = pd.to_datetime(starts, unit="s", utc=True) if len(starts) else []
    for ax, matrix, title in (
        (axes[0], sentinel, "sentinel (0xFFFF) readings"),
        (axes[1], missing, "readings with a missing/impossible value"),
    ):
        shown = np.ma.masked_invalid(matrix) if matrix.size else np.zeros((1, 1))
        image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="magma_r", vmin=0, vmax=1)
        ax.set_title(f"Share of {title}")
        ax.set_xlabel(f"time (UTC), bins of {human_duration(profile.bin_seconds)}")
        if len(times):
            ticks = np.linspace(0, len(times) - 1, min(6, len(times))).astype(int)
            ax.set_xticks(ticks)
            ax.set_xticklabels(
                [times[i].strftime("%Y-%m-%d %H:%M") for i in ticks], rotation=30, ha="right", fontsize=7
            )
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of readings in the bin")
    axes[0].set_yticks(range(len(cells)))
    axes[0].set_yticklabels(cells, fontsize=7)
    axes[0].set_ylabel("cell (DeviceID-CellNumber)")
    fig.suptitle("Data quality per cell over time")
    return atomic_savefig(fig, path, dpi=100)


def plot_distributions(profile: DataProfile, path: Path) -> Path:
    """Per measurement: histogram of observed values (before) vs all values after imputation, and imputed only."""
    plt = _pyplot()
    names = [n for n in profile.edges if n in profile.before or n in profile.after]
    cols = min(3, max(1, len(names)))
    rows = max(1, int(np.ceil(len(names) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.93, wspace=0.28, hspace=0.4)
    for ax, name in zip(axes.ravel(), names):
        edges = profile.edges[name]
        centers = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        for store, label, style in (
            (profile.before, "before (observed)", "-"),
            (profile.after, "after imputation", "--"),
            (profile.imputed, "imputed values only", ":"),
        ):
            counts = store.get(name)
            if counts is None or counts.sum() == 0:
                continue
            ax.step(centers, counts / (counts.sum() * width), where="mid", linestyle=style, label=label)
        unit = {
            "CellVoltage": "V",
            "CellTemperature": "degC",
            "InstantaneousCurrent": "A",
            "AmbientTemperature": "degC",
            "StringVoltage": "V",
        }.get(name, "")
        ax.set_title(name)
        ax.set_xlabel(f"{name} [{unit}]" if unit else name)
        ax.set_ylabel("density (1/unit)")
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    return atomic_savefig(fig, path, dpi=100)
