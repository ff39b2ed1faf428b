"""Benchmark of feature-three-failure-prediction-mcp. Prints one JSON object.

1. Speed: feature building + prediction on ~1M readings from the project simulator
   (target <= 20 s on 2 cores), plus reading/cleaning the file as the tool does.
2. Quality: out-of-fold validation (cells x time) of the model vs the IEEE 450 style rule on a
   simulated fleet, over a few simulator seeds.

Run: ``cd /work/main && uv run python bench/bench_failure.py [--quick]``
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def _quality(seed: int, devices: int, days: float) -> dict[str, object]:
    from bms_datagen.simulator import simulate_fleet
    from bms_schema.clean import clean_readings

    from bms_failure.training import train_failure_model

    raw = simulate_fleet(devices=devices, cells_per_device=24, days=days, interval_minutes=60, seed=seed,
                         failure_rate=0.15)
    frame, _ = clean_readings(raw)
    t0 = time.perf_counter()
    result = train_failure_model(frame, horizon_days=7, seed=0)
    seconds = time.perf_counter() - t0
    m = result.metrics
    model, rule = m["model"], m["baseline_rule"]
    return {
        "seed": seed, "rows": len(frame), "cells": m["cells"]["total"], "dying_cells": m["cells"]["dying"],
        "train_s": round(seconds, 1), "test_samples": model["samples"], "test_positives": model["positives"],
        "model_roc_auc": round(model["roc_auc"], 3), "rule_roc_auc": round(rule["roc_auc"], 3),
        "model_pr_auc": round(model["pr_auc"], 3), "rule_pr_auc": round(rule["pr_auc"], 3),
        "model_recall_at_p0.8": round(model["recall_at_precision_0.8"], 3),
        "rule_recall_at_p0.8": round(rule["recall_at_precision_0.8"], 3),
        "brier": round(model["brier"], 4), "brier_uncalibrated": round(model["brier_uncalibrated"], 4),
        "brier_base_rate": round(model["brier_base_rate"], 4),
        "model_alarm_precision": round(model["at_alarm_threshold"]["precision"] or 0.0, 3),
        "model_alarm_recall": round(model["at_alarm_threshold"]["recall"] or 0.0, 3),
        "rule_precision": None if rule["at_rule"]["precision"] is None else round(rule["at_rule"]["precision"], 3),
        "rule_recall": round(rule["at_rule"]["recall"] or 0.0, 3),
        "model_cells_caught": f'{model["lead_time"].get("caught_cells")}/{model["lead_time"].get("dying_cells")}',
        "rule_cells_caught": f'{rule["lead_time"].get("caught_cells")}/{rule["lead_time"].get("dying_cells")}',
        "model_lead_time_h_median": model["lead_time"].get("lead_time_hours_median"),
        "rule_lead_time_h_median": rule["lead_time"].get("lead_time_hours_median"),
        "model_false_alarm_cells": f'{model["lead_time"].get("false_alarm_cells")}/{model["lead_time"].get("surviving_cells")}',
        "rule_false_alarm_cells": f'{rule["lead_time"].get("false_alarm_cells")}/{rule["lead_time"].get("surviving_cells")}',
        "dead_state_recall": m["dead_state"].get("classifier_or_collapse", {}).get("recall"),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    os.environ.setdefault("BMS_WORKSPACE", tempfile.mkdtemp(prefix="bench-failure-"))
    from bms_datagen.simulator import simulate_fleet
    from bms_schema import workspace, write_table

    from bms_failure.api import load_readings_frame, train_and_register
    from bms_failure.features import build_feature_grid
    from bms_failure.model import load_failure_model

    figures: dict[str, object] = {"threads": int(os.environ.get("BMS_THREADS", "1")), "target_s": 20.0}

    # -- speed on ~1M readings ---------------------------------------------------------------
    t0 = time.perf_counter()
    raw = simulate_fleet(devices=10, cells_per_device=24, days=60, interval_minutes=20, seed=11, failure_rate=0.1)
    figures["simulate_s"] = round(time.perf_counter() - t0, 2)
    path = write_table(raw.drop(columns=["IsDead", "IsAnomaly", "AnomalyType"]), workspace() / "data" / "bench.parquet")
    t0 = time.perf_counter()
    history, _ = load_readings_frame(path)
    figures["read_clean_s"] = round(time.perf_counter() - t0, 2)
    figures["rows"] = len(history)
    figures["cells"] = int(history["CellID"].nunique())

    labelled, _ = load_readings_frame(write_table(raw, workspace() / "data" / "bench_labelled.parquet"))
    t0 = time.perf_counter()
    train_and_register(labelled, horizon_days=7)
    figures["train_register_1M_s"] = round(time.perf_counter() - t0, 2)

    model = load_failure_model("latest")
    t0 = time.perf_counter()
    grid = build_feature_grid(history, model.config)
    figures["features_s"] = round(time.perf_counter() - t0, 2)
    t1 = time.perf_counter()
    table = model.predict(history, grid=grid)
    figures["predict_s"] = round(time.perf_counter() - t1, 2)
    figures["features_plus_predict_s"] = round(time.perf_counter() - t0, 2)
    figures["grid_rows"] = len(grid.table)
    figures["cells_alive_scored"] = int((table["FailureProbability"].notna() & ~table["AlreadyDead"]).sum())
    figures["cells_dead"] = int(table["AlreadyDead"].sum())
    truth = raw.loc[raw["IsDead"] == 1]
    dead_truth = set((truth["DeviceID"].astype(str) + "-" + truth["CellNumber"].astype(str)).unique())
    figures["dead_cells_true"] = len(dead_truth)
    figures["dead_cells_found_without_labels"] = len(dead_truth & set(table.loc[table["AlreadyDead"], "CellID"]))

    # -- quality: model vs rule --------------------------------------------------------------
    seeds = (0,) if quick else (0, 1, 2)
    figures["quality"] = [_quality(seed, devices=8, days=100) for seed in seeds]
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
