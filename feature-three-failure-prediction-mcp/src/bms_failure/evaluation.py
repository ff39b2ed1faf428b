"""Leakage-free splits by cell and time, binary metrics and alarm lead time (the IEEE rules: ``trends``).

Split: cells are divided into ``folds`` groups (stratified by whether and when they die), and
time is cut at ``split_time``. For each fold, its cells after ``split_time`` are the test set;
the other cells are divided into train and calibration cells, whose samples are taken only
where the label window ends before ``split_time`` (``t + horizon <= split_time``). Pooling the
folds scores every cell's later period once, on a model that never saw that cell. No cell and no moment of the future is seen
by training - a random row split would break both rules (see ``check_no_leakage``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema import columns as C


@dataclass
class Split:
    train: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame
    split_time: pd.Timestamp
    cells: dict[str, list[str]]


def death_strata(samples: pd.DataFrame, split_time: pd.Timestamp) -> pd.Series:
    """Per cell: 0 never dies, 1 dies before ``split_time``, 2 dies after it."""
    per_cell = samples.groupby(C.CELL_ID, sort=True)["DeathTime"].first()
    stratum = pd.Series(0, index=per_cell.index)
    died = per_cell.notna()
    stratum[died & (per_cell < split_time)] = 1
    stratum[died & (per_cell >= split_time)] = 2
    return stratum


def _stratified_pick(cells: pd.Index, strata: pd.Series, fraction: float, rng: np.random.Generator) -> set[str]:
    """A random ``fraction`` of ``cells`` within each stratum (at least one of a stratum with 3+ cells)."""
    picked: set[str] = set()
    for value in (2, 1, 0):  # strata, not rows: three iterations
        members = np.asarray(sorted(c for c in cells if strata[c] == value), dtype=object)
        rng.shuffle(members)
        n = int(round(len(members) * fraction))
        if len(members) >= 3:
            n = max(n, 1)
        picked.update(members[:n])
    return picked


def cell_folds(samples: pd.DataFrame, split_time: pd.Timestamp, folds: int, seed: int = 0) -> dict[str, int]:
    """Assign every cell to one of ``folds`` groups, stratified by whether and when it dies."""
    strata = death_strata(samples, split_time)
    rng = np.random.default_rng(seed)
    fold: dict[str, int] = {}
    for value in (2, 1, 0):
        members = np.asarray(strata.index[strata.to_numpy() == value], dtype=object)
        rng.shuffle(members)
        offset = int(rng.integers(folds))
        fold.update({cell: (offset + i) % folds for i, cell in enumerate(members)})
    return fold


def split_time_of(samples: pd.DataFrame, time_fraction: float) -> pd.Timestamp:
    times = samples[C.TIMESTAMP]
    start, end = times.min(), times.max()
    return start + (end - start) * (1.0 - time_fraction)


def split_samples(
    samples: pd.DataFrame,
    horizon_hours: float,
    folds: int = 4,
    test_fold: int = 0,
    calib_fraction: float = 0.25,
    time_fraction: float = 0.35,
    seed: int = 0,
) -> Split:
    """One split by cell AND by time: the cells of ``test_fold`` after ``split_time`` are the test set;
    the other cells, before ``split_time - horizon``, are divided into train and calibration cells."""
    if folds < 2 or not 0 <= test_fold < folds:
        raise InputError(f"folds must be >= 2 and test_fold in [0, folds), got folds={folds}, test_fold={test_fold}")
    if not 0 < calib_fraction < 1 or not 0 < time_fraction < 1:
        raise InputError("calib_fraction and time_fraction must be in (0, 1)")
    split_time = split_time_of(samples, time_fraction)
    fold = cell_folds(samples, split_time, folds, seed)
    strata = death_strata(samples, split_time)
    others = pd.Index(sorted(c for c, f in fold.items() if f != test_fold))
    calib_cells = _stratified_pick(others, strata, calib_fraction, np.random.default_rng(seed + 1000 + test_fold))
    group = {c: ("test" if f == test_fold else "calib" if c in calib_cells else "train") for c, f in fold.items()}
    cell_group = samples[C.CELL_ID].map(group).to_numpy()
    times = samples[C.TIMESTAMP]
    before = (times + pd.Timedelta(hours=horizon_hours) <= split_time).to_numpy()
    after = (times >= split_time).to_numpy()
    train = samples.loc[(cell_group == "train") & before].reset_index(drop=True)
    calib = samples.loc[(cell_group == "calib") & before].reset_index(drop=True)
    test = samples.loc[(cell_group == "test") & after].reset_index(drop=True)
    cells = {name: sorted(c for c, g in group.items() if g == name) for name in ("train", "calib", "test")}
    return Split(train=train, calib=calib, test=test, split_time=split_time, cells=cells)


def calibration_cells(samples: pd.DataFrame, fraction: float = 0.25, seed: int = 0) -> set[str]:
    """Cells held out of the final (registered) model's training to calibrate it."""
    cells = pd.Index(sorted(samples[C.CELL_ID].unique()))
    strata = death_strata(samples, samples[C.TIMESTAMP].max())
    return _stratified_pick(cells, strata, fraction, np.random.default_rng(seed + 2000))


