"""Metrics on hand-made cases: lead time, threshold choice, recall at precision, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bms_failure.calibration import Calibrator, centred_steps
from bms_failure.evaluation import binary_metrics, choose_threshold, lead_times, recall_at_precision


def test_lead_time_is_the_start_of_the_sustained_alarm_before_death() -> None:
    t = pd.date_range("2026-01-01", periods=8, freq="6h", tz="UTC")
    death = t[-1] + pd.Timedelta(hours=6)
    samples = pd.DataFrame({
        "CellID": ["A"] * 8 + ["B"] * 8 + ["C"] * 8,
        "Timestamp": list(t) * 3,
        "DeathTime": [death] * 8 + [death] * 8 + [pd.NaT] * 8,
    })
    alarm = np.array(
        [1, 0, 0, 0, 1, 1, 1, 1]  # A: an early blip, then alarmed from t[4] until death: 24 h lead
        + [1, 1, 1, 1, 1, 1, 1, 0]  # B: alarm dropped before death: missed
        + [0, 0, 1, 0, 0, 0, 0, 0],  # C: survives, one false alarm
        dtype=bool,
    )
    out = lead_times(samples, alarm, t[0])
    assert out["dying_cells"] == 2 and out["caught_cells"] == 1 and out["caught_fraction"] == 0.5
    assert out["lead_time_hours_median"] == 24.0
    assert out["surviving_cells"] == 1 and out["false_alarm_cells"] == 1


def test_threshold_recall_at_precision_and_binary_metrics() -> None:
    label = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    prob = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 0.9])
    # Highest recall with precision >= 0.75: alarms at >= 0.4 give 3 TP / 1 FP.
    assert recall_at_precision(label, prob, 0.75) == 1.0
    assert recall_at_precision(label, prob, 0.9) == pytest.approx(2 / 3)
    assert choose_threshold(label, prob, 0.75) == pytest.approx(0.4)
    m = binary_metrics(label, prob >= 0.4)
    assert (m["precision"], m["recall"], m["alarms"], m["true_alarms"]) == (0.75, 1.0, 4, 3)


def test_calibration_methods_roundtrip_and_keep_the_ranking() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 4000)
    label = (rng.random(4000) < 1 / (1 + np.exp(-(margin - 2)))).astype(int)
    iso = Calibrator.fit(margin, label)
    assert iso.method == "isotonic"
    grid = np.linspace(-3, 3, 50)
    assert (np.diff(iso.transform(grid)) > 0).all(), "centred isotonic is strictly increasing inside its knots"
    assert Calibrator.from_dict(iso.to_dict()).transform(grid) == pytest.approx(iso.transform(grid))
    platt = Calibrator.fit(margin[:300], label[:300])
    assert platt.method == "platt"
    assert platt.params["a"] == pytest.approx(1.0, abs=0.35) and platt.params["b"] == pytest.approx(-2.0, abs=0.5)
    one_class = Calibrator.fit(margin[:10], np.zeros(10, dtype=int), scale_pos_weight=np.e ** 2)
    assert one_class.method == "prior_shift"
    assert one_class.transform(np.array([2.0]))[0] == pytest.approx(0.5)
    x, y = centred_steps(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.1, 0.1, 0.5, 0.5]))
    assert x.tolist() == [0.5, 2.5] and y.tolist() == [0.1, 0.5]
