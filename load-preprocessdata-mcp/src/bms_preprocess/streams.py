"""Stages 1 and 2 of the file engine: the clean stream and the impute + features stream.

See :mod:`bms_preprocess.engine` for how the stages fit together.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bms_schema import InputError, sort_readings
from bms_schema import columns as C
from bms_schema.clean import QualityAccumulator, drop_duplicates, reading_intervals, to_canonical
from bms_schema.features import compute_features
from bms_schema.interpolate import add_imputed_flags, impute_columns, imputed_column
from bms_schema.normalize import concat_rows

from .mice import HELPER_PREFIXES, MiceImputer, design_matrix

if TYPE_CHECKING:
    from .engine import PreprocessOptions

log = logging.getLogger("bms.preprocess")


class _OrderError(InputError):
    """Rows of a device are not in time order: chunked processing cannot give the one-pass result."""


# -- stage 1: clean stream ---------------------------------------------------------------------
def _rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The ``mask`` rows of ``frame`` with a fresh index, copied once (``.loc`` + ``reset_index`` copy twice)."""
    out = frame.take(np.flatnonzero(mask))
    out.index = pd.RangeIndex(len(out))
    return out


def _last_per_code(codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The last of ``positions`` of each group code (``groupby(...).tail(1)``; code -1, a missing key, dropped)."""
    keep = codes >= 0
    codes, positions = codes[keep][::-1], positions[keep][::-1]
    _, first = np.unique(codes, return_index=True)
    return positions[first]


def _ns(frame: pd.DataFrame) -> np.ndarray:
    return frame[C.TIMESTAMP].dt.as_unit("ns").array.asi8


#: The column that stands for the pass-through columns in stage 1: each row's number in the file.
ROW_COLUMN = "__bms_row"
#: Columns the later stages write or replace: they never pass through as Arrow columns.
_TOUCHED_SUFFIXES = ("_Imputed", "_scaled", "_Quality")


def _string_dtype(kind: Any) -> Any:
    import pyarrow as pa

    return pd.StringDtype("pyarrow") if kind in (pa.string(), pa.large_string()) else None


def _as_after_pandas(column: Any) -> Any:
    """``column`` with the type and nulls it has after a trip through pandas and back (``to_pandas`` with
    Arrow-backed strings, then ``Table.from_pandas``), as the pass-through columns had before they
    were kept in Arrow: integers with gaps become float64, NaN becomes null, times get microseconds,
    strings are large strings; other types take the trip itself."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_null(kind) or pa.types.is_boolean(kind) or pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return column
    if pa.types.is_integer(kind):
        return column.cast(pa.float64()) if column.null_count else column
    if pa.types.is_floating(kind):
        nan = pc.is_nan(column)
        return pc.if_else(nan, pa.scalar(None, kind), column) if pc.any(nan).as_py() else column
    if pa.types.is_time(kind):
        return column.cast(pa.time64("us"), safe=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.large_string())
    frame = pa.table({"c": column}).to_pandas(types_mapper=_string_dtype)
    return pa.Table.from_pandas(frame, preserve_index=False).column(0)


class PassThrough:
    """The columns stage 1 passes through unread, kept as Arrow tables while the rest is cleaned in pandas.

    A raw packet has ~60 such columns: carried through pandas, they were most of stage 1's cost
    (conversion, the copies of concatenating, sorting and splitting the look-ahead buffer). Here
    :meth:`split` gives the pandas frame of the other columns, where one int64 column
    (:data:`ROW_COLUMN`, the row's number in the file) stands at the place of the pass-through
    columns, and keeps their values by chunk; :meth:`gather` gives them for any rows (a block
    finalised by the clean stream); :meth:`release` drops chunks no held row points into.
    """

    def __init__(self, names: list[str], columns: list[str]):
        self.names = names  # the pass-through columns, in input order
        self.columns = columns  # the whole chunk's columns
        self.chunks: list[tuple[int, Any]] = []  # (first row number, table)
        self.rows = 0

    @classmethod
    def for_columns(cls, columns: list[str]) -> PassThrough | None:
        """A store for tables of ``columns``, or ``None`` when they are better cleaned as one frame."""
        from bms_schema.features import FEATURE_COLUMNS
        from bms_schema.normalize import passthrough_columns

        names = passthrough_columns(columns)
        if not names or ROW_COLUMN in columns:
            return None
        touched = set(FEATURE_COLUMNS) | {"ResistanceProxy"}
        if any(n in touched or n.endswith(_TOUCHED_SUFFIXES) or n.startswith(HELPER_PREFIXES) for n in names):
            return None  # a later stage writes such a column: it stays with the frame
        return cls(names, columns)

    def split(self, table: Any) -> pd.DataFrame:
        """The pandas frame of ``table``'s columns that normalisation reads, plus :data:`ROW_COLUMN`."""
        import pyarrow as pa

        if table.column_names != self.columns:
            raise InputError("a chunk of the file has other columns than its first chunk")
        n = table.num_rows
        keep = [c for c in self.columns if c not in set(self.names)]
        frame = table.select(keep).to_pandas(types_mapper=_string_dtype)
        frame[ROW_COLUMN] = np.arange(self.rows, self.rows + n, dtype=np.int64)
        passed = table.select(self.names)
        passed = pa.table([_as_after_pandas(passed.column(i)) for i in range(len(self.names))], names=self.names)
        self.chunks.append((self.rows, passed))
        self.rows += n
        return frame

    def gather(self, rows: np.ndarray, pool: Executor | None = None) -> Any:
        """The pass-through columns of the rows numbered ``rows`` (an Arrow table, in that order).

        With ``pool``, a future of it: the take runs on the pool's thread (pyarrow releases the GIL)
        while the caller cleans the next chunk; it holds on to the chunks it reads.
        """
        chunks = list(self.chunks)
        rows = np.asarray(rows, dtype=np.int64)
        return _take_rows(chunks, rows) if pool is None else pool.submit(_take_rows, chunks, rows)

    def frame(self, rows: pd.Series) -> pd.DataFrame:
        """The pass-through columns of ``rows`` as pandas columns (index of ``rows``), as the frame had them."""
        out = self.gather(rows.to_numpy()).to_pandas(types_mapper=_string_dtype)
        out.index = rows.index
        return out

    def release(self, below: int) -> None:
        """Forget the chunks whose rows are all numbered below ``below`` (all finalised or dropped)."""
        self.chunks = [(first, t) for first, t in self.chunks if first + t.num_rows > below]


def _take_rows(chunks: list[tuple[int, Any]], rows: np.ndarray) -> Any:
    """Rows numbered ``rows`` of the consecutive chunks ``(first row number, table)``."""
    import pyarrow as pa

    tables = [t for _, t in chunks]
    if len(tables) == 1:
        joined = tables[0]
    else:
        try:
            joined = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # no common type (numbers here, text there)
            from .spill import _cast, _unified_schema

            schema = _unified_schema(tables)
            joined = pa.concat_tables([_cast(t, schema) for t in tables])
    return joined.take(pa.array(rows - chunks[0][0]))


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
        self.passthrough: PassThrough | None = None  # set when chunks come as Arrow tables (engine)

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
        # text keys hashed once, not once per grouping
        cells = pd.factorize(buffer[C.CELL_ID].to_numpy(), use_na_sentinel=False)[0]
        devices, device_names = pd.factorize(buffer[C.DEVICE_ID].to_numpy(), use_na_sentinel=False)
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
            log.warning(
                "look-ahead buffer over %d rows: finalising %d rows without it",
                self.max_held,
                int((forced & ~finalise).sum()),
            )
            finalise = forced
        cuts = pd.Series(np.where(finalise, device_cut, np.iinfo(np.int64).min)).groupby(devices).max()
        for code, value in cuts.items():
            device = device_names[code]
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
        buffer = parts[0] if len(parts) == 1 else concat_rows(parts)
        compare = None
        if self.passthrough is not None:
            passthrough = self.passthrough

            def compare(rows: pd.DataFrame) -> pd.DataFrame:  # the whole rows, pass-through columns too
                return pd.concat([rows.drop(columns=[ROW_COLUMN]), passthrough.frame(rows[ROW_COLUMN])], axis=1)

        buffer, dups, conflicts = drop_duplicates(buffer, compare)
        self.quality.duplicates += dups
        self.quality.conflicts += conflicts
        buffer = sort_readings(buffer)
        finalise = self._cutoffs(buffer, final)
        self.held = _rows(buffer, ~finalise) if (~finalise).any() else None
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
        block = _rows(buffer, finalise)
        rows = np.flatnonzero(done)
        for name in design.columns:  # column by column: a concat would consolidate (copy) every float column
            if name.startswith(HELPER_PREFIXES):
                block[name] = design[name].to_numpy()[rows]
        self.quality.add(block, intervals[done])
        # carry: per cell, the last row and the last row with a value of each measurement
        kept = np.flatnonzero(part != 2)
        codes = pd.factorize(work[C.CELL_ID].to_numpy()[kept])[0]
        positions = [_last_per_code(codes, kept)]
        for name in columns:
            valid = work[name].notna().to_numpy()[kept]
            positions.append(_last_per_code(codes[valid], kept[valid]))
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