def check_no_leakage(train: pd.DataFrame, test: pd.DataFrame, horizon_hours: float) -> None:
    """Raise ``AssertionError`` when a test cell was trained on, or a training label window reaches the test period."""
    shared = set(train[C.CELL_ID]) & set(test[C.CELL_ID])
    assert not shared, f"{len(shared)} cells are in both train and test (e.g. {sorted(shared)[:3]})"
    if len(train) and len(test):
        last_label_end = train[C.TIMESTAMP].max() + pd.Timedelta(hours=horizon_hours)
        assert last_label_end <= test[C.TIMESTAMP].min(), (
            f"training labels reach {last_label_end}, after the first test sample {test[C.TIMESTAMP].min()}"
        )


# -- metrics ------------------------------------------------------------------------------
def binary_metrics(label: np.ndarray, flag: np.ndarray) -> dict[str, Any]:
    tp = int((flag & (label == 1)).sum())
    fp = int((flag & (label == 0)).sum())
    fn = int((~flag & (label == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "alarms": tp + fp, "true_alarms": tp}


def lead_times(samples: pd.DataFrame, alarm: np.ndarray, window_start: pd.Timestamp) -> dict[str, Any]:
    """How long before death the alarm was raised, for cells that die after ``window_start``.

    ``lead time`` = death - start of the last uninterrupted run of alarms that reaches the
    cell's last sample before death (a sustained warning). Cells whose last pre-death sample
    is not alarmed are missed. ``false_alarm_cells``: cells that never died in the window but
    were alarmed at least once.
    """
    frame = pd.DataFrame(
        {
            "cell": samples[C.CELL_ID].to_numpy(),
            "t": samples[C.TIMESTAMP].to_numpy(),
            "death": samples["DeathTime"].to_numpy(),
            "alarm": np.asarray(alarm, dtype=bool),
        }
    ).sort_values(["cell", "t"], kind="stable")
    dying = frame["death"].notna() & (frame["death"] >= window_start)
    dies = frame.loc[dying]
    result: dict[str, Any] = {"dying_cells": int(dies["cell"].nunique())}
    if len(dies):
        # Run ids: a new run starts whenever the alarm state changes within a cell.
        change = (dies["alarm"] != dies.groupby("cell")["alarm"].shift()).cumsum()
        last = dies.groupby("cell").tail(1).set_index("cell")
        run_start = dies.groupby(change)["t"].transform("min")
        start_of_last = pd.Series(run_start.to_numpy(), index=dies["cell"].to_numpy()).groupby(level=0).last()
        caught = last["alarm"].to_numpy()
        lead_h = (last["death"] - start_of_last.reindex(last.index)).dt.total_seconds().to_numpy() / 3600.0
        lead_caught = lead_h[caught]
        result.update(
            {
                "caught_cells": int(caught.sum()),
                "caught_fraction": float(caught.mean()),
                "lead_time_hours_median": float(np.median(lead_caught)) if len(lead_caught) else None,
                "lead_time_hours_mean": float(np.mean(lead_caught)) if len(lead_caught) else None,
                "lead_time_hours_min": float(np.min(lead_caught)) if len(lead_caught) else None,
            }
        )
    survivors = frame.loc[~dying]
    alarmed = survivors.groupby("cell")["alarm"].any()
    result["surviving_cells"] = int(len(alarmed))
    result["false_alarm_cells"] = int(alarmed.sum())
    return result
