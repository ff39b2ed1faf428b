"""PNG figures: the risk ranking, what drives risk, and model vs rule on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import FeatureConfig, readable

BAND_COLOURS = {"dead": "#222222", "high": "#d62728", "medium": "#ff7f0e", "low": "#2ca02c",
                "insufficient_history": "#aaaaaa"}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _save(fig: Any, path: Path) -> Path:
    from bms_schema.atomic import atomic_savefig

    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=110)


def risk_ranking(table: pd.DataFrame, alarm_threshold: float, path: Path, top: int = 25) -> Path:
    """Horizontal bars of the ``top`` living cells by failure probability (dead cells are counted in the title)."""
    living = table.loc[~table["AlreadyDead"] & table["FailureProbability"].notna()]
    shown = living.head(top).iloc[::-1]
    n_dead = int(table["AlreadyDead"].sum())
    fig, ax = _figure(8, max(3.0, 0.3 * len(shown) + 1.2))
    prob = shown["FailureProbability"].fillna(0.0).to_numpy()
    colours = [BAND_COLOURS.get(b, "#777777") for b in shown["RiskBand"]]
    ax.barh(shown["CellID"].astype(str), prob, color=colours)
    ax.axvline(alarm_threshold, color="#d62728", linestyle="--", linewidth=1, label=f"alarm threshold {alarm_threshold:.2f}")
    horizon = float(table["HorizonDays"].iloc[0]) if len(table) else float("nan")
    upper = max(float(prob.max()) if len(prob) else 0.0, alarm_threshold) * 1.15
    ax.set_xlim(0, min(1.02, max(upper, 0.05)))
    ax.set_xlabel(f"probability of death within {horizon:g} days")
    ax.set_title(f"Failure risk ranking: top {len(shown)} of {len(living)} living cells ({n_dead} already dead)")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=b) for b, c in BAND_COLOURS.items() if b in set(shown["RiskBand"])]
    ax.legend(handles=[*handles, *ax.get_legend_handles_labels()[0]], loc="lower right", fontsize=8)
    return _save(fig, path)


def risk_drivers(contributions: pd.DataFrame, config: FeatureConfig, path: Path, top: int = 12) -> Path:
    """Mean |XGBoost contribution| per feature over the scored cells, and the mean push on high-risk cells."""
    shown = contributions.head(top).iloc[::-1]
    fig, ax = _figure(9, max(3.0, 0.35 * len(shown) + 1.2))
    names = [readable(f, config) for f in shown["feature"]]
    y = np.arange(len(shown))
    paired = "mean_high_risk" in shown.columns and bool((shown["mean_high_risk"] != 0).any())
    offset, height = (0.2, 0.4) if paired else (0.0, 0.7)
    ax.barh(y - offset, shown["mean_abs_all"], height=height, color="#1f77b4", label="mean |contribution|, all cells")
    if paired:
        ax.barh(y + offset, shown["mean_high_risk"], height=height, color="#d62728",
                label="mean contribution, high-risk cells")
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlabel("contribution to the log-odds of failure (XGBoost pred_contribs)")
    ax.set_title("What drives failure risk")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def model_vs_rule(evaluation: pd.DataFrame, path: Path) -> Path | None:
    """Precision-recall curves of the model and the IEEE 450 style rule on the held-out test samples."""
    from sklearn.metrics import precision_recall_curve

    from .evaluation import binary_metrics

    label = evaluation["Label"].to_numpy()
    if label.sum() == 0 or label.sum() == len(label):
        return None
    fig, ax = _figure(6, 4.5)
    prec, rec, _ = precision_recall_curve(label, evaluation["Probability"].to_numpy())
    ax.plot(rec, prec, color="#1f77b4", label="failure model")
    rule = binary_metrics(label, evaluation["RuleAlarm"].to_numpy(dtype=bool))
    if rule["precision"] is not None:
        ax.scatter([rule["recall"]], [rule["precision"]], color="#d62728", zorder=3,
                   label="IEEE 450 style rule (2.13 V / SG -0.025)")
    ax.axhline(label.mean(), color="grey", linestyle=":", label=f"base rate {label.mean():.3f}")
    ax.set_xlabel("recall (deaths within the horizon that were flagged)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("Held-out cells, later period: model vs rule")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)
