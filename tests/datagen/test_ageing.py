"""Ageing physics and the survival ground truth: SOH over time, end-of-life time and mode, censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_datagen.fleet_physics import arrhenius, state_of_health
from bms_datagen.simulator import main, simulate_fleet_with_truth

QUIET = dict(anomaly_rate=0.0, dropout_rate=0.0, missing_rate=0.0, duplicate_rate=0.0, out_of_order_rate=0.0)


@pytest.fixture(scope="module")
def aged():
    """120 days at 2-hour packets, SOH at every reading, many failures."""
    return simulate_fleet_with_truth(
        devices=10,
        cells_per_device=8,
        days=120,
        interval_minutes=120,
        seed=21,
        failure_rate=0.08,
        soh_interval_hours=2,
        **QUIET,
    )


def test_truth_tables_have_the_documented_columns(aged):
    cells, soh = aged.cells, aged.soh
    for col in (
        "DeviceID",
        "CellNumber",
        "CellID",
        "EndOfLifeTime",
        "EndOfLifeHours",
        "FailureMode",
        "EOLCriterion",
        "Censored",
        "ObservedHours",
        "CapacityPercentStart",
        "CapacityPercentEnd",
        "ResistanceRatioStart",
        "ResistanceRatioEnd",
        "StateOfHealthStart",
        "StateOfHealthEnd",
        "AgeDaysAtStart",
        "AgeingSpeed",
    ):
        assert col in cells.columns, col
    assert list(soh.columns) == [
        "Timestamp",
        "CellID",
        "DeviceID",
        "CellNumber",
        "CapacityPercent",
        "ResistanceRatio",
        "StateOfHealth",
        "IsDead",
    ]
    assert len(soh) == 80 * aged.config.steps  # every reading (soh_interval_hours = the interval)
    assert str(soh.Timestamp.dtype) == "datetime64[ns, UTC]"
    # censoring: healthy cells are censored at the end of the data, failed ones have an EOL time
    assert (cells.Censored == (cells.Fate == "healthy")).all()
    assert cells.loc[cells.Censored, "EndOfLifeHours"].isna().all()
    assert (cells.loc[cells.Censored, "EndOfLifeTime"] == "").all()
    assert (cells.loc[~cells.Censored, "EndOfLifeTime"] == cells.loc[~cells.Censored, "DeathTime"]).all()
    assert (cells.ObservedHours == (aged.config.steps - 1) * 2.0).all()
    assert aged.summary["censored_cells"] == int(cells.Censored.sum())
    expected = {"sulfation": "capacity", "dry_out": "resistance", "internal_short": "internal_short"}
    failed = cells[~cells.Censored]
    assert len(failed) >= 20
    assert (failed.EOLCriterion == failed.FailureMode.map(expected)).all()
    # the daily default keeps the table small
    daily = simulate_fleet_with_truth(devices=1, cells_per_device=3, days=10, interval_minutes=15, seed=0)
    assert len(daily.soh) == 3 * 11  # days 0..9 at midnight plus the last reading


def test_end_of_life_is_the_threshold_crossing(aged):
    soh, cells = aged.soh, aged.cells.set_index("CellID")
    last_alive = soh[soh.IsDead == 0].groupby("CellID").tail(1).set_index("CellID")
    first_dead = soh[soh.IsDead == 1].groupby("CellID").head(1).set_index("CellID")
    failed = cells[~cells.Censored]
    assert set(first_dead.index) == set(failed.index)
    for cell_id, row in failed.iterrows():
        before, after = last_alive.loc[cell_id], first_dead.loc[cell_id]
        assert before.StateOfHealth > 80.0 >= after.StateOfHealth, cell_id
        eol = pd.Timestamp(row.EndOfLifeTime, tz="UTC")
        assert before.Timestamp < eol <= after.Timestamp
        if row.EOLCriterion == "capacity":  # IEEE 450: below 80 % of rated capacity
            assert 80.0 < before.CapacityPercent < 80.6, cell_id
            assert before.ResistanceRatio < 1.5
        elif row.EOLCriterion == "resistance":  # IEEE 1188: ohmic value +50 % over baseline
            assert 1.485 < before.ResistanceRatio < 1.5, cell_id
            assert before.CapacityPercent > 80.0
        else:  # a sudden short: the cell was healthy just before
            assert before.StateOfHealth > 85.0, cell_id
    # cells alive at the end never crossed a threshold
    alive = soh[soh.CellID.isin(cells.index[cells.Censored])]
    assert alive.StateOfHealth.min() > 80.0 and alive.IsDead.sum() == 0


def test_wear_out_trends_are_long_and_monotone_sudden_shorts_are_short(aged):
    cells = aged.cells[~aged.cells.Censored].copy()
    lead_days = (pd.to_datetime(cells.EndOfLifeTime) - pd.to_datetime(cells.PrecursorStart)).dt.total_seconds() / 86400
    death_days = cells.EndOfLifeHours / 24
    wear_out = cells.FailureMode.isin(["sulfation", "dry_out"])
    # weeks to months of warning (capped at twice the time from the start of the data to the death)
    assert (lead_days[wear_out] >= np.minimum(20.0, 2 * death_days[wear_out]) - 1e-6).all()
    assert lead_days[wear_out].median() > 25.0
    assert (lead_days[~wear_out] <= 4.0 + 1e-6).all()  # internal short: honestly short warning
    soh = aged.soh[aged.soh.IsDead == 0]
    for cell_id in cells.CellID[wear_out]:
        track = soh[soh.CellID == cell_id]
        assert (np.diff(track.CapacityPercent.to_numpy()) <= 1e-3).all()
        assert (np.diff(track.ResistanceRatio.to_numpy()) >= -1e-4).all()
    # 14 days before end of life a wear-out cell has visibly lost health since the start
    eol = pd.to_datetime(cells.set_index("CellID").EndOfLifeTime, utc=True)
    ids = [c for c in cells.CellID[wear_out] if eol[c] - aged.soh.Timestamp.min() > pd.Timedelta("20D")]
    drops = []
    for cell_id in ids:
        track = soh[soh.CellID == cell_id].set_index("Timestamp").StateOfHealth
        drops.append(track.iloc[0] - track[: eol[cell_id] - pd.Timedelta("14D")].iloc[-1])
    assert len(drops) >= 5 and np.median(drops) > 2.0


def test_temperature_accelerates_ageing(aged):
    """Arrhenius: wear of surviving cells grows with their ageing speed, and hot cells fail more."""
    healthy = aged.cells[aged.cells.Censored]
    growth = healthy.ResistanceRatioEnd - healthy.ResistanceRatioStart
    assert np.corrcoef(growth, healthy.AgeingSpeed)[0, 1] > 0.9
    # resistance ratio 1 + 0.5 w, w growing 1/design life per Arrhenius-hour: 20 years for flooded cells
    per_speed = growth / healthy.AgeingSpeed
    span_years = aged.config.steps * 2.0 / 8766
    assert per_speed.median() == pytest.approx(0.5 * span_years / 20.0, rel=0.25)
    assert arrhenius(34.0) == pytest.approx(2.0) and arrhenius(25.0) == pytest.approx(1.0)
    big = simulate_fleet_with_truth(
        devices=40, cells_per_device=10, days=60, interval_minutes=240, seed=3, failure_rate=0.1, **QUIET
    )
    failed = big.cells[~big.cells.Censored]
    assert len(failed) > 60
    assert failed.AgeingSpeed.median() > 1.2 * big.cells[big.cells.Censored].AgeingSpeed.median()


def test_state_of_health_definition():
    cap = np.array([100.0, 79.0, 95.0, 95.0, 104.0])
    ratio = np.array([1.0, 1.1, 1.5, 4.0, 1.0])
    np.testing.assert_allclose(state_of_health(cap, ratio), [100.0, 79.0, 80.0, 0.0, 100.0])


def test_vrla_and_one_cell_truth():
    vrla = simulate_fleet_with_truth(
        devices=6,
        cells_per_device=6,
        days=90,
        interval_minutes=180,
        seed=4,
        chemistry="vrla",
        failure_rate=0.06,
        **QUIET,
    )
    failed = vrla.cells[~vrla.cells.Censored]
    assert len(failed) > 5
    assert set(failed.EOLCriterion) <= {"capacity", "resistance", "internal_short", "thermal_runaway"}
    # VRLA ages twice as fast as flooded (10 vs 20 years design life): more resistance growth per speed
    healthy = vrla.cells[vrla.cells.Censored]
    per_speed = ((healthy.ResistanceRatioEnd - healthy.ResistanceRatioStart) / healthy.AgeingSpeed).median()
    assert per_speed == pytest.approx(0.5 * (vrla.config.steps * 3.0 / 8766) / 10.0, rel=0.25)
    one = simulate_fleet_with_truth(devices=1, cells_per_device=1, days=30, seed=1, failure_rate=0.0)
    assert len(one.cells) == 1 and bool(one.cells.Censored.iloc[0])
    assert one.soh.StateOfHealth.between(80.0, 100.0).all()


def test_cli_writes_the_soh_table(tmp_path):
    out, truth, soh = tmp_path / "f.csv", tmp_path / "cells.csv", tmp_path / "soh.csv"
    assert (
        main(
            [
                "--devices",
                "1",
                "--cells-per-device",
                "4",
                "--days",
                "3",
                "--out",
                str(out),
                "--truth",
                str(truth),
                "--soh",
                str(soh),
            ]
        )
        == 0
    )
    table = pd.read_csv(soh)
    assert len(table) == 4 * 4 and table.Timestamp.iloc[0] == "2025-01-01T00:00:00"
    assert table.StateOfHealth.between(80, 100).all()
    assert pd.read_csv(truth).Censored.dtype == bool


def test_precursor_rows_marks_the_dying_cells_drift():
    from bms_datagen.simulator import precursor_rows, to_minimal_table
    from bms_schema import normalize

    sim = simulate_fleet_with_truth(
        devices=2, cells_per_device=6, days=30, interval_minutes=60, seed=8, failure_rate=0.15, **QUIET
    )
    mask = precursor_rows(sim.readings, sim.cells)
    r = sim.readings
    failed = sim.cells[~sim.cells.Censored]
    assert len(failed) >= 2 and mask.any()
    marked = set(zip(r.DeviceID[mask], r.CellNumber[mask]))
    assert marked == set(zip(failed.DeviceID, failed.CellNumber))
    assert r.IsDead[mask].sum() == 0  # before end of life only
    ts = pd.to_datetime(r.PacketDateTime, utc=True)
    for _, cell in failed.iterrows():
        mine = (r.DeviceID == cell.DeviceID) & (r.CellNumber == cell.CellNumber)
        inside = ts.between(
            pd.Timestamp(cell.PrecursorStart, tz="UTC"), pd.Timestamp(cell.DeathTime, tz="UTC"), inclusive="left"
        )
        assert (mask[mine.to_numpy()] == inside[mine].to_numpy()).all(), cell.CellID
        assert inside[mine].sum() > 0
    # the same rows on the minimal and the canonical table
    np.testing.assert_array_equal(precursor_rows(to_minimal_table(r), sim.cells), mask)
    canon, _ = normalize(r)
    assert precursor_rows(canon, sim.cells).sum() == mask.sum()
