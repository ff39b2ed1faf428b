"""The pipeline, declared: one small entry per stage saying which tool(s) it calls with which arguments.

A stage's ``calls`` function reads earlier stages' envelopes from the state (artifact paths by
kind/name, never guessed layouts) and returns the tool calls to make. The runner adds the run
id to every call, times it, forwards progress and records the envelopes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import TABLE_SUFFIXES, find_artifact
from .servers import SERVER_FOLDERS
from .state import PipelineState


class StageInputError(RuntimeError):
    """An earlier stage did not leave what this stage needs (e.g. no table artifact)."""


@dataclass(frozen=True)
class Call:
    server: str
    tool: str
    arguments: dict[str, Any]
    label: str = ""


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    servers: tuple[str, ...]
    calls: Callable[[PipelineState], list[Call]]
    prepare: Callable[[PipelineState], None] | None = None  # driver work before the calls (timed apart)
    skip_when: Callable[[PipelineState], str | None] | None = None  # a reason to skip, or None
    #: a reason to skip decided when the stage is about to start (its ``after`` stages done), for
    #: decisions that read earlier outputs (e.g. whether the readings hold a cell death)
    skip_late: Callable[[PipelineState], str | None] | None = None
    needs: tuple[str, ...] = ()  # stages whose outputs this one reads (skipped with them)
    after: tuple[str, ...] = ()  # stages that must be done (ok or skipped) before this one starts
    summary: Callable[[list[dict[str, Any]]], str] | None = None  # one line from the envelopes (default: last message)
    every_attempt: bool = False  # run again on --resume even if it finished (cheap checks)
    #: the servers this stage calls in a given state when not always all of ``servers`` (decides which
    #: servers a run starts)
    servers_for: Callable[[PipelineState], tuple[str, ...]] | None = None

    def servers_in(self, state: PipelineState) -> tuple[str, ...]:
        return self.servers_for(state) if self.servers_for is not None else self.servers


# -- where earlier outputs are ------------------------------------------------------------------
LABEL_COLUMNS = ("IsDead", "IsAnomaly", "AnomalyType")


def unlabelled_table(state: PipelineState) -> Path:
    return state.dir / "no-labels" / "readings.csv"


def input_table(state: PipelineState) -> str:
    """The readings the pipeline works on: the user's ``--data`` or the simulator's CSV (without its
    label columns under ``--no-labels``, once the preprocess stage has written that copy)."""
    if state.options.data:
        return str(Path(state.options.data).expanduser().resolve())
    if state.options.no_labels and unlabelled_table(state).is_file():
        return str(unlabelled_table(state))
    return simulated_table(state)


def _prepare_preprocess(state: PipelineState) -> None:
    """Under ``--no-labels``: the simulated readings without ``IsDead``/``IsAnomaly``/``AnomalyType``."""
    if not state.options.no_labels or state.options.data:
        return
    import pyarrow.csv as pacsv
    from bms_schema.atomic import atomic_path

    table = pacsv.read_csv(simulated_table(state))
    table = table.drop_columns([c for c in LABEL_COLUMNS if c in table.column_names])
    target = unlabelled_table(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        pacsv.write_csv(table, tmp)


def simulated_table(state: PipelineState, stage: str = "simulate") -> str:
    path = data_value(state, stage, "path")
    if isinstance(path, str) and path.endswith(TABLE_SUFFIXES):
        return path
    art = find_artifact(
        state.envelopes(stage), suffixes=TABLE_SUFFIXES, kinds=("data", "table"), exclude=("truth", "soh")
    )
    if art is None:
        raise StageInputError(f"the {stage} stage returned no CSV/Parquet artifact of kind 'data'/'table'")
    return art["path"]


def has_deaths(table: Path) -> bool:
    """Whether ``table`` has an ``IsDead`` column with at least one dead reading."""
    from .sampling import table_columns

    if not table.is_file() or "IsDead" not in table_columns(table):
        return False
    import pyarrow.compute as pc

    if table.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        column = pq.read_table(table, columns=["IsDead"]).column("IsDead")
    else:
        import pyarrow.csv as pacsv

        column = pacsv.read_csv(table, convert_options=pacsv.ConvertOptions(include_columns=["IsDead"])).column(
            "IsDead"
        )
    text = pc.utf8_lower(pc.cast(column, "string"))
    return bool(pc.any(pc.is_in(text, value_set=__import__("pyarrow").array(["1", "1.0", "true", "yes"]))).as_py())


#: The embedded simulated fleet a failure model is trained on when the readings have no death to learn
#: from and the workspace has no failure model yet.
FAILURE_FLEET = {
    "devices": 2,
    "cells_per_device": 12,
    "days": 20,
    "interval_minutes": 15,
    "failure_rate": 0.3,
    "file_name": "failure_training_fleet.csv",
}


#: The simulated fleet a small fleet's anomaly detector is trained on together with its own readings: one
#: string of 24 cells, ``--anomaly-prior-rows`` readings (69,120) at the readings' own interval and chemistry.
#: A 2 x 6-cell fleet over 10 days holds too few readings to learn normal behaviour from (development fleets
#: 75-78: F1 0.02-0.52 alone, 0.81-0.85 pooled with this prior; see bms_anomaly.detect.pool_with_prior).
ANOMALY_PRIOR_STRING = 24  # cells of the prior fleet's one string
ANOMALY_PRIOR_FILE = "anomaly_prior_fleet.csv"
#: Readings from which a fleet's own are enough and no prior fleet is simulated.
ANOMALY_PRIOR_BELOW_ROWS = 100_000


@functools.lru_cache(maxsize=4)
def _shape_of(path: str, mtime_ns: int) -> dict[str, Any]:
    from .sampling import fleet_shape

    return fleet_shape(Path(path))


def _fleet_shape(state: PipelineState) -> dict[str, Any]:
    """:func:`sampling.fleet_shape` of the preprocessed table, read once (the skip check and the call args)."""
    path = Path(processed_table(state))
    return _shape_of(str(path), path.stat().st_mtime_ns)


def _skip_anomaly_prior(state: PipelineState) -> str | None:
    if "anomaly_train" in (state.options.skip or ()) or _skip_training("anomaly_hybrid", "train_anomaly_detector")(
        state
    ):
        return "no anomaly detector is trained in this run"
    if state.options.anomaly_prior_rows <= 0:
        return "--anomaly-prior-rows 0: the detector trains on the fleet's own readings only"
    record = state.stages.get("preprocess")
    if record is not None and record.status == "skipped":
        return "the readings were not preprocessed here: the detector trains on them only"
    from .sampling import table_rows

    rows = table_rows(Path(processed_table(state)))
    if rows is not None and rows >= ANOMALY_PRIOR_BELOW_ROWS:  # a large table's columns are not read at all
        return f"{rows:,} readings: enough to learn the fleet's normal behaviour from"
    shape = _fleet_shape(state)
    if shape["rows"] >= ANOMALY_PRIOR_BELOW_ROWS:
        return f"{shape['rows']:,} readings: enough to learn the fleet's normal behaviour from"
    if shape["cells_per_string"] < 3:
        return "strings of fewer than 3 cells: the detector learns each cell's own history, not from another fleet"
    return None


def _anomaly_prior_args(state: PipelineState) -> dict[str, Any]:
    shape = _fleet_shape(state)
    interval = float(min(max(shape["interval_minutes"], 1.0), 60.0))
    return {
        "devices": 1,
        "cells_per_device": ANOMALY_PRIOR_STRING,
        "days": round(state.options.anomaly_prior_rows * interval / (ANOMALY_PRIOR_STRING * 1440.0), 3),
        "interval_minutes": interval,
        "chemistry": "flooded" if shape["has_sg"] else "vrla",
        "seed": state.options.seed + 1000,
        "file_name": ANOMALY_PRIOR_FILE,
    }


def _anomaly_train_args(state: PipelineState) -> dict[str, Any]:
    args: dict[str, Any] = {"data_path": processed_table(state), "seed": state.options.seed}
    record = state.stages.get("anomaly_prior")
    if record is not None and record.status == "ok":
        args["prior_path"] = simulated_table(state, "anomaly_prior")
    return args


def _simulated_fleet_summary(why: str, use: str) -> Callable[[list[dict[str, Any]]], str]:
    """The summary line of a stage that simulates a fleet for a model: why, the simulator's message, what for."""

    def summary(envs: list[dict[str, Any]]) -> str:
        return f"{why}: " + (envs[0].get("message", "") if envs else "") + f" ({use})"

    return summary


