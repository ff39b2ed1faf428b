"""Forecaster training on a Dask cluster: training pairs built device by device, boosters fitted with ``xgboost.dask``.

Each task builds one device's panel (:func:`.panel.build_panel`: per-cell grids, string medians
of that device) and its (origin, horizon) pairs in the fleet's common training / calibration
windows (:func:`.training.split_windows` with the fleet's time span, so no cell's training period
overlaps another's calibration period, as in one pass). The pairs stay on the workers as Dask
arrays; ``xgboost.dask.DaskXGBRegressor`` (the same parameters as the one-pass
:func:`.training.fit_booster`, early stopping on the calibration pairs) trains on them where they
are. The client receives only the booster and small reductions (the pairs' delta scale, counts).

What differs from the one-pass :func:`.training.fit_forecaster`: pairs are drawn per device (a
share of ``max_train_pairs`` each, seeded per device) instead of from one fleet-wide draw, and the
distributed histogram sketch splits the data across workers; the tests bound the difference of the
two boosters' predictions on held-out pairs. Strategy selection, conformal calibration and the
backtest stay on the one-process path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from bms_schema import InputError
from bms_schema.dataset import Partition, list_partitions, read_device
from bms_schema.distributed import client_for, map_partitions

from .config import TrainConfig

EVAL_PAIRS_TOTAL = 20_000


def _panel(partition: Partition, targets: list[str] | None = None) -> Any:
    from bms_schema.loader import load_canonical

    from .panel import build_panel

    frame = load_canonical(read_device(partition), features=False, impute="none")
    return build_panel(frame, targets)


def device_span(partition: Partition) -> dict[str, Any]:
    """On a worker: the time span and targets of one device."""
    panel = _panel(partition)
    return {"first": float(panel.time_s.min()), "last": float(panel.time_s.max()), "targets": list(panel.targets)}


def device_pairs(
    partition: Partition,
    target: str,
    targets: list[str],
    config: TrainConfig,
    bounds: tuple[float, float],
    seed: int,
    budget: int,
    eval_budget: int,
) -> dict[str, np.ndarray]:
    """On a worker: direct-strategy training and calibration pairs (features, deltas) of one device."""
    from .features import build_features, target_context
    from .training import eligible_origins, split_windows, training_pairs

    panel = _panel(partition, targets)
    windows = split_windows(panel, config, bounds)
    empty: dict[str, np.ndarray] = {
        "x": np.zeros((0, 0), np.float32),
        "y": np.zeros(0),
        "ex": np.zeros((0, 0), np.float32),
        "ey": np.zeros(0),
    }
    if not windows.usable.any():
        return empty
    rng = np.random.default_rng(seed)
    context = target_context(panel, target)
    train = eligible_origins(panel, target, panel.start, windows.train_end, windows.usable)
    cal = eligible_origins(panel, target, windows.train_end, windows.cal_end, windows.usable)
    steps = config.max_steps
    o, h, y = training_pairs(
        panel, target, "direct", train, windows.train_end, budget, config.horizons_per_origin, steps, rng
    )
    eo, eh, ey = training_pairs(
        panel, target, "direct", cal, windows.cal_end, eval_budget, config.horizons_per_origin, steps, rng
    )
    if o.size == 0 or eo.size == 0:
        return empty
    pairs: dict[str, np.ndarray] = {
        "x": build_features(panel, context, target, o, h),
        "y": y,
        "ex": build_features(panel, context, target, eo, eh),
        "ey": ey,
    }
    return pairs


@dataclass
class DistributedBooster:
    target: str
    booster: Any
    scale: float
    trees: int
    train_pairs: int
    eval_pairs: int


def _get(result: dict[str, np.ndarray], key: str) -> np.ndarray:
    return result[key]


def _sizes(result: dict[str, np.ndarray]) -> tuple[int, int, int]:
    return (
        int(result["x"].shape[0]),
        int(result["ex"].shape[0]),
        int(result["x"].shape[1]) if result["x"].ndim == 2 else 0,
    )


def fleet_span(dataset: Any, scheduler: str) -> tuple[tuple[float, float], list[str], list[Partition]]:
    partitions = list_partitions(dataset)
    spans = map_partitions(scheduler, device_span, partitions, label="devices read")
    targets = list(spans[0]["targets"])
    bounds = (min(s["first"] for s in spans), max(s["last"] for s in spans))
    return bounds, targets, partitions


def pair_futures(
    scheduler: str,
    partitions: list[Partition],
    target: str,
    targets: list[str],
    config: TrainConfig,
    bounds: tuple[float, float],
) -> list[Any]:
    """One future per device holding its pairs (kept on the worker that built them)."""
    client = client_for(scheduler)
    seeds = np.random.SeedSequence(config.seed).spawn(len(partitions))
    budget = max(1, config.max_train_pairs // len(partitions))
    eval_budget = max(1, EVAL_PAIRS_TOTAL // len(partitions))
    return [
        client.submit(
            device_pairs,
            p,
            target,
            targets,
            config,
            bounds,
            int(s.generate_state(1)[0]),
            budget,
            eval_budget,
            pure=False,
        )
        for p, s in zip(partitions, seeds)
    ]


def fit_booster_distributed(
    scheduler: str, futures: list[Any], target: str, config: TrainConfig, threads: int = 1
) -> DistributedBooster:
    """Train the target's direct booster with ``xgboost.dask`` on the pairs held by ``futures``."""
    import dask.array as da
    from xgboost import dask as dxgb

    from .training import robust_scale

    client = client_for(scheduler)
    sizes = client.gather([client.submit(_sizes, f, pure=False) for f in futures])
    keep = [(f, s) for f, s in zip(futures, sizes) if s[0] > 0 and s[1] > 0]
    if not keep:
        raise InputError(f"no device has enough history to train {target}")
    width = keep[0][1][2]

    x = da.concatenate([_block(f, "x", (s[0], width), np.float32) for f, s in keep])
    y = da.concatenate([_block(f, "y", (s[0],), np.float64) for f, s in keep])
    ex = da.concatenate([_block(f, "ex", (s[1], width), np.float32) for f, s in keep])
    ey = da.concatenate([_block(f, "ey", (s[1],), np.float64) for f, s in keep])
    # the delta scale is a median of the deltas: a 1-D reduction (max_train_pairs floats), not the table
    scale = robust_scale(np.asarray(client.compute(y).result()))
    params = config.xgb_params(threads)
    model = dxgb.DaskXGBRegressor(**params)
    model.client = client
    with client.as_current():  # xgboost.dask looks the client up as the current one
        model.fit(x, y / scale, eval_set=[(ex, ey / scale)], verbose=False)
    booster = model.get_booster()
    best = getattr(model, "best_iteration", None)
    best = booster.num_boosted_rounds() - 1 if best is None else int(best)
    booster = booster[: best + 1]
    return DistributedBooster(
        target=target,
        booster=booster,
        scale=scale,
        trees=best + 1,
        train_pairs=int(sum(s[0] for _, s in keep)),
        eval_pairs=int(sum(s[1] for _, s in keep)),
    )


def _block(future: Any, key: str, shape: tuple[int, ...], dtype: Any) -> Any:
    import dask
    import dask.array as da

    return da.from_delayed(dask.delayed(_get)(future, key), shape=shape, dtype=dtype)
