"""Metrics and the survival model on hand-made cases: lead time, person-period rows, one coherent hazard
curve, remaining life recovered from censored samples, top-2k recall, monthly alarm share, remaining-life
accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_failure.evaluation import binary_metrics, lead_times
from bms_failure.survival import (
    MIN_DAYS,
    HazardCurve,
    calibrate_curve,
    fit_hazard,
    hazard_logits,
    person_period,
    survival_targets,
)
from bms_failure.training import monthly_alarm_share, rul_metrics, top_2k_recall


def test_lead_time_is_the_start_of_the_sustained_alarm_before_death() -> None:
    t = pd.date_range("2026-01-01", periods=8, freq="6h", tz="UTC")
    death = t[-1] + pd.Timedelta(hours=6)
    samples = pd.DataFrame(
        {
            "CellID": ["A"] * 8 + ["B"] * 8 + ["C"] * 8,
            "Timestamp": list(t) * 3,
            "DeathTime": [death] * 8 + [death] * 8 + [pd.NaT] * 8,
        }
    )
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
    m = binary_metrics(np.array([0, 1, 1, 0]), np.array([True, True, False, False]))
    assert (m["precision"], m["recall"], m["alarms"], m["true_alarms"]) == (0.5, 0.5, 2, 1)


def test_person_period_rows_of_a_death_a_censored_cell_and_a_long_life() -> None:
    """A death at 2.5 d is at risk in [0,1), [1,2), [2,3) and dies in the third; a cell censored at 1.5 d counts
    fully in [0,1) and half in [1,2); a death beyond the last edge survives every interval."""
    edges = (0.0, 1.0, 2.0, 3.0)
    rows, cols, label, weight = person_period(
        np.array([2.5, 1.5, 9.0]), np.array([2.5, np.inf, 9.0]), np.array([1.0, 2.0, 1.0]), edges
    )
    assert rows.tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and cols.tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert label.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert weight.tolist() == [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # sample weight x observed share


def test_hazard_curve_is_one_coherent_distribution() -> None:
    """A constant hazard of 0.1 a day is an exponential life: P(T <= h) = 1 - exp(-0.1 h), the median ln 2 / 0.1,
    the same curve for every horizon and quantile (also beyond the last edge)."""
    curve = HazardCurve(edges=(0.0, 1.0, 2.0, 5.0, 10.0))
    p = 1 - np.exp(-0.1 * np.diff(curve.edges))  # each interval's probability of death
    margin = np.log(p / (1 - p))[None, :]  # as logits
    assert curve.hazards(margin)[0] == pytest.approx(p)
    for days in (0.5, 3.0, 7.0, 14.0, 30.0):
        assert curve.probability(margin, days)[0] == pytest.approx(1 - np.exp(-0.1 * days), rel=1e-9)
    p50 = curve.quantile(margin, 0.5)[0]
    assert p50 == pytest.approx(np.log(2) / 0.1) and curve.probability(margin, p50)[0] == pytest.approx(0.5)
    assert curve.quantile(margin, 0.1)[0] < p50 < curve.quantile(margin, 0.9)[0] == pytest.approx(np.log(10) / 0.1)
    assert curve.curve(margin)[0] == pytest.approx(1 - np.exp(-0.1 * np.asarray(curve.edges[1:])))
    assert HazardCurve.from_dict(curve.to_dict()) == curve


def test_hazard_model_recovers_remaining_life_from_censored_samples() -> None:
    """Two kinds of cells (x = 0: 2 %/day, x = 1: 10 %/day hazard), exponential lives right-censored at 45
    days: the fitted discrete-time hazard model gives each kind its median life (ln 2 / rate, within 10 %) and
    a p10-p90 band holding ~80 % of the true lives; beyond the censoring it keeps the death rate per day."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, 6000).astype(np.float64)[:, None]
    rate = np.where(x[:, 0] == 1, 0.10, 0.02)
    truth = rng.exponential(1 / rate)
    lower = np.maximum(np.minimum(truth, 45.0), MIN_DAYS)
    upper = np.where(truth <= 45.0, lower, np.inf)
    booster, rounds, curve = fit_hazard(x, lower, upper, ["x"], seed=0, rounds=200)
    # base rate: deaths / days at risk (1.58 / 39.6 a cell of each kind, the interval of death counted whole)
    assert rounds == 200 and curve.base_log_rate == pytest.approx(np.log(1.58 / 39.6), abs=0.15)
    margin = hazard_logits(booster, np.array([[0.0], [1.0]]), ["x"], curve)
    assert curve.quantile(margin, 0.5) == pytest.approx(np.log(2) / np.array([0.02, 0.10]), rel=0.1)
    assert curve.probability(margin, 14.0) == pytest.approx(1 - np.exp(-14 * np.array([0.02, 0.10])), abs=0.03)
    # 45-60 d (15 days) and 60-90 d (30 days) are never seen: about the same rate per day (the logit link
    # makes it exact only for small hazards), not the same probability (which would halve the rate)
    h = curve.hazards(margin)[0]
    assert -np.log1p(-h[11]) / 30 == pytest.approx(-np.log1p(-h[10]) / 15, rel=0.15)
    m = hazard_logits(booster, x, ["x"], curve)
    inside = (curve.quantile(m, 0.1) <= truth) & (truth <= curve.quantile(m, 0.9))
    assert inside.mean() == pytest.approx(0.8, abs=0.03) and inside[truth <= 45.0].mean() > 0.75