def _failure_champion(state: PipelineState) -> str | None:
    from bms_schema.registry import ModelRegistry

    return ModelRegistry(state.run_dir.parent.parent / "models").resolve("failure_classifier", "champion")


def _deaths_in_readings(state: PipelineState) -> bool:
    return has_deaths(Path(processed_table(state)))


def _skip_failure_fleet(state: PipelineState) -> str | None:
    if _deaths_in_readings(state):
        return "the readings hold cell deaths to train the failure model on"
    champion = _failure_champion(state)
    if champion:
        return f"no cell dies in the readings: the registered failure_classifier {champion} predicts"
    return None


def _skip_failure_training(state: PipelineState) -> str | None:
    if _deaths_in_readings(state):
        return _skip_training("failure_classifier", "train_failure_model")(state)
    champion = _failure_champion(state)
    if champion:
        return (
            f"no cell dies in the readings (no IsDead deaths to learn from): the registered "
            f"failure_classifier {champion} predicts, with the IEEE 450/1188 rules"
        )
    return None  # trained on the embedded simulated fleet (stage failure_fleet)


def processed_table(state: PipelineState) -> str:
    """The preprocessed table written by the preprocess stage (the input itself when it was skipped:
    the analysis servers normalise raw input on the fly)."""
    record = state.stages.get("preprocess")
    if record is not None and record.status == "skipped":
        return input_table(state)
    path = data_value(state, "preprocess", "output_path")
    if isinstance(path, str) and path.endswith(TABLE_SUFFIXES):
        return path
    art = find_artifact(
        state.envelopes("preprocess"),
        suffixes=TABLE_SUFFIXES,
        kinds=("table", "data"),
        contains=("preprocessed", "processed", "scaled", "clean", ""),
        exclude=("quality", "report"),
    )
    if art is None:
        raise StageInputError("the preprocess stage returned no table artifact (CSV/Parquet)")
    return art["path"]


