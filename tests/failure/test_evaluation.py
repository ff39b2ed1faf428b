"""Metrics and the survival distribution on hand-made cases: lead time, censored maximum likelihood,
coherent probabilities and quantiles, top-2k recall, monthly alarm share, remaining-life accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_failure.evaluation import binary_metrics, lead_times
from bms_failure.survival import SurvivalDistribution, survival_targets
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


def test_censored_maximum_likelihood_recovers_the_distribution() -> None:
    """Log-normal times around a known mu, right-censored at 30 days: the fit finds shift and sigma;
    treating the censored as deaths (the mistake survival methods avoid) would not."""
    rng = np.random.default_rng(0)
    mu = rng.normal(3.0, 0.8, 20_000)
    truth = np.exp(mu + 0.3 + 0.6 * rng.standard_normal(len(mu)))
    censor = 30.0
    lower = np.minimum(truth, censor)
    upper = np.where(truth <= censor, truth, np.inf)
    assert 0.3 < np.mean(np.isinf(upper)) < 0.7
    fit = SurvivalDistribution.fit(mu, lower, upper, heteroscedastic=True)
    assert fit.shift == pytest.approx(0.3, abs=0.03) and fit.sigma == pytest.approx(0.6, abs=0.03)
    assert fit.slope == pytest.approx(1.0, abs=0.03) and fit.sigma_slope == pytest.approx(0.0, abs=0.03)
    naive = SurvivalDistribution.fit(mu, lower, lower)
    assert naive.shift < 0.1
    # One distribution, coherent everywhere: P(7) <= P(14) <= P(30); P(p50) = 0.5; p10 < p50 < p90.
    m = np.array([1.0, 2.5, 4.0])
    p = np.stack([fit.probability(m, h) for h in (7, 14, 30)])
    assert (np.diff(p, axis=0) > 0).all()
    p50 = fit.quantile(m, 0.5)
    assert np.array([fit.probability(m[i : i + 1], p50[i])[0] for i in range(3)]) == pytest.approx(0.5)
    assert (fit.quantile(m, 0.1) < p50).all() and (p50 < fit.quantile(m, 0.9)).all()
    assert SurvivalDistribution.from_dict(fit.to_dict()) == fit


def test_heteroscedastic_fit_narrows_the_band_of_predictable_cells() -> None:
    """Cells with a short expected life (low mu) are more predictable: sigma grows with mu. The fit finds
    that, and its p10-p90 band holds ~80 % of the deaths in each group; one sigma for all would not."""
    rng = np.random.default_rng(1)
    mu = rng.uniform(1.0, 5.0, 40_000)
    sigma = 0.3 * np.exp(0.4 * (mu - 3.0))
    truth = np.exp(mu + sigma * rng.standard_normal(len(mu)))
    lower = np.minimum(truth, 60.0)
    upper = np.where(truth <= 60.0, truth, np.inf)
    fit = SurvivalDistribution.fit(mu, lower, upper, heteroscedastic=True)
    flat = SurvivalDistribution.fit(mu, lower, upper)
    assert fit.sigma_slope == pytest.approx(0.4, abs=0.05) and fit.slope == pytest.approx(1.0, abs=0.05)
    short = (mu < 2.0) & np.isfinite(upper)
    inside = (fit.quantile(mu, 0.1) <= truth) & (truth <= fit.quantile(mu, 0.9))
    inside_flat = (flat.quantile(mu, 0.1) <= truth) & (truth <= flat.quantile(mu, 0.9))
    assert inside[short].mean() == pytest.approx(0.8, abs=0.03)
    assert inside_flat[short].mean() > 0.9  # too wide where the life is short


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
