"""Per-cell recent history, so live readings get the same engineered features as training data.

The models were trained on data-core features (``bms_schema.features``): rates of change and rolling
statistics need a cell's previous readings, string deviations need the other cells of the
string at the same timestamp, the resistance proxy carries the last current step forward,
and the anomaly model adds features of its own over each cell's history (the change of a
peer deviation against its trailing mean, the run of unchanged readings). A request may
hold a single reading, so the service remembers, per device, the last ``per_cell``
readings of every cell *with the features computed when they arrived*
(:class:`ReadingHistory`, bounded in rows).

:func:`live_features` puts a request's readings after that history, fills gaps the way
``bms_schema.interpolate.interpolate_readings`` does (per-cell linear in time; at the end,
the previous value), computes the data-core features with ``bms_schema.features.feature_arrays``
(the featuriser batch and chunked preprocessing call, on a chunk prefixed with each cell's previous readings),
and the anomaly model's peer features (over the string at the request's timestamps,
remembered peers included) and history features (over the remembered rows) with
``bms_anomaly.features``' own array-level functions. The request's rows are then written
back to the history. Everything is NumPy on a few hundred rows.

Known differences from the batch pipeline, inherent to scoring as readings arrive: a gap
at the end of a cell's data is filled with the previous value (batch interpolation also
sees the next reading), and a reading that arrives after its peers' answers were given does
not change those answers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from bms_anomaly.features import MIN_PEERS
from bms_schema import columns as C
from bms_schema.features import feature_arrays, hour_of_day, peer_deviation, single_cell_strings
from bms_schema.grouped import StringGroups, string_median

__all__ = [
    "LiveFeatures",
    "ReadingHistory",
    "StringGroups",
    "history_columns",
    "hour_of_day",
    "live_features",
    "sorted_features",
    "string_median",
]

CORE = (*C.CORE_COLUMNS, C.STRING_VOLTAGE)
RESISTANCE = "ResistanceProxy"
_IMPUTE = C.CORE_COLUMNS


@dataclass
class _DeviceBlock:
    device: np.ndarray  # object
    cell_id: np.ndarray  # object
    number: np.ndarray  # int64
    ts: np.ndarray  # int64 ns
    values: np.ndarray  # float64 [n, len(columns)]


def _keep_last(cell_id: np.ndarray, ts: np.ndarray, per_cell: int) -> np.ndarray:
    """Indices that sort rows by (cell, time), drop repeated (cell, time) keeping the LAST given
    occurrence, and keep the newest ``per_cell`` rows of each cell."""
    kept, _ = _sort_dedupe(cell_id, ts)
    c = cell_id[kept]
    n = len(kept)
    idx = np.arange(n)
    last = np.ones(n, dtype=bool)
    last[:-1] = c[1:] != c[:-1]
    ends = np.minimum.accumulate(np.where(last, idx, n)[::-1])[::-1]
    return kept[(ends - idx) < per_cell]


class _DeviceBuffer:
    """Append-only row storage of one device (capacity doubles); compacted to the newest
    ``per_cell`` rows of each cell when it holds more than :data:`SLACK` times that."""

    def __init__(self, n_columns: int, capacity: int = 64):
        self.n = 0
        self.cells = 0
        self.cell_names: dict[str, str] = {}  # one string object per cell id
        self.device = np.empty(capacity, dtype=object)
        self.cell_id = np.empty(capacity, dtype=object)
        self.number = np.empty(capacity, dtype=np.int64)
        self.ts = np.empty(capacity, dtype=np.int64)
        self.values = np.empty((capacity, n_columns), dtype=np.float64)

    def view(self) -> _DeviceBlock:
        """The held rows (arrival order). Rows below ``n`` are never modified in place, so a view
        stays valid while later rows are appended or the buffer is compacted into new arrays."""
        n = self.n
        return _DeviceBlock(self.device[:n], self.cell_id[:n], self.number[:n], self.ts[:n], self.values[:n])

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.ts):
            return
        capacity = max(need, 2 * len(self.ts))
        for name in ("device", "cell_id", "number", "ts"):
            old = getattr(self, name)
            grown = np.empty(capacity, dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)
        grown_values = np.empty((capacity, self.values.shape[1]), dtype=np.float64)
        grown_values[: self.n] = self.values[: self.n]
        self.values = grown_values

    def append(
        self, device: np.ndarray, cell_id: np.ndarray, number: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> None:
        k = len(ts)
        self._reserve(k)
        lo, hi = self.n, self.n + k
        self.device[lo:hi], self.cell_id[lo:hi], self.number[lo:hi] = device, cell_id, number
        self.ts[lo:hi], self.values[lo:hi] = ts, values
        self.n = hi

    def compact(self, per_cell: int) -> None:
        """Keep the newest ``per_cell`` rows per cell (the last arrival wins on a repeated time)."""
        block = self.view()
        keep = _keep_last(block.cell_id, block.ts, per_cell)
        kept = _DeviceBlock(
            block.device[keep], block.cell_id[keep], block.number[keep], block.ts[keep], block.values[keep]
        )
        fresh = _DeviceBuffer(self.values.shape[1], capacity=max(64, 2 * len(keep)))
        fresh.append(kept.device, kept.cell_id, kept.number, kept.ts, kept.values)
        self.__dict__.update(fresh.__dict__)
        self.cells = len(pd.unique(kept.cell_id))
        self.cell_names = {name: name for name in pd.unique(kept.cell_id).tolist()}


#: A device buffer is compacted when it holds more than SLACK x per_cell rows per cell.
SLACK = 1.5


class ReadingHistory:
    """The last ``per_cell`` readings of each cell (``columns``: core values and features),
    grouped by device; beyond ``max_rows`` rows the least recently updated devices are forgotten.

    Rows are appended as they arrive and compacted now and then (amortised), so a device may
    briefly hold up to :data:`SLACK` times ``per_cell`` rows per cell; features only look back
    a fixed number of readings, so the extra rows change nothing.
    """

    def __init__(
        self,
        per_cell: int,
        columns: list[str] | tuple[str, ...] = CORE,
        max_rows: int = 1_000_000,
        max_bytes: int | None = None,
        per_cell_alone: int | None = None,
    ):
        self.per_cell = max(1, int(per_cell))
        #: Readings kept per cell of a device with fewer than ``bms_anomaly.features.MIN_PEERS`` cells (no peers: the anomaly
        #: model's own-history features reach much further back, ``bms_anomaly.features.OWN_HISTORY_REACH``);
        #: None = ``per_cell`` for every device.
        self.per_cell_alone = max(self.per_cell, int(per_cell_alone)) if per_cell_alone else self.per_cell
        self.columns = list(columns)
        self.max_rows = max_rows
        #: Bound on the held rows' estimated size (values, times and id strings), besides ``max_rows``.
        self.max_bytes = max_bytes
        self._devices: OrderedDict[str, _DeviceBuffer] = OrderedDict()
        self._rows = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._rows

    @property
    def nbytes(self) -> int:
        """Estimated bytes of the held rows."""
        return self._bytes

    def _row_bytes(self, device: str) -> int:
        # float values + int64 number and time + two object pointers, and (an upper bound: they
        # are shared per device and per cell, see update) the two id strings.
        return 8 * (len(self.columns) + 4) + 2 * (49 + len(device))

    def context(
        self, devices: np.ndarray, numbers: np.ndarray | None = None, ts: np.ndarray | None = None
    ) -> _DeviceBlock | None:
        """Remembered rows of ``devices``; with ``numbers`` and ``ts`` (per requested row) only the
        rows that matter to those readings: their cells' history and their peers at their times."""
        names = pd.unique(devices)
        with self._lock:
            views = {d: self._devices[d].view() for d in names if d in self._devices}
        blocks = []
        for name, block in views.items():  # a loop over devices, not rows
            if numbers is not None and ts is not None:
                mine = devices == name
                keep = np.isin(block.number, numbers[mine]) | np.isin(block.ts, ts[mine])
                if not keep.all():
                    block = _DeviceBlock(
                        block.device[keep], block.cell_id[keep], block.number[keep], block.ts[keep], block.values[keep]
                    )
            blocks.append(block)
        if not blocks:
            return None
        if len(blocks) == 1:
            return blocks[0]
        return _DeviceBlock(
            device=np.concatenate([b.device for b in blocks]),
            cell_id=np.concatenate([b.cell_id for b in blocks]),
            number=np.concatenate([b.number for b in blocks]),
            ts=np.concatenate([b.ts for b in blocks]),
            values=np.concatenate([b.values for b in blocks]),
        )

    def reach(self, cells: int) -> int:
        """Readings kept per cell of a device with ``cells`` cells."""
        return self.per_cell_alone if cells < MIN_PEERS else self.per_cell

    def known_cells(self, device: str) -> int:
        """How many distinct cells of ``device`` are remembered (0 for an unknown device)."""
        with self._lock:
            buffer = self._devices.get(device)
            return 0 if buffer is None else len(buffer.cell_names)

    def update(
        self, device: np.ndarray, cell_id: np.ndarray, number: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> None:
        """Add rows (``values`` columns as :attr:`columns`); newer rows win on (cell, time)."""
        for name in pd.unique(device):  # a loop over devices, not rows
            mask = device == name
            with self._lock:
                buffer = self._devices.get(name)
                if buffer is None:
                    buffer = self._devices[name] = _DeviceBuffer(len(self.columns))
                before = buffer.n
                # One string object per device and per cell, however many rows refer to it.
                shared = np.empty(int(mask.sum()), dtype=object)
                shared[:] = buffer.device[0] if buffer.n else name
                cells_here = cell_id[mask]
                uniq, inverse = np.unique(cells_here.astype(str), return_inverse=True)
                known = buffer.cell_names
                cell_objects = np.asarray([known.setdefault(u, u) for u in uniq.tolist()], dtype=object)
                buffer.append(shared, cell_objects[inverse], number[mask], ts[mask], values[mask])
                cells = max(buffer.cells, 1)
                reach = self.reach(buffer.cells)
                if buffer.n > SLACK * reach * cells or buffer.cells == 0:
                    buffer.compact(reach)
                row_bytes = self._row_bytes(str(name))
                self._rows += buffer.n - before
                self._bytes += (buffer.n - before) * row_bytes
                self._devices.move_to_end(name)
                while len(self._devices) > 1 and (
                    self._rows > self.max_rows or (self.max_bytes is not None and self._bytes > self.max_bytes)
                ):
                    dropped_name, dropped = self._devices.popitem(last=False)
                    self._rows -= dropped.n
                    self._bytes -= dropped.n * self._row_bytes(str(dropped_name))

    def clear(self) -> None:
        with self._lock:
            self._devices.clear()
            self._rows = 0
            self._bytes = 0


def _near_fresh(fresh: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Rows that are new, or among the ``window - 1`` readings of the same cell before a new row."""
    from bms_schema.grouped import cell_ends

    n = len(fresh)
    idx = np.arange(n)
    next_fresh = np.minimum.accumulate(np.where(fresh, idx, n)[::-1])[::-1]
    return (next_fresh <= cell_ends(starts)) & (next_fresh - idx < window)


def _sort_dedupe(cells: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by (cell, time); of rows sharing one (cell, time) keep the last given.

    Returns ``(kept, group)``: the kept rows' indices in sorted order, and for every input
    row the position of its (cell, time) in ``kept``."""
    n = len(ts)
    codes, _ = pd.factorize(cells, sort=True)  # lexicographic cell order without per-row str()
    order = np.lexsort((np.arange(n), ts, codes))
    c, t = cells[order], ts[order]
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = (c[1:] != c[:-1]) | (t[1:] != t[:-1])
    group_sorted = np.cumsum(new_key) - 1
    last_of_key = np.ones(n, dtype=bool)
    last_of_key[:-1] = new_key[1:]
    group = np.empty(n, dtype=np.int64)
    group[order] = group_sorted
    return order[last_of_key], group


def sorted_features(
    devices: np.ndarray,
    cells: np.ndarray,
    numbers: np.ndarray,
    ts: np.ndarray,
    core: dict[str, np.ndarray],
    window: int,
    groups: StringGroups | None = None,
    single: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Data-core features of cell-sorted rows: :func:`bms_schema.features.feature_arrays`, the
    featuriser batch and chunked preprocessing call too (``numbers`` is kept for callers)."""
    return feature_arrays(devices, cells, ts, core, int(window), groups=groups, single=single)


def _single_cell_rows(devices: np.ndarray, cells: np.ndarray, history: ReadingHistory) -> np.ndarray:
    """Rows of strings with one cell: in these rows and in the remembered history."""
    single = single_cell_strings(devices, cells)
    if single.any():
        for name in pd.unique(devices[single]):  # a loop over devices, not rows
            if history.known_cells(name) > 1:
                single[devices == name] = False
    return single


@dataclass
class LiveFeatures:
    """The request's readings (request order) with imputed core values and features."""

    frame: pd.DataFrame
    imputed: np.ndarray  # bool per row: some core value was filled in


def live_features(
    request: pd.DataFrame,
    history: ReadingHistory,
    window: int,
    update: bool = True,
    peer_features: Collection[str] | None = None,
    history_features: Collection[str] | None = None,
) -> LiveFeatures:
    """Features of ``request`` (canonical frame from :func:`bms_live.readings.readings_to_frame`)
    computed after each cell's remembered history; the result has one row per request row.

    ``peer_features`` names ``bms_anomaly.features.PEER_FEATURES`` to compute (a source column
    minus its string median at the same timestamp, see ``peer_inputs``); they must be columns
    of ``history``, so remembered rows keep them. ``history_features`` names the anomaly
    model's history features to compute over the remembered rows (``sorted_history_features``).
    """
    from bms_schema.grouped import cell_starts, forward_fill, interpolate_time

    columns = history.columns
    col = {name: j for j, name in enumerate(columns)}
    n_req = len(request)
    req_values = np.full((n_req, len(columns)), np.nan)
    for name in CORE:
        if name in request.columns and name in col:
            req_values[:, col[name]] = request[name].to_numpy(dtype=np.float64)
    req_cells = request[C.CELL_ID].to_numpy(dtype=object)
    req_devices = request[C.DEVICE_ID].to_numpy(dtype=object)
    req_numbers = request[C.CELL_NUMBER].to_numpy(dtype=np.int64)
    req_ts = request[C.TIMESTAMP].array.asi8

    ctx = history.context(req_devices, req_numbers, req_ts)
    if ctx is None:
        devices, cells, numbers, ts, values = req_devices, req_cells, req_numbers, req_ts, req_values
        n_ctx = 0
    else:
        devices = np.concatenate([ctx.device, req_devices])
        cells = np.concatenate([ctx.cell_id, req_cells])
        numbers = np.concatenate([ctx.number, req_numbers])
        ts = np.concatenate([ctx.ts, req_ts])
        values = np.concatenate([ctx.values, req_values])
        n_ctx = len(ctx.ts)
    # Sort by (cell, time); for one (cell, time) the request's last reading replaces history.
    kept, group = _sort_dedupe(cells, ts)
    position = group[n_ctx:]  # each request row -> its row in the sorted table
    fresh = kept >= n_ctx
    devices, cells, numbers, ts, values = devices[kept], cells[kept], numbers[kept], ts[kept], values[kept]

    starts = cell_starts(cells)
    seconds = ts.astype(np.float64) / 1e9
    impute_cols = [col[name] for name in _IMPUTE]
    missing = np.isnan(values[:, impute_cols])
    for k, j in enumerate(impute_cols):
        if missing[fresh, k].any():
            values[:, j] = interpolate_time(values[:, j], seconds, starts)
    needed = np.zeros(len(ts), dtype=bool)
    needed[position] = True
    groups = StringGroups(devices, ts, needed)
    core = {name: values[:, col[name]] for name in _IMPUTE}
    single = _single_cell_rows(devices, cells, history)
    # Rolling windows of the new rows reach back window - 1 readings: compute on those rows only.
    near = np.flatnonzero(_near_fresh(fresh, starts, window))
    part = sorted_features(
        devices[near],
        cells[near],
        numbers[near],
        ts[near],
        {name: column[near] for name, column in core.items()},
        window,
        StringGroups(devices[near], ts[near], fresh[near]),
        single[near],
    )
    computed: dict[str, np.ndarray] = {}
    for name, column in part.items():
        full = np.full(len(ts), np.nan)
        full[near] = column
        computed[name] = full
    # String deviations compare with every remembered peer at that time, not only the rows above.
    for name, source, mean in (
        ("VoltageDevString", C.VOLTAGE, "VoltageRollMean"),
        ("SGDevString", C.SPECIFIC_GRAVITY, "SGRollMean"),
    ):
        if name in computed:
            computed[name] = peer_deviation(core[source], groups, computed[mean], single)
    if RESISTANCE in col:
        # The resistance proxy carries the last current step forward; steps older than the
        # remembered rows live on in the stored values.
        remembered = forward_fill(values[:, col[RESISTANCE]], starts)
        resistance = computed[RESISTANCE]
        computed[RESISTANCE] = np.where(np.isnan(resistance), remembered, resistance)
    extra: dict[str, np.ndarray] = {}
    for name, column in computed.items():  # remembered rows keep the features they arrived with
        if name in col:
            values[fresh, col[name]] = column[fresh]
        else:
            extra[name] = column
    state_codes_out: np.ndarray | None = None
    if peer_features or history_features:
        from bms_anomaly.features import peer_inputs, sorted_history_features

        sources = {name: values[:, col[name]] for name in col}
        for name, column in peer_inputs(sources, peer_features or ()).items():
            values[fresh, col[name]] = (column - groups.median(column))[fresh]
        if history_features:
            states = string_states(devices, ts, sources)
            wanted = np.flatnonzero(needed)  # the request's rows: the remembered ones are only their past
            extra.update(
                sorted_history_features(sources, starts, history_features, states=states, seconds=seconds, rows=wanted)
            )
            state_codes_out = states[position]

    names = [name for name in columns if name not in CORE or name in _IMPUTE]

    imputed = missing[position].any(axis=1)
    if update:
        history.update(devices[fresh], cells[fresh], numbers[fresh], ts[fresh], values[fresh])
    # One float block (imputed core values + features) next to the request's other columns.
    out_names = names + [n for n in extra if n not in col]
    block = (
        np.column_stack(
            [values[position][:, [col[n] for n in names]], *(extra[n][position] for n in out_names[len(names) :])]
        )
        if len(out_names) > len(names)
        else values[position][:, [col[n] for n in names]]
    )
    rest = request.drop(columns=[c for c in request.columns if c in set(out_names)])
    frame = pd.concat([rest, pd.DataFrame(block, columns=out_names, index=request.index)], axis=1)
    if state_codes_out is not None:
        from bms_schema.state import OPERATING_STATE, STATE_DTYPE

        # the state of each string over its remembered readings and this request, as batch scoring derives
        # it over the whole table: the detector's per-state scaling and own-history runs use it
        frame[OPERATING_STATE] = pd.Categorical.from_codes(state_codes_out, dtype=STATE_DTYPE)
    return LiveFeatures(frame=frame, imputed=imputed)


def string_states(devices: np.ndarray, ts: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Operating-state codes (``bms_schema.state.STATES``) of (cell, time)-sorted rows, from the data core's
    :func:`bms_schema.state.operating_state` over the rows given (remembered + new): the same function,
    with the same hysteresis and chemistry rule (flooded when specific gravity is present), as batch scoring."""
    from bms_schema.state import operating_state

    table = pd.DataFrame(
        {
            C.DEVICE_ID: devices,
            C.TIMESTAMP: pd.to_datetime(ts, utc=True),
            **{
                name: columns[name]
                for name in (C.VOLTAGE, C.CURRENT, C.TEMPERATURE, C.SPECIFIC_GRAVITY)
                if name in columns
            },
        }
    )
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    return operating_state(table).cat.codes.to_numpy().astype(np.int64)


def history_columns(peer_features: Collection[str] | None = None) -> list[str]:
    """Columns a :class:`ReadingHistory` keeps: core values, data-core features (``bms_schema.features``), peer features."""
    from bms_schema.features import FEATURE_COLUMNS

    return [*CORE, *FEATURE_COLUMNS, *(n for n in (peer_features or {}) if n not in FEATURE_COLUMNS)]
