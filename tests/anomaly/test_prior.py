"""A small fleet trained together with a prior fleet (``bms_anomaly.detect.pool_with_prior``)."""

from __future__ import annotations

import pandas as pd
import pytest
from bms_anomaly.detect import PRIOR_PREFIX, pool_with_prior, train_detector
from bms_schema.errors import InputError


def _prepared(**kw) -> pd.DataFrame:
    from bms_datagen.simulator import simulate_fleet
    from bms_preprocess.pipeline import prepare_readings

    return prepare_readings(simulate_fleet(**kw)).reset_index(drop=True)


def test_a_tiny_fleet_trained_with_a_prior_fleet_finds_what_it_missed_alone(workspace) -> None:
    """2 strings x 6 cells x 10 days: alone the detector's tails sit at its own few anomalies."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_anomaly import _cell_behaviour
    from bms_anomaly.hybrid import HybridAnomalyDetector

    own = _prepared(devices=2, cells_per_device=6, days=10, seed=0)
    prior = _prepared(devices=1, cells_per_device=24, days=10, seed=1000)
    scored = _prepared(devices=2, cells_per_device=6, days=10, seed=12)
    alone = _cell_behaviour(scored, HybridAnomalyDetector(seed=0).fit(own).score(scored))
    pooled = _cell_behaviour(scored, HybridAnomalyDetector(seed=0).fit(pool_with_prior(own, prior)).score(scored))
    # measured: alone P 1.000 R 0.345 F1 0.513; pooled with a 10-day prior P 0.968 R 0.773 F1 0.860
    assert pooled["f1"] >= 0.75 and pooled["precision"] >= 0.85
    assert pooled["f1"] >= alone["f1"] + 0.2


def test_the_prior_is_pooled_into_training_only_with_its_cells_kept_apart(workspace) -> None:
    own = _prepared(devices=1, cells_per_device=6, days=2, seed=5)
    prior = _prepared(devices=1, cells_per_device=8, days=2, seed=6)
    pooled = pool_with_prior(own, prior)
    assert len(pooled) == len(own) + len(prior)
    assert pooled["CellID"].astype(str).str.startswith(PRIOR_PREFIX).sum() == len(prior)
    assert pooled["CellID"].nunique() == own["CellID"].nunique() + prior["CellID"].nunique()
    assert list(pooled.columns) == list(own.columns)
    outcome = train_detector(own, prior=prior, seed=0, register=False)
    assert outcome.info["prior_rows"] == len(prior)
    assert outcome.info["train_rows"] + outcome.info["holdout_rows"] == len(own)  # the held-out rows are own


def test_a_prior_of_another_chemistry_or_for_a_peerless_string_is_refused(workspace) -> None:
    flooded = _prepared(devices=1, cells_per_device=6, days=1, seed=7)
    vrla = _prepared(devices=1, cells_per_device=6, days=1, seed=8, chemistry="vrla")
    with pytest.raises(InputError, match="chemistry='vrla'"):
        pool_with_prior(vrla, flooded)
    with pytest.raises(InputError, match="chemistry='flooded'"):
        pool_with_prior(flooded, vrla)
    alone = _prepared(devices=1, cells_per_device=1, days=1, seed=9)
    with pytest.raises(InputError, match="fewer than 3"):
        pool_with_prior(alone, flooded)
