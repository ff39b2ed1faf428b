"""File-to-file preprocessing with bounded memory: the engine behind the five tools.

One call of :func:`run_preprocess` reads a CSV/Parquet file (whole, or streamed in chunks of
about ``chunksize`` rows) and writes one output table. The chunked run gives the same rows
and values as the one-pass run; three stages make that true:

1. **Clean stream.** Each chunk is normalised; rows of a device are *finalised* only once
   nothing later in the file can change them: the string (device) at a timestamp is
   complete (the device's latest timestamp is held back), and every measurement of the cell
   has a known value later on (the look-ahead that time interpolation needs). Finalised rows
   get their leave-one-out helper predictors (``nbr__``/``str__``, see :mod:`.mice`) computed
   with the last known readings of each cell carried over, and go to a spill file.
   Duplicates are dropped inside the pending buffer; rows of a device older than what was
   already finalised are refused (input must be in time order per device, as BMS write it).
2. **Impute + features.** After the MICE kernel is fitted on the hashed sample collected in
   stage 1, each spilled block is imputed and gets its features with the last
   ``window - 1`` readings (and the carried ``ResistanceProxy``) of each cell prepended.
3. **Assembly.** Blocks are merged in cell-then-time order through memory-mapped Arrow
   files, scaled columns are added (the scaler's moments were merged in stage 2), and the
   output is written batch by batch to a temporary file that replaces the target only at
   the end.

Peak memory is a few chunks plus the pending look-ahead rows, not the file.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError, sort_readings
from bms_schema import columns as C
from bms_schema.clean import QualityAccumulator, drop_duplicates, reading_intervals, to_canonical
from bms_schema.features import DEFAULT_WINDOW, FEATURE_COLUMNS, compute_features, skipped_features
from bms_schema.interpolate import add_imputed_flags, impute_columns, imputed_column
from bms_schema.reader import CSVTableWriter, StreamFailed, count_rows, iter_table, read_table, table_format

from .impute import IMPUTE_METHODS
from .mice import DEFAULT_ITERATIONS, DEFAULT_SAMPLE_ROWS, HELPER_PREFIXES, MiceImputer, design_matrix
from .profile import DataProfile
from .scaling import BMSScaler, scaled_column

log = logging.getLogger("bms.preprocess")

Progress = Callable[[float, str], None]
MAX_HELD_FACTOR = 5
MIN_HELD = 10_000
#: Without a chunksize, files larger than this are streamed anyway (same result, bounded memory).
AUTO_STREAM_BYTES = 256 * 1024 * 1024
AUTO_CHUNKSIZE = 200_000


class _OrderError(InputError):
    """Rows of a device are not in time order: chunked processing cannot give the one-pass result."""


@dataclass
class PreprocessOptions:
    """What :func:`run_preprocess` does. Defaults = the full chain of ``preprocess_battery_data_tool``."""

    impute: str = "mice"  # mice | interpolate | none
    features: bool = True
    scale: bool = True
    window: int = DEFAULT_WINDOW
    chunksize: int | None = None
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    iterations: int = DEFAULT_ITERATIONS
    random_state: int = 0
    eval_fraction: float = 0.1
    limits: dict[str, tuple[float, float]] | None = None
    scale_columns: list[str] | None = None

    def validate(self) -> None:
        if self.impute not in IMPUTE_METHODS:
            raise InputError(f"unknown imputation method '{self.impute}': choose one of {', '.join(IMPUTE_METHODS)}")
        if self.chunksize is not None and (isinstance(self.chunksize, bool) or int(self.chunksize) <= 0):
            raise InputError(f"chunksize must be a positive number of rows, got {self.chunksize}")
        if isinstance(self.window, bool) or int(self.window) < 1:
            raise InputError(f"window must be a whole number of readings >= 1, got {self.window}")


@dataclass
class PreprocessResult:
    output: Path
    rows: int
    columns: list[str]
    report: dict[str, Any]
    mice_quality: dict[str, Any] | None = None
    imputed_counts: dict[str, int] = field(default_factory=dict)
    scaler: BMSScaler | None = None
    profile: DataProfile | None = None
    chunks: int = 1
    timings: dict[str, float] = field(default_factory=dict)


# -- reading: the one streaming reader (bms_schema.reader) ------------------------------------
def read_chunks(path: Path, chunksize: int | None, reader: str = "arrow") -> Iterator[pd.DataFrame]:
    """The input as one frame (``chunksize=None``) or as successive chunks of about ``chunksize`` rows."""
    if chunksize is None:
        yield read_table(path)
        return
    yield from iter_table(path, chunksize, engine=reader)


# -- stage 1: clean stream ---------------------------------------------------------------------
def _ns(frame: pd.DataFrame) -> np.ndarray:
    return frame[C.TIMESTAMP].dt.as_unit("ns").array.asi8


class CleanStream:
    """Normalise chunks, hold back rows that later input could still change, finalise the rest."""

    def __init__(self, options: PreprocessOptions, quality: QualityAccumulator, max_held: int | None):
        self.options = options
        self.quality = quality
        self.max_held = max_held
        self.held: pd.DataFrame | None = None
        self.context: pd.DataFrame | None = None
        self.watermark: dict[str, int] = {}
        self.columns: list[str] | None = None
        self.schema_columns: list[str] | None = None
        self.seen_valid: set[str] = set()  # measurements with at least one value so far

    def _normalise(self, raw: pd.DataFrame) -> pd.DataFrame:
        canonical = to_canonical(raw, self.options.limits)
        if self.columns is None:
            self.columns = impute_columns(canonical)
            self.schema_columns = list(canonical.columns)
        elif list(canonical.columns) != self.schema_columns:
            canonical = canonical.reindex(columns=self.schema_columns)
        return canonical

    def _check_order(self, canonical: pd.DataFrame) -> None:
        if not self.watermark:
            return
        marks = canonical[C.DEVICE_ID].map(self.watermark)
        ts = _ns(canonical)
        late = marks.notna().to_numpy() & (ts < marks.fillna(np.iinfo(np.int64).min).to_numpy(dtype=np.int64))
        if late.any():
            row = canonical.loc[late].iloc[0]
            raise _OrderError(
                f"chunked processing needs the rows of each device in time order (as the BMS writes them), but "
                f"device '{row[C.DEVICE_ID]}' has a reading at {row[C.TIMESTAMP]} after later readings were "
                "processed: sort the file by time, or run without chunksize"
            )

    def _cutoffs(self, buffer: pd.DataFrame, final: bool) -> np.ndarray:
        """Boolean mask of buffer rows to finalise now."""
        if final:
            return np.ones(len(buffer), dtype=bool)
        ts = _ns(buffer)
        cells = buffer[C.CELL_ID].to_numpy()
        devices = buffer[C.DEVICE_ID].to_numpy()
        frame = pd.DataFrame({"cell": cells, "device": devices, "ts": ts})
        safe = None
        for name in self.columns or []:
            if name not in self.seen_valid:  # never reported yet (an absent optional column): nothing to wait for
                continue
            valid_ts = np.where(buffer[name].notna().to_numpy(), ts, np.iinfo(np.int64).min)
            last = pd.Series(valid_ts).groupby(cells, sort=False).transform("max").to_numpy()
            safe = last if safe is None else np.minimum(safe, last)
        device_max = frame.groupby("device", sort=False)["ts"].transform("max").to_numpy()
        cut = device_max if safe is None else np.minimum(device_max, safe)
        device_cut = pd.Series(cut).groupby(devices, sort=False).transform("min").to_numpy()
        finalise = ts < device_cut
        if self.max_held is not None and (len(buffer) - int(finalise.sum())) > self.max_held:
            forced = ts < device_max
            self.quality.forced_flushes += int((forced & ~finalise).sum())
            log.warning("look-ahead buffer over %d rows: finalising %d rows without it", self.max_held,
                        int((forced & ~finalise).sum()))
            finalise = forced
        cuts = pd.Series(np.where(finalise, device_cut, np.iinfo(np.int64).min)).groupby(devices).max()
        for device, value in cuts.items():
            if value > np.iinfo(np.int64).min:
                self.watermark[str(device)] = int(max(self.watermark.get(str(device), value), value))
        return finalise

    def feed(self, raw: pd.DataFrame | None, final: bool = False) -> pd.DataFrame | None:
        """Add a raw chunk (``None`` at the end with ``final=True``); return newly finalised rows."""
        parts = [] if self.held is None else [self.held]
        if raw is not None:
            self.quality.rows_in += len(raw)
            canonical = self._normalise(raw)
            self._check_order(canonical)
            self.seen_valid.update(c for c in self.columns or [] if canonical[c].notna().any())
            parts.append(canonical)
        if not parts:
            return None
        buffer = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        buffer, dups, conflicts = drop_duplicates(buffer)
        self.quality.duplicates += dups
        self.quality.conflicts += conflicts
        buffer = sort_readings(buffer)
        finalise = self._cutoffs(buffer, final)
        self.held = buffer.loc[~finalise].reset_index(drop=True) if (~finalise).any() else None
        if not finalise.any():
            return None
        return self._finalise(buffer, finalise)

    def _finalise(self, buffer: pd.DataFrame, finalise: np.ndarray) -> pd.DataFrame:
        """Helpers for the rows to finalise, computed on a narrow frame with the carried context."""
        columns = self.columns or []
        narrow_cols = [C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, *columns]
        narrow = buffer[narrow_cols].assign(__part=np.where(finalise, 1, 2).astype(np.int8))
        if self.context is not None:
            narrow = pd.concat([self.context.assign(__part=np.int8(0)), narrow], ignore_index=True)
        # context rows are older than the buffer rows of their cell, so buffer rows keep their order
        work = sort_readings(narrow)
        design = design_matrix(work, columns)
        intervals = reading_intervals(work)
        part = work["__part"].to_numpy()
        done = part == 1
        helpers = design.loc[done, [c for c in design.columns if c.startswith(HELPER_PREFIXES)]]
        block = buffer.loc[finalise].reset_index(drop=True)
        block = pd.concat([block, helpers.reset_index(drop=True)], axis=1, copy=False)
        self.quality.add(block, intervals[done])
        # carry: per cell, the last row and the last row with a value of each measurement
        kept = work.loc[part != 2, narrow_cols]
        cells = kept[C.CELL_ID]
        positions = [kept.groupby(cells, sort=False).tail(1).index.to_numpy()]
        for name in columns:
            valid = kept[name].notna()
            positions.append(kept.loc[valid].groupby(cells[valid], sort=False).tail(1).index.to_numpy())
        idx = np.unique(np.concatenate(positions))
        self.context = work.loc[idx, narrow_cols].reset_index(drop=True)
        return block


# -- stage 2: impute + features ----------------------------------------------------------------
class FeatureStream:
    """Impute spilled blocks and add features with each cell's last readings carried over."""

    def __init__(self, options: PreprocessOptions, columns: list[str], imputer: MiceImputer | None):
        self.options = options
        self.columns = columns
        self.imputer = imputer
        self.context: pd.DataFrame | None = None
        self.imputed_counts: dict[str, int] = {}
        self.single_cell_devices: list[str] = []  # strings of one cell in the whole input

    def _impute(self, block: pd.DataFrame) -> pd.DataFrame:
        """Fill gaps in ``block`` (modified in place: spilled blocks are not used again)."""
        method = self.options.impute
        if method == "none":
            return block
        if method == "mice" and self.imputer is not None:
            design = block[[*self.columns, *[c for c in block.columns if c.startswith(HELPER_PREFIXES)]]]
            out = self.imputer.transform(block, design=design, copy=False)
        else:
            out = block
            before = {}
            for name in self.columns:
                values = out[name].to_numpy(dtype=np.float64)
                missing = np.isnan(values)
                before[name] = missing
                if missing.any():
                    values = values.copy()
                    values[missing] = out[f"nbr__{name}"].to_numpy()[missing]
                    out[name] = values
            out = add_imputed_flags(out, before)
        for name in self.columns:
            flag = imputed_column(name)
            if flag in out.columns:
                self.imputed_counts[name] = self.imputed_counts.get(name, 0) + int(out[flag].sum())
        return out

    def _features(self, block: pd.DataFrame) -> dict[str, np.ndarray]:
        window = int(self.options.window)
        need = [C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, *C.CORE_COLUMNS]
        new = block[need].assign(__new=True, ResistanceProxy=np.nan)
        work = new if self.context is None else pd.concat([self.context, new], ignore_index=True)
        work = sort_readings(work)
        seed = work["ResistanceProxy"].to_numpy(dtype=np.float64)
        feats = compute_features(work, window, proxy_seed=seed, single_cell_devices=self.single_cell_devices)
        is_new = work["__new"].to_numpy(dtype=bool)
        # carry the last window-1 readings (at least one) of each cell with their final ResistanceProxy
        work = work.assign(ResistanceProxy=feats["ResistanceProxy"], __new=False)
        self.context = work.groupby(C.CELL_ID, sort=False).tail(max(window - 1, 1)).reset_index(drop=True)
        return {k: v[is_new] for k, v in feats.items()}

    def process(self, block: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Impute ``block`` and compute its features: ``(imputed block with helpers, feature arrays)``."""
        out = self._impute(block)
        return out, (self._features(out) if self.options.features else {})


# -- spill files (Arrow IPC, memory-mapped on read) ----------------------------------------------
class Spill:
    def __init__(self, folder: Path, prefix: str):
        self.folder = folder
        self.prefix = prefix
        self.paths: list[Path] = []

    def write(self, frame: pd.DataFrame, extra: dict[str, np.ndarray] | None = None,
              exclude: set[str] | frozenset[str] = frozenset()) -> None:
        """Spill ``frame`` without the ``exclude`` columns, plus ``extra`` arrays as columns."""
        import pyarrow as pa

        keep = [c for c in frame.columns if c not in exclude and c not in (extra or {})]
        table = pa.Table.from_pandas(frame, columns=keep, preserve_index=False)
        for name, values in (extra or {}).items():
            table = table.append_column(name, pa.array(values))
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self.paths.append(path)

    def frames(self) -> Iterator[pd.DataFrame]:
        for path in self.paths:
            yield _read_arrow(path).to_pandas()


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _unified_schema(tables: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fields: dict[str, Any] = {}
        for t in tables:
            for f in t.schema:
                if f.name in fields and not fields[f.name].type.equals(f.type):
                    fields[f.name] = pa.field(f.name, pa.large_string())
                else:
                    fields.setdefault(f.name, f)
        return pa.schema(list(fields.values()))


def _cast(table: Any, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.schema.equals(schema):
        return table
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            col = table[f.name]
            if not col.type.equals(f.type):
                col = pc.cast(col, f.type) if not pa.types.is_large_string(f.type) else pc.cast(
                    pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col, f.type)
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.table(arrays, schema=schema)


def assemble(spill: Spill, output: Path, scaler: BMSScaler | None, batch_rows: int,
             progress: Progress | None = None) -> tuple[int, list[str]]:
    """Write spilled blocks in cell-then-time order (plus scaled columns) to ``output`` atomically."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from bms_schema.atomic import atomic_path

    tables = [_read_arrow(p) for p in spill.paths]
    schema = _unified_schema(tables)
    tables = [_cast(t, schema) for t in tables]
    # (device, cell number) runs of every block
    runs: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for i, table in enumerate(tables):
        keys = pd.DataFrame({"d": table[C.DEVICE_ID].to_pandas().astype(str), "n": table[C.CELL_NUMBER].to_numpy()})
        change = np.flatnonzero((keys["d"].to_numpy()[1:] != keys["d"].to_numpy()[:-1]) |
                                (keys["n"].to_numpy()[1:] != keys["n"].to_numpy()[:-1])) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(keys)]])
        for s, e in zip(starts, ends):  # one entry per cell and block, not per row
            runs.setdefault((keys["d"].iat[s], int(keys["n"].iat[s])), []).append((i, int(s), int(e - s)))
    order = sorted(runs)
    out_schema = schema
    scale = scaler.scale_ if scaler is not None else {}
    if scaler is not None:
        for name in scaler.columns:
            out_schema = out_schema.append(pa.field(scaled_column(name), pa.float64()))
    fmt = table_format(output)
    written = 0
    with atomic_path(output) as tmp:
        writer = pq.ParquetWriter(str(tmp), out_schema) if fmt == "parquet" else CSVTableWriter(tmp)
        try:
            batch: list[Any] = []
            size = 0

            def flush() -> None:
                nonlocal batch, size, written
                if not batch:
                    return
                table = pa.concat_tables(batch)
                if scaler is not None:
                    for name in scaler.columns:
                        values = pc.divide(pc.subtract(pc.cast(table[name], pa.float64()), scaler.mean_[name]), scale[name])
                        table = table.append_column(scaled_column(name), values)
                writer.write_table(table)
                written += table.num_rows
                batch, size = [], 0

            for k, key in enumerate(order):  # per cell (not per row): slices are zero-copy views
                for i, start, length in runs[key]:
                    batch.append(tables[i].slice(start, length))
                    size += length
                if size >= batch_rows:
                    flush()
                    if progress is not None:
                        progress(0.85 + 0.14 * (k + 1) / len(order), f"writing cell {k + 1} of {len(order)}")
            flush()
        finally:
            writer.close()
    return written, list(out_schema.names)


