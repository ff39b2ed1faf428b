"""Benchmark of the failure model (issue 16). Prints one JSON object.

On simulated fleets with months of ageing physics (``bms_datagen``; seeds 7301-7304, used by no test
or other benchmark), 6 strings x 24 cells, 180 days hourly, history cut at 70 % of the span:

- **with labels**: the survival model trained on the history before the cut (deaths after it are
  censored) predicts every living cell as of the cut; scored against what happened next:
  ROC-AUC of dying within 14 / 30 days vs each IEEE rule (450 float voltage, 450 SG, 1188 ohmic)
  and the trend-to-threshold estimate, recall of the dying cells in the top 2k at 14 days,
  remaining life (median |p50 - truth| / truth and p10-p90 coverage for cells dying within 60 days),
  state of health vs the simulator's truth;
- **without labels**: ``IsDead`` removed, the model trained on a different simulated fleet;
- **alarms**: as of every 3 days over the month after the cut, the share of the cells that never
  fail (simulator truth) alarmed at least once, and how early the dying cells were alarmed;
- a VRLA fleet (no SG column) and a fleet without discharges, scored without labels.

Run: ``cd /work/main && nice uv run python bench/bench_failure.py [--quick]``
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

GOALS = {
    "roc_auc_14d": 0.90,
    "roc_auc_30d": 0.85,
    "margin_over_best_rule": 0.05,
    "top_2k_recall_14d": 0.80,
    "rul_median_relative_error": 0.25,
    "rul_p10_p90_coverage": [0.70, 0.90],
    "no_labels_roc_auc_14d": 0.85,
    "surviving_cells_alarmed_per_month": 0.10,
}


def _fleet(seed: int, days: float, devices: int, **kwargs: Any) -> tuple[Any, Any]:
    from bms_datagen.simulator import simulate_fleet_with_truth
    from bms_schema.clean import clean_readings

    sim = simulate_fleet_with_truth(
        devices=devices, cells_per_device=24, days=days, interval_minutes=60, seed=seed, failure_rate=0.08, **kwargs
    )
    frame, _ = clean_readings(sim.readings)
    return frame, sim


def _r(x: Any, digits: int = 3) -> Any:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def score_at_cut(model: Any, history: Any, frame: Any, sim: Any, cut: Any) -> dict[str, Any]:
    """The model's table as of ``cut`` against what happened next (``frame`` is the full fleet)."""
    import pandas as pd
    from bms_failure.features import build_feature_grid
    from bms_failure.trends import rule_scores, trend_score
    from sklearn.metrics import roc_auc_score

    table = model.predict(history)
    last = build_feature_grid(history, model.config).last_rows().set_index("CellID").loc[table["CellID"]].reset_index()
    death = frame.loc[frame["IsDead"] == 1].groupby("CellID")["Timestamp"].min().reindex(table["CellID"])
    alive = ((death.isna() | (death > cut)).to_numpy()) & ~table["AlreadyDead"].to_numpy()
    days = ((death - cut).dt.total_seconds() / 86400.0).to_numpy()
    rules = rule_scores(last)
    trend = trend_score(last)
    out: dict[str, Any] = {"living_cells": int(alive.sum()), "dead_at_cut": int(table["AlreadyDead"].sum())}
    for h in (14, 30):
        y = np.nan_to_num(days <= h)[alive].astype(bool)
        p = table[f"FailureProbability{h}d"].to_numpy()[alive]
        both = 0 < y.sum() < len(y)
        auc = roc_auc_score(y, p) if both else None
        rule_auc = {k: _r(roc_auc_score(y, v[alive])) for k, v in rules.items()} if both else {}
        best = max(rule_auc, key=lambda k: rule_auc[k]) if rule_auc else None
        out[f"{h}d"] = {
            "dying": int(y.sum()),
            "model_roc_auc": _r(auc),
            "rules_roc_auc": rule_auc,
            "best_rule": best,
            "model_minus_best_rule": _r(auc - rule_auc[best]) if best else None,
            "trend_to_threshold_roc_auc": _r(roc_auc_score(y, trend[alive])) if both else None,
        }
        if h == 14 and y.sum():
            k = int(y.sum())
            out[f"{h}d"]["top_2k_recall"] = _r(y[np.argsort(-p)[: 2 * k]].sum() / k)
    near = alive & np.nan_to_num(days <= 60).astype(bool)
    truth = days[near]
    p50, p10, p90 = (table[c].to_numpy()[near] for c in ("RemainingLifeDays", "RemainingLifeP10", "RemainingLifeP90"))
    out["remaining_life_dying_within_60d"] = {
        "cells": int(near.sum()),
        "median_relative_error": _r(np.median(np.abs(p50 - truth) / truth)) if near.any() else None,
        "p10_p90_coverage": _r(((p10 <= truth) & (truth <= p90)).mean()) if near.any() else None,
        "trend_to_threshold_median_relative_error": _r(
            np.nanmedian(np.abs(table["TrendDaysToThreshold"].to_numpy()[near] - truth) / truth)
        )
        if near.any()
        else None,
    }
    # Where the error comes from: cells whose trend already heads for a threshold at the cut, versus
    # cells that still look healthy (sudden failures, wear-out not yet visible); by failure mode.
    if near.any():
        fired = np.isfinite(table["TrendDaysToThreshold"].to_numpy()[near])
        err = np.abs(p50 - truth) / truth
        inside = (p10 <= truth) & (truth <= p90)
        mode = sim.cells.set_index("CellID")["FailureMode"].reindex(table["CellID"]).to_numpy()[near]
        rl = out["remaining_life_dying_within_60d"]
        for name, m in (("trend_visible_at_cut", fired), ("healthy_looking_at_cut", ~fired)):
            rl[name] = {
                "cells": int(m.sum()),
                "median_relative_error": _r(np.median(err[m])) if m.any() else None,
                "p10_p90_coverage": _r(inside[m].mean()) if m.any() else None,
            }
        rl["by_mode"] = {
            str(k): {"cells": int((mode == k).sum()), "median_relative_error": _r(np.median(err[mode == k]))}
            for k in sorted(set(mode.tolist()))
        }
    if sim.soh is not None:
        soh = sim.soh.loc[sim.soh["Timestamp"] <= cut].sort_values("Timestamp").groupby("CellID").tail(1)
        soh = soh.set_index("CellID")["StateOfHealth"].reindex(table["CellID"]).to_numpy()
        est = table["StateOfHealth"].to_numpy()
        ok = alive & np.isfinite(soh) & np.isfinite(est)
        out["state_of_health_mae_points"] = _r(np.mean(np.abs(est[ok] - soh[ok])), 2)
        out["state_of_health_truth_range"] = [_r(np.min(soh[ok]), 1), _r(np.max(soh[ok]), 1)]
    alarmed = table.loc[table["Alarm"]]
    out["alarms_at_cut"] = int(len(alarmed))
    out["alarm_example"] = (
        alarmed.iloc[0][["CellID", "AlarmTrigger", "AlarmLeadDays", "RecommendedAction"]].to_dict()
        if len(alarmed)
        else None
    )
    if out["alarm_example"]:
        out["alarm_example"]["AlarmLeadDays"] = _r(out["alarm_example"]["AlarmLeadDays"], 1)
    _ = pd
    return out


