"""The building blocks: packed forest, SVM fast path, ECDF calibration, thresholds, VAE determinism."""

from __future__ import annotations

import numpy as np
import pytest
from bms_anomaly.detectors import ForestConfig, ForestDetector, KernelSVMDetector, SVMConfig
from bms_anomaly.fast_forest import PACKED_MAX_ROWS, PackedForest
from bms_anomaly.fusion import AUTO, ECDFCalibrator, episode_flags, fuse, parse_contamination, threshold_for
from bms_schema.errors import InputError


@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, 6))
    test = np.vstack([rng.normal(size=(200, 6)), rng.normal(size=(20, 6)) + 6.0])
    return train, test


def test_packed_forest_matches_sklearn(gaussian) -> None:
    train, test = gaussian
    forest = ForestDetector(ForestConfig(n_estimators=50)).fit(train)
    packed = PackedForest(forest.model)
    expected = forest.model.score_samples(test.astype(np.float32))
    np.testing.assert_allclose(packed.score_samples(test), expected, rtol=0, atol=1e-12)
    # the detector switches paths on batch size, with the same answer either way
    big = np.tile(test, (PACKED_MAX_ROWS // len(test) + 1, 1))
    np.testing.assert_allclose(forest.score(big)[: len(test)], forest.score(test), atol=1e-12)
    assert forest.score(test)[-20:].min() > np.median(forest.score(test)[:200])


def test_svm_fast_path_matches_sklearn(gaussian) -> None:
    train, test = gaussian
    svm = KernelSVMDetector(SVMConfig(n_components=60)).fit(train)
    expected = -svm.svm.decision_function(svm.feature_map.transform(test))
    np.testing.assert_allclose(svm.score(test), expected, rtol=0, atol=1e-5)  # float32 kernel block
    assert svm.score(test)[-20:].min() > np.quantile(svm.score(test)[:200], 0.9)


def test_ecdf_surprise_is_calibrated_and_keeps_order_beyond_training() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(size=10_000)
    cal = ECDFCalibrator.fit(train)
    # the median of the training scores is surprise log10(2): half the training rows are as extreme
    assert cal.surprise(np.array([np.median(train)]))[0] == pytest.approx(np.log10(2), abs=0.01)
    # 1 in 100 training rows exceed the 99th percentile -> surprise 2
    assert cal.surprise(np.array([np.quantile(train, 0.99)]))[0] == pytest.approx(2.0, abs=0.05)
    beyond = cal.surprise(np.array([train.max() + 0.1, train.max() + 1.0, train.max() + 5.0]))
    assert np.all(np.diff(beyond) > 0) and beyond[0] > np.log10(len(train))
    assert cal.surprise(np.array([np.nan]))[0] == 0.0


def test_thresholds_and_contamination() -> None:
    fused = fuse(np.column_stack([np.linspace(0, 1, 1000)] * 3))
    assert np.mean(fused > threshold_for(fused, 0.05)) == pytest.approx(0.05, abs=0.002)
    q1, q3 = np.quantile(fused, [0.25, 0.75])
    assert threshold_for(fused, AUTO) == pytest.approx(max(q3 + 3 * (q3 - q1), 5.0))
    assert threshold_for(fused * 10, AUTO) == pytest.approx(10 * (q3 + 3 * (q3 - q1)))  # the fence when higher
    assert parse_contamination("auto") == AUTO and parse_contamination(0.1) == 0.1
    with pytest.raises(InputError, match="contamination must be 'auto' or a fraction between 0 and 0.5, got 0.7"):
        parse_contamination(0.7)
    with pytest.raises(InputError, match="got 'lots'"):
        parse_contamination("lots")


def test_vae_is_deterministic_for_a_seed(gaussian) -> None:
    from bms_anomaly.vae import VAEConfig, VAEDetector

    train, test = gaussian
    cfg = dict(epochs=3, max_steps=30, batch_size=512)
    a = VAEDetector(VAEConfig(seed=3, **cfg)).fit(train).score(test)
    b = VAEDetector(VAEConfig(seed=3, **cfg)).fit(train).score(test)
    c = VAEDetector(VAEConfig(seed=4, **cfg)).fit(train).score(test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.median(a[-20:]) > 5 * np.median(a[:200])  # far points reconstruct badly


def test_vae_adam_equals_torch_optim_adam(gaussian, monkeypatch) -> None:
    """The written-out Adam (no torch._dynamo import) trains to the very weights torch.optim.Adam gives."""
    import torch
    from bms_anomaly import vae

    train, test = gaussian
    cfg = vae.VAEConfig(seed=3, epochs=3, max_steps=30, batch_size=512)
    ours = vae.VAEDetector(cfg).fit(train)

    class TorchAdam:
        def __init__(self, params, lr):
            self.optimiser = torch.optim.Adam(params, lr=lr)

        def zero_grad(self):
            self.optimiser.zero_grad(set_to_none=True)

        def step(self):
            self.optimiser.step()

    monkeypatch.setattr(vae, "Adam", TorchAdam)
    reference = vae.VAEDetector(cfg).fit(train)
    ours_state, reference_state = ours.module.state_dict(), reference.module.state_dict()
    assert list(ours_state) == list(reference_state)
    for name, weights in ours_state.items():
        assert torch.equal(weights, reference_state[name]), name
    np.testing.assert_array_equal(ours.score(test), reference.score(test))


def test_vae_numpy_scores_equal_the_torch_module_and_an_older_pt_model_loads(gaussian, tmp_path) -> None:
    """The NumPy forward pass is the module's (float32 rounding apart); a ``vae.pt`` of an older model loads."""
    import torch
    from bms_anomaly import vae

    train, test = gaussian
    fitted = vae.VAEDetector(vae.VAEConfig(seed=3, epochs=3, max_steps=30, batch_size=512)).fit(train)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(test, dtype=np.float32))
        recon, mu, logvar = fitted.module(x)
        module = (0.5 * ((recon - x) ** 2).sum(1) - 0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).numpy()
    ours = fitted.score(test)
    np.testing.assert_allclose(ours, module, rtol=1e-5)

    fitted.save(tmp_path / "vae.npz")
    again = vae.VAEDetector.load(tmp_path / "vae.npz", fitted.state())
    np.testing.assert_array_equal(again.score(test), ours)
    torch.save(fitted.module.state_dict(), tmp_path / "vae.pt")
    older = vae.VAEDetector.load(tmp_path / "vae.pt", fitted.state())
    np.testing.assert_array_equal(older.score(test), ours)

    from bms_schema.errors import ModelError
    from bms_schema.safe_io import save_arrays

    save_arrays(tmp_path / "broken.npz", **{k: v for k, v in fitted.weights.items() if k != "mu.bias"})
    with pytest.raises(ModelError, match="VAE weights at .*broken.npz lack mu.bias: retrain the anomaly model"):
        vae.VAEDetector.load(tmp_path / "broken.npz", fitted.state())


def test_group_median_matches_pandas() -> None:
    import pandas as pd
    from bms_anomaly.features import group_median

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 50, 2000)
    values = rng.normal(size=2000)
    values[rng.random(2000) < 0.1] = np.nan
    values[codes == 7] = np.nan  # a group with no finite value stays NaN
    expected = pd.Series(values).groupby(codes).transform("median").to_numpy()
    np.testing.assert_allclose(group_median(codes, values), expected, equal_nan=True)


def test_history_features_respect_cell_boundaries_and_order() -> None:
    import pandas as pd
    from bms_anomaly.features import local_features

    ts = pd.date_range("2026-01-01", periods=12, freq="15min", tz="UTC")
    frame = pd.DataFrame(
        {
            "CellID": ["A-1"] * 12 + ["A-2"] * 12,
            "DeviceID": "A",
            "Timestamp": list(ts) * 2,
            "CellVoltage": [2.25] * 12 + list(2.25 + 0.001 * np.arange(12)),
            "CellTemperature": np.r_[np.full(12, 25.0), 25 + 0.1 * np.arange(12)],
            "CellSpecificGravity": np.r_[np.full(12, 1.24), 1.24 + 1e-4 * np.arange(12)],
        }
    )
    shuffled = frame.sample(frac=1.0, random_state=0)
    out = local_features(shuffled, ["UnchangedRun"])["UnchangedRun"]
    by_row = pd.Series(out, index=shuffled.index).sort_index().to_numpy()
    np.testing.assert_array_equal(by_row[:12], np.arange(1, 13))  # a stuck cell: the run grows
    np.testing.assert_array_equal(by_row[12:], np.ones(12))  # a live cell never repeats


def test_large_batch_forest_path_matches_sklearn(gaussian) -> None:
    train, _ = gaussian
    forest = ForestDetector(ForestConfig(n_estimators=30, max_samples=512)).fit(train)
    big = np.random.default_rng(9).normal(size=(3000, 6)) * 2
    np.testing.assert_allclose(
        forest.score(big), -forest.model.score_samples(big.astype(np.float32)), rtol=0, atol=1e-12
    )


def test_peer_features_same_for_small_and_large_frames(monkeypatch) -> None:
    import bms_anomaly.features as F
    import pandas as pd

    rng = np.random.default_rng(2)
    n = 600
    frame = pd.DataFrame(
        {
            "DeviceID": rng.choice(["A", "B"], n),
            "Timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20, n), "min"),
            "CellTemperature": rng.normal(25, 1, n),
            "VoltageRollStd": rng.gamma(2, 0.001, n),
        }
    )
    names = ["TempDevString", "VoltageFluctuationVsString"]
    small = F.peer_features(frame, names)
    monkeypatch.setattr(F, "PANDAS_GROUPBY_ROWS", 10)
    large = F.peer_features(frame, names)
    for name in names:
        np.testing.assert_allclose(small[name], large[name], rtol=0, atol=1e-12)


def test_episode_flags_extend_causally_over_contiguous_readings_of_one_cell() -> None:
    scores = np.array([0.1, 3.0, 6.0, 4.0, 2.0, 0.5, 3.5, 0.1, 4.0, 4.0])
    cells = np.array(["a"] * 8 + ["b"] * 2)
    times = np.r_[np.arange(8), np.arange(2)]
    flags = episode_flags(scores, 5.0, cells, times)
    # the run 3.0, 6.0, 4.0 (> 2.5) holds a reading > 5: it and what follows it are flagged, not the 3.0
    # before it (causal); 3.5 and cell b's 4.0s follow none
    np.testing.assert_array_equal(flags, [0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
    shuffled = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(
        episode_flags(scores[shuffled], 5.0, cells[shuffled], times[shuffled]), flags[shuffled]
    )
    excluded = episode_flags(scores, 5.0, cells, times, exclude=np.arange(10) == 2)
    assert not excluded.any()  # the only strong reading excluded: no episode
    np.testing.assert_array_equal(episode_flags(scores, 5.0, None, None), scores > 5.0)
    # a stream scored in two pieces flags what one batch flags, carrying each cell's open episode
    first, rest = np.arange(10) < 3, np.arange(10) >= 3
    head = episode_flags(scores[first], 5.0, cells[first], times[first])
    carried = np.isin(cells[rest], ["a"] if head[-1] else [])
    tail = episode_flags(scores[rest], 5.0, cells[rest], times[rest], open_cells=carried)
    np.testing.assert_array_equal(np.r_[head, tail], flags)
    # an episode open before the rows continues over the cell's first contiguous weak readings
    np.testing.assert_array_equal(
        episode_flags(scores[8:], 5.0, cells[8:], times[8:], open_cells=np.ones(2, bool)), [1, 1]
    )


def test_an_evaluation_with_few_labelled_anomalies_says_its_f1_is_not_meaningful() -> None:
    from bms_anomaly.metrics import MIN_EVAL_POSITIVES, binary_metrics, support_note

    truth = np.zeros(3000, dtype=bool)
    truth[:35] = True  # a 2 x 6-cell, 10-day fleet's held-out 30 %: ~35 anomalous readings
    flags = truth.copy()
    flags[:20] = False
    small = binary_metrics(truth, flags)
    assert (small["anomalous_readings"], small["meaningful"], small["recall"]) == (35, False, round(15 / 35, 4))
    assert "only 35 labelled anomalous reading(s)" in support_note(small)
    truth[:MIN_EVAL_POSITIVES] = True
    big = binary_metrics(truth, truth)
    assert big["meaningful"] and support_note(big) == ""
