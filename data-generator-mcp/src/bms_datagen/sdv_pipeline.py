"""SDV workflows behind the tools: generate, sample more from a registered model, evaluate.

Trust boundary of registered synthesizers: SDV saves synthesizers with cloudpickle, and
unpickling a file runs code from it - a SHA-256 in ``metadata.json`` does not help, because
whoever can drop a file into ``models/`` can also rewrite the checksum next to it. So nothing
here ever unpickles. A registered SDV model stores only safe formats: the prepared training
tables (Parquet), the SDV metadata, the preparation recipe and the synthesizer parameters
(JSON). Sampling more rows refits the synthesizer from those files with the same seed (the fit
is deterministic, so it is the same model) and then samples with the new seed. The price is
the fit time on every ``sdv_sample`` call (seconds for GaussianCopula; as long as training for
CTGAN/TVAE/PAR).
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from bms_schema.atomic import atomic_write_json
from bms_schema.errors import InputError, ModelError
from bms_schema.reader import write_table
from bms_schema.registry import ModelRegistry

from .sdv_data import (
    TablePrep,
    analysis_view,
    clean_sentinels,
    detect_metadata,
    load_metadata,
    model_metadata,
    prepare_table,
    read_folder,
    restore_table,
    sdtypes,
)
from .sdv_import import import_sdv
from .sdv_synthesis import FittedSynthesizer, SynthesisSpec, resolve_synthesizer, roundtrip, sequence_columns

log = logging.getLogger("bms.datagen")

MODEL_KIND = "sdv"
SYNTHETIC_SUBDIR = "synthetic"
Progress = Callable[[float, str], None]


def _noop(fraction: float, message: str) -> None:
    return None


def default_model_name(folder: Path) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name).strip("-.") or "data"
    return f"sdv-{safe}"[:64]


@dataclass
class Generation:
    synthesizer: str
    tables: dict[str, pd.DataFrame]
    metadata: Any
    detected: bool
    fixes: list[str]
    preps: dict[str, TablePrep]
    real_rows: dict[str, int]
    model_name: str = ""
    model_version: str | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def _metadata_for(tables: dict[str, pd.DataFrame], metadata_path: Path | None) -> tuple[Any, bool, list[str]]:
    cleaned = {name: clean_sentinels(frame)[0] for name, frame in tables.items()}
    if metadata_path is None:
        metadata, fixes = detect_metadata(cleaned)
        return metadata, True, fixes
    metadata = load_metadata(metadata_path, tables)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metadata.validate_data(cleaned)
    except Exception as exc:
        raise InputError(f"metadata.json does not match the CSV data: {' '.join(str(exc).split())[:600]}") from exc
    return metadata, False, []


def _write_outputs(out_dir: Path, synthetic: dict[str, pd.DataFrame], metadata: Any) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name, frame in synthetic.items():
        paths[name] = write_table(frame, out_dir / SYNTHETIC_SUBDIR / f"{name}.csv")
    paths["metadata"] = atomic_write_json(out_dir / SYNTHETIC_SUBDIR / "metadata.json", metadata.to_dict())
    return paths


def generate(
    folder: Path,
    out_dir: Path,
    synthesizer: str = "auto",
    num_rows: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    epochs: int = 100,
    sequence_key: str | None = None,
    sequence_index: str | None = None,
    model_name: str | None = None,
    register: bool = True,
    run_id: str | None = None,
    progress: Progress = _noop,
) -> Generation:
    """Fit a synthesizer on the folder's tables, write synthetic CSVs + metadata, register the model."""
    tables, metadata_path = read_folder(folder)
    kind = resolve_synthesizer(synthesizer, len(tables))
    if num_rows is not None and kind == "hma":
        raise InputError(
            "num_rows applies to one table; for several tables use scale (1.0 = as many rows as the real data)"
        )
    metadata, detected, fixes = _metadata_for(tables, metadata_path)
    progress(0.15, f"metadata {'detected' if detected else 'loaded'}; fitting {kind}")
    spec = SynthesisSpec(synthesizer=kind, seed=seed, epochs=epochs)
    if kind == "par":
        name = next(iter(tables))
        spec.sequence_key, spec.sequence_index, tables[name] = sequence_columns(
            tables[name], metadata, sequence_key, sequence_index
        )
    preps: dict[str, TablePrep] = {}
    model_tables: dict[str, pd.DataFrame] = {}
    stored: dict[str, bytes] = {}
    for name, frame in tables.items():
        prepared, preps[name] = prepare_table(frame, metadata, name, single_table=len(tables) == 1)
        model_tables[name], stored[name] = roundtrip(prepared)
    reduced = model_metadata(metadata, preps)
    fitted = FittedSynthesizer(spec, reduced, model_tables).fit()
    progress(0.7, "sampling")
    sampled = fitted.sample(seed, num_rows=num_rows, scale=scale)
    synthetic = {name: restore_table(sampled[name], preps[name], seed) for name in tables}
    generation = Generation(
        synthesizer=kind,
        tables=synthetic,
        metadata=metadata,
        detected=detected,
        fixes=fixes,
        preps=preps,
        real_rows={n: int(len(f)) for n, f in tables.items()},
        model_name=model_name or default_model_name(folder),
    )
    generation.paths = _write_outputs(out_dir, synthetic, metadata)
    if register:
        generation.model_version = _register(
            generation.model_name, folder, out_dir, spec, metadata, reduced, preps, stored, generation, run_id
        )
    return generation


