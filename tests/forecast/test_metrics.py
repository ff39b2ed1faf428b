"""Backtest metrics on hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from bms_forecast import metrics as M
from bms_forecast.training import residual_quantiles


def test_errors_per_horizon_skip_missing_actuals() -> None:
    actual = np.array([[1.0, 2.0], [3.0, np.nan]])
    forecast = np.array([[2.0, 2.0], [1.0, 5.0]])
    out = M.per_horizon_errors(actual, forecast, scale=0.5)
    assert out["mae"].tolist() == [1.5, 0.0]
    assert out["rmse"][0] == pytest.approx(np.sqrt((1 + 4) / 2))
    assert out["mase"].tolist() == [3.0, 0.0]
    assert out["n"].tolist() == [2, 1]


def test_mase_scale_uses_consecutive_real_readings_of_the_training_part() -> None:
    values = np.array([1.0, 2.0, 4.0, 4.0, 10.0])
    observed = np.array([True, True, True, False, True])
    in_sample = np.array([True, True, True, True, False])
    assert M.mase_scale(values, observed, in_sample) == pytest.approx((1 + 2) / 2)


def test_coverage_counts_actuals_inside_the_interval() -> None:
    actual = np.array([[1.0, 5.0], [2.0, np.nan], [9.0, 0.0]])
    lower, upper = np.zeros_like(actual), np.full_like(actual, 3.0)
    assert M.coverage(actual, lower, upper).tolist() == [pytest.approx(2 / 3), 0.5]
    assert M.overall_coverage(actual, lower, upper) == pytest.approx(3 / 5)
    assert M.skill(np.array([1.0]), np.array([4.0])).tolist() == [0.75]


def test_residual_quantiles_are_monotone_and_pool_thin_steps() -> None:
    rng = np.random.default_rng(0)
    residuals = rng.normal(0, 1, size=(4000, 3)) * np.array([1.0, 2.0, 3.0])
    residuals[3800:, 2] = np.nan  # still 3800 residuals at step 3
    table = residual_quantiles(residuals)
    assert table.shape == (3, 99)
    assert (np.diff(table, axis=1) >= 0).all()
    for h, sd in enumerate([1.0, 2.0, 3.0]):
        assert table[h, 89] == pytest.approx(1.2816 * sd, rel=0.08)  # 90 % quantile of N(0, sd)
    thin = np.full((400, 2), np.nan)
    thin[:50, 0] = 1.0
    thin[:60, 1] = 3.0  # 50 and 60 residuals: each step pools its neighbour to reach 100
    pooled = residual_quantiles(thin)
    assert pooled[0, 49] == pooled[1, 49]