# -- the run -------------------------------------------------------------------------------------
def _report_progress(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def run_preprocess(path: Path, output: Path, options: PreprocessOptions, progress: Progress | None = None,
                   work_dir: Path | None = None) -> PreprocessResult:
    """Read ``path``, clean / impute / add features / scale per ``options``, write ``output``."""
    options.validate()
    if options.chunksize is None and path.exists() and path.stat().st_size > AUTO_STREAM_BYTES:
        from dataclasses import replace

        log.info("%s is %.0f MB: streaming it in chunks of %d rows", path.name, path.stat().st_size / 1e6,
                 AUTO_CHUNKSIZE)
        try:
            return run_preprocess(path, output, replace(options, chunksize=AUTO_CHUNKSIZE), progress, work_dir)
        except _OrderError as exc:
            log.warning("%s; processing %s in one pass instead", exc, path.name)
            return _run(path, output, options, progress, work_dir, reader="arrow")
    try:
        return _run(path, output, options, progress, work_dir, reader="arrow")
    except StreamFailed as exc:
        log.info("pyarrow streaming reader gave up (%s): re-reading with pandas", exc)
        return _run(path, output, options, progress, work_dir, reader="pandas")


def _run(path: Path, output: Path, options: PreprocessOptions, progress: Progress | None,
         work_dir: Path | None, reader: str) -> PreprocessResult:
    import time

    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[label] = round(now - clock, 3)
        clock = now

    total_rows = count_rows(path)
    from bms_schema.leftovers import owner_tag  # a later server start removes it if this process is killed

    spill_root = Path(tempfile.mkdtemp(prefix=f".bms-spill-{owner_tag()}-", dir=work_dir or output.parent))
    try:
        quality = QualityAccumulator()
        chunk = options.chunksize
        max_held = None if chunk is None else max(MAX_HELD_FACTOR * int(chunk), MIN_HELD)
        stream = CleanStream(options, quality, max_held)
        imputer = MiceImputer(sample_rows=options.sample_rows, iterations=options.iterations,
                              random_state=options.random_state, eval_fraction=options.eval_fraction)
        stage1 = Spill(spill_root, "clean")
        samples: list[pd.DataFrame] = []
        profile = DataProfile()
        chunks = 0

        def take(block: pd.DataFrame | None) -> None:
            if block is None or len(block) == 0:
                return
            profile.add_clean(block, stream.columns or [])
            if options.impute == "mice":
                mask = imputer.sample_mask(block, total_rows)
                if mask.any():
                    samples.append(block.loc[mask])
            stage1.write(block)

        for raw in read_chunks(path, options.chunksize, reader):
            chunks += 1
            if quality.input_format == "unknown":
                from bms_schema.normalize import detect_format

                quality.input_format = detect_format(raw)
            take(stream.feed(raw))
            done = min(quality.rows_in / max(total_rows, 1), 1.0)
            _report_progress(progress, 0.05 + 0.4 * done, f"cleaned {quality.rows_in} of {total_rows} rows")
        take(stream.feed(None, final=True))
        if not stage1.paths:
            raise InputError(f"{path.name}: no usable rows after cleaning")
        lap("read_clean_s")
        report = quality.report()
        _check_totals(report, quality)
        columns = stream.columns or []

        fitted: MiceImputer | None = None
        if options.impute == "mice":
            _report_progress(progress, 0.5, "fitting the MICE imputer on the sample")
            fitted = _fit_mice(imputer, samples, columns, report)
        lap("mice_fit_s")
        stage2 = Spill(spill_root, "features")
        features = FeatureStream(options, columns, fitted)
        features.single_cell_devices = list(report.get("single_cell_strings", []))
        scaler = None
        if options.scale:
            present = set(stream.schema_columns or [])
            empty = {c for c in columns if report["missing_by_column"].get(c, 0) >= report["rows_out"]}
            scale_cols = options.scale_columns or [
                *(c for c in columns if c not in empty),  # an optional column never reported is not scaled
                *(f for f in FEATURE_COLUMNS if options.features or f in present)]
            scaler = BMSScaler(columns=list(scale_cols))
        feature_values: dict[str, int] = {}
        for k, block in enumerate(stage1.frames()):
            out, feats = features.process(block)
            for name, values in feats.items():
                feature_values[name] = feature_values.get(name, 0) + int(np.count_nonzero(~np.isnan(values)))
            exclude = {c for c in out.columns if c.startswith(HELPER_PREFIXES)}
            if scaler is not None:  # partly processed input: its old scaled columns are replaced
                exclude |= {scaled_column(c) for c in scaler.columns}
            profile.add_final(out, columns)
            if scaler is not None:
                scaler.partial_fit(pd.DataFrame({c: feats[c] if c in feats else out[c].to_numpy()
                                                 for c in scaler.columns}))
            stage2.write(out, extra=feats, exclude=exclude)
            _report_progress(progress, 0.55 + 0.3 * (k + 1) / len(stage1.paths),
                             f"imputed and engineered block {k + 1} of {len(stage1.paths)}")
        for p in stage1.paths:
            p.unlink(missing_ok=True)
        if scaler is not None:
            unfitted = scaler.drop_unfitted()  # no value at all (no SG on VRLA, no current step): not scaled
            report["not_scaled"] = {c: "no value at all" for c in unfitted}
            scaler.check_fitted()
        if options.features:
            report["skipped_features"] = skipped_features(
                report.get("measurements_without_value", []),
                [name for name in FEATURE_COLUMNS if feature_values.get(name, 0) == 0])
        lap("impute_features_s")
        rows, out_columns = assemble(stage2, output, scaler, batch_rows=int(options.chunksize or 500_000),
                                     progress=progress)
        lap("write_s")
        return PreprocessResult(
            output=output, rows=rows, columns=out_columns, report=report,
            mice_quality=fitted.quality_ if fitted is not None else None,
            imputed_counts=features.imputed_counts, scaler=scaler, profile=profile, chunks=chunks,
            timings=timings,
        )
    finally:
        shutil.rmtree(spill_root, ignore_errors=True)


def _prefetch(module: str) -> None:
    """Import a heavy module on a background thread; the later import finds it loaded (or waits for it)."""
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the real import later reports it
            pass

    threading.Thread(target=load, name=f"import-{module}", daemon=True).start()


def _check_totals(report: dict[str, Any], quality: QualityAccumulator) -> None:
    """The whole-file checks of ``check_usable``, from the streamed counts."""
    if report["rows_out"] < 2:
        raise InputError(
            f"the table has only {report['rows_out']} row after cleaning: preprocessing needs at least 2 readings "
            "(rates and rolling features compare a reading with the previous one)"
        )
    for name in C.REQUIRED_MEASUREMENTS:
        counts = report["quality_by_column"].get(name, {})
        if counts and report["missing_by_column"].get(name, 0) >= report["rows_out"]:
            why = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
            raise InputError(f"column '{name}' has no usable value in any of the {report['rows_out']} rows ({why}): "
                             "nothing to impute from")


def _fit_mice(imputer: MiceImputer, samples: list[pd.DataFrame], columns: list[str],
              report: dict[str, Any]) -> MiceImputer:
    sample = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame()
    missing_any = [c for c in columns if report["missing_by_column"].get(c, 0) > 0]
    if len(sample) > imputer.sample_rows:
        from .mice import row_hash

        keep = np.argsort(row_hash(sample), kind="stable")[: imputer.sample_rows]
        sample = sample.iloc[np.sort(keep)]
    sample = sort_readings(sample)
    # the design columns in the order design_matrix builds them
    ordered = [*columns, *[f"{p}{c}" for c in columns for p in HELPER_PREFIXES]]
    return imputer.fit_sample(sample[ordered].reset_index(drop=True), columns, missing_any)
