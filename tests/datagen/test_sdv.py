"""SDV synthesis: single table, sequential (PAR), multi-table (HMA), determinism, registry, privacy, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_datagen.sdv_data import read_folder
from bms_datagen.sdv_pipeline import evaluate, generate, load_registered, sample_registered
from bms_datagen.sdv_privacy import privacy_check
from bms_datagen.simulator import simulate_fleet, to_minimal_table, write_fleet_csv
from bms_schema import InputError, ModelError, PathError, resolve_input
from bms_schema.reader import write_table
from bms_schema.registry import ModelRegistry


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def minimal_folder(
    root: Path,
    name: str = "minimal",
    devices: int = 1,
    cells: int = 4,
    days: float = 2.0,
    interval: float = 60.0,
    seed: int = 0,
) -> Path:
    folder = root / "data" / name
    folder.mkdir(parents=True)
    frame = simulate_fleet(
        devices=devices,
        cells_per_device=cells,
        days=days,
        interval_minutes=interval,
        seed=seed,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
    )
    write_table(to_minimal_table(frame), folder / "readings.csv")
    return folder


def test_single_table_round_trip_with_detected_metadata(workspace: Path) -> None:
    folder = minimal_folder(workspace)
    real = pd.read_csv(folder / "readings.csv")
    out = workspace / "runs" / "gen1"
    result = generate(folder, out, seed=3, num_rows=150)
    assert result.synthesizer == "gaussian_copula" and result.detected
    synthetic = pd.read_csv(out / "synthetic" / "readings.csv")
    assert list(synthetic.columns) == list(real.columns)
    assert len(synthetic) == 150
    meta = json.loads((out / "synthetic" / "metadata.json").read_text())
    columns = meta["tables"]["readings"]["columns"]
    assert columns["Timestamp"] == {"sdtype": "datetime", "datetime_format": "%Y-%m-%dT%H:%M:%S"}
    assert columns["IsDead"]["sdtype"] == "boolean" and columns["IsAnomaly"]["sdtype"] == "boolean"
    assert columns["DeviceID"]["sdtype"] == "categorical" and columns["AnomalyType"]["sdtype"] == "categorical"
    assert any(f.startswith("readings.IsDead") for f in result.fixes)
    # battery physics survive: values within the real range, labels stay 0/1, timestamps parse
    ok = synthetic.CellVoltage < 60
    assert (
        synthetic.CellVoltage[ok]
        .between(
            real.CellVoltage[real.CellVoltage < 60].min() - 1e-9, real.CellVoltage[real.CellVoltage < 60].max() + 1e-9
        )
        .all()
    )
    assert set(synthetic.IsDead.unique()) <= {0, 1}
    assert pd.to_datetime(synthetic.Timestamp, format="%Y-%m-%dT%H:%M:%S").notna().all()
    # sentinels are written back as 0xFFFF triples in about the real share
    real_share = (real.CellVoltage == 65.535).mean()
    assert (synthetic.CellVoltage == 65.535).mean() == pytest.approx(real_share, abs=0.08)
    assert ModelRegistry().latest_version("sdv-minimal") == "v0001"


def test_same_seed_same_output_and_registered_sampling(workspace: Path) -> None:
    folder = minimal_folder(workspace)
    a = generate(folder, workspace / "runs" / "a", seed=5)
    b = generate(folder, workspace / "runs" / "b", seed=5)
    c = generate(folder, workspace / "runs" / "c", seed=6, register=False)
    assert digest(a.paths["readings"]) == digest(b.paths["readings"])
    assert digest(a.paths["readings"]) != digest(c.paths["readings"])
    assert (a.model_version, b.model_version) == ("v0001", "v0002")
    # sampling again from the registry: refit from stored data, same seed -> same rows
    model, tables, paths = sample_registered("sdv-minimal", workspace / "runs" / "s1", version="v0001", seed=5)
    assert digest(paths["readings"]) == digest(a.paths["readings"])
    _, more, _ = sample_registered("sdv-minimal", workspace / "runs" / "s2", num_rows=40, seed=9)
    assert len(more["readings"]) == 40
    files = {p.suffix for p in (ModelRegistry().root / "sdv-minimal" / "v0001").rglob("*") if p.is_file()}
    assert files == {".json", ".parquet"}  # nothing to unpickle
    # a tampered file is refused by the registry checksum
    parquet = ModelRegistry().root / "sdv-minimal" / "v0001" / "data" / "readings.parquet"
    parquet.write_bytes(parquet.read_bytes() + b"x")
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_registered("sdv-minimal", "v0001")
    with pytest.raises(ModelError, match="no model 'sdv-nothing'"):
        load_registered("sdv-nothing")


def test_raw_packet_table_keeps_its_format(workspace: Path) -> None:
    folder = workspace / "data" / "raw"
    folder.mkdir(parents=True)
    frame = simulate_fleet(devices=2, cells_per_device=3, days=1, interval_minutes=60, seed=2)
    write_fleet_csv(frame, folder / "packets.csv")
    result = generate(folder, workspace / "runs" / "raw", seed=0)
    synthetic = pd.read_csv(result.paths["packets"])
    real = pd.read_csv(folder / "packets.csv")
    assert list(synthetic.columns) == list(real.columns) and len(synthetic) == len(real)
    prep = result.preps["packets"]
    assert set(prep.derived) == {"Date", "Time"}
    assert {"StartPacket", "DataIdentifier", "ChargerTrip"} <= set(prep.constants)
    assert {"SerialNumber", "SiteID"} <= set(prep.device_columns)
    # derived and per-device columns are consistent in every synthetic row
    stamp = pd.to_datetime(synthetic.PacketDateTime)
    assert (stamp.dt.strftime("%d/%m/%Y") == synthetic.Date).all()
    assert (stamp.dt.strftime("%H:%M:%S") == synthetic.Time).all()
    serial = real.drop_duplicates("DeviceID").set_index("DeviceID").SerialNumber
    assert (synthetic.SerialNumber == synthetic.DeviceID.map(serial)).all()
    assert (synthetic.StartPacket == "U").all()


def test_par_sequences_per_cell(workspace: Path) -> None:
    folder = minimal_folder(workspace, name="seq", cells=3, days=1.0, interval=60)
    result = generate(folder, workspace / "runs" / "par", synthesizer="par", epochs=2, seed=1)
    assert result.synthesizer == "par"
    synthetic = pd.read_csv(result.paths["readings"])
    assert "CellID" in synthetic.columns
    assert 1 <= synthetic.CellID.nunique() <= 6
    # context columns (device, cell number) are constant within each synthetic sequence
    assert (synthetic.groupby("CellID")[["DeviceID", "CellNumber"]].nunique() == 1).all().all()
    meta = json.loads(Path(result.paths["metadata"]).read_text())
    assert meta["tables"]["readings"]["columns"]["CellID"]["sdtype"] == "id"


def test_hma_devices_and_readings(workspace: Path) -> None:
    folder = workspace / "data" / "multi"
    folder.mkdir(parents=True)
    frame = to_minimal_table(simulate_fleet(devices=4, cells_per_device=2, days=1, interval_minutes=120, seed=4))
    devices = pd.DataFrame(
        {
            "DeviceID": [1, 2, 3, 4],
            "CapacityAh": [100.0, 200.0, 200.0, 400.0],
            "Site": ["north", "south", "south", "east"],
        }
    )
    write_table(devices, folder / "devices.csv")
    write_table(frame, folder / "readings.csv")
    result = generate(folder, workspace / "runs" / "hma", seed=2, scale=1.0)
    assert result.synthesizer == "hma"
    meta = json.loads(Path(result.paths["metadata"]).read_text())
    assert meta["relationships"] == [
        {
            "parent_table_name": "devices",
            "parent_primary_key": "DeviceID",
            "child_table_name": "readings",
            "child_foreign_key": "DeviceID",
        }
    ]
    syn_devices = pd.read_csv(result.paths["devices"])
    syn_readings = pd.read_csv(result.paths["readings"])
    assert len(syn_devices) == 4
    assert set(syn_readings.DeviceID) <= set(syn_devices.DeviceID)
    assert len(syn_readings) > 0
    report = evaluate(folder)
    assert 0.0 <= report["quality"]["overall_score"] <= 1.0
    assert set(report["privacy"]) == {"devices", "readings"}
    with pytest.raises(InputError, match="num_rows applies to one table"):
        generate(folder, workspace / "runs" / "hma2", num_rows=10)


def test_quality_bar_on_simulated_readings(workspace: Path) -> None:
    folder = minimal_folder(workspace, name="bar", devices=2, cells=6, days=6, interval=30)
    generate(folder, workspace / "runs" / "bar", seed=0, register=True)
    report = evaluate(folder)
    assert report["quality"]["overall_score"] >= 0.80
    assert report["diagnostic"]["overall_score"] >= 0.95
    privacy = report["privacy"]["readings"]
    assert privacy["copied_share"] < 0.01 and privacy["copies_real_rows"] is False


def test_privacy_check_catches_copied_rows() -> None:
    frame = to_minimal_table(
        simulate_fleet(devices=1, cells_per_device=4, days=3, interval_minutes=30, seed=1, duplicate_rate=0.0)
    )
    types = {
        "Timestamp": "datetime",
        "DeviceID": "categorical",
        "CellNumber": "categorical",
        "CellVoltage": "numerical",
        "CellTemperature": "numerical",
        "CellSpecificGravity": "numerical",
        "InstantaneousCurrent": "numerical",
        "AmbientTemperature": "numerical",
        "IsDead": "boolean",
        "IsAnomaly": "boolean",
        "AnomalyType": "categorical",
    }
    copied = frame.sample(n=300, random_state=0)
    report = privacy_check(frame, copied, types)
    assert report["copied_share"] == 1.0 and report["dcr_zero_share"] == 1.0
    assert report["copies_real_rows"] is True
    noisy = frame.copy()
    rng = np.random.default_rng(0)
    for column in ("CellVoltage", "CellTemperature", "AmbientTemperature"):
        noisy[column] = noisy[column] + rng.normal(0, noisy[column].std(), len(noisy))
    independent = privacy_check(frame, noisy, types)
    assert independent["copied_share"] == 0.0 and independent["copies_real_rows"] is False
    half = pd.concat([copied.head(150), noisy.head(150)])
    assert privacy_check(frame, half, types)["copied_share"] == pytest.approx(0.5)


def test_bad_inputs_are_clear_errors(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(PathError, match="folder not found"):
        resolve_input("data/nothing-here", kind="folder")
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_input(str(tmp_path), kind="folder")
    empty = workspace / "data" / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no CSV files"):
        read_folder(empty)
    (empty / "t.csv").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_folder(empty)
    folder = minimal_folder(workspace, name="meta")
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="metadata.json in .* is not valid JSON"):
        generate(folder, workspace / "runs" / "x")
    (folder / "metadata.json").write_text(
        json.dumps({"tables": {"other": {"columns": {}}}, "relationships": [], "METADATA_SPEC_VERSION": "V1"})
    )
    with pytest.raises(InputError, match=r"describes table\(s\) \['other'\] but the folder has no CSV"):
        generate(folder, workspace / "runs" / "x")
    columns = {c: {"sdtype": "numerical"} for c in pd.read_csv(folder / "readings.csv").columns if c != "IsDead"}
    (folder / "metadata.json").write_text(
        json.dumps({"tables": {"readings": {"columns": columns}}, "relationships": [], "METADATA_SPEC_VERSION": "V1"})
    )
    with pytest.raises(InputError, match=r"table 'readings' does not describe column\(s\) \['IsDead'\]"):
        generate(folder, workspace / "runs" / "x")
    columns["IsDead"] = {"sdtype": "numerical"}
    columns["Timestamp"] = {"sdtype": "numerical"}
    (folder / "metadata.json").write_text(
        json.dumps({"tables": {"readings": {"columns": columns}}, "relationships": [], "METADATA_SPEC_VERSION": "V1"})
    )
    with pytest.raises(InputError, match="metadata.json does not match the CSV data"):
        generate(folder, workspace / "runs" / "x")
    (folder / "metadata.json").unlink()
    with pytest.raises(InputError, match="no synthetic data has been generated from"):
        evaluate(folder)
    with pytest.raises(InputError, match="'hma' needs several related tables"):
        generate(folder, workspace / "runs" / "x", synthesizer="hma")
    with pytest.raises(InputError, match="unknown synthesizer 'gan'"):
        generate(folder, workspace / "runs" / "x", synthesizer="gan")


def test_timestamps_with_utc_offset(workspace: Path) -> None:
    """Canonical tables carry tz-aware timestamps ('...+00:00'): modelled, written back, evaluated."""
    folder = workspace / "data" / "tz"
    folder.mkdir(parents=True)
    table = to_minimal_table(simulate_fleet(devices=1, cells_per_device=3, days=1, interval_minutes=60, seed=0))
    table["Timestamp"] = table["Timestamp"].astype(str) + "+00:00"
    table.to_csv(folder / "readings.csv", index=False)
    result = generate(folder, workspace / "runs" / "tz", seed=1)
    meta = json.loads(Path(result.paths["metadata"]).read_text())
    assert meta["tables"]["readings"]["columns"]["Timestamp"]["datetime_format"] == "%Y-%m-%dT%H:%M:%S%z"
    stamps = pd.to_datetime(result.tables["readings"].Timestamp, format="%Y-%m-%dT%H:%M:%S%z")
    real = pd.to_datetime(table.Timestamp, format="%Y-%m-%dT%H:%M:%S%z")
    assert stamps.min() >= real.min() and stamps.max() <= real.max()
    assert evaluate(folder)["quality"]["overall_score"] > 0.6


def test_dead_cells_get_their_own_copula(workspace: Path) -> None:
    """Dead cells form a narrow cluster (low SG); one copula per IsDead regime keeps it."""
    folder = workspace / "data" / "dead"
    folder.mkdir(parents=True)
    frame = to_minimal_table(
        simulate_fleet(
            devices=1, cells_per_device=8, days=4, interval_minutes=30, seed=3, failure_rate=0.6, anomaly_rate=0.0
        )
    )
    write_table(frame, folder / "readings.csv")
    assert (frame.IsDead == 1).sum() >= 50
    result = generate(folder, workspace / "runs" / "dead", seed=0, register=False)
    synthetic = result.tables["readings"]
    assert synthetic.IsDead.mean() == pytest.approx(frame.IsDead.mean(), abs=0.03)

    def dead_sg(table: pd.DataFrame) -> float:
        ok = (table.IsDead == 1) & (table.CellSpecificGravity < 50)
        return float(table.loc[ok, "CellSpecificGravity"].median())

    def alive_sg(table: pd.DataFrame) -> float:
        ok = (table.IsDead == 0) & (table.CellSpecificGravity < 50)
        return float(table.loc[ok, "CellSpecificGravity"].median())

    assert alive_sg(frame) - dead_sg(frame) > 0.02
    assert dead_sg(synthetic) == pytest.approx(dead_sg(frame), abs=0.01)
    assert alive_sg(synthetic) == pytest.approx(alive_sg(frame), abs=0.005)


def test_attach_torch_gives_sdv_what_a_torch_free_import_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """SDV is imported without torch (bms_datagen.sdv_import); before a CTGAN/TVAE/PAR fit the torch-based
    classes are put where SDV looks them up when a synthesizer is built."""
    import sdmetrics.single_table.bayesian_network as network
    import sdv.sequential.par as par
    import sdv.single_table.ctgan as neural
    from bms_datagen.sdv_import import attach_torch, import_sdv

    import_sdv()
    held_back = ModuleNotFoundError("torch is not imported while SDV loads")
    for module, names in (
        (neural, ("CTGAN", "TVAE")),
        (par, ("PARModel", "assemble_sequences")),
        (network, ("torch",)),
    ):
        for name in names:
            monkeypatch.setattr(module, name, None)
        if module is not network:
            monkeypatch.setattr(module, "import_error", held_back)
    attach_torch()
    import ctgan
    import deepecho
    import torch

    assert neural.CTGAN is ctgan.CTGAN and neural.TVAE is ctgan.TVAE and neural.import_error is None
    assert par.PARModel is deepecho.PARModel and par.import_error is None and par.assemble_sequences is not None
    assert network.torch is torch
