"""Bad inputs for every tool of every server: the files they need, and one case per (class, tool).

Each case names the class of bad input, the server folder, the tool, its arguments and a regex
the error message must match (naming the problem). ``make_files`` writes the inputs into a
workspace with a seeded generator, so the suite is the same on every run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PREPROCESS = "load-preprocessdata-mcp"
DATAGEN = "data-generator-mcp"
ANOMALY = "feature-one-anamoly-detection-mcp"
FORECAST = "feature-two-timeseries-prediction-mcp"
FAILURE = "feature-three-failure-prediction-mcp"
SERVERS = (PREPROCESS, DATAGEN, ANOMALY, FORECAST, FAILURE)

#: Tools that read one table, the argument that names it, and what else they need.
FILE_TOOLS: dict[str, list[tuple[str, str, dict[str, object]]]] = {
    PREPROCESS: [
        (t, "data_path", {})
        for t in (
            "preprocess_battery_data_tool",
            "clean_and_filter_data",
            "engineer_battery_features",
            "impute_battery_data_mice",
            "impute_and_scale_battery_data",
        )
    ],
    ANOMALY: [
        ("train_anomaly_detector", "data_path", {}),
        ("detect_anomalies", "data_path", {}),
        ("visualize_anomalies_3d", "result_csv", {}),
    ],
    FORECAST: [("train_forecaster", "data_path", {}), ("predict_cell_timeseries", "data_path", {"cell_id": "1"})],
    FAILURE: [
        ("predict_cell_failure", "data_path", {}),
        ("train_failure_model", "data_path", {}),
        ("predict_cell_failure", "anomaly_path", {"data_path": "data/good.csv"}),
        ("train_failure_model", "prior_path", {"data_path": "data/good.csv"}),
    ],
}
FOLDER_TOOLS: list[tuple[str, str, dict[str, object]]] = [
    ("sdv_generate", "folder_name", {}),
    ("sdv_evaluate", "folder_name", {}),
    ("sdv_visualize", "folder_name", {"table_name": "readings", "column_name": "CellVoltage"}),
    ("sdv_evaluate", "synthetic_folder", {"folder_name": "data/sdv_ok"}),
]
SEED_TOOLS: list[tuple[str, str, str, dict[str, object]]] = [
    (PREPROCESS, t, "random_state", {"data_path": "data/good.csv"})
    for t in ("preprocess_battery_data_tool", "impute_battery_data_mice", "impute_and_scale_battery_data")
] + [
    (DATAGEN, "simulate_bms_fleet", "seed", {}),
    (DATAGEN, "simulate_cycle_record", "seed", {}),
    (DATAGEN, "sdv_generate", "seed", {"folder_name": "data/sdv_ok"}),
    (DATAGEN, "sdv_sample", "seed", {"model_name": "sdv-x"}),
    (DATAGEN, "sdv_evaluate", "seed", {"folder_name": "data/sdv_ok"}),
    (ANOMALY, "train_anomaly_detector", "seed", {"data_path": "data/good.csv"}),
    (FAILURE, "train_failure_model", "seed", {"data_path": "data/good.csv"}),
]

NO_TRACE = re.compile(r"internal error|Traceback|Error executing tool|File \"/", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    cls: str
    server: str
    tool: str
    args: dict[str, object]
    expect: str  # regex the message must match
    ok_allowed: bool = False  # a warning (status ok) naming the problem is acceptable too

    @property
    def label(self) -> str:
        return f"{self.cls}:{self.tool}({', '.join(f'{k}={str(v)[:20]!r}' for k, v in self.args.items())})"


def make_files(workspace: Path, sample_csv: Path, seed: int = 12) -> None:
    """Write every input the cases refer to into ``workspace/data``."""
    rng = np.random.default_rng(seed)
    data = workspace / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "good.csv").write_bytes(sample_csv.read_bytes())
    (data / "corrupt.parquet").write_bytes(b"PAR1" + rng.bytes(2048) + b"PAR1")
    (data / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" + rng.bytes(4096))
    # an anomaly-result-like table with inf / 1e308 in the plotted columns
    n = 300
    frame = pd.DataFrame(
        {
            "CellID": [f"D1-{i % 6 + 1}" for i in range(n)],
            "DeviceID": "D1",
            "CellNumber": [i % 6 + 1 for i in range(n)],
            "Timestamp": pd.date_range("2025-01-01", periods=n, freq="15min", tz="UTC").astype(str),
            "CellVoltage": rng.normal(2.23, 0.01, n),
            "CellTemperature": rng.normal(25, 1, n),
            "InstantaneousCurrent": rng.normal(0.3, 0.1, n),
            "AnomalyScore": rng.random(n),
            "AnomalyFlag": (rng.random(n) < 0.05).astype(int),
            "AnomalyKind": "normal",
        }
    )
    frame.loc[frame["AnomalyFlag"] == 1, "AnomalyKind"] = "statistical"
    bad = frame.copy()
    bad.loc[::7, "CellVoltage"] = np.inf
    bad.loc[::11, "CellTemperature"] = 1e308
    bad.loc[::13, "InstantaneousCurrent"] = -np.inf
    bad.to_csv(data / "anomalies_inf.csv", index=False)
    allbad = frame.copy()
    allbad["CellVoltage"] = np.inf
    allbad.to_csv(data / "anomalies_all_inf.csv", index=False)
    # SDV folders: a good one, one with a directory named *.csv, one with a binary CSV
    ok = data / "sdv_ok"
    ok.mkdir(exist_ok=True)
    frame[["CellNumber", "CellVoltage", "CellTemperature"]].to_csv(ok / "readings.csv", index=False)
    with_dir = data / "sdv_dir"
    with_dir.mkdir(exist_ok=True)
    frame[["CellNumber", "CellVoltage", "CellTemperature"]].to_csv(with_dir / "readings.csv", index=False)
    (with_dir / "trap.csv").mkdir(exist_ok=True)
    only_dir = data / "sdv_only_dir"
    only_dir.mkdir(exist_ok=True)
    (only_dir / "readings.csv").mkdir(exist_ok=True)
    # ids that cannot tell cells apart: rows are lost as "conflicting" readings
    raw = pd.read_csv(sample_csv)
    two = pd.concat([raw, raw.assign(DeviceID=raw["DeviceID"].astype(str) + "b")], ignore_index=True)
    two.assign(DeviceID=np.nan).to_csv(data / "nan_device_two.csv", index=False)
    raw.assign(CellNumber="x").to_csv(data / "text_cell.csv", index=False)
    raw.assign(IsDead=np.where(np.arange(len(raw)) % 2 == 0, "maybe", "0")).to_csv(
        data / "isdead_maybe.csv", index=False
    )
    binary = data / "sdv_bin"
    binary.mkdir(exist_ok=True)
    (binary / "readings.csv").write_bytes(b"\xff\xfe\x00\x81" + rng.bytes(4096))


def cases() -> list[Case]:
    out: list[Case] = []
    nul = "data/go\x00od.csv"
    for server, tools in FILE_TOOLS.items():
        for tool, arg, extra in tools:
            out.append(Case("nul_path", server, tool, {**extra, arg: nul}, r"NUL byte"))
            out.append(
                Case(
                    "traversal",
                    server,
                    tool,
                    {**extra, arg: "../../../etc/passwd"},
                    r"outside the workspace and allowed directories",
                )
            )
            out.append(
                Case(
                    "corrupt_parquet",
                    server,
                    tool,
                    {**extra, arg: "data/corrupt.parquet"},
                    r"corrupt\.parquet.*(not a readable|PARQUET|Parquet)|not a readable CSV/Parquet",
                )
            )
            out.append(
                Case(
                    "binary_csv",
                    server,
                    tool,
                    {**extra, arg: "data/binary.csv"},
                    r"binary\.csv|UTF-8|not a (table|readable)",
                )
            )
    for tool, arg, extra in FOLDER_TOOLS:
        out.append(Case("nul_path", DATAGEN, tool, {**extra, arg: "data/sdv\x00ok"}, r"NUL byte"))
        out.append(
            Case(
                "traversal",
                DATAGEN,
                tool,
                {**extra, arg: "../../../etc"},
                r"outside the workspace and allowed directories",
            )
        )
    out.append(
        Case(
            "dir_named_csv",
            DATAGEN,
            "sdv_generate",
            {"folder_name": "data/sdv_only_dir"},
            r"(holds no|no) CSV|readings\.csv.*(folder|directory)",
        )
    )
    out.append(
        Case(
            "binary_csv",
            DATAGEN,
            "sdv_evaluate",
            {"folder_name": "data/sdv_bin"},
            r"readings\.csv.*(UTF-8|not a (table|readable))|UTF-8",
        )
    )
    out.append(
        Case(
            "binary_csv",
            DATAGEN,
            "sdv_generate",
            {"folder_name": "data/sdv_bin"},
            r"readings\.csv.*(UTF-8|not a (table|readable))|UTF-8",
        )
    )
    for server, tool, arg, extra in SEED_TOOLS:
        for value in (-1, 2**70):
            out.append(Case("bad_seed", server, tool, {**extra, arg: value}, rf"'{arg}'.*(seed|greater than)"))
    for tool in ("impute_battery_data_mice", "preprocess_battery_data_tool"):
        for value in (0, -5):
            out.append(
                Case(
                    "bad_sample_rows",
                    PREPROCESS,
                    tool,
                    {"data_path": "data/good.csv", "sample_rows": value},
                    r"'sample_rows'.*greater than or equal to 50",
                )
            )
    for server, tool in ((PREPROCESS, "preprocess_battery_data_tool"), (ANOMALY, "detect_anomalies")):
        out.append(
            Case(
                "bad_scheduler",
                server,
                tool,
                {"data_path": "data/good.csv", "scheduler": "localhost:8786"},
                r"scheduler address 'localhost:8786' has no protocol",
            )
        )
        out.append(
            Case(
                "file_for_dask",
                server,
                tool,
                {"data_path": "data/good.csv", "scheduler": "tcp://127.0.0.1:9"},
                r"good\.csv is one file: the Dask engine .* reads a dataset folder",
            )
        )
    for tool in ("clean_and_filter_data", "preprocess_battery_data_tool"):
        out.append(
            Case(
                "huge_chunksize",
                PREPROCESS,
                tool,
                {"data_path": "data/good.csv", "chunksize": 10**15},
                r"'chunksize'.*less than or equal to 50000000",
            )
        )
    out.append(
        Case(
            "huge_window",
            PREPROCESS,
            "engineer_battery_features",
            {"data_path": "data/good.csv", "window": 10**12},
            r"'window'.*less than or equal to 10000",
        )
    )
    out.append(
        Case(
            "inf_values",
            ANOMALY,
            "visualize_anomalies_3d",
            {"result_csv": "data/anomalies_all_inf.csv"},
            r"infinite.*CellVoltage: 300",
        )
    )
    out.append(
        Case(
            "inf_values",
            ANOMALY,
            "visualize_anomalies_3d",
            {"result_csv": "data/anomalies_inf.csv"},
            r"rows not plotted: infinite or out-of-range values \(CellVoltage: \d+, InstantaneousCurrent: "
            r"\d+, CellTemperature: \d+\)",
            ok_allowed=True,
        )
    )
    out.append(
        Case(
            "not_anomaly_result",
            ANOMALY,
            "visualize_anomalies_3d",
            {"result_csv": "data/good.csv"},
            r"not an anomaly result.*(AnomalyFlag|AnomalyScore)",
        )
    )
    out.append(
        Case(
            "empty_features",
            ANOMALY,
            "train_anomaly_detector",
            {"data_path": "data/good.csv", "features": []},
            r"'features'.*selects no feature at all",
        )
    )
    for tool in ("clean_and_filter_data", "engineer_battery_features"):  # (neither registers a model)
        out.append(
            Case(
                "id_data_loss",
                PREPROCESS,
                tool,
                {"data_path": "data/nan_device_two.csv"},
                r"WARNING: \d+ of 1500 rows .* dropped .* DeviceID is empty in 1500 of 1500 rows",
                ok_allowed=True,
            )
        )
        out.append(
            Case(
                "id_data_loss",
                PREPROCESS,
                tool,
                {"data_path": "data/text_cell.csv"},
                r"WARNING: \d+ of 750 rows .* dropped .* CellNumber is not a number in 750 rows",
                ok_allowed=True,
            )
        )
    out.append(
        Case(
            "label_not_boolean",
            FAILURE,
            "train_failure_model",
            {"data_path": "data/isdead_maybe.csv"},
            r"IsDead is not a boolean label: 375 rows hold values such as 'maybe'",
        )
    )
    extremes = [
        (ANOMALY, "train_anomaly_detector", {"contamination": 1e308}, r"contamination must be"),
        (ANOMALY, "detect_anomalies", {"contamination": -1}, r"contamination must be"),
        (FORECAST, "train_forecaster", {"max_steps": 10**12}, r"max_steps must be between"),
        (FORECAST, "train_forecaster", {"holdout_fraction": 5}, r"holdout_fraction must be between"),
        (FORECAST, "train_forecaster", {"max_train_pairs": -1}, r"max_train_pairs must be at least"),
        (FORECAST, "predict_cell_timeseries", {"steps": 10**12, "cell_id": "1"}, r"steps=10+ is above"),
        (FORECAST, "predict_cell_timeseries", {"coverage": 2, "cell_id": "1"}, r"coverage must be between"),
        (FAILURE, "train_failure_model", {"horizon_days": -1}, r"horizon_days must be a positive"),
    ]
    for server, tool, args, expect in extremes:
        out.append(Case("numeric_extreme", server, tool, {"data_path": "data/good.csv", **args}, expect))
    for year in ("1500-01-01T00:00:00Z", "9999-01-01T00:00:00Z"):
        out.append(
            Case(
                "start_year",
                DATAGEN,
                "simulate_bms_fleet",
                {"start": year, "days": 1, "devices": 1, "cells_per_device": 2},
                r"start.*(1970|2200|year)",
            )
        )
    return out