def sdv_folder(state: PipelineState) -> Path:
    return state.dir / "sdv-input"


def risky_cells(state: PipelineState) -> list[str]:
    """Cells to forecast: the highest failure probabilities among cells not already dead."""
    from .outputs import cells_at_risk

    cells = [c for c in cells_at_risk(state) if not c.get("already_dead") and c["probability"] == c["probability"]]
    chosen = [str(c["cell_id"]) for c in cells[: state.options.forecast_cells]]
    if not chosen:
        raise StageInputError("the failure stage listed no living cell to forecast")
    return chosen


# -- the stages ---------------------------------------------------------------------------------
def _prepare_sdv_sample(state: PipelineState) -> None:
    from .sampling import write_sdv_sample

    write_sdv_sample(
        Path(processed_table(state)), sdv_folder(state), state.options.sdv_rows, state.options.seed, name=SDV_TABLE
    )


def _skip_simulate(state: PipelineState) -> str | None:
    return "--data given: the user's readings are used" if state.options.data else None


def data_value(state: PipelineState, stage: str, key: str) -> Any:
    envs = state.envelopes(stage)
    return (envs[0].get("data") or {}).get(key) if envs else None


def anomaly_table(state: PipelineState) -> str | None:
    """The anomaly result table (for anomaly-rate features), when the anomaly stage ran."""
    path = data_value(state, "anomaly", "result_path")
    if path:
        return str(path)
    art = find_artifact(state.envelopes("anomaly"), kinds=("table",), suffixes=TABLE_SUFFIXES, contains=("anomal",))
    return art["path"] if art else None


def has_labels(state: PipelineState) -> bool:
    """Whether the preprocessed readings carry ``IsDead`` (then the failure model is (re)trained on them)."""
    from .sampling import table_columns

    return "IsDead" in table_columns(Path(processed_table(state)))


SDV_TABLE = "readings"  # the sample is written as <sdv-input>/readings.csv


def _synthetic_args(s: PipelineState) -> dict[str, Any]:
    args: dict[str, Any] = {"folder_name": str(sdv_folder(s))}
    synthetic = data_value(s, "synthetic", "synthetic_folder")
    if synthetic:  # this run's synthetic tables, not whatever was generated last from that folder
        args["synthetic_folder"] = str(synthetic)
    return args


