"""The failure benchmark's scoring code (``bench/bench_failure.py``) on hand-made rows with known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_failure.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_failure_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows() -> pd.DataFrame:
    """Two fleets. Fleet 1: cells a-d die in 5, 10, 20, 40 days, e-h survive; fleet 2: i dies in 3 days
    (an internal short, ranked last), j-l survive."""
    days = [5.0, 10.0, 20.0, 40.0, np.nan, np.nan, np.nan, np.nan, 3.0, np.nan, np.nan, np.nan]
    p14 = [0.9, 0.8, 0.3, 0.1, 0.85, 0.2, 0.05, 0.01, 0.0, 0.5, 0.4, 0.3]
    p30 = [0.95, 0.9, 0.6, 0.2, 0.75, 0.3, 0.1, 0.05, 0.0, 0.6, 0.5, 0.4]
    modes = ["sulfation", "dry_out", "sulfation", "dry_out", *["none"] * 4, "internal_short", *["none"] * 3]
    return pd.DataFrame(
        {
            "Seed": [1] * 8 + [2] * 4,
            "CellID": list("abcdefghijkl"),
            "Days": days,
            "Mode": modes,
            "FailureProbability14d": p14,
            "FailureProbability30d": p30,
            # p50 off by 0 %, 50 %, 100 %, 25 %; bands hold a, b, d (and not c); the short far off
            "RemainingLifeDays": [5.0, 15.0, 40.0, 30.0, *[200.0] * 4, 30.0, *[200.0] * 3],
            "RemainingLifeP10": [2.0, 5.0, 25.0, 20.0, *[100.0] * 4, 20.0, *[100.0] * 3],
            "RemainingLifeP90": [9.0, 20.0, 60.0, 50.0, *[300.0] * 4, 60.0, *[300.0] * 3],
            "TrendDaysToThreshold": [6.0, 12.0, np.nan, np.nan, *[np.nan] * 4, np.nan, *[np.nan] * 3],
            "rule:ohmic": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "trend_score": [0.5, 0.4, 0.0, 0.0, *[0.0] * 8],
        }
    )


def test_ranking_auc_top2k_and_sudden_exclusion(bench: Any) -> None:
    from sklearn.metrics import roc_auc_score

    rows = _rows()
    out = bench.ranking(rows)
    y14 = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    assert out["14d"]["dying"] == 3 and out["14d"]["living"] == 12
    assert out["14d"]["model_roc_auc"] == pytest.approx(roc_auc_score(y14, rows["FailureProbability14d"]), abs=1e-3)
    # fleet 1: k = 2, its top 4 (a, e, b, c) hold both; fleet 2: k = 1, its top 2 (j, k) miss i -> 2 / 3
    assert out["14d"]["top_2k_recall"] == pytest.approx(2 / 3, abs=1e-3)
    # the rule fires on a only: AUC = P(dying ranked above living)
    assert out["14d"]["rules_roc_auc"]["ohmic"] == pytest.approx(roc_auc_score(y14, rows["rule:ohmic"]), abs=1e-3)
    assert out["14d"]["model_minus_best_rule"] == pytest.approx(
        out["14d"]["model_roc_auc"] - out["14d"]["rules_roc_auc"]["ohmic"], abs=2e-3
    )
    assert out["30d"]["dying"] == 4  # a, b, c and the short
    no_sudden = bench.ranking(rows, exclude_sudden=True)
    assert no_sudden["14d"]["dying"] == 2 and no_sudden["14d"]["living"] == 11
    # without the short, a and b are above every living cell but e (0.85 > 0.8): AUC (9 + 8) / 18
    assert no_sudden["14d"]["model_roc_auc"] == pytest.approx(17 / 18, abs=1e-3)
    assert no_sudden["14d"]["top_2k_recall"] == pytest.approx(1.0)


def test_remaining_life_error_coverage_and_split(bench: Any) -> None:
    out = bench.remaining_life(_rows())
    # cells dying within 60 d: a, b, c, d, i; errors 0, 0.5, 1.0, 0.25, 9.0 -> median 0.5
    assert out["cells"] == 5
    assert out["median_relative_error"] == pytest.approx(0.5)
    # bands: a (2-9 holds 5), b (5-20 holds 10), c (25-60 misses 20), d (20-50 holds 40), i (20-60 misses 3)
    assert out["p10_p90_coverage"] == pytest.approx(0.6)
    assert out["without_sudden_failures"]["cells"] == 4
    assert out["without_sudden_failures"]["median_relative_error"] == pytest.approx(0.375)
    assert out["without_sudden_failures"]["p10_p90_coverage"] == pytest.approx(0.75)
    assert out["trend_visible_at_cut"]["cells"] == 2
    assert out["trend_visible_at_cut"]["median_relative_error"] == pytest.approx(0.25)
    assert out["healthy_looking_at_cut"]["cells"] == 3
    assert out["healthy_looking_at_cut"]["median_relative_error"] == pytest.approx(1.0)
    # the trend estimate: |6 - 5| / 5 and |12 - 10| / 10 -> median 0.2
    assert out["trend_to_threshold_median_relative_error"] == pytest.approx(0.2)
    assert out["by_mode"]["internal_short"]["p10_p90_coverage"] == pytest.approx(0.0)


def test_pooled_alarms_shares_and_leads(bench: Any) -> None:
    parts = [
        {
            "surviving_cells": 20,
            "surviving_cells_alarmed": 1,
            "cells_dying_in_the_month": 3,
            "caught_before_death": 2,
            "leads_days": [4.0, 10.0],
            "other_alarmed_cells": 0,
        },
        {
            "surviving_cells": 30,
            "surviving_cells_alarmed": 4,
            "cells_dying_in_the_month": 1,
            "caught_before_death": 1,
            "leads_days": [20.0],
            "other_alarmed_cells": 2,
        },
    ]
    out = bench.pooled_alarms(parts)
    assert out["surviving_cells_alarmed_in_the_month"] == pytest.approx(0.1)
    assert out["lead_days_median"] == pytest.approx(10.0)
    assert out["caught_before_death"] == 3 and out["other_alarmed_cells"] == 2
    assert len(bench._load()) == 3
