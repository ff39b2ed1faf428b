"""Unit tests of the service logic: metrics text, feedback, drift, readings, context features, holder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_live.context import ReadingHistory, history_columns, live_features, sorted_features, string_median
from bms_live.drift import InputWindow, compare_feature, drift_report, psi
from bms_live.feedback import FeedbackTracker, PredictionStore, classification_metrics
from bms_live.holder import ModelHolder, ModelSpec
from bms_live.metrics import Counter, Histogram, ServiceMetrics
from bms_live.readings import readings_to_frame
from bms_live.settings import DriftThresholds
from bms_schema import Reading, load_limits, normalize, sort_readings
from live.fakes import ANOMALY_PARAMS, anomaly_reference, load_fake_anomaly, register


# -- metrics -------------------------------------------------------------------------------
def test_histogram_counts_are_cumulative_and_le_inclusive() -> None:
    h = Histogram("x_seconds", "help", (0.1, 0.5, 1.0), ("route",))
    h.observe_many([0.05, 0.1, 0.3, 0.5, 2.0, np.nan], route="/a")
    h.observe(0.7, route="/a")
    cumulative, total, count = h.snapshot(route="/a")
    assert cumulative.tolist() == [2, 4, 5, 6]
    assert count == 6 and total == pytest.approx(3.65)
    text = "\n".join(h.render())
    assert 'x_seconds_bucket{route="/a",le="0.1"} 2' in text
    assert 'x_seconds_bucket{route="/a",le="+Inf"} 6' in text
    assert 'x_seconds_count{route="/a"} 6' in text
    assert "# TYPE x_seconds histogram" in text


def test_counter_labels_and_escaping() -> None:
    c = Counter("req_total", "requests", ("route",))
    c.inc(route='/a"b')
    c.inc(2, route='/a"b')
    assert c.value(route='/a"b') == 3
    assert 'req_total{route="/a\\"b"} 3' in c.render()
    with pytest.raises(ValueError):
        c.inc(-1, route="/a")
    with pytest.raises(ValueError):
        c.inc(route="/a", status="200")


def test_service_metrics_render_is_prometheus_text() -> None:
    m = ServiceMetrics()
    m.requests.inc(route="/v1/anomaly", method="POST", status="200")
    m.anomaly_score.observe_many(np.array([0.2, 0.97]), version="v0001")
    text = m.render()
    assert text.endswith("\n")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in lines:
        name_labels, value = line.rsplit(" ", 1)
        float(value.replace("+Inf", "inf"))
    assert 'bms_live_anomaly_score_bucket{version="v0001",le="0.95"} 1' in text
    assert 'bms_live_anomaly_score_count{version="v0001"} 2' in text


# -- feedback ------------------------------------------------------------------------------
def test_classification_metrics_exact() -> None:
    predicted = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    actual = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    m = classification_metrics(predicted, actual)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 3)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    empty = classification_metrics(np.zeros(3, bool), np.zeros(3, bool))
    assert empty["precision"] is None and empty["recall"] is None and empty["f1"] is None


def test_feedback_is_rolling_and_replaces_repeated_ids() -> None:
    store = PredictionStore(capacity=100)
    batch = store.add("anomaly", "v0001", np.array([1, 1, 0, 0], bool), np.array([5.0, 4.0, 0.1, 0.2]))
    ids = batch.ids()
    tracker = FeedbackTracker(window=3)
    for pid, actual in zip(ids, [True, False, True, False]):
        tracker.record(store.get(pid), actual)
    # window 3 keeps the last three: (pred 1, actual 0), (0, 1), (0, 0)
    m = tracker.metrics()["anomaly"]
    assert (m["n"], m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 0, 1, 1, 1)
    tracker.record(store.get(ids[1]), True)  # corrected label for the same prediction: replaced, not added
    m = tracker.metrics()["anomaly"]
    assert (m["n"], m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 0, 1, 1)
    assert m["precision"] == 1.0 and m["recall"] == 0.5


def test_prediction_store_is_bounded_and_rejects_bad_ids() -> None:
    store = PredictionStore(capacity=5)
    first = store.add("anomaly", "v1", np.ones(3, bool), np.ones(3))
    second = store.add("anomaly", "v1", np.zeros(3, bool), np.zeros(3))
    assert len(store) == 3  # the first batch was dropped to stay within 5 rows
    assert store.get(first.ids()[0]) is None
    got = store.get(second.ids()[2])
    assert got is not None and got.predicted is False and got.version == "v1"
    for bad in ("nonsense", second.batch_id + "-9", second.batch_id + "-x", "-1"):
        assert store.get(bad) is None


# -- drift ---------------------------------------------------------------------------------
def _window(values: dict[str, np.ndarray], capacity: int = 5000) -> InputWindow:
    window = InputWindow(list(values), capacity)
    window.add(pd.DataFrame(values))
    return window


@pytest.mark.parametrize("n", [200, 3000])  # KS below ks_max_window, PSI above
def test_drift_flags_the_shifted_feature_only(n: int) -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 4000), "b": rng.normal(5, 2, 4000)})
    recent = {"a": rng.normal(0, 1, n), "b": rng.normal(5 + 2 * 1.0, 2, n)}  # b shifted by one SD
    report = drift_report(_window(recent), reference, DriftThresholds())
    assert report["flagged"] == ["b"]
    assert report["status"] == "drift"
    method = "ks" if n <= 500 else "psi"
    assert report["features"]["a"]["method"] == method and report["features"]["b"]["method"] == method
    assert report["features"]["a"]["flagged"] is False


def test_drift_needs_a_minimum_window_and_a_reference() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 1000)})
    report = drift_report(_window({"a": rng.normal(9, 1, 10)}), reference, DriftThresholds())
    assert report["status"] == "insufficient_data" and report["flagged"] == []
    assert drift_report(_window({"a": rng.normal(0, 1, 100)}), None, DriftThresholds())["status"] == "no_reference"


def test_psi_values() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 10_000)
    assert psi(ref, rng.normal(0, 1, 10_000)) < 0.01
    assert psi(ref, rng.normal(1, 1, 10_000)) > 0.5
    assert psi(np.full(100, 2.0), np.full(100, 2.0)) == pytest.approx(0.0)
    assert psi(np.full(100, 2.0), np.full(100, 3.0)) > 1.0
    ks = compare_feature(ref, rng.normal(0.02, 1, 400), DriftThresholds())
    assert ks["method"] == "ks" and ks["flagged"] is False


def test_input_window_is_a_ring_buffer() -> None:
    window = InputWindow(["a", "b"], capacity=4)
    window.add(pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
    window.add(pd.DataFrame({"a": [4.0, 5.0], "b": [1.0, 2.0]}))
    values = window.values()
    assert values[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert np.isnan(values[:2, 1]).all() and values[2:, 1].tolist() == [1.0, 2.0]
    window.add(pd.DataFrame({"a": np.arange(10.0)}))
    assert window.values()[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0]


# -- readings and features -----------------------------------------------------------------
def _fleet(cells: int, steps: int, device: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-01-01", periods=steps, freq="15min", tz="UTC")
    n = cells * steps
    return pd.DataFrame(
        {
            "DeviceID": device,
            "CellNumber": np.tile(np.arange(1, cells + 1), steps),
            "Timestamp": np.repeat(ts, cells),
            "CellVoltage": 2.23 + rng.normal(0, 0.01, n),
            "CellTemperature": 25 + rng.normal(0, 0.5, n),
            "CellSpecificGravity": 1.22 + rng.normal(0, 0.002, n),
            "InstantaneousCurrent": rng.choice([0.0, 0.0, -20.0, 5.0], n) + rng.normal(0, 0.1, n),
            "AmbientTemperature": 24 + rng.normal(0, 0.2, n),
        }
    )


def _readings(frame: pd.DataFrame) -> list[Reading]:
    records = frame.assign(Timestamp=frame["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_dict("records")
    return [Reading.model_validate(r) for r in records]


def test_readings_to_frame_matches_bms_schema_normalize() -> None:
    frame = _fleet(3, 4, "A")
    frame.loc[1, "CellVoltage"] = 65.535  # sentinel
    frame.loc[2, "CellTemperature"] = 150.0  # impossible
    frame.loc[3, "CellSpecificGravity"] = np.nan
    ours = readings_to_frame(_readings(frame), load_limits())
    reference, _ = normalize(frame)
    for column in reference.columns:
        expected = reference[column]
        if isinstance(expected.dtype, pd.CategoricalDtype):
            expected = expected.astype(object)
        np.testing.assert_array_equal(ours[column].to_numpy(), expected.to_numpy(), err_msg=column)
    assert ours["SensorFault"].tolist()[:4] == [False, True, False, False]
    assert ours["OutOfRange"].tolist()[:4] == [False, False, True, False]


def test_raw_packet_field_names_are_accepted() -> None:
    raw = {
        "Device ID": 7,
        "Cell ID": 2,
        "PacketDateTime": "2026-01-01T00:00:00",
        "Cell Voltage": 2.2,
        "Cell Temperature": 25,
        "SG": 1.2,
        "Instantaneous Current": 0,
        "Ambient Temperature": 24,
    }
    frame = readings_to_frame([Reading.model_validate(raw)], load_limits())
    assert frame.loc[0, "CellID"] == "7-2"
    assert frame.loc[0, "Timestamp"] == pd.Timestamp("2026-01-01T00:00:00Z")  # naive = UTC


def test_live_features_equal_batch_features_packet_by_packet() -> None:
    from bms_schema.features import FEATURE_COLUMNS, add_features

    frame = pd.concat([_fleet(4, 30, "A", 0), _fleet(3, 30, "B", 1)], ignore_index=True)
    canonical = readings_to_frame(_readings(frame), load_limits())
    batch = add_features(sort_readings(canonical))
    history = ReadingHistory(per_cell=12, columns=history_columns())
    parts = []
    for _, index in canonical.groupby("Timestamp", sort=True).groups.items():  # one packet per request
        parts.append(live_features(canonical.loc[index].reset_index(drop=True), history, window=12).frame)
    live = sort_readings(pd.concat(parts, ignore_index=True))
    for name in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            live[name].to_numpy(), batch[name].to_numpy(), rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name
        )


TEMP_PEER = {"TempDevString": ("CellTemperature", None)}


def test_single_reading_uses_peers_and_history() -> None:
    frame = _fleet(3, 14, "A")
    canonical = readings_to_frame(_readings(frame), load_limits())
    history = ReadingHistory(per_cell=12, columns=history_columns(TEMP_PEER))
    live_features(canonical.iloc[:39].reset_index(drop=True), history, window=12)  # 13 packets
    last = canonical.iloc[[39]].reset_index(drop=True)  # cell 1 of the 14th packet, alone
    got = live_features(last, history, window=12, peer_features=TEMP_PEER).frame
    assert got["VoltageDevString"].iloc[0] == 0.0  # its peers at this time have not arrived yet
    assert got["VoltageRollStd"].iloc[0] > 0  # the window holds 12 remembered readings
    from bms_schema.features import add_features

    batch = add_features(sort_readings(canonical.iloc[:40]))
    row = batch[(batch["CellID"] == "A-1") & (batch["Timestamp"] == last["Timestamp"].iloc[0])]
    assert got["VoltageRollMean"].iloc[0] == pytest.approx(row["VoltageRollMean"].iloc[0], abs=1e-12)
    assert got["VoltageRate"].iloc[0] == pytest.approx(row["VoltageRate"].iloc[0], abs=1e-9)
    # now the peers arrive: the string median includes the remembered reading of cell 1
    peers = canonical.iloc[40:42].reset_index(drop=True)
    got2 = live_features(peers, history, window=12).frame
    full = add_features(sort_readings(canonical))
    expected = full[full["Timestamp"] == peers["Timestamp"].iloc[0]].set_index("CellID")["VoltageDevString"]
    assert got2["VoltageDevString"].tolist() == pytest.approx(expected.loc[["A-2", "A-3"]].tolist(), abs=1e-12)


def test_missing_value_of_a_live_reading_carries_the_last_value_forward() -> None:
    frame = _fleet(2, 5, "A")
    frame.loc[9, "CellVoltage"] = 65.535  # cell 2, last packet: a sentinel
    canonical = readings_to_frame(_readings(frame), load_limits())
    history = ReadingHistory(per_cell=12, columns=history_columns())
    live_features(canonical.iloc[:8].reset_index(drop=True), history, window=12)
    got = live_features(canonical.iloc[8:].reset_index(drop=True), history, window=12)
    assert got.imputed.tolist() == [False, True]
    assert got.frame["CellVoltage"].iloc[1] == pytest.approx(frame.loc[7, "CellVoltage"])
    assert bool(got.frame["SensorFault"].iloc[1]) is True


def test_history_keeps_the_newest_rows_per_cell() -> None:
    frame = _fleet(2, 20, "A")
    canonical = readings_to_frame(_readings(frame), load_limits())
    history = ReadingHistory(per_cell=5, columns=history_columns())
    live_features(canonical, history, window=12)
    assert len(history) == 10
    block = history.context(np.array(["A"], dtype=object))
    assert block is not None
    newest = canonical["Timestamp"].array.asi8.max()
    assert block.ts.max() == newest and sorted(set(block.cell_id)) == ["A-1", "A-2"]


def test_a_string_without_peers_keeps_its_longer_own_history() -> None:
    """A one-cell string is scored on its own history (OWN_HISTORY_REACH readings back), a string with peers on
    HISTORY_REACH: the history keeps ``per_cell_alone`` readings per cell of the first, ``per_cell`` of the other;
    the service sizes them so (live = batch for no-peer strings too)."""
    from bms_anomaly.features import HISTORY_REACH, OWN_HISTORY_REACH
    from bms_live.service import LiveService
    from bms_live.settings import Settings

    frame = pd.concat([_fleet(1, 60, "UPS"), _fleet(4, 60, "S")], ignore_index=True)
    canonical = readings_to_frame(_readings(frame), load_limits())
    history = ReadingHistory(per_cell=5, columns=history_columns(), per_cell_alone=40)
    for _, index in canonical.groupby("Timestamp", sort=True).groups.items():  # one packet per request
        live_features(canonical.loc[index].reset_index(drop=True), history, window=4)
    for device, cells, kept in (("UPS", 1, 40), ("S", 4, 5)):
        block = history.context(np.array([device], dtype=object))
        assert block is not None
        counts = pd.Series(block.cell_id).value_counts()
        assert len(counts) == cells and (counts >= kept).all() and (counts <= 1.5 * kept).all(), counts
        newest = np.sort(canonical.loc[canonical["DeviceID"] == device, "Timestamp"].array.asi8.copy())[-kept:]
        assert set(newest) <= set(block.ts.tolist())  # the newest readings are kept
    service = LiveService(Settings())
    assert service.history.reach(1) == OWN_HISTORY_REACH and service.history.reach(24) == max(HISTORY_REACH, 128)


def test_string_median_matches_pandas() -> None:
    rng = np.random.default_rng(5)
    devices = rng.choice(np.array(["A", "B"], dtype=object), 200)
    ts = rng.integers(0, 5, 200).astype(np.int64)
    values = rng.normal(size=200)
    values[rng.random(200) < 0.2] = np.nan
    expected = pd.Series(values).groupby([devices, ts]).transform("median").to_numpy()
    np.testing.assert_allclose(string_median(devices, ts, values), expected, equal_nan=True)


def test_sorted_features_equal_compute_features() -> None:
    from bms_schema.features import compute_features

    canonical = sort_readings(readings_to_frame(_readings(_fleet(5, 20, "A")), load_limits()))
    core = {
        c: canonical[c].to_numpy(dtype=float)
        for c in ("CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature")
    }
    ours = sorted_features(
        canonical["DeviceID"].to_numpy(object),
        canonical["CellID"].to_numpy(object),
        canonical["CellNumber"].to_numpy(),
        canonical["Timestamp"].array.asi8,
        core,
        12,
    )
    theirs = compute_features(canonical, window=12)
    assert list(ours) == list(theirs)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-12, equal_nan=True, err_msg=name)


# -- holder --------------------------------------------------------------------------------
def test_holder_swaps_and_keeps_serving_when_a_new_version_is_broken(registry) -> None:
    spec = ModelSpec("anomaly", "anomaly_hybrid", load_fake_anomaly)
    holder = ModelHolder(spec, registry)
    assert holder.refresh().status == "absent"
    register(registry, "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())
    first = holder.refresh()
    assert (first.status, first.version) == ("loaded", "v0001")
    old = holder.require()
    assert holder.refresh().status == "unchanged"
    register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "broken": True}, anomaly_reference())
    failed = holder.refresh()
    assert failed.status == "failed" and "broken on purpose" in failed.error
    assert holder.require() is old  # still serving v0001
    assert holder.describe()["last_error"].startswith("ValueError")
    register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "tag": "third"}, anomaly_reference())
    third = holder.refresh()
    assert (third.status, third.version, third.previous) == ("loaded", "v0003", "v0001")
    assert holder.require().model.params["tag"] == "third" and "last_error" not in holder.describe()
    assert old.model.params["tag"] == "first"  # the old object is untouched for requests still using it


# -- the anomaly model's own features ------------------------------------------------------
def test_live_anomaly_features_equal_bms_anomaly_features_packet_by_packet() -> None:
    """The anomaly model's peer and history features, computed live over remembered rows with
    bms_anomaly's array-level functions, equal ``derive_features`` on the whole table."""
    from bms_anomaly.features import HISTORY_FEATURES, HISTORY_REACH, PEER_FEATURES, UNCHANGED_RUN, derive_features
    from bms_schema.features import add_features

    frame = pd.concat([_fleet(4, 30, "A", 0), _fleet(3, 30, "B", 1)], ignore_index=True)
    frame["CellSpecificGravity"] = frame["CellSpecificGravity"].round(2)  # unchanged runs
    canonical = readings_to_frame(_readings(frame), load_limits())
    names = [*PEER_FEATURES, *HISTORY_FEATURES, UNCHANGED_RUN]
    batch = derive_features(add_features(sort_readings(canonical)), names)
    history = ReadingHistory(per_cell=HISTORY_REACH, columns=history_columns(PEER_FEATURES))
    parts = [
        live_features(
            canonical.loc[index].reset_index(drop=True),
            history,
            window=12,
            peer_features=PEER_FEATURES,
            history_features=names,
        ).frame
        for _, index in canonical.groupby("Timestamp", sort=True).groups.items()
    ]  # one packet per request
    live = sort_readings(pd.concat(parts, ignore_index=True))
    assert batch[UNCHANGED_RUN].max() > 2 and batch["TempDevChange"].notna().sum() > 100
    for name in names:
        np.testing.assert_allclose(
            live[name].to_numpy(), batch[name].to_numpy(), rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name
        )