def _simulate_args(s: PipelineState) -> dict[str, Any]:
    o = s.options
    args: dict[str, Any] = {
        "devices": o.devices,
        "cells_per_device": o.cells_per_device,
        "days": o.days,
        "interval_minutes": o.interval_minutes,
        "seed": o.seed,
    }
    for name in ("failure_rate", "anomaly_rate", "discharge_every_days"):
        if getattr(o, name) is not None:
            args[name] = getattr(o, name)
    if o.chemistry != "flooded":
        args["chemistry"] = o.chemistry
    return args


def _skip_training(name: str, training_tool: str, labels: bool = False) -> Callable[[PipelineState], str | None]:
    """Train only when the workspace has no champion of ``name`` (or the user gave data: then a candidate,
    promoted only if it beats the champion); predict tools never train."""

    def reason(state: PipelineState) -> str | None:
        from bms_schema.registry import ModelRegistry

        if state.options.data or state.options.no_labels:  # the user's readings: a candidate (labels permitting)
            if labels:
                from .sampling import table_columns

                path = Path(input_table(state))
                if path.is_file() and "IsDead" not in table_columns(path):
                    return "the readings have no IsDead labels to train on: the registered model predicts"
            return None
        champion = ModelRegistry(state.run_dir.parent.parent / "models").resolve(name, "champion")
        if champion:
            return f"{name} {champion} is the champion in this workspace ({training_tool} trains a candidate)"
        return None

    return reason


def _failure_train_args(s: PipelineState) -> dict[str, Any]:
    record = s.stages.get("failure_fleet")
    if record is not None and record.status == "ok":  # no death in the readings: the embedded simulated fleet
        return {
            "data_path": simulated_table(s, "failure_fleet"),
            "horizon_days": s.options.horizon_days,
            "seed": s.options.seed,
        }
    args: dict[str, Any] = {
        "data_path": processed_table(s),
        "horizon_days": s.options.horizon_days,
        "seed": s.options.seed,
    }
    anomalies = anomaly_table(s)
    if anomalies:
        args["anomaly_path"] = anomalies
    return args


def _failure_args(s: PipelineState) -> dict[str, Any]:
    args: dict[str, Any] = {"data_path": processed_table(s), "horizon_days": s.options.horizon_days, "top_n": 10}
    anomalies = anomaly_table(s)
    if anomalies:
        args["anomaly_path"] = anomalies
    return args


def forecast_history(state: PipelineState) -> Path:
    return state.dir / "forecast-input" / "recent_history.parquet"


def _prepare_forecast_history(state: PipelineState) -> None:
    from .sampling import write_recent_history

    write_recent_history(
        Path(processed_table(state)), forecast_history(state), risky_cells(state), state.options.forecast_history_days
    )


def _forecast_args(s: PipelineState, cell: str) -> dict[str, Any]:
    # the champion: the model trained in this run when it was promoted, else the one it did not beat
    return {"data_path": str(forecast_history(s)), "cell_id": cell, "steps": s.options.forecast_steps}


def health_servers(state: PipelineState) -> tuple[str, ...]:
    """The servers the health stage checks: those the stages still to run call, so a run starts no server
    it does not need (``--skip forecast_train forecast``: no forecast server; ``--resume``: the servers of
    the stages left). All five when nothing else is left to run."""
    left = {
        server
        for stage in STAGES
        if stage.name != "health"
        and state.stages.get(stage.name) is not None
        and state.stages[stage.name].status not in ("ok", "skipped")
        for server in stage.servers
    }
    return tuple(name for name in SERVER_FOLDERS if name in left) or tuple(SERVER_FOLDERS)


