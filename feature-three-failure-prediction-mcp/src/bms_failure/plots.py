"""PNG figures: the risk ranking, what drives risk, and model vs rule on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import FeatureConfig, readable

BAND_COLOURS = {
    "dead": "#222222",
    "high": "#d62728",
    "medium": "#ff7f0e",
    "low": "#2ca02c",
    "insufficient_history": "#aaaaaa",
}


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
    ax.axvline(
        alarm_threshold, color="#d62728", linestyle="--", linewidth=1, label=f"alarm threshold {alarm_threshold:.2f}"
    )
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
        ax.barh(
            y + offset,
            shown["mean_high_risk"],
            height=height,
            color="#d62728",
            label="mean contribution, high-risk cells",
        )
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlabel("contribution to the log-odds of failure (XGBoost pred_contribs)")
    ax.set_title("What drives failure risk")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def model_vs_rule(evaluation: pd.DataFrame, path: Path, horizon: str = "14d") -> Path | None:
    """ROC curves of the model and the IEEE rules on the held-out test samples at one horizon."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from .trends import RULES

    if len(evaluation) == 0 or f"Label{horizon}" not in evaluation.columns:
        return None
    known = evaluation[f"Label{horizon}"].notna().to_numpy()
    label = evaluation.loc[known, f"Label{horizon}"].to_numpy(dtype=np.int64)
    if label.sum() == 0 or label.sum() == len(label):
        return None
    fig, ax = _figure(6, 4.5)
    curves = {"survival model": evaluation.loc[known, f"Probability{horizon}"].to_numpy()}
    curves.update(
        {
            RULES[name]: evaluation.loc[known, f"Rule_{name}"].to_numpy()
            for name in RULES
            if f"Rule_{name}" in evaluation.columns
        }
    )
    for (name, score), colour in zip(curves.items(), ("#1f77b4", "#d62728", "#ff7f0e", "#2ca02c")):
        fpr, tpr, _ = roc_curve(label, score)
        ax.plot(fpr, tpr, color=colour, label=f"{name} (AUC {roc_auc_score(label, score):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate (cells that survive the horizon)")
    ax.set_ylabel(f"true positive rate (cells dying within {horizon})")
    ax.set_title(f"Held-out cells, later period: model vs IEEE rules, {horizon}")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