def _register(
    name: str,
    folder: Path,
    out_dir: Path,
    spec: SynthesisSpec,
    metadata: Any,
    reduced: Any,
    preps: dict[str, TablePrep],
    stored: dict[str, bytes],
    generation: Generation,
    run_id: str | None,
) -> str:
    from bms_schema.runtime import versions

    registry = ModelRegistry()
    info = {
        "kind": MODEL_KIND,
        "synthesizer": spec.synthesizer,
        "seed": spec.seed,
        "source_folder": str(folder),
        "synthetic_dir": str(out_dir / SYNTHETIC_SUBDIR),
        "run_id": run_id,
        "tables": {
            n: {"real_rows": generation.real_rows[n], "synthetic_rows": int(len(generation.tables[n]))}
            for n in generation.tables
        },
        "library_versions": versions("sdv", "rdt", "copulas", "pandas", "numpy"),
        "format": "refit-from-data (Parquet + JSON, no pickle)",
    }
    with registry.register(name, info) as staging:
        atomic_write_json(staging.dir / "spec.json", spec.to_dict())
        atomic_write_json(staging.dir / "sdv_metadata.json", metadata.to_dict())
        atomic_write_json(staging.dir / "metadata_model.json", reduced.to_dict())
        atomic_write_json(staging.dir / "prep.json", {n: p.to_dict() for n, p in preps.items()})
        (staging.dir / "data").mkdir()
        for table, data in stored.items():
            (staging.dir / "data" / f"{table}.parquet").write_bytes(data)
    return str(staging.version)


@dataclass
class RegisteredSDV:
    name: str
    version: str
    spec: SynthesisSpec
    metadata: Any
    reduced: Any
    preps: dict[str, TablePrep]
    tables: dict[str, pd.DataFrame]
    info: dict[str, Any]


def load_registered(name: str, version: str = "latest") -> RegisteredSDV:
    """Load a registered SDV model (checksums verified by the registry; safe formats only)."""
    import_sdv()
    from sdv.metadata import Metadata

    model = ModelRegistry().load(name, version)
    if model.metadata.get("kind") != MODEL_KIND:
        raise ModelError(f"model '{name}' is not an SDV synthesizer (kind: {model.metadata.get('kind', 'unknown')})")
    try:
        spec = SynthesisSpec(**json.loads(model.file("spec.json").read_text()))
        metadata = Metadata.load_from_dict(json.loads(model.file("sdv_metadata.json").read_text()))
        reduced = Metadata.load_from_dict(json.loads(model.file("metadata_model.json").read_text()))
        preps = {n: TablePrep.from_dict(p) for n, p in json.loads(model.file("prep.json").read_text()).items()}
        tables = {n: pd.read_parquet(io.BytesIO(model.file(f"data/{n}.parquet").read_bytes())) for n in preps}
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {name}/{model.version} is unreadable: {exc}") from exc
    return RegisteredSDV(name, model.version, spec, metadata, reduced, preps, tables, model.metadata)


def sample_registered(
    name: str,
    out_dir: Path,
    version: str = "latest",
    num_rows: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    progress: Progress = _noop,
) -> tuple[RegisteredSDV, dict[str, pd.DataFrame], dict[str, Path]]:
    """Refit the registered synthesizer from its stored data and sample new rows."""
    model = load_registered(name, version)
    if num_rows is not None and model.spec.synthesizer == "hma":
        raise InputError(f"num_rows applies to one table; model '{name}' is multi-table (HMA): use scale")
    progress(0.2, f"refitting {model.spec.synthesizer} from {name}/{model.version}")
    fitted = FittedSynthesizer(model.spec, model.reduced, model.tables).fit()
    progress(0.7, "sampling")
    sampled = fitted.sample(seed, num_rows=num_rows, scale=scale)
    synthetic = {n: restore_table(sampled[n], model.preps[n], seed) for n in model.preps}
    return model, synthetic, _write_outputs(out_dir, synthetic, model.metadata)


