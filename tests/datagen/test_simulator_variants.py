"""Simulator variants other packages test against: VRLA (no SG), no discharge, one cell, no failures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_datagen.fleet_config import FleetConfig
from bms_datagen.simulator import main, simulate_fleet, simulate_fleet_with_truth, to_minimal_table, write_fleet_csv
from bms_schema import InputError


@pytest.fixture(scope="module")
def vrla():
    return simulate_fleet_with_truth(
        devices=4,
        cells_per_device=12,
        days=30,
        interval_minutes=30,
        seed=11,
        chemistry="vrla",
        failure_rate=0.2,
        anomaly_rate=0.02,
    )


def test_vrla_has_no_specific_gravity_anywhere(vrla, tmp_path):
    readings = vrla.readings
    assert "CellSpecificGravity" not in readings.columns
    assert readings.shape[1] == 75  # 72 raw packet columns + 3 labels
    assert "sg_drop" not in set(readings.AnomalyType)
    assert vrla.summary["chemistry"] == "vrla" and vrla.summary["anomaly_types"]["sg_drop"] == 0
    assert "FullChargeSG" not in vrla.cells.columns
    minimal = to_minimal_table(readings)
    assert list(minimal.columns) == [
        "Timestamp",
        "DeviceID",
        "CellNumber",
        "CellVoltage",
        "CellTemperature",
        "InstantaneousCurrent",
        "AmbientTemperature",
        "IsDead",
        "IsAnomaly",
        "AnomalyType",
    ]
    path = write_fleet_csv(readings.head(300), tmp_path / "vrla.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert {len(r) for r in rows} == {75} and "CellSpecificGravity" not in rows[0]
    # dropouts are still the 0xFFFF pair of the two measured registers
    drop = readings.CellVoltage == 65.535
    assert drop.mean() == pytest.approx(0.19, abs=0.02)
    assert (readings.CellTemperature[drop] == 65535.0).all()


def test_vrla_floats_higher_than_flooded():
    params = dict(
        devices=4, cells_per_device=12, days=20, interval_minutes=30, seed=11, failure_rate=0.0, anomaly_rate=0.0
    )
    flooded = simulate_fleet(**params)
    healthy_vrla = simulate_fleet(chemistry="vrla", **params)

    def on_float(frame: pd.DataFrame) -> pd.Series:
        # a dead cell in the string pushes its peers up (the string voltage is held): leave those packets out
        string_has_dead = frame.groupby(["DeviceID", "PacketID"]).IsDead.transform("max") == 1
        ok = (
            (frame.IsAnomaly == 0)
            & (frame.IsDead == 0)
            & (frame.CellVoltage < 60)
            & ~string_has_dead
            & frame.InstantaneousCurrent.between(0.0, 2.0)
            & (frame.SocLatestValueForEveryCycle > 99.5)
        )
        return frame.loc[ok, "CellVoltage"].dropna()

    v, f = on_float(healthy_vrla), on_float(flooded)
    assert v.between(2.24, 2.31).mean() > 0.95
    assert v.between(2.25, 2.30).mean() > 0.75  # cells spread around the charger's float (sd 8 mV)
    assert f.between(2.20, 2.27).mean() > 0.95
    assert v.median() - f.median() > 0.03
    # the charger holds the string in the VRLA float window of 2.25-2.30 V per cell
    r = healthy_vrla
    per_cell = r.StringVoltage / 12
    floating = (r.SocLatestValueForEveryCycle > 99.5) & (
        r.IsDead.groupby([r.DeviceID, r.PacketID]).transform("max") == 0
    )
    assert per_cell[floating].between(2.248, 2.302).mean() > 0.99


def test_vrla_failure_physics_dry_out_and_thermal_runaway():
    sim = simulate_fleet_with_truth(
        devices=16,
        cells_per_device=6,
        days=60,
        interval_minutes=60,
        seed=7,
        chemistry="vrla",
        failure_rate=0.08,
        anomaly_rate=0.0,
        dropout_rate=0.0,
        missing_rate=0.0,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
        discharge_every_days=0,
    )
    assert set(sim.cells.FailureMode) <= {"none", "sulfation", "dry_out", "internal_short", "thermal_runaway"}
    r = sim.readings.assign(Timestamp=pd.to_datetime(sim.readings.PacketDateTime, utc=True))
    failing_per_string = sim.cells.groupby("DeviceID").Censored.apply(lambda c: int((~c).sum()))
    checked = {"dry_out": 0, "thermal_runaway": 0}
    for _, cell in sim.cells[sim.cells.FailureMode.isin(list(checked))].iterrows():
        if failing_per_string[cell.DeviceID] > 1:
            continue  # one failing cell per string, so the string's float current is its own
        death = pd.Timestamp(cell.DeathTime, tz="UTC")
        onset = pd.Timestamp(cell.PrecursorStart, tz="UTC")
        dev = r[r.DeviceID == cell.DeviceID]
        start = dev.Timestamp.min()
        # baseline: before the precursor when it starts inside the data, else the first day
        # (a dry-out may have begun before the data; at least half of its drift is observed)
        before = (
            dev[dev.Timestamp < onset]
            if onset - start > pd.Timedelta("12h")
            else dev[dev.Timestamp < start + pd.Timedelta("1D")]
        )
        late = dev[dev.Timestamp.between(death - pd.Timedelta("12h"), death - pd.Timedelta("1h"))]
        mine = dev.CellNumber == cell.CellNumber

        def rise(frame: pd.DataFrame) -> float:
            mask = mine.loc[frame.index]
            return float(frame.CellTemperature[mask].mean() - frame.CellTemperature[~mask].mean())

        temp_rise = rise(late) - rise(before)
        # float current of the string (series: every cell carries it), relative to its ambient-driven level
        cur_ratio = late.InstantaneousCurrent.mean() / before.InstantaneousCurrent.mean()
        amb = late.AmbientTemperature.mean() - before.AmbientTemperature.mean()
        expected_ratio = 2.0 ** (amb / 10.0)  # the float current doubles per 10 degC of ambient
        if cell.FailureMode == "dry_out":
            assert temp_rise > 1.0, cell.CellID
            assert cur_ratio > expected_ratio * 1.25, cell.CellID
        else:
            assert temp_rise > 3.0, cell.CellID
            assert cur_ratio > expected_ratio * 2.0, cell.CellID
        checked[cell.FailureMode] += 1
    assert checked["dry_out"] >= 2 and checked["thermal_runaway"] >= 1, checked


def test_no_discharge_option():
    sim = simulate_fleet_with_truth(devices=1, cells_per_device=8, days=3, seed=0, discharge_every_days=0)
    r = sim.readings
    assert sim.summary["discharge_events"] == 0
    assert (r.InstantaneousCurrent.dropna() > 0).all()  # float charge only
    assert (r.ChargerInputMains == True).all() and not r.BMSBankDischargeCycle.any()  # noqa: E712
    assert (r.SocLatestValueForEveryCycle == 100.0).all()
    normal = simulate_fleet_with_truth(devices=1, cells_per_device=8, days=30, seed=0)
    assert normal.summary["discharge_events"] > 0
    with pytest.raises(InputError, match="discharge_every_days must be at least 0.0"):
        FleetConfig(discharge_every_days=-1)


def test_one_cell_without_failures_vrla_and_flooded():
    for chemistry in ("flooded", "vrla"):
        sim = simulate_fleet_with_truth(
            devices=1, cells_per_device=1, days=5, interval_minutes=15, seed=2, failure_rate=0.0, chemistry=chemistry
        )
        r = sim.readings
        assert (r.CellNumber == 1).all() and r.DeviceID.nunique() == 1
        assert r.IsDead.sum() == 0 and sim.summary["failed_cells"] == 0
        assert list(sim.cells.Fate) == ["healthy"]
        ok = r.CellVoltage < 60
        assert r.CellVoltage[ok].between(1.8, 2.6).mean() > 0.98
        # a one-cell string: the string voltage is the cell voltage (before sensor noise and anomalies)
        clean = ok & (r.IsAnomaly == 0)
        assert np.abs(r.StringVoltage[clean] - r.CellVoltage[clean]).median() < 0.01


def test_intervals_and_jitter():
    minute = simulate_fleet(
        devices=1,
        cells_per_device=2,
        days=1,
        interval_minutes=1,
        seed=0,
        duplicate_rate=0,
        out_of_order_rate=0,
        chemistry="vrla",
    )
    assert len(minute) == 2 * 1440
    hourly = simulate_fleet(
        devices=2,
        cells_per_device=3,
        days=10,
        interval_minutes=60,
        seed=0,
        duplicate_rate=0,
        out_of_order_rate=0,
        timestamp_jitter_seconds=900,
    )
    ts = pd.to_datetime(hourly[hourly.CellNumber == 1].groupby("DeviceID").PacketDateTime.apply(list).iloc[0])
    gaps = np.diff(ts.astype("int64")) / 1e9
    assert len(set(gaps)) > 10 and gaps.min() >= 3600 - 900 and gaps.max() <= 3600 + 900


def test_chemistry_errors_and_cli(tmp_path):
    with pytest.raises(InputError, match="chemistry must be one of 'flooded', 'vrla', got 'agm'"):
        FleetConfig(chemistry="agm")
    out = tmp_path / "v.csv"
    assert (
        main(
            [
                "--devices",
                "1",
                "--cells-per-device",
                "6",
                "--days",
                "1",
                "--chemistry",
                "vrla",
                "--discharge-every-days",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert frame.shape == (6 * 96, 75) and "CellSpecificGravity" not in frame.columns
    with pytest.raises(SystemExit):
        main(["--chemistry", "nicd", "--out", str(tmp_path / "x.csv")])


def test_sdv_works_on_vrla_tables_without_sg(workspace: Path):
    from bms_datagen.sdv_pipeline import evaluate, generate
    from bms_schema.reader import write_table

    folder = workspace / "data" / "vrla"
    folder.mkdir(parents=True)
    frame = simulate_fleet(
        devices=1,
        cells_per_device=4,
        days=2,
        interval_minutes=60,
        seed=0,
        chemistry="vrla",
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
    )
    write_table(to_minimal_table(frame), folder / "readings.csv")
    out = workspace / "runs" / "vrla-gen"
    result = generate(folder, out, seed=1, num_rows=150)
    synthetic = pd.read_csv(result.paths["readings"])
    assert "CellSpecificGravity" not in synthetic.columns and len(synthetic) == 150
    ok = synthetic.CellVoltage < 60
    assert synthetic.CellVoltage[ok].between(1.5, 3.0).all()
    report = evaluate(folder, synthetic_folder=out / "synthetic")
    assert 0.5 < report["quality"]["overall_score"] <= 1.0
    assert report["privacy"]["readings"]["copied_share"] < 0.05
    # more rows from the registered synthesizer, and a plot of a column
    from bms_datagen.sdv_data import analysis_view
    from bms_datagen.sdv_pipeline import load_pair, sample_registered
    from bms_datagen.sdv_plots import plot_column

    _, more, _ = sample_registered("sdv-vrla", workspace / "runs" / "more", num_rows=40, seed=2)
    assert len(more["readings"]) == 40 and "CellSpecificGravity" not in more["readings"].columns
    real_tables, synthetic_tables, metadata, _ = load_pair(folder, None)
    png, html = workspace / "t.png", workspace / "t.html"
    summary = plot_column(
        analysis_view(real_tables["readings"])["CellTemperature"],
        analysis_view(synthetic_tables["readings"])["CellTemperature"],
        metadata.tables["readings"].columns["CellTemperature"]["sdtype"],
        "CellTemperature",
        png,
        html,
        "plotly.min.js",
    )
    assert summary["kind"] == "numerical" and png.read_bytes()[:4] == b"\x89PNG"
    # the raw VRLA packet table (72 packet columns, no SG) synthesises too
    raw_folder = workspace / "data" / "vrla_raw"
    raw_folder.mkdir(parents=True)
    write_table(frame, raw_folder / "packets.csv")
    raw = generate(raw_folder, workspace / "runs" / "vrla-raw", seed=1, num_rows=100, register=False)
    packets = pd.read_csv(raw.paths["packets"])
    assert len(packets) == 100 and "CellSpecificGravity" not in packets.columns
    assert set(packets.columns) == set(frame.columns)
