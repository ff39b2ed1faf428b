"""Fleet simulator: format, determinism, physics, failure/anomaly/dropout rates, telemetry mess."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_datagen.anomalies import ANOMALY_TYPES
from bms_datagen.fleet_config import FleetConfig
from bms_datagen.packet_format import LABEL_COLUMNS, RAW_COLUMNS
from bms_datagen.simulator import main, simulate_fleet, simulate_fleet_with_truth, write_fleet_csv, write_simulation
from bms_schema import InputError, load_readings, normalize

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bms_packet_sample.csv"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sim():
    return simulate_fleet_with_truth(
        devices=4, cells_per_device=12, days=30, interval_minutes=30, seed=7, failure_rate=0.1, anomaly_rate=0.02
    )


@pytest.fixture(scope="module")
def canon(sim):
    frame, report = normalize(sim.readings)
    return frame, report


def test_columns_match_the_real_packet_format(sim, tmp_path):
    with open(SAMPLE, newline="") as handle:
        header = next(csv.reader(handle))
    assert len(header) == 73
    assert list(sim.readings.columns) == header + list(LABEL_COLUMNS)
    assert list(RAW_COLUMNS) == header
    path = write_fleet_csv(sim.readings.head(500), tmp_path / "f.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert {len(r) for r in rows} == {76}  # a proper table: every row has every field
    first = dict(zip(rows[0], rows[1]))
    assert first["PacketDateTime"] == "2025-01-01T00:00:00"
    assert first["Date"] == "01/01/2025" and first["Time"] == "00:00:00"
    assert first["ServerTime"].startswith("2025-01-01T00:00:0")
    assert first["ChargerOutputMccb"] == "True" and first["ChargerTrip"] == "False"
    assert first["AnomalyType"] in ("none",) + ANOMALY_TYPES
    # string-level fields are repeated on every cell row of a packet
    packet = sim.readings[(sim.readings.DeviceID == 2) & (sim.readings.PacketID == 100)].drop_duplicates("CellNumber")
    assert len(packet) == 12
    for col in (
        "StringVoltage",
        "InstantaneousCurrent",
        "AmbientTemperature",
        "SerialNumber",
        "SocLatestValueForEveryCycle",
    ):
        assert packet[col].nunique() == 1


def test_same_seed_gives_byte_identical_csv(tmp_path):
    params = dict(devices=2, cells_per_device=6, days=5, interval_minutes=20)
    a = write_fleet_csv(simulate_fleet(seed=3, **params), tmp_path / "a.csv")
    b = write_fleet_csv(simulate_fleet(seed=3, **params), tmp_path / "b.csv")
    c = write_fleet_csv(simulate_fleet(seed=4, **params), tmp_path / "c.csv")
    sim = simulate_fleet_with_truth(seed=3, **params)
    d = write_simulation(sim, tmp_path / "d.csv", tmp_path / "truth.csv")["readings"]
    assert sha(a) == sha(b) == sha(d)
    assert sha(a) != sha(c)
    assert (tmp_path / "truth.csv").read_text().startswith("CellID,DeviceID,CellNumber")


def test_changing_a_mess_rate_keeps_the_physics(tmp_path):
    clean = simulate_fleet(
        devices=1,
        cells_per_device=4,
        days=3,
        seed=5,
        dropout_rate=0.0,
        anomaly_rate=0.0,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
        missing_rate=0.0,
    )
    messy = simulate_fleet(
        devices=1,
        cells_per_device=4,
        days=3,
        seed=5,
        dropout_rate=0.3,
        anomaly_rate=0.0,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
        missing_rate=0.0,
    )
    ok = messy.CellVoltage < 60
    assert ok.mean() == pytest.approx(0.7, abs=0.05)
    np.testing.assert_array_equal(clean.CellVoltage[ok], messy.CellVoltage[ok])


def test_normalises_with_expected_counts(sim, tmp_path):
    path = write_fleet_csv(sim.readings, tmp_path / "fleet.csv")
    frame, report = load_readings(path)
    assert report.input_format == "raw_packet"
    assert report.rows_out == len(sim.readings)
    assert report.devices == 4 and report.cells == 48
    sentinel_rows = int((sim.readings.CellVoltage == 65.535).sum())
    assert report.sentinel_rows == sentinel_rows
    unique = ~sim.readings.duplicated()
    assert int((sim.readings.CellVoltage[unique] == 65.535).sum()) == sim.summary["dropout_rows"]
    assert set(frame.CellID.unique()) == set(sim.cells.CellID)
    assert frame.IsDead.sum() == sim.readings.IsDead.sum()
    assert (frame.AnomalyType == "none").sum() == (sim.readings.IsAnomaly == 0).sum()
    # impossible values only come from labelled sensor spikes
    assert (frame.OutOfRange & (frame.AnomalyType != "sensor_spike")).sum() == 0


def test_default_dropout_rate_is_near_the_sample():
    frame = simulate_fleet(devices=2, cells_per_device=10, days=10, seed=1)
    share = float((frame.CellVoltage == 65.535).mean())
    assert share == pytest.approx(146 / 750, abs=0.015)
    drop = frame.CellVoltage == 65.535
    assert (frame.CellTemperature[drop] == 65535.0).all() and (frame.CellSpecificGravity[drop] == 59.749).all()
    # ProblemCells counts dropped-out (and dead) cells of the packet
    per_packet = drop.groupby([frame.DeviceID, frame.PacketID]).sum()
    reported = frame.groupby(["DeviceID", "PacketID"]).ProblemCells.first()
    dead = frame.IsDead.groupby([frame.DeviceID, frame.PacketID]).sum()
    dup = frame.duplicated(["DeviceID", "PacketID", "CellNumber"]).groupby([frame.DeviceID, frame.PacketID]).any()
    keep = ~dup
    assert (reported[keep] == (per_packet + dead)[keep]).all()


def test_physical_ranges(canon):
    frame, _ = canon
    healthy = (frame.IsAnomaly == 0) & (frame.IsDead == 0) & ~frame.SensorFault
    # a dead cell in the string pushes its peers up (the charger holds the string voltage): leave those packets out
    string_has_dead = frame.groupby(["DeviceID", "Timestamp"]).IsDead.transform("max") == 1
    on_float = (
        healthy
        & frame.InstantaneousCurrent.between(0.0, 2.0)
        & (frame.SocLatestValueForEveryCycle > 99.5)
        & ~string_has_dead
    )
    v = frame.loc[on_float, "CellVoltage"].dropna()
    assert v.between(2.18, 2.31).mean() > 0.99
    assert v.between(2.20, 2.27).mean() > 0.90
    sg = frame.loc[on_float, "CellSpecificGravity"].dropna()
    assert sg.between(1.185, 1.245).mean() > 0.99
    # measured SG falls ~0.0007 per degC (fit within cells, on float at full charge)
    sub = frame.loc[on_float, ["CellID", "CellSpecificGravity", "CellTemperature"]].dropna()
    centred = sub[["CellSpecificGravity", "CellTemperature"]] - sub.groupby("CellID")[
        ["CellSpecificGravity", "CellTemperature"]
    ].transform("mean")
    slope = np.polyfit(centred.CellTemperature, centred.CellSpecificGravity, 1)[0]
    assert -0.0009 < slope < -0.0005
    # cell temperature = ambient + small rack offset + I^2R heating
    rise = (frame.CellTemperature - frame.AmbientTemperature)[healthy].dropna()
    assert rise.quantile(0.01) > -2.0 and rise.quantile(0.99) < 6.0
    # discharges: negative current, voltage below OCV (= SG + 0.84), SG lower than on float
    dis = healthy & (frame.InstantaneousCurrent < -1.0)
    assert dis.sum() > 100
    assert (frame.CellVoltage[dis] < frame.CellSpecificGravity[dis] + 0.84).mean() > 0.98
    assert frame.loc[dis, "CellSpecificGravity"].mean() < sg.mean() - 0.01
    assert frame.loc[on_float, "AmbientTemperature"].dropna().between(5, 45).all()
    # daily ambient cycle: afternoon warmer than early morning
    hour = frame.Timestamp.dt.hour
    assert frame.AmbientTemperature[hour == 15].mean() > frame.AmbientTemperature[hour == 3].mean() + 2.0


def test_failure_rate_and_death_labels(sim, canon):
    frame, _ = canon
    cells = sim.cells
    # 48 cells, 10 % per 30 days over 30 days -> 4.8 expected; stochastic rounding gives 4 or 5
    failed = cells[cells.Fate == "failed"]
    assert len(failed) in (4, 5)
    assert set(failed.FailureMode) <= {"sulfation", "dry_out", "internal_short"}
    big = simulate_fleet_with_truth(
        devices=10, cells_per_device=30, days=60, interval_minutes=240, seed=2, failure_rate=0.05, dropout_rate=0.0
    )
    n_failed = int((big.cells.Fate == "failed").sum())
    assert n_failed == pytest.approx(300 * (1 - 0.95**2), abs=1.0)
    dead_cells = set(frame.loc[frame.IsDead == 1, "CellID"])
    assert dead_cells == set(failed.CellID)
    ordered = frame.sort_values(["CellID", "Timestamp"], kind="stable")
    # IsDead is 1 from death onwards: never goes back to 0
    assert (ordered.groupby("CellID").IsDead.diff().fillna(0) >= 0).all()
    first_dead = ordered[ordered.IsDead == 1].groupby("CellID").Timestamp.min()
    death = pd.to_datetime(failed.set_index("CellID").DeathTime, utc=True)
    lag = (first_dead - death.loc[first_dead.index]).dt.total_seconds()
    assert ((lag >= 0) & (lag <= 30 * 60)).all()


def test_degradation_shows_before_death(sim, canon):
    """In the last day before death the failing cell already deviates from its string peers."""
    frame, _ = canon
    ok = (frame.IsAnomaly == 0) & ~frame.SensorFault
    failed = sim.cells[sim.cells.Fate == "failed"].set_index("CellID")
    signals = {
        "sulfation": ("CellSpecificGravity", -1),
        "dry_out": ("CellTemperature", +1),
        "internal_short": ("CellVoltage", -1),
    }
    checked = 0
    for cell_id, row in failed.iterrows():
        death = pd.Timestamp(row.DeathTime, tz="UTC")
        column, sign = signals[row.FailureMode]
        device = frame.DeviceID == cell_id.split("-")[0]
        window = ok & device & frame.Timestamp.between(death - pd.Timedelta("1D"), death - pd.Timedelta("1h"))
        early = ok & device & (frame.Timestamp < frame.Timestamp.min() + pd.Timedelta("1D"))
        if window[frame.CellID == cell_id].sum() < 10:
            continue

        def deviation(mask: pd.Series) -> float:
            mine = frame.loc[mask & (frame.CellID == cell_id), column].median()
            peers = frame.loc[mask & (frame.CellID != cell_id), column].median()
            return sign * (mine - peers)

        threshold = {"CellSpecificGravity": 0.008, "CellTemperature": 1.5, "CellVoltage": 0.02}[column]
        assert deviation(window) - deviation(early) > threshold, (cell_id, row.FailureMode)
        checked += 1
    assert checked >= 3


def test_anomaly_rate_and_types(sim, canon):
    frame, _ = canon
    readings = sim.readings
    unique = ~readings.duplicated()
    alive = unique & (readings.IsDead == 0)
    share = readings.loc[alive, "IsAnomaly"].mean()
    assert share == pytest.approx(0.02, rel=0.12)
    assert set(readings.loc[readings.IsAnomaly == 1, "AnomalyType"]) == set(ANOMALY_TYPES)
    assert (readings.loc[readings.IsAnomaly == 0, "AnomalyType"] == "none").all()
    assert readings.loc[readings.IsDead == 1, "IsAnomaly"].sum() == 0
    # thermal excursions are visibly hotter than the cell's own normal readings
    base = frame[(frame.IsAnomaly == 0) & ~frame.SensorFault].groupby("CellID").CellTemperature.median()
    hot = frame[frame.AnomalyType == "thermal_excursion"]
    assert (hot.CellTemperature - hot.CellID.map(base)).mean() > 3.0
    sags = frame[frame.AnomalyType == "voltage_sag"]
    vbase = frame[(frame.IsAnomaly == 0) & ~frame.SensorFault].groupby("CellID").CellVoltage.median()
    assert (sags.CellVoltage - sags.CellID.map(vbase)).mean() < -0.05
    none = simulate_fleet(devices=1, cells_per_device=4, days=2, seed=0, anomaly_rate=0.0)
    assert none.IsAnomaly.sum() == 0


def test_duplicates_and_out_of_order_rows(sim):
    readings = sim.readings
    dup_rows = int(readings.duplicated().sum())
    assert dup_rows == sim.summary["duplicate_rows"] > 0
    assert len(readings) == sim.summary["base_rows"] + dup_rows
    for _, device in readings.groupby("DeviceID", sort=False):
        ts = pd.to_datetime(device.PacketDateTime).to_numpy()
        assert (np.diff(ts.astype("int64")) < 0).any()
    clean = simulate_fleet(devices=2, cells_per_device=3, days=2, seed=0, duplicate_rate=0.0, out_of_order_rate=0.0)
    assert clean.duplicated().sum() == 0
    for _, device in clean.groupby("DeviceID"):
        assert pd.to_datetime(device.PacketDateTime).is_monotonic_increasing


def test_missing_fields_are_empty(tmp_path):
    frame = simulate_fleet(devices=2, cells_per_device=8, days=10, seed=3, missing_rate=0.02)
    for col in ("CellVoltage", "CellTemperature", "CellSpecificGravity", "AmbientTemperature", "InstantaneousCurrent"):
        assert frame[col].isna().mean() == pytest.approx(0.004, abs=0.002)


def test_single_cell_and_short_runs():
    frame = simulate_fleet(devices=1, cells_per_device=1, days=0.5, interval_minutes=60, seed=0)
    assert len(frame) >= 12 and (frame.CellNumber == 1).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"devices": 0}, "devices must be between 1 and 10000, got 0"),
        ({"cells_per_device": 2.5}, "cells_per_device must be a whole number, got 2.5"),
        ({"failure_rate": 1.5}, "failure_rate must be at least 0.0 and at most 0.9, got 1.5"),
        ({"interval_minutes": 0}, "interval_minutes must be greater than 0.0 and at most 1440.0, got 0.0"),
        ({"days": 0.001}, "gives no reading"),
        ({"start": "yesterday-ish"}, "start 'yesterday-ish' is not an ISO 8601 timestamp"),
        ({"devices": 10000, "cells_per_device": 1000}, "more than the limit of 20,000,000"),
    ],
)
def test_bad_parameters_are_clear_errors(params, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        FleetConfig(**params)


def test_cli_writes_csv_and_truth(tmp_path, capsys):
    out, truth = tmp_path / "cli.csv", tmp_path / "truth.csv"
    code = main(
        [
            "--devices",
            "2",
            "--cells-per-device",
            "3",
            "--days",
            "2",
            "--seed",
            "9",
            "--out",
            str(out),
            "--truth",
            str(truth),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert '"rows"' in printed
    frame = pd.read_csv(out)
    assert frame.shape[1] == 76 and frame.DeviceID.nunique() == 2
    assert pd.read_csv(truth).shape[0] == 6
    assert main(["--devices", "0", "--out", str(tmp_path / "bad.csv")]) == 2
    assert not (tmp_path / "bad.csv").exists()
