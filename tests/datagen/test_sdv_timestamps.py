"""Timestamps with a UTC offset ('+00:00', 'Z'): parsed as UTC, modelled naive, written back in their own notation.

Regression for "Cannot subtract tz-naive and tz-aware" reported by the pipeline driver on canonical
tables (tz-aware Timestamp written by pandas as '2025-01-01T00:15:00+00:00').
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
import pytest
from bms_datagen.sdv_data import analysis_view, read_folder
from bms_datagen.sdv_pipeline import evaluate, generate, load_pair, sample_registered
from bms_datagen.sdv_plots import plot_column
from bms_datagen.sdv_timestamps import from_model_text, learn_style, to_model_text, to_utc, wall_time
from bms_datagen.simulator import simulate_fleet
from bms_schema import normalize
from bms_schema.registry import ModelRegistry
from mcp_stdio import connect, envelope

#: The canonical columns the pipeline driver samples for SDV.
SDV_COLUMNS = [
    "DeviceID",
    "CellNumber",
    "CellID",
    "Timestamp",
    "CellVoltage",
    "CellTemperature",
    "CellSpecificGravity",
    "InstantaneousCurrent",
    "AmbientTemperature",
    "IsDead",
]
ISO_COLON = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$"
ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


# -- the style, unit level -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, model",
    [
        ("2025-01-01T00:15:00+00:00", "2025-01-01T00:15:00"),
        ("2025-01-01 00:15:00+00:00", "2025-01-01T00:15:00"),
        ("2025-01-01T00:15:00Z", "2025-01-01T00:15:00"),
        ("2025-01-01T00:15:00+0000", "2025-01-01T00:15:00"),
        ("2025-01-01 00:15:00.000000000Z", "2025-01-01T00:15:00.000000"),  # pyarrow's CSV writer
        ("2025-01-01T05:45:00.123+05:30", "2025-01-01T00:15:00.123000"),  # local time, one offset
        ("2024-12-31T19:15:00-05:00", "2025-01-01T00:15:00"),
        ("01/01/2025 05:45:00+0530", "2025-01-01T00:15:00"),  # non-ISO layout, offset format
    ],
)
def test_offset_text_round_trips_exactly(text: str, model: str) -> None:
    values = pd.Series([text, None, text])
    fmt = "%d/%m/%Y %H:%M:%S%z" if text.startswith("01/") else None
    style = learn_style(values, fmt)
    assert style is not None
    modelled = to_model_text(values, style)
    assert modelled.tolist() == [model, None, model]  # naive UTC: all SDV ever sees
    assert from_model_text(modelled, style).tolist() == [text, None, text]


def test_several_offsets_are_written_in_utc_and_naive_columns_are_left_alone() -> None:
    mixed = pd.Series(["2025-01-01T05:30:00+05:30", "2025-01-01T00:15:00Z", None, "2025-01-01T01:15:00+01:00"])
    style = learn_style(mixed, "%Y-%m-%dT%H:%M:%S%z")
    assert style is not None and style.offset_minutes == 0 and style.offset_notation == "colon"
    assert to_utc(mixed, style).tolist() == [
        pd.Timestamp("2025-01-01T00:00:00"),
        pd.Timestamp("2025-01-01T00:15:00"),
        pd.NaT,
        pd.Timestamp("2025-01-01T00:15:00"),
    ]
    assert from_model_text(to_model_text(mixed, style), style).tolist() == [
        "2025-01-01T00:00:00+00:00",
        "2025-01-01T00:15:00+00:00",
        None,
        "2025-01-01T00:15:00+00:00",
    ]
    assert learn_style(pd.Series(["2025-01-01T00:15:00", "2025-01-01T00:30:00"]), "%Y-%m-%dT%H:%M:%S") is None
    assert learn_style(pd.Series(["2025-01-01T00:15:00Z", "2025-01-01T00:30:00"]), None) is None
    assert learn_style(pd.Series([1.5, 2.5]), None) is None
    # Date/Time columns show the local wall clock, whatever the offset
    assert wall_time(mixed.dropna()).dt.strftime("%H:%M").tolist() == ["05:30", "00:15", "01:15"]


# -- generate + evaluate + visualise on canonical tables -------------------------------------------
def canonical_sample(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A few hundred canonical readings (tz-aware UTC Timestamp), as the pipeline driver samples them."""
    canonical, _ = normalize(simulate_fleet(devices=1, cells_per_device=4, days=2, seed=seed))
    assert str(canonical["Timestamp"].dt.tz) == "UTC"
    frame = canonical[SDV_COLUMNS].dropna(subset=["CellVoltage", "CellTemperature", "CellSpecificGravity"])
    frame = frame.sample(n=rows, random_state=seed).sort_values(["CellID", "Timestamp"], kind="stable")
    frame["IsDead"] = frame["IsDead"].astype("Int64")
    return frame