#: In order of priority: when several stages are ready, the first listed starts first (the long chain
#: anomaly -> failure -> forecast and the forecaster training before the SDV stages).
STAGES: tuple[Stage, ...] = (
    Stage(
        "health",
        "Health checks",
        tuple(SERVER_FOLDERS),
        lambda s: [Call(name, "health_check", {}, label=name) for name in health_servers(s)],
        summary=lambda envs: (
            f"{len(envs)} servers healthy; registered models: "
            + (
                ", ".join(f"{k} {v}" for e in envs for k, v in (e["data"].get("models") or {}).items() if v)
                or "none yet"
            )
        ),
        every_attempt=True,
        servers_for=health_servers,
    ),
    Stage(
        "simulate",
        "Simulate fleet",
        ("datagen",),
        lambda s: [Call("datagen", "simulate_bms_fleet", _simulate_args(s))],
        skip_when=_skip_simulate,
        after=("health",),
    ),
    Stage(
        "preprocess",
        "Preprocess",
        ("preprocess",),
        lambda s: [
            Call(
                "preprocess", "preprocess_battery_data_tool", {"data_path": input_table(s), "output_format": "parquet"}
            )
        ],
        prepare=_prepare_preprocess,
        after=("simulate",),
    ),
    Stage(
        "anomaly_prior",
        "Simulated fleet for a small fleet's anomaly detector",
        ("datagen",),
        lambda s: [Call("datagen", "simulate_bms_fleet", _anomaly_prior_args(s))],
        summary=_simulated_fleet_summary(
            "too few readings to learn normal behaviour from alone", "trained on with them"
        ),
        skip_late=_skip_anomaly_prior,
        after=("preprocess",),
    ),
    Stage(
        "anomaly_train",
        "Anomaly detector training",
        ("anomaly",),
        lambda s: [Call("anomaly", "train_anomaly_detector", _anomaly_train_args(s))],
        skip_when=_skip_training("anomaly_hybrid", "train_anomaly_detector"),
        after=("preprocess", "anomaly_prior"),
    ),
    Stage(
        "anomaly",
        "Anomaly detection",
        ("anomaly",),
        lambda s: [Call("anomaly", "detect_anomalies", {"data_path": processed_table(s), "output_format": "parquet"})],
        after=("anomaly_train",),
    ),
    Stage(
        "failure_fleet",
        "Simulated fleet for the failure model",
        ("datagen",),
        lambda s: [Call("datagen", "simulate_bms_fleet", {**FAILURE_FLEET, "seed": s.options.seed})],
        summary=_simulated_fleet_summary(
            "no cell dies in the readings and no failure model is registered", "to train one on"
        ),
        skip_late=_skip_failure_fleet,
        after=("preprocess",),
    ),
    Stage(
        "failure_train",
        "Failure model training",
        ("failure",),
        lambda s: [Call("failure", "train_failure_model", _failure_train_args(s))],
        skip_late=_skip_failure_training,
        after=("anomaly", "failure_fleet"),
    ),
    Stage(
        "failure",
        "Failure prediction",
        ("failure",),
        lambda s: [Call("failure", "predict_cell_failure", _failure_args(s))],
        after=("failure_train",),
    ),
    Stage(
        "forecast_train",
        "Forecaster training",
        ("forecast",),
        lambda s: [
            Call(
                "forecast",
                "train_forecaster",
                {"data_path": processed_table(s), "max_train_pairs": s.options.forecast_train_pairs},
            )
        ],
        skip_when=_skip_training("forecaster", "train_forecaster"),
        after=("preprocess",),
    ),
    Stage(
        "synthetic",
        "SDV generate",
        ("datagen",),
        lambda s: [
            Call(
                "datagen",
                "sdv_generate",
                {"folder_name": str(sdv_folder(s)), "seed": s.options.seed, "model_name": "sdv-bms-readings"},
            )
        ],
        prepare=_prepare_sdv_sample,
        after=("preprocess",),
    ),
    Stage(
        "synthetic_eval",
        "SDV evaluate",
        ("datagen",),
        lambda s: [Call("datagen", "sdv_evaluate", _synthetic_args(s))],
        needs=("synthetic",),
        after=("synthetic",),
    ),
    Stage(
        "synthetic_plot",
        "SDV real vs synthetic",
        ("datagen",),
        lambda s: [
            Call(
                "datagen",
                "sdv_visualize",
                {**_synthetic_args(s), "table_name": SDV_TABLE, "column_name": "CellVoltage"},
            )
        ],
        needs=("synthetic",),
        after=("synthetic_eval",),
    ),
    Stage(
        "forecast",
        "Forecasts (riskiest)",
        ("forecast",),
        lambda s: [
            Call("forecast", "predict_cell_timeseries", _forecast_args(s, cell), label=cell) for cell in risky_cells(s)
        ],
        summary=lambda envs: "; ".join(e.get("message", "") for e in envs),
        prepare=_prepare_forecast_history,
        needs=("failure",),
        after=("failure", "forecast_train"),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
