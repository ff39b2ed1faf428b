"""The charge/discharge record builder: phases, physics per phase, labelled injected faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_datagen.records import PHASES, simulate_cycle_record, write_record
from bms_datagen.simulator import main as simulator_main
from bms_schema import InputError


@pytest.fixture(scope="module")
def record():
    return simulate_cycle_record(seed=0)


def test_default_record_shape_and_phases(record):
    r = record.readings
    assert len(r) == 6 * 16_000 and record.summary["readings_per_cell"] == 16_000
    assert list(r.columns) == [
        "Timestamp",
        "DeviceID",
        "CellNumber",
        "CellVoltage",
        "CellTemperature",
        "InstantaneousCurrent",
        "AmbientTemperature",
        "StringVoltage",
        "Phase",
        "TrueState",
        "IsDead",
        "IsAnomaly",
        "AnomalyType",
    ]
    step = r.Timestamp.drop_duplicates().diff().dropna().dt.total_seconds()
    assert (step == 5.0).all()
    order = r.Phase.drop_duplicates().tolist()
    assert order == list(PHASES)
    per_phase = r[r.CellNumber == 1].groupby("Phase").size()
    assert per_phase["discharge"] == 4 * 720 and per_phase["rest"] == 720
    assert 1.5 < record.summary["bulk_hours"] < 4.0 and 1.0 < record.summary["absorption_hours"] <= 4.0
    assert set(r.TrueState) == {"float", "discharge", "rest", "charge"}


def test_physics_per_phase(record):
    r = record.readings
    clean = r[r.IsAnomaly == 0]
    by = clean.groupby("Phase")
    cur = by.InstantaneousCurrent.median()
    assert cur["discharge"] == pytest.approx(-12.5, abs=0.1)  # C/8 of 100 Ah
    assert cur["bulk"] == pytest.approx(15.0, abs=0.1)  # 0.15 C constant current
    assert abs(cur["rest"]) < 0.05 and 0.05 < cur["float_before"] < 0.3  # float current ~1.5 mA/Ah
    v = by.CellVoltage
    assert v.quantile(0.01)["float_before"] > 2.24 and v.quantile(0.99)["float_before"] < 2.31  # VRLA float
    assert v.median()["absorption"] == pytest.approx(2.40, abs=0.01)
    assert v.max()["discharge"] < 2.14 and 1.90 < v.min()["discharge"]
    # the discharge voltage falls as the charge is taken out; the rest voltage recovers towards OCV
    dis = clean[(clean.Phase == "discharge") & (clean.CellNumber == 3)].CellVoltage.to_numpy()
    assert dis[-100:].mean() < dis[200:300].mean() - 0.02
    rest = clean[(clean.Phase == "rest") & (clean.CellNumber == 3)].CellVoltage.to_numpy()
    assert rest[-50:].mean() > rest[:5].mean() + 0.01 and rest[-50:].mean() < 2.10
    # bulk: the voltage rises to the absorption level
    bulk = clean[(clean.Phase == "bulk") & (clean.CellNumber == 2)].CellVoltage.to_numpy()
    assert bulk[-20:].mean() > 2.37 and bulk[:100].mean() < 2.25
    # string voltage = sum of the cells
    one_time = r[r.Timestamp == r.Timestamp.iloc[6 * 100]]
    assert one_time.StringVoltage.iloc[0] == pytest.approx(one_time.CellVoltage.sum(), abs=0.01)
    # VRLA heats at the end of charge (recombination) and under the discharge current
    t = clean.groupby("Phase").apply(
        lambda f: (f.CellTemperature - f.AmbientTemperature).median(), include_groups=False
    )
    assert t["absorption"] > t["float_before"] + 0.3


def test_injected_faults_are_labelled_and_visible(record):
    r, faults = record.readings, record.faults
    assert list(faults.type) == ["voltage_sag"] * 4 + ["hot_spot"] * 2
    assert set(faults.phase) == {"float_before", "discharge", "rest", "bulk", "float_after"}
    assert r.IsAnomaly.sum() == faults.rows.sum() == record.summary["anomaly_rows"]
    assert (r.loc[r.IsAnomaly == 0, "AnomalyType"] == "none").all()
    assert record.summary["anomaly_share"] < 0.01
    wide_v = r.pivot(index="Timestamp", columns="CellNumber", values="CellVoltage")
    wide_t = r.pivot(index="Timestamp", columns="CellNumber", values="CellTemperature")
    for _, f in faults.iterrows():
        idx = slice(f.start_index, f.end_index)
        cell = f.cell
        others = [c for c in wide_v.columns if c != cell]
        if f.type == "voltage_sag":
            inside = (wide_v.iloc[idx][cell] - wide_v.iloc[idx][others].mean(axis=1)).mean()
            before = (
                wide_v.iloc[f.start_index - 30 : f.start_index][cell]
                - wide_v.iloc[f.start_index - 30 : f.start_index][others].mean(axis=1)
            ).mean()
            assert before - inside == pytest.approx(0.08, abs=0.01), f.phase
        else:
            plateau = slice(f.start_index + 20, f.end_index - 20)
            inside = (wide_t.iloc[plateau][cell] - wide_t.iloc[plateau][others].mean(axis=1)).mean()
            before = (
                wide_t.iloc[f.start_index - 30 : f.start_index][cell]
                - wide_t.iloc[f.start_index - 30 : f.start_index][others].mean(axis=1)
            ).mean()
            assert inside - before == pytest.approx(12.0, abs=0.3), f.phase


def test_options_one_cell_flooded_other_faults_and_jitter(tmp_path):
    one = simulate_cycle_record(
        seed=1,
        cells=1,
        chemistry="flooded",
        interval_seconds=10,
        steps=9000,
        faults=["stuck_sensor", "loose_connection", "sensor_spike"],
    )
    r = one.readings
    assert (r.CellNumber == 1).all() and len(r) == 9000
    assert set(one.faults.type) == {"stuck_sensor", "loose_connection", "sensor_spike"}
    stuck = one.faults.set_index("type").loc["stuck_sensor"]
    assert r.CellVoltage.iloc[stuck.start_index : stuck.end_index].nunique() == 1
    loose = one.faults.set_index("type").loc["loose_connection"]
    window = r.iloc[loose.start_index : loose.end_index]
    assert (window.Phase == "discharge").all()  # current flows: the extra I x R shows (-12.5 A x 4 mOhm)
    assert one.faults.set_index("type").loc["sensor_spike", "rows"] == 1
    fl = r[(r.Phase == "float_before") & (r.IsAnomaly == 0)].CellVoltage
    assert fl.between(2.19, 2.28).mean() > 0.99  # flooded float window
    # explicit placement, clear errors
    rec = simulate_cycle_record(
        seed=2,
        cells=2,
        steps=18_000,
        faults=[{"type": "hot_spot", "cell": 2, "phase": "rest", "at": 0.1, "minutes": 5, "magnitude": 8.0}],
    )
    assert rec.faults.iloc[0].rows == 60 and rec.faults.iloc[0].phase == "rest"
    with pytest.raises(InputError, match="type must be one of voltage_sag"):
        simulate_cycle_record(faults=["meltdown"])
    with pytest.raises(InputError, match="unknown key"):
        simulate_cycle_record(faults=[{"type": "hot_spot", "when": 3}])
    with pytest.raises(InputError, match="but the cycle needs"):
        simulate_cycle_record(steps=1000)
    none = simulate_cycle_record(seed=0, cells=1, faults=[])
    assert none.readings.IsAnomaly.sum() == 0
    jit = simulate_cycle_record(seed=0, cells=1, steps=12_000, interval_seconds=7, jitter_seconds=2, faults=[])
    gaps = jit.readings.Timestamp.diff().dropna().dt.total_seconds()
    assert gaps.min() >= 3.0 and gaps.max() <= 11.0 and gaps.nunique() > 50
    paths = write_record(rec, tmp_path / "rec.csv", tmp_path / "faults.csv")
    back = pd.read_csv(paths["readings"])
    assert back.Timestamp.iloc[0] == "2025-03-01T00:00:00.000Z" and len(back) == len(rec.readings)
    assert pd.read_csv(paths["faults"]).type.tolist() == ["hot_spot"]


def test_same_seed_same_record_and_cli(tmp_path):
    a = simulate_cycle_record(seed=4, cells=2, steps=16_000, interval_seconds=5)
    b = simulate_cycle_record(seed=4, cells=2, steps=16_000, interval_seconds=5)
    pd.testing.assert_frame_equal(a.readings, b.readings)
    c = simulate_cycle_record(seed=5, cells=2, steps=16_000, interval_seconds=5)
    assert not np.array_equal(a.readings.CellVoltage, c.readings.CellVoltage)
    out, faults = tmp_path / "r.csv", tmp_path / "f.csv"
    assert simulator_main(["--cycle-record", "--record-cells", "1", "--out", str(out), "--truth", str(faults)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 16_000 and frame.IsAnomaly.sum() > 0
    assert len(pd.read_csv(faults)) == 6
    from bms_datagen.records import main as records_main

    assert records_main(["--out", str(tmp_path / "x.csv"), "--cells", "0"]) == 2