def offset_folder(workspace: Path, notation: str, name: str) -> tuple[Path, pd.DataFrame]:
    frame = canonical_sample()
    if notation == "Z":
        frame["Timestamp"] = frame["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:  # the ISO form with the offset, as in the bug report
        frame["Timestamp"] = frame["Timestamp"].map(lambda t: t.isoformat())
    folder = workspace / "data" / name
    folder.mkdir(parents=True)
    frame.to_csv(folder / "readings.csv", index=False)
    return folder, frame


@pytest.mark.parametrize(
    "notation, pattern, fmt",
    [
        ("+00:00", ISO_COLON, "%Y-%m-%dT%H:%M:%S%z"),
        ("Z", ISO_Z, "%Y-%m-%dT%H:%M:%SZ"),
    ],
)
def test_generate_evaluate_visualize_with_offset_timestamps(
    workspace: Path, notation: str, pattern: str, fmt: str
) -> None:
    folder, frame = offset_folder(workspace, notation, "tz")
    real_text = pd.read_csv(folder / "readings.csv").Timestamp
    assert real_text.str.match(pattern).all()  # the input really carries the offset
    real = pd.to_datetime(real_text, utc=True)

    result = generate(folder, workspace / "runs" / "gen", seed=2)
    synthetic = pd.read_csv(result.paths["readings"])
    assert len(synthetic) == len(frame)
    # written back in the notation it came in, parseable, within the real range
    assert synthetic.Timestamp.str.match(pattern).all(), synthetic.Timestamp.head().tolist()
    stamps = pd.to_datetime(synthetic.Timestamp, utc=True)
    assert stamps.notna().all()
    assert stamps.min() >= real.min() and stamps.max() <= real.max()
    assert stamps.nunique() > 50  # modelled, not a constant
    # spread like the real timestamps (two days of readings)
    assert abs((stamps.median() - real.median()).total_seconds()) < 6 * 3600
    # the published metadata keeps the real format (evaluation parses the written text with it) ...
    meta = json.loads(Path(result.paths["metadata"]).read_text())
    assert meta["tables"]["readings"]["columns"]["Timestamp"] == {"sdtype": "datetime", "datetime_format": fmt}
    # ... while the synthesizer was fitted on naive UTC
    version_dir = ModelRegistry().root / "sdv-tz" / result.model_version
    model_meta = json.loads((version_dir / "metadata_model.json").read_text())
    assert model_meta["tables"]["readings"]["columns"]["Timestamp"]["datetime_format"] == "%Y-%m-%dT%H:%M:%S"
    assert json.loads((version_dir / "prep.json").read_text())["readings"]["timestamps"]["Timestamp"][
        "offset_notation"
    ] == ("Z" if notation == "Z" else "colon")

    # sampling again from the registry keeps the notation too
    _, more, _ = sample_registered("sdv-tz", workspace / "runs" / "more", num_rows=40, seed=3)
    assert more["readings"].Timestamp.str.match(pattern).all()

    report = evaluate(folder)
    assert report["quality"]["overall_score"] > 0.75
    shapes = {row["Column"]: row["Score"] for row in report["quality"]["column_shapes"]}
    assert shapes["Timestamp"] > 0.8
    assert report["diagnostic"]["overall_score"] > 0.95
    assert report["privacy"]["readings"]["copied_share"] < 0.05

    real_tables, synthetic_tables, metadata, _ = load_pair(folder, None)
    png, html = workspace / "ts.png", workspace / "ts.html"
    summary = plot_column(
        analysis_view(real_tables["readings"])["Timestamp"],
        analysis_view(synthetic_tables["readings"])["Timestamp"],
        metadata.tables["readings"].columns["Timestamp"]["sdtype"],
        "Timestamp",
        png,
        html,
        "plotly.min.js",
    )
    assert summary == {"kind": "datetime", "real_count": len(frame), "synthetic_count": len(frame)}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_derived_date_and_time_follow_a_local_offset(workspace: Path) -> None:
    """A raw-packet table: PacketDateTime in +05:30 with Date/Time columns showing the same local clock."""
    folder = workspace / "data" / "ist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    local = pd.date_range("2025-01-01 05:30", periods=240, freq="15min", tz="Asia/Kolkata")
    frame = pd.DataFrame(
        {
            "PacketDateTime": local.map(lambda t: t.isoformat()),
            "Date": local.strftime("%d/%m/%Y"),
            "Time": local.strftime("%H:%M:%S"),
            "CellVoltage": rng.normal(2.2, 0.05, len(local)).round(3),
        }
    )
    frame.to_csv(folder / "readings.csv", index=False)
    result = generate(folder, workspace / "runs" / "ist", seed=0, register=False)
    assert set(result.preps["readings"].derived) == {"Date", "Time"}
    synthetic = result.tables["readings"]
    assert synthetic.PacketDateTime.str.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+05:30$").all()
    clock = pd.to_datetime(synthetic.PacketDateTime.str.slice(0, 19))
    assert (synthetic.Date == clock.dt.strftime("%d/%m/%Y")).all()
    assert (synthetic.Time == clock.dt.strftime("%H:%M:%S")).all()
    stamps = pd.to_datetime(synthetic.PacketDateTime, utc=True)
    assert stamps.min() >= local.min() and stamps.max() <= local.max()


def test_sdv_tools_over_stdio_with_offset_timestamps(workspace: Path) -> None:
    """The pipeline driver's calls on the canonical form pandas writes ('2025-01-01 00:15:00+00:00')."""
    folder = workspace / "data" / "sdv-input"
    folder.mkdir(parents=True)
    frame = canonical_sample(rows=240, seed=1)
    frame.to_csv(folder / "readings.csv", index=False)  # pandas: 'YYYY-mm-dd HH:MM:SS+00:00'
    tables, _ = read_folder(folder)
    assert tables["readings"].Timestamp.str.endswith("+00:00").all()

    async def scenario() -> None:
        async with connect("data-generator-mcp") as client:
            gen = envelope(
                await client.call_tool(
                    "sdv_generate", {"folder_name": "data/sdv-input", "seed": 0, "model_name": "sdv-bms-readings"}
                )
            )
            assert gen["status"] == "ok", gen["message"]
            synthetic_folder = gen["data"]["synthetic_folder"]
            written = pd.read_csv(Path(synthetic_folder) / "readings.csv").Timestamp
            assert written.str.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00:00$").all()
            args = {"folder_name": "data/sdv-input", "synthetic_folder": synthetic_folder}
            ev = envelope(await client.call_tool("sdv_evaluate", args))
            assert ev["status"] == "ok", ev["message"]
            assert ev["data"]["overall_score"] > 0.75 and ev["data"]["diagnostic_score"] > 0.95
            for column, kind in (("Timestamp", "datetime"), ("CellVoltage", "numerical")):
                vis = envelope(
                    await client.call_tool("sdv_visualize", {**args, "table_name": "readings", "column_name": column})
                )
                assert vis["status"] == "ok", vis["message"]
                assert vis["data"]["kind"] == kind and vis["data"]["synthetic_count"] == len(frame)
                assert Path(vis["data"]["png_path"]).is_file()

    anyio.run(scenario)