def alarm_month(model: Any, frame: Any, sim: Any, cut: Any, every_days: int = 3) -> dict[str, Any]:
    """Alarms over the month after ``cut``: share of never-failing cells alarmed, lead of dying cells."""
    import pandas as pd

    healthy = set(sim.cells.loc[sim.cells["Censored"], "CellID"])
    death = frame.loc[frame["IsDead"] == 1].groupby("CellID")["Timestamp"].min()
    first: dict[str, Any] = {}
    unlabelled = frame.drop(columns="IsDead")
    for d in range(0, 31, every_days):  # a dozen as-of points
        at = cut + pd.Timedelta(days=d)
        table = model.predict(unlabelled.loc[unlabelled["Timestamp"] <= at])
        for cell in table.loc[table["Alarm"], "CellID"]:
            first.setdefault(cell, at)
    dying = death.loc[(death > cut) & (death <= cut + pd.Timedelta(days=30))]
    caught = [c for c in dying.index if c in first and first[c] < dying[c]]
    leads = [(dying[c] - first[c]).total_seconds() / 86400.0 for c in caught]
    return {
        "surviving_cells": len(healthy),
        "surviving_cells_alarmed_in_the_month": _r(len(healthy & set(first)) / max(len(healthy), 1)),
        "cells_dying_in_the_month": int(len(dying)),
        "caught_before_death": len(caught),
        "lead_days_median": _r(np.median(leads), 1) if leads else None,
        "other_alarmed_cells": len(set(first) - healthy - set(dying.index)),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    os.environ.setdefault("BMS_WORKSPACE", tempfile.mkdtemp(prefix="bench-failure-"))
    from bms_failure.training import train_failure_model

    days, devices = (120, 4) if quick else (180, 6)
    figures: dict[str, Any] = {
        "threads": int(os.environ.get("BMS_THREADS", "1")),
        "goals": GOALS,
        "fleet": f"{devices} strings x 24 cells, {days} days hourly, failure_rate 0.08/month, "
        "seeds 7301 (scored), 7302 (training fleet for the unlabelled case)",
    }
    t0 = time.perf_counter()
    frame, sim = _fleet(7301, days, devices)
    other, other_sim = _fleet(7302, days, devices)
    figures["simulate_s"] = round(time.perf_counter() - t0, 1)
    start, end = frame["Timestamp"].min(), frame["Timestamp"].max()
    cut = start + 0.7 * (end - start)
    history = frame.loc[frame["Timestamp"] <= cut].reset_index(drop=True)
    figures["cells"] = int(frame["CellID"].nunique())
    figures["failed_cells_in_span"] = int((~sim.cells["Censored"]).sum())
    figures["failure_modes"] = sim.cells["FailureMode"].value_counts().to_dict()

    t0 = time.perf_counter()
    own = train_failure_model(history, 7.0, seed=0)
    figures["train_with_validation_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    figures["with_labels"] = score_at_cut(own.model, history, frame, sim, cut)
    figures["with_labels"]["max_horizon_days"] = _r(own.model.max_horizon_days, 1)
    figures["predict_s"] = round(time.perf_counter() - t0, 2)
    oof = own.metrics.get("horizons", {})
    figures["with_labels"]["out_of_fold_validation"] = {
        k: {
            "model_roc_auc": _r(v.get("model_roc_auc")),
            "best_rule": v.get("best_rule"),
            "best_rule_roc_auc": _r(v.get("best_rule_roc_auc")),
            "positives": v.get("positives"),
        }
        for k, v in oof.items()
    }
    figures["with_labels"]["out_of_fold_remaining_life"] = {
        k: _r(v) if isinstance(v, float) else v for k, v in (own.metrics.get("remaining_life") or {}).items()
    }

    t0 = time.perf_counter()
    sim_model = train_failure_model(other, 7.0, seed=0, validate=False).model
    figures["train_other_fleet_s"] = round(time.perf_counter() - t0, 1)
    figures["without_labels"] = score_at_cut(sim_model, history.drop(columns="IsDead"), frame, sim, cut)
    figures["without_labels"]["max_horizon_days"] = _r(sim_model.max_horizon_days, 1)
    figures["alarms_month_after_cut"] = alarm_month(sim_model, frame, sim, cut)

    if not quick:
        variants: dict[str, Any] = {}
        for name, kwargs, seeds in (
            ("vrla", {"chemistry": "vrla"}, (7303, 7304)),
            ("no_discharge", {"discharge_every_days": 0.0}, (7305, 7306)),
        ):
            v_frame, v_sim = _fleet(seeds[0], days, 4, **kwargs)
            v_train, _ = _fleet(seeds[1], days, 4, **kwargs)
            v_model = train_failure_model(v_train, 7.0, seed=0, validate=False).model
            v_cut = v_frame["Timestamp"].min() + 0.7 * (v_frame["Timestamp"].max() - v_frame["Timestamp"].min())
            v_hist = v_frame.loc[v_frame["Timestamp"] <= v_cut].drop(columns="IsDead")
            variants[name] = score_at_cut(v_model, v_hist, v_frame, v_sim, v_cut)
            variants[name]["seeds"] = list(seeds)
        figures["variants_without_labels"] = variants
    print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
