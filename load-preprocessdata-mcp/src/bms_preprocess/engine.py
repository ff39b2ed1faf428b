"""File-to-file preprocessing with bounded memory: the engine behind the five tools.

Modules: this one (options, the run), :mod:`.streams` (stages 1 and 2), :mod:`.spill` (spill files,
assembly); reading is :func:`bms_schema.reader.iter_table`, the one streaming reader.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError, sort_readings
from bms_schema import columns as C
from bms_schema.clean import QualityAccumulator
from bms_schema.features import DEFAULT_WINDOW, FEATURE_COLUMNS, skipped_features
from bms_schema.reader import StreamFailed, count_rows, iter_csv_tables, iter_table, read_table, table_format

from .impute import IMPUTE_METHODS
from .mice import DEFAULT_ITERATIONS, DEFAULT_SAMPLE_ROWS, HELPER_PREFIXES, MiceImputer, import_miceforest
from .profile import DataProfile
from .scaling import BMSScaler, scaled_column
from .spill import BlockLines, CSVLines, HeldBlocks, Spill, assemble
from .streams import ROW_COLUMN, CleanStream, FeatureStream, PassThrough, _OrderError

log = logging.getLogger("bms.preprocess")

Progress = Callable[[float, str], None]
MAX_HELD_FACTOR = 5
MIN_HELD = 10_000
#: Without a chunksize, files larger than this are streamed anyway (same result, bounded memory).
AUTO_STREAM_BYTES = 256 * 1024 * 1024
AUTO_CHUNKSIZE = 200_000
#: cleaned blocks held in memory between stages 1 and 2 (1M packet rows: ~0.9 GB); more is spilled
DEFAULT_MEMORY_BUDGET_MB = 1024
#: threads formatting stage 2's blocks to CSV lines while later blocks are computed
LINE_THREADS = 2


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
    #: blocks kept in memory between stages up to this many MB (each stage); beyond it they go to spill files
    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB

    def validate(self) -> None:
        if self.impute not in IMPUTE_METHODS:
            raise InputError(f"unknown imputation method '{self.impute}': choose one of {', '.join(IMPUTE_METHODS)}")
        if self.chunksize is not None and (isinstance(self.chunksize, bool) or int(self.chunksize) <= 0):
            raise InputError(f"chunksize must be a positive number of rows, got {self.chunksize}")
        if isinstance(self.window, bool) or int(self.window) < 1:
            raise InputError(f"window must be a whole number of readings >= 1, got {self.window}")
        if isinstance(self.memory_budget_mb, bool) or int(self.memory_budget_mb) < 0:
            raise InputError(f"memory_budget_mb must be a number of MB >= 0, got {self.memory_budget_mb}")


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


def _clean_chunks(path: Path, chunksize: int | None, reader: str, stream: CleanStream) -> Iterator[pd.DataFrame]:
    """The chunks stage 1 cleans: :func:`read_chunks`, or, for a CSV read by pyarrow in chunks, each
    chunk's Arrow table split by a :class:`.streams.PassThrough` that ``stream`` then holds (the
    columns normalisation does not read stay in Arrow)."""
    if chunksize is None or reader != "arrow" or path.is_dir() or table_format(path) != "csv":
        yield from read_chunks(path, chunksize, reader)
        return
    passthrough: PassThrough | None = None
    for k, table in enumerate(iter_csv_tables(path, chunksize)):
        if k == 0:
            passthrough = PassThrough.for_columns(table.column_names)
            stream.passthrough = passthrough
        if passthrough is None:
            yield _to_frame(table)
        else:
            yield passthrough.split(table)


def _to_frame(table: Any) -> pd.DataFrame:
    """A chunk as :func:`bms_schema.reader.iter_table` gives it (Arrow-backed strings)."""
    import pyarrow as pa

    mapper = {pa.large_string(): pd.StringDtype("pyarrow"), pa.string(): pd.StringDtype("pyarrow")}.get
    return table.to_pandas(types_mapper=mapper, self_destruct=True)


# -- the run -------------------------------------------------------------------------------------
def _report_progress(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def run_preprocess(
    path: Path, output: Path, options: PreprocessOptions, progress: Progress | None = None, work_dir: Path | None = None
) -> PreprocessResult:
    """Read ``path``, clean / impute / add features / scale per ``options``, write ``output``."""
    options.validate()
    if options.chunksize is None and path.exists() and path.stat().st_size > AUTO_STREAM_BYTES:
        from dataclasses import replace

        log.info(
            "%s is %.0f MB: streaming it in chunks of %d rows", path.name, path.stat().st_size / 1e6, AUTO_CHUNKSIZE
        )
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


def _run(
    path: Path, output: Path, options: PreprocessOptions, progress: Progress | None, work_dir: Path | None, reader: str
) -> PreprocessResult:
    import time

    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[label] = round(now - clock, 3)
        clock = now

    if options.impute == "mice":
        # miceforest pulls in LightGBM and SciPy (a second of imports; mice.import_miceforest keeps LightGBM's
        # scikit-learn and Dask interfaces out): load it on a thread while stage 1 reads and cleans
        # (pyarrow's parsing releases the GIL), not after it
        _prefetch(import_miceforest, "miceforest")
    total_rows = count_rows(path)
    from bms_schema.leftovers import owner_tag  # a later server start removes it if this process is killed

    spill_root = Path(tempfile.mkdtemp(prefix=f".bms-spill-{owner_tag()}-", dir=work_dir or output.parent))
    pool = ThreadPoolExecutor(1, thread_name_prefix="bms-passthrough")
    text_pool = ThreadPoolExecutor(LINE_THREADS, thread_name_prefix="bms-csv-lines")
    try:
        quality = QualityAccumulator()
        chunk = options.chunksize
        max_held = None if chunk is None else max(MAX_HELD_FACTOR * int(chunk), MIN_HELD)
        stream = CleanStream(options, quality, max_held)
        imputer = MiceImputer(
            sample_rows=options.sample_rows,
            iterations=options.iterations,
            random_state=options.random_state,
            eval_fraction=options.eval_fraction,
        )
        stage1 = HeldBlocks(Spill(spill_root, "clean"), int(options.memory_budget_mb) * 1024 * 1024)
        samples: list[pd.DataFrame] = []
        pending: list[tuple[pd.DataFrame, Future[Any]]] = []
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
            passthrough = stream.passthrough
            if passthrough is None:
                stage1.write(block)
                return
            # the block's pass-through columns are taken on a thread while the next chunk is cleaned
            settle()
            pending.append((block, passthrough.gather(block[ROW_COLUMN].to_numpy(), pool)))

        def settle() -> None:
            while pending:
                block, side = pending.pop(0)
                stage1.write(block, side.result())

        def release() -> None:  # pass-through rows no held row can need any more
            if stream.passthrough is not None:
                held = stream.held
                below = stream.passthrough.rows if held is None else int(held[ROW_COLUMN].min())
                stream.passthrough.release(below)

        for raw in _clean_chunks(path, options.chunksize, reader, stream):
            chunks += 1
            if quality.input_format == "unknown":
                from bms_schema.normalize import detect_format

                quality.input_format = detect_format(raw)
            take(stream.feed(raw))
            release()
            done = min(quality.rows_in / max(total_rows, 1), 1.0)
            _report_progress(progress, 0.05 + 0.4 * done, f"cleaned {quality.rows_in} of {total_rows} rows")
        take(stream.feed(None, final=True))
        release()
        settle()
        if not len(stage1):
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
        # stage 1's blocks are released as stage 2 goes, so stage 2's output gets the same budget
        stage2 = Spill(spill_root, "features", budget_bytes=int(options.memory_budget_mb) * 1024 * 1024)
        features = FeatureStream(options, columns, fitted)
        features.single_cell_devices = list(report.get("single_cell_strings", []))
        scaler = None
        if options.scale:
            present = set(stream.schema_columns or [])
            empty = {c for c in columns if report["missing_by_column"].get(c, 0) >= report["rows_out"]}
            scale_cols = options.scale_columns or [
                *(c for c in columns if c not in empty),  # an optional column never reported is not scaled
                *(f for f in FEATURE_COLUMNS if options.features or f in present),
            ]
            scaler = BMSScaler(columns=list(scale_cols))
        feature_values: dict[str, int] = {}
        blocks = len(stage1)
        budget = int(options.memory_budget_mb) * 1024 * 1024
        lines_rows = 0  # rows of the blocks formatted to lines (-1: over the budget, no more)
        # a CSV output's columns but the scaled ones are formatted block by block on a thread while
        # the next block is computed; the assembly then formats only the scaled columns
        lines: list[list[Future[CSVLines | None]]] | None = (
            [] if scaler is not None and table_format(output) == "csv" else None
        )
        for k, (block, side) in enumerate(stage1.items()):
            out, feats = features.process(block)
            for name, values in feats.items():
                feature_values[name] = feature_values.get(name, 0) + int(np.count_nonzero(~np.isnan(values)))
            exclude = {c for c in out.columns if c.startswith(HELPER_PREFIXES)}
            if scaler is not None:  # partly processed input: its old scaled columns are replaced
                exclude |= {scaled_column(c) for c in scaler.columns}
            profile.add_final(out, columns)
            if scaler is not None:
                scaler.partial_fit(
                    pd.DataFrame({c: feats[c] if c in feats else out[c].to_numpy() for c in scaler.columns})
                )
            if side is None:
                exclude.add(ROW_COLUMN)
            table = stage2.write(out, extra=feats, exclude=exclude, passthrough=side, marker=ROW_COLUMN)
            if lines is not None and (lines_rows < 0 or _lines_bytes(lines, lines_rows, table) > budget):
                lines.append([])  # over the memory budget: this block's lines (and the later ones') at the end
                lines_rows = -1
            elif lines is not None:  # in halves, so that both threads share the last block too
                lines_rows += table.num_rows
                half = max(1, -(-table.num_rows // LINE_THREADS))
                lines.append(
                    [
                        text_pool.submit(CSVLines.format, table.slice(at, half), b",")
                        for at in range(0, table.num_rows, half)
                    ]
                )
            _report_progress(
                progress,
                0.55 + 0.3 * (k + 1) / blocks,
                f"imputed and engineered block {k + 1} of {blocks}",
            )
        if scaler is not None:
            unfitted = scaler.drop_unfitted()  # no value at all (no SG on VRLA, no current step): not scaled
            report["not_scaled"] = {c: "no value at all" for c in unfitted}
            scaler.check_fitted()
        if options.features:
            report["skipped_features"] = skipped_features(
                report.get("measurements_without_value", []),
                [name for name in FEATURE_COLUMNS if feature_values.get(name, 0) == 0],
            )
        lap("impute_features_s")
        rows, out_columns = assemble(
            stage2,
            output,
            scaler,
            batch_rows=int(options.chunksize or 500_000),
            progress=progress,
            lines=None if lines is None else [BlockLines.of([f.result() for f in parts]) for parts in lines],
        )
        lap("write_s")
        return PreprocessResult(
            output=output,
            rows=rows,
            columns=out_columns,
            report=report,
            mice_quality=fitted.quality_ if fitted is not None else None,
            imputed_counts=features.imputed_counts,
            scaler=scaler,
            profile=profile,
            chunks=chunks,
            timings=timings,
        )
    finally:
        pool.shutdown(cancel_futures=True)
        text_pool.shutdown(cancel_futures=True)
        shutil.rmtree(spill_root, ignore_errors=True)


def _lines_bytes(lines: list[list[Future[CSVLines | None]]], rows: int, table: Any) -> float:
    """The memory of the CSV lines of ``rows`` rows so far and of ``table``'s: measured on those done."""
    done = [p for parts in lines for f in parts if f.done() and (p := f.result()) is not None]
    done_rows = sum(len(p.offsets) - 1 for p in done)
    per_row = sum(p.data.nbytes for p in done) / done_rows if done_rows else 2.0 * table.nbytes / max(table.num_rows, 1)
    return per_row * (rows + table.num_rows)


def _prefetch(importer: Callable[[], object], name: str) -> None:
    """Run ``importer`` (a heavy import) on a background thread; the later import finds the module loaded
    (or waits for it)."""
    import threading

    def load() -> None:
        try:
            importer()
        except Exception:  # noqa: BLE001 - the real import later reports it
            pass

    threading.Thread(target=load, name=f"import-{name}", daemon=True).start()


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
            raise InputError(
                f"column '{name}' has no usable value in any of the {report['rows_out']} rows ({why}): "
                "nothing to impute from"
            )


def _fit_mice(
    imputer: MiceImputer, samples: list[pd.DataFrame], columns: list[str], report: dict[str, Any]
) -> MiceImputer:
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