def test_calibration_moves_the_curve_to_what_held_out_cells_did() -> None:
    """A booster trained where cells die at 2 %/day and 10 %/day, then held-out cells that die three
    times as fast: the recalibrated curve (scale, shift of the logits) puts their medians and 14-day
    probabilities near the held-out truth; on held-out cells like the training ones it stays near 1 / 0."""
    rng = np.random.default_rng(5)

    def lives(n: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.integers(0, 2, n).astype(np.float64)[:, None]
        truth = rng.exponential(1 / (factor * np.where(x[:, 0] == 1, 0.10, 0.02)))
        lower = np.maximum(np.minimum(truth, 45.0), MIN_DAYS)
        return x, lower, np.where(truth <= 45.0, lower, np.inf)

    x, lower, upper = lives(4000, 1.0)
    booster, _, curve = fit_hazard(x, lower, upper, ["x"], seed=0, rounds=100)
    probe = np.array([[0.0], [1.0]])
    same = calibrate_curve(booster, *lives(3000, 1.0), ["x"], curve)
    assert same.logit_scale == pytest.approx(1.0, abs=0.15) and same.logit_shift == pytest.approx(0.0, abs=0.3)
    fast = calibrate_curve(booster, *lives(3000, 3.0), ["x"], curve)
    margin = hazard_logits(booster, probe, ["x"], fast)
    assert fast.quantile(margin, 0.5) == pytest.approx(np.log(2) / np.array([0.06, 0.30]), rel=0.2)
    assert fast.probability(margin, 14.0) == pytest.approx(1 - np.exp(-14 * np.array([0.06, 0.30])), abs=0.06)
    # too few held-out deaths: the curve is left as it is
    assert calibrate_curve(booster, probe, np.array([5.0, 5.0]), np.array([5.0, np.inf]), ["x"], curve) is curve


def test_survival_targets_censor_at_the_cut() -> None:
    t = pd.to_datetime(["2026-01-01", "2026-01-05", "2026-01-09"], utc=True)
    table = pd.DataFrame({"CellID": ["A", "A", "B"], "Timestamp": t})
    deaths = pd.Series(pd.to_datetime(["2026-01-08", "2026-01-20"], utc=True), index=["A", "B"])
    usable, lower, upper = survival_targets(table, deaths, pd.Timestamp("2026-01-10", tz="UTC"))
    assert usable.tolist() == [True, True, True]
    assert lower.tolist() == [7.0, 3.0, 1.0]  # A died (seen); B is alive at the cut: censored at 1 day
    assert upper[:2].tolist() == [7.0, 3.0] and np.isinf(upper[2])
    # Cut before A's death: A is censored too; rows after the cut are not usable.
    usable, lower, upper = survival_targets(table, deaths, pd.Timestamp("2026-01-06", tz="UTC"))
    assert usable.tolist() == [True, True, False] and lower[:2].tolist() == [5.0, 1.0] and np.isinf(upper[:2]).all()


def test_top_2k_recall_alarm_share_and_remaining_life_accuracy() -> None:
    t0, t1 = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-02", tz="UTC")
    rows = pd.DataFrame({"Timestamp": [t0] * 6 + [t1] * 6, "CellID": list("ABCDEF") * 2})
    label = np.array([1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    score = np.array([0.1, 0.9, 0.8, 0.0, 0.0, 0.0, 0.9, 0.1, 0.8, 0.7, 0.6, 0.0])
    # t0: k=1, A ranked 3rd of top-2: missed; t1: k=2, top-4 holds A but not B (5th): 1 of 3 pooled.
    assert top_2k_recall(rows, label, score) == pytest.approx(1 / 3)

    days = pd.date_range("2026-01-01", periods=60, freq="D", tz="UTC")
    cells = [f"C{i}" for i in range(10)]
    frame = pd.DataFrame({"CellID": np.repeat(cells, 60), "Timestamp": np.tile(days, 10)})
    frame["DeathTime"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    frame.loc[frame["CellID"] == "C9", "DeathTime"] = days[-1] - pd.Timedelta(days=1)  # dies: not a survivor
    alarm = np.zeros(len(frame), dtype=bool)
    alarm[(frame["CellID"] == "C0").to_numpy() & (frame["Timestamp"] < days[30]).to_numpy()] = True  # month 1
    alarm[(frame["CellID"].isin(["C1", "C2"])).to_numpy() & (frame["Timestamp"] >= days[30]).to_numpy()] = True
    alarm[(frame["CellID"] == "C9").to_numpy()] = True
    share = monthly_alarm_share(frame, alarm, days[-1])
    assert share == pytest.approx((1 / 9 + 2 / 9) / 2)

    rows = pd.DataFrame(
        {
            "CellID": ["A", "B", "C", "D"],
            "Timestamp": [t0] * 4,
            "DeathTime": [t0 + pd.Timedelta(days=d) for d in (10, 20, 40)] + [pd.NaT],
        }
    )
    life = {
        "p10": np.array([5.0, 25.0, 20.0, 50]),
        "p50": np.array([12.0, 30.0, 40.0, 99]),
        "p90": np.array([20.0, 40.0, 60.0, 200]),
    }
    out = rul_metrics(rows, life)
    assert out["samples"] == 3 and out["median_relative_error"] == pytest.approx(0.2)
    assert out["p10_p90_coverage"] == pytest.approx(2 / 3) and out["below_p10"] == pytest.approx(1 / 3)