# -- evaluation ------------------------------------------------------------------------------
def find_generation(folder: Path) -> dict[str, Any] | None:
    """The most recent registered SDV generation made from ``folder`` (its registry metadata)."""
    registry = ModelRegistry()
    best: dict[str, Any] | None = None
    for name in registry.names():
        for version in registry.versions(name):
            try:
                meta = registry.metadata(name, version)
            except ModelError:
                continue
            if meta.get("kind") == MODEL_KIND and meta.get("source_folder") == str(folder):
                if best is None or meta.get("created", "") > best.get("created", ""):
                    best = meta
    return best


def synthetic_folder_for(folder: Path, synthetic_folder: Path | None) -> Path:
    if synthetic_folder is not None:
        return synthetic_folder
    found = find_generation(folder)
    if found is None or not Path(found["synthetic_dir"]).is_dir():
        raise InputError(
            f"no synthetic data has been generated from '{folder}' yet: "
            f"run sdv_generate(folder_name='{folder.name}') first, or pass synthetic_folder"
        )
    return Path(found["synthetic_dir"])


def load_pair(
    folder: Path, synthetic_folder: Path | None
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], Any, Path]:
    """Real tables, synthetic tables (same names) and the metadata describing them."""
    import_sdv()
    from sdv.metadata import Metadata

    real, metadata_path = read_folder(folder)
    synth_dir = synthetic_folder_for(folder, synthetic_folder)
    synthetic: dict[str, pd.DataFrame] = {}
    for name in real:
        path = synth_dir / f"{name}.csv"
        if not path.is_file():
            raise InputError(f"synthetic folder '{synth_dir}' has no table '{name}.csv' (real tables: {sorted(real)})")
        synthetic[name] = pd.read_csv(path, low_memory=False)
    synth_meta = synth_dir / "metadata.json"
    if synth_meta.is_file():
        metadata = Metadata.load_from_dict(json.loads(synth_meta.read_text()))
    else:
        metadata, _, _ = _metadata_for(real, metadata_path)
    for name, frame in real.items():
        table = metadata.tables[name]
        for column in list(table.columns):
            if column not in frame.columns:
                if column == "CellID" and {"DeviceID", "CellNumber"} <= set(frame.columns):
                    frame["CellID"] = frame["DeviceID"].astype(str) + "-" + frame["CellNumber"].astype(str)
                else:
                    raise InputError(f"metadata column '{name}.{column}' is not in the real table {name}.csv")
        extra = [c for c in synthetic[name].columns if c not in table.columns]
        if extra:
            synthetic[name] = synthetic[name].drop(columns=extra)
    return real, synthetic, metadata, synth_dir


def _subsample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= max_rows else frame.sample(n=max_rows, random_state=seed)


def evaluate(
    folder: Path,
    synthetic_folder: Path | None = None,
    max_rows: int = 20_000,
    seed: int = 0,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Quality report, diagnostic and privacy check of the synthetic tables against the real ones."""
    import_sdv()
    from sdv.evaluation import evaluate_quality, run_diagnostic

    from .sdv_privacy import privacy_check

    real, synthetic, metadata, synth_dir = load_pair(folder, synthetic_folder)
    real_view = {n: analysis_view(f) for n, f in real.items()}
    synth_view = {n: analysis_view(f) for n, f in synthetic.items()}
    if len(real) == 1:  # subsampling keeps a single table valid; it would break relationships
        real_view = {n: _subsample(f, max_rows, seed) for n, f in real_view.items()}
        synth_view = {n: _subsample(f, max_rows, seed) for n, f in synth_view.items()}
    progress(0.2, "quality report")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            quality = evaluate_quality(real_view, synth_view, metadata, verbose=False)
            progress(0.6, "diagnostic")
            diagnostic = run_diagnostic(real_view, synth_view, metadata, verbose=False)
        except Exception as exc:
            raise InputError(f"SDV could not evaluate the synthetic data: {' '.join(str(exc).split())[:500]}") from exc
    progress(0.8, "privacy check")
    types = sdtypes(metadata)
    privacy = {n: privacy_check(real_view[n], synth_view[n], types[n], seed) for n in real}
    shapes = quality.get_details("Column Shapes")
    pairs = quality.get_details("Column Pair Trends")
    return {
        "synthetic_folder": str(synth_dir),
        "rows_compared": {n: {"real": int(len(real_view[n])), "synthetic": int(len(synth_view[n]))} for n in real},
        "quality": {
            "overall_score": _num(quality.get_score()),
            "properties": _records(quality.get_properties()),
            "column_shapes": _records(shapes),
            "column_pair_trends_worst": _records(pairs.sort_values("Score").head(15)) if len(pairs) else [],
            "column_pair_trends_count": int(len(pairs)),
        },
        "diagnostic": {
            "overall_score": _num(diagnostic.get_score()),
            "properties": _records(diagnostic.get_properties()),
        },
        "privacy": privacy,
    }


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else round(value, 6)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: (_num(v) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()})
    return out