def test_iso_timestamps() -> None:
    from bms_live.service import _iso

    stamps = pd.Series(pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T00:15:30Z"]))
    assert _iso(stamps) == ["2026-01-01T00:00:00Z", "2026-01-01T00:15:30Z"]
    fractional = pd.Series(pd.to_datetime(["2026-01-01T00:00:00.250Z"]))
    assert _iso(fractional) == ["2026-01-01T00:00:00.250000Z"]


# -- settings and command line -------------------------------------------------------------
def test_settings_from_environment(monkeypatch) -> None:
    from bms_live.server import parse_args
    from bms_live.settings import Settings
    from bms_schema.errors import InputError

    monkeypatch.setenv("BMS_API_KEY", "k")
    monkeypatch.setenv("BMS_LIVE_MAX_READINGS", "50")
    monkeypatch.setenv("BMS_LIVE_POLL_SECONDS", "0.5")
    settings = Settings.from_env(port=9000, host=None)
    assert (settings.api_key, settings.max_readings, settings.poll_seconds) == ("k", 50, 0.5)
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    monkeypatch.setenv("BMS_LIVE_MAX_READINGS", "lots")
    with pytest.raises(InputError, match="BMS_LIVE_MAX_READINGS='lots' is not a whole number"):
        Settings.from_env()
    args = parse_args(["--port", "8001", "--poll-seconds", "0"])
    assert args.host is None and args.port == 8001 and args.poll_seconds == 0.0


def test_live_own_history_features_and_state_equal_batch_for_a_one_cell_string_through_a_discharge() -> None:
    """A string of one cell (no peers) through float, discharge, rest, recharge and float, with injected
    sags and hot spots, sent 10 readings per request: the operating state the live service derives over
    its remembered readings and the own-history features equal batch scoring's on the whole record."""
    from bms_anomaly.features import OWN_FEATURES, OWN_HISTORY_REACH, local_features, state_codes, state_runs
    from bms_datagen.records import simulate_cycle_record
    from bms_schema.state import OPERATING_STATE

    record = simulate_cycle_record(
        seed=3, interval_seconds=30, cells=1, steps=1200, float_hours_before=1.5, discharge_hours=1.0
    ).readings
    record["DeviceID"] = "UPS1"
    frame = record[
        ["DeviceID", "CellNumber", "Timestamp", "CellVoltage", "CellTemperature", "InstantaneousCurrent"]
    ].assign(AmbientTemperature=record["AmbientTemperature"])
    canonical = sort_readings(readings_to_frame(_readings(frame), load_limits()))
    names = list(OWN_FEATURES)
    states = state_codes(canonical)
    assert {0, 1, 2} <= set(states.tolist())  # float, charge and discharge
    batch = local_features(canonical, names, states)
    history = ReadingHistory(per_cell=OWN_HISTORY_REACH, columns=history_columns())
    parts = [
        live_features(
            canonical.iloc[i : i + 10].reset_index(drop=True), history, window=12, history_features=names
        ).frame
        for i in range(0, len(canonical), 10)
    ]
    live = sort_readings(pd.concat(parts, ignore_index=True))
    live_states = live[OPERATING_STATE].cat.codes.to_numpy().astype(np.int64)
    # Not yet equal everywhere: the state's current thresholds come from the readings at hand (the float
    # current's lower quartile), which over the remembered readings differ a little from the whole record's.
    # Here that moves the end of the recharge's current taper by 12 and 8 readings (absorption -> equalize at
    # 724 vs 736, -> float at 803 vs 811) of 1,200; every other state change is at the same reading.
    agree = live_states == states
    assert agree.mean() >= 0.98, np.flatnonzero(~agree)
    # Own-history features: equal wherever the reading's state run is the same in both (all runs up to the
    # recharge's end, ~63 %); the temperature's baseline runs across state changes: equal everywhere.
    run_live, run_batch = (
        state_runs(np.zeros(len(states), dtype=np.int64), live_states),
        state_runs(np.zeros(len(states), dtype=np.int64), states),
    )
    same_run = (run_live == run_batch) & agree
    assert same_run[:700].all() and same_run.mean() >= 0.6
    assert np.isfinite(batch["VoltageChangeOwn"]).sum() > 1000
    np.testing.assert_allclose(live["TempChangeOwn"], batch["TempChangeOwn"], rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(
        live["VoltageChangeOwn"].to_numpy()[same_run],
        batch["VoltageChangeOwn"][same_run],
        rtol=1e-9,
        atol=1e-9,
        equal_nan=True,
    )
