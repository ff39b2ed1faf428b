"""Benchmark of the failure model (issue 16). Prints one JSON object.

On simulated fleets with months of ageing physics (``bms_datagen``), 6 strings x 24 cells, 180 days
hourly, failure rate 8 % a month, history cut at 70 % of the span, every living cell scored as of the
cut against what happened next. Several scored fleets are pooled (one fleet has only ~5 cells dying
within 14 days of its cut, so one cell moves the ROC-AUC by ~0.05); each fleet's own figures are kept.

- **with labels**: per scored fleet, the survival model trained on that fleet's history before the cut
  (deaths after it are censored), pooled with the simulated training fleet below as a prior
  (``train_failure_model(..., prior=...)``: a fleet's own history holds few deaths; early stopping,
  calibration and the alarm threshold use the fleet's own cells; each prior sample weighs
  ``--prior-weight`` (default 3, chosen on development seeds 7301/7307/7308: weight 1 / 3 / 10 gave
  ROC-AUC 30 d 0.901 / 0.921 / 0.891, RUL median relative error 0.49 / 0.48 / 0.57); ``--no-prior``: its
  own history only;
- **without labels**: ``IsDead`` removed, one model trained on a different simulated fleet (18 strings);
- both scored for ROC-AUC of dying within 14 / 30 days vs each IEEE rule (450 float voltage, 450 SG,
  1188 ohmic) and the trend-to-threshold estimate, recall of the dying cells in the top 2k at 14 days,
  remaining life (median |p50 - truth| / truth and p10-p90 coverage for cells dying within 60 days),
  state of health vs the simulator's truth;
- **where the limit is**: the same figures without the sudden failures among the dying cells (internal
  shorts: 1.5-4 days of warning by design, so no model can rank them weeks ahead), and the ranking by
  the simulator's true state of health at the cut (an oracle no BMS reading gives);
- **alarms**: as of every 3 days over the month after the cut, the share of the cells that never fail
  (simulator truth) alarmed at least once, and how early the dying cells were alarmed;
- a VRLA fleet (no SG column) and a fleet without discharges, scored without labels.

Run: ``nice uv run python bench/bench_failure.py [--quick] [--skip-variants] [--no-prior] [--prior-weight W] [--seeds S1,S2,...,T]`` - the
scored fleets' seeds, then the seed of the training fleet for the unlabelled case (default
7301,7307,7308,7302; the variants use the next four seeds after the largest: 7309-7312 by default:
VRLA scored / its training fleet, then no-discharge scored / its training fleet). ``--skip-variants``
(development) leaves the VRLA and no-discharge fleets out. The JSON records the load average at the
start and the end and the wall time.
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
DEFAULT_SEEDS = (7301, 7307, 7308, 7302)
#: Failure modes whose warning is short by design (the simulator's internal short: 1.5-4 days).
SUDDEN = ("internal_short",)
HORIZONS = (14, 30)


def _fleet(seed: int, days: float, devices: int, **kwargs: Any) -> tuple[Any, Any]:
    from bms_datagen.simulator import simulate_fleet_with_truth
    from bms_schema.clean import clean_readings

    sim = simulate_fleet_with_truth(
        devices=devices, cells_per_device=24, days=days, interval_minutes=60, seed=seed, failure_rate=0.08, **kwargs
    )
    frame, _ = clean_readings(sim.readings)
    return frame, sim


def _load() -> list[float]:
    """The machine's load average (1, 5, 15 min): the figures' timings depend on it (shared cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def _r(x: Any, digits: int = 3) -> Any:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _cut(frame: Any) -> Any:
    start, end = frame["Timestamp"].min(), frame["Timestamp"].max()
    return start + 0.7 * (end - start)


def cut_rows(model: Any, history: Any, frame: Any, sim: Any, cut: Any, seed: int) -> tuple[Any, Any]:
    """One row per cell alive at ``cut`` (``frame`` is the full fleet): the model's table, the rules and
    the trend estimate from the same feature rows, and the truth (days to death, mode, SOH)."""
    import pandas as pd
    from bms_failure.features import build_feature_grid
    from bms_failure.trends import rule_scores, trend_score

    table = model.predict(history)
    last = build_feature_grid(history, model.config).last_rows().set_index("CellID").loc[table["CellID"]].reset_index()
    death = frame.loc[frame["IsDead"] == 1].groupby("CellID")["Timestamp"].min().reindex(table["CellID"])
    alive = ((death.isna() | (death > cut)).to_numpy()) & ~table["AlreadyDead"].to_numpy()
    rows = pd.DataFrame(
        {
            "Seed": seed,
            "CellID": table["CellID"].to_numpy(),
            "Days": ((death - cut).dt.total_seconds() / 86400.0).to_numpy(),
            "Mode": sim.cells.set_index("CellID")["FailureMode"].reindex(table["CellID"]).to_numpy(),
        }
    )
    for c in (
        "FailureProbability14d",
        "FailureProbability30d",
        "RemainingLifeDays",
        "RemainingLifeP10",
        "RemainingLifeP90",
        "TrendDaysToThreshold",
        "StateOfHealth",
    ):
        rows[c] = table[c].to_numpy()
    for name, score in rule_scores(last).items():
        rows[f"rule:{name}"] = score
    rows["trend_score"] = trend_score(last)
    if sim.soh is not None:
        soh = sim.soh.loc[sim.soh["Timestamp"] <= cut].sort_values("Timestamp").groupby("CellID").tail(1)
        rows["TrueSOH"] = soh.set_index("CellID")["StateOfHealth"].reindex(table["CellID"]).to_numpy()
    alarmed = table.loc[table["Alarm"] & ~table["AlreadyDead"]]
    example = (
        alarmed.iloc[0][["CellID", "AlarmTrigger", "AlarmLeadDays", "RecommendedAction"]].to_dict()
        if len(alarmed)
        else None
    )
    if example:
        example["AlarmLeadDays"] = _r(example["AlarmLeadDays"], 1)
    extra = {
        "dead_at_cut": int(table["AlreadyDead"].sum()),
        "alarms_at_cut": int(len(alarmed)),
        "alarm_example": example,
    }
    return rows.loc[alive].reset_index(drop=True), extra


def _top_2k(rows: Any, y: np.ndarray, p: np.ndarray) -> Any:
    """Per fleet, the share of the k dying cells ranked in the top 2k; pooled over fleets."""
    hits = total = 0
    for seed in np.unique(rows["Seed"]):
        m = (rows["Seed"] == seed).to_numpy()
        k = int(y[m].sum())
        if k:
            hits += int(y[m][np.argsort(-p[m], kind="stable")[: 2 * k]].sum())
            total += k
    return _r(hits / total) if total else None


def ranking(rows: Any, exclude_sudden: bool = False) -> dict[str, Any]:
    """ROC-AUC of the model, each IEEE rule and the trend estimate at 14 / 30 days; top-2k recall at 14 d.
    ``exclude_sudden``: leave out the dying cells whose failure is sudden by design (they stay negatives
    at a horizon they outlive)."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {}
    days = rows["Days"].to_numpy()
    sudden = rows["Mode"].isin(SUDDEN).to_numpy()
    rule_names = [c for c in rows.columns if c.startswith("rule:")]
    for h in HORIZONS:
        y = np.nan_to_num(days <= h).astype(bool)
        keep = ~(y & sudden) if exclude_sudden else np.ones(len(y), dtype=bool)
        y, sub = y[keep], rows.loc[keep]
        p = sub[f"FailureProbability{h}d"].to_numpy()
        both = 0 < y.sum() < len(y)
        entry: dict[str, Any] = {"dying": int(y.sum()), "living": int(len(y))}
        if both:
            auc = roc_auc_score(y, p)
            rule_auc = {k[5:]: _r(roc_auc_score(y, sub[k].to_numpy())) for k in rule_names}
            best = max(rule_auc, key=lambda k: rule_auc[k])
            entry.update(
                {
                    "model_roc_auc": _r(auc),
                    "rules_roc_auc": rule_auc,
                    "best_rule": best,
                    "model_minus_best_rule": _r(auc - rule_auc[best]),
                    "trend_to_threshold_roc_auc": _r(roc_auc_score(y, sub["trend_score"].to_numpy())),
                }
            )
            if "TrueSOH" in sub:
                entry["oracle_true_soh_roc_auc"] = _r(roc_auc_score(y, -sub["TrueSOH"].to_numpy()))
            if h == 14:
                entry["top_2k_recall"] = _top_2k(sub.reset_index(drop=True), y, p)
        out[f"{h}d"] = entry
    return out


def remaining_life(rows: Any) -> dict[str, Any]:
    """For cells dying within 60 days of the cut: median |p50 - truth| / truth and p10-p90 coverage, overall,
    for cells whose trend already heads for a threshold vs cells that still look healthy, and by mode."""
    near = np.nan_to_num(rows["Days"].to_numpy() <= 60).astype(bool)
    sub = rows.loc[near]
    if not len(sub):
        return {"cells": 0}
    truth = sub["Days"].to_numpy()
    p50, p10, p90 = (sub[c].to_numpy() for c in ("RemainingLifeDays", "RemainingLifeP10", "RemainingLifeP90"))
    err = np.abs(p50 - truth) / truth
    inside = (p10 <= truth) & (truth <= p90)
    trend_err = np.abs(sub["TrendDaysToThreshold"].to_numpy() - truth) / truth

    def block(m: np.ndarray) -> dict[str, Any]:
        return {
            "cells": int(m.sum()),
            "median_relative_error": _r(np.median(err[m])) if m.any() else None,
            "p10_p90_coverage": _r(inside[m].mean()) if m.any() else None,
        }

    fired = np.isfinite(sub["TrendDaysToThreshold"].to_numpy())
    mode = sub["Mode"].to_numpy()
    out = block(np.ones(len(sub), dtype=bool))
    out["trend_to_threshold_median_relative_error"] = _r(np.nanmedian(trend_err)) if fired.any() else None
    out["without_sudden_failures"] = block(~np.isin(mode, SUDDEN))
    out["trend_visible_at_cut"] = block(fired)
    out["healthy_looking_at_cut"] = block(~fired)
    out["by_mode"] = {str(k): block(mode == k) for k in sorted(set(mode.tolist()))}
    return out


def figures_of(rows: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"living_cells": int(len(rows))}
    out.update(ranking(rows))
    out["without_sudden_failures"] = ranking(rows, exclude_sudden=True)
    out["remaining_life_dying_within_60d"] = remaining_life(rows)
    if "TrueSOH" in rows:
        est, soh = rows["StateOfHealth"].to_numpy(), rows["TrueSOH"].to_numpy()
        ok = np.isfinite(soh) & np.isfinite(est)
        out["state_of_health_mae_points"] = _r(np.mean(np.abs(est[ok] - soh[ok])), 2)
        out["state_of_health_truth_range"] = [_r(np.min(soh[ok]), 1), _r(np.max(soh[ok]), 1)]
    return out


def per_fleet(rows: Any) -> dict[str, Any]:
    """Each scored fleet's headline figures (the pooled ones are in the parent)."""
    out: dict[str, Any] = {}
    for seed, sub in rows.groupby("Seed"):
        f = ranking(sub.reset_index(drop=True))
        rl = remaining_life(sub)
        out[str(seed)] = {
            "dying_14d": f["14d"]["dying"],
            "roc_auc_14d": f["14d"].get("model_roc_auc"),
            "roc_auc_30d": f["30d"].get("model_roc_auc"),
            "best_rule_14d": f["14d"].get("rules_roc_auc", {}).get(f["14d"].get("best_rule", ""), None),
            "top_2k_recall_14d": f["14d"].get("top_2k_recall"),
            "rul_median_relative_error": rl.get("median_relative_error"),
            "rul_p10_p90_coverage": rl.get("p10_p90_coverage"),
        }
    return out


def alarm_month(model: Any, frame: Any, sim: Any, cut: Any, every_days: int = 3) -> dict[str, Any]:
    """Alarms over the month after ``cut``: never-failing cells alarmed, lead of the dying cells."""
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
    return {
        "surviving_cells": len(healthy),
        "surviving_cells_alarmed": len(healthy & set(first)),
        "cells_dying_in_the_month": int(len(dying)),
        "caught_before_death": len(caught),
        "leads_days": [(dying[c] - first[c]).total_seconds() / 86400.0 for c in caught],
        "other_alarmed_cells": len(set(first) - healthy - set(dying.index)),
    }


def pooled_alarms(parts: list[dict[str, Any]]) -> dict[str, Any]:
    healthy = sum(p["surviving_cells"] for p in parts)
    leads = [x for p in parts for x in p["leads_days"]]
    return {
        "surviving_cells": healthy,
        "surviving_cells_alarmed_in_the_month": _r(sum(p["surviving_cells_alarmed"] for p in parts) / max(healthy, 1)),
        "cells_dying_in_the_month": sum(p["cells_dying_in_the_month"] for p in parts),
        "caught_before_death": sum(p["caught_before_death"] for p in parts),
        "lead_days_median": _r(np.median(leads), 1) if leads else None,
        "other_alarmed_cells": sum(p["other_alarmed_cells"] for p in parts),
    }


def main() -> None:
    import pandas as pd

    wall0 = time.perf_counter()
    load_start = _load()
    quick = "--quick" in sys.argv
    no_prior = "--no-prior" in sys.argv
    prior_weight = float(sys.argv[sys.argv.index("--prior-weight") + 1]) if "--prior-weight" in sys.argv else 3.0
    seeds = list(DEFAULT_SEEDS)
    if "--seeds" in sys.argv:
        seeds = [int(s) for s in sys.argv[sys.argv.index("--seeds") + 1].split(",")]
        if len(seeds) < 2:
            raise SystemExit("--seeds needs the scored fleets' seeds, then the training fleet's seed")
    scored, train_seed = seeds[:-1], seeds[-1]
    os.environ.setdefault("BMS_WORKSPACE", tempfile.mkdtemp(prefix="bench-failure-"))
    from bms_failure.training import prior_samples, train_failure_model

    days, devices = (120, 4) if quick else (180, 6)
    if quick:
        scored = scored[:1]
    figures: dict[str, Any] = {
        "threads": int(os.environ.get("BMS_THREADS", "1")),
        "goals": GOALS,
        "fleet": f"{devices} strings x 24 cells per scored fleet, {days} days hourly, failure_rate 0.08/month; "
        f"scored seeds {scored}, training fleet for the unlabelled case seed {train_seed} ({3 * devices} strings)",
        "seeds": {"scored": scored, "unlabelled_training_fleet": train_seed},
        "with_labels_training": "own history before the cut"
        + (
            ""
            if no_prior
            else f", pooled with the simulated fleet seed {train_seed} as a prior (weight {prior_weight:g})"
        ),
    }
    t0 = time.perf_counter()
    fleets = {s: _fleet(s, days, devices) for s in scored}
    other, _ = _fleet(train_seed, days, 3 * devices)
    figures["simulate_s"] = round(time.perf_counter() - t0, 1)
    figures["cells"] = int(sum(f["CellID"].nunique() for f, _ in fleets.values()))
    figures["failed_cells_in_span"] = int(sum((~sim.cells["Censored"]).sum() for _, sim in fleets.values()))
    modes = pd.concat([sim.cells["FailureMode"] for _, sim in fleets.values()])
    figures["failure_modes"] = modes.value_counts().to_dict()

    t0 = time.perf_counter()
    sim_model = train_failure_model(other, 7.0, seed=0, validate=False).model
    figures["train_other_fleet_s"] = round(time.perf_counter() - t0, 1)

    prior = None if no_prior else prior_samples(other, sim_model.config, prior_weight)
    with_rows, without_rows, extras, oof, alarms = [], [], {}, {}, []
    train_s = predict_s = 0.0
    for seed, (frame, sim) in fleets.items():
        cut = _cut(frame)
        history = frame.loc[frame["Timestamp"] <= cut].reset_index(drop=True)
        t0 = time.perf_counter()
        own = train_failure_model(history, 7.0, seed=0, prior=prior)
        train_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        rows, extra = cut_rows(own.model, history, frame, sim, cut, seed)
        predict_s += time.perf_counter() - t0
        with_rows.append(rows)
        extras[str(seed)] = {**extra, "max_horizon_days": _r(own.model.max_horizon_days, 1)}
        oof[str(seed)] = {
            k: {"model_roc_auc": _r(v.get("model_roc_auc")), "best_rule_roc_auc": _r(v.get("best_rule_roc_auc"))}
            for k, v in own.metrics.get("horizons", {}).items()
        }
        rows, _ = cut_rows(sim_model, history.drop(columns="IsDead"), frame, sim, cut, seed)
        without_rows.append(rows)
        alarms.append(alarm_month(sim_model, frame, sim, cut))
    figures["train_with_validation_s_per_fleet"] = round(train_s / len(fleets), 1)
    figures["predict_s_per_fleet"] = round(predict_s / len(fleets), 2)
    with_all = pd.concat(with_rows, ignore_index=True)
    without_all = pd.concat(without_rows, ignore_index=True)
    figures["with_labels"] = figures_of(with_all)
    figures["with_labels"]["per_fleet"] = per_fleet(with_all)
    figures["with_labels"]["at_cut"] = extras
    figures["with_labels"]["out_of_fold_validation"] = oof
    figures["without_labels"] = figures_of(without_all)
    figures["without_labels"]["per_fleet"] = per_fleet(without_all)
    figures["without_labels"]["max_horizon_days"] = _r(sim_model.max_horizon_days, 1)
    figures["alarms_month_after_cut"] = pooled_alarms(alarms)

    if not quick and "--skip-variants" not in sys.argv:
        variants: dict[str, Any] = {}
        base = max(seeds) + 1
        for name, kwargs, pair in (
            ("vrla", {"chemistry": "vrla"}, (base, base + 1)),
            ("no_discharge", {"discharge_every_days": 0.0}, (base + 2, base + 3)),
        ):
            v_frame, v_sim = _fleet(pair[0], days, 4, **kwargs)
            v_train, _ = _fleet(pair[1], days, 12, **kwargs)
            v_model = train_failure_model(v_train, 7.0, seed=0, validate=False).model
            v_cut = _cut(v_frame)
            v_hist = v_frame.loc[v_frame["Timestamp"] <= v_cut].drop(columns="IsDead")
            rows, _ = cut_rows(v_model, v_hist, v_frame, v_sim, v_cut, pair[0])
            variants[name] = figures_of(rows)
            variants[name]["seeds"] = {"scored": pair[0], "training_fleet": pair[1]}
        figures["variants_without_labels"] = variants
    figures["load_average_1_5_15_min"] = {"start": load_start, "end": _load()}
    figures["wall_s"] = round(time.perf_counter() - wall0, 1)
    print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
