"""Model files an outsider could drop in: code in a skops file never runs, wherever it is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
from bms_schema import ModelError, ModelRegistry
from bms_schema.safe_io import ALLOWED_TYPES, audit_skops, load_sklearn, save_sklearn
from mcp_stdio import connect, envelope
from model_attacks import eval_skops


def test_eval_reduce_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = eval_skops(tmp_path / "scaler.skops", marker)
    import skops.io as sio

    assert sio.get_untrusted_types(file=evil) == ["builtins.eval"]  # the file is what the audit described
    with pytest.raises(ModelError, match=r"scaler\.skops refused: .*builtins\.eval"):
        load_sklearn(evil)
    assert not marker.exists()


def test_every_type_the_project_saves_loads_back(tmp_path: Path) -> None:
    """The allow-list covers each scikit-learn object the anomaly detector saves, and nothing wider."""
    from sklearn.ensemble import IsolationForest
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDOneClassSVM
    from sklearn.preprocessing import RobustScaler

    X = np.random.default_rng(0).normal(size=(200, 4))
    mapped = Nystroem(n_components=10, random_state=0).fit(X)
    objects = [
        RobustScaler(quantile_range=(25.0, 75.0)).fit(X),
        IsolationForest(n_estimators=5, random_state=0).fit(X),
        mapped,
        SGDOneClassSVM(nu=0.05, random_state=0).fit(mapped.transform(X)),
    ]
    for i, obj in enumerate(objects):
        path = save_sklearn(obj, tmp_path / f"{i}.skops")
        back = load_sklearn(path)
        assert type(back) is type(obj)
        if hasattr(obj, "score_samples"):
            np.testing.assert_allclose(
                back.score_samples(mapped.transform(X) if i == 3 else X),
                obj.score_samples(mapped.transform(X) if i == 3 else X),
            )
    assert not any(t.endswith((".eval", ".exec", ".getattr", ".__import__")) for t in ALLOWED_TYPES)
    assert all(not t.endswith(".") for t in ALLOWED_TYPES)  # exact names, never a module prefix


def test_saving_an_unlisted_type_fails_before_anything_is_registered(tmp_path: Path) -> None:
    from sklearn.preprocessing import StandardScaler

    path = tmp_path / "std.skops"
    with pytest.raises(ModelError, match=r"sklearn\.preprocessing\._data\.StandardScaler.*ALLOWED_TYPES"):
        save_sklearn(StandardScaler().fit(np.ones((3, 2))), path)
    assert not path.exists()


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04garbage"])
def test_unreadable_skops_file_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.skops"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a readable skops model file"):
        audit_skops(path)


def _register_evil_anomaly_model(marker: Path | None) -> str:
    """Register an ``anomaly_hybrid`` version through the registry API (checksums and signature valid) whose
    scaler is the eval file (or, with ``marker=None``, a real fitted scaler)."""
    from bms_anomaly.hybrid import HybridConfig
    from bms_anomaly.persistence import FORMAT_VERSION, MODEL_NAME

    registry = ModelRegistry()
    with registry.register(MODEL_NAME, {"features": ["CellVoltage"]}) as staging:
        (staging.dir / "config.json").write_text(
            json.dumps(
                {
                    "format_version": FORMAT_VERSION,
                    "features": ["CellVoltage"],
                    "hybrid": HybridConfig().to_dict(),
                    "vae": {},
                    "threshold": 1.0,
                    "detector_thresholds": {},
                }
            )
        )
        if marker is None:
            from sklearn.preprocessing import RobustScaler

            save_sklearn(RobustScaler().fit(np.ones((4, 1))), staging.dir / "scaler.skops")
        else:
            eval_skops(staging.dir / "scaler.skops", marker)
    assert staging.version is not None
    return staging.version


def test_registered_eval_model_is_refused_in_process(workspace: Path) -> None:
    from bms_anomaly.persistence import load_detector

    marker = workspace / "pwned-in-process"
    version = _register_evil_anomaly_model(marker)
    with pytest.raises(ModelError, match="builtins.eval"):
        load_detector(version, cache=False)
    version = _register_evil_anomaly_model(None)
    _tamper_with_rewritten_checksum(version, marker)
    with pytest.raises(ModelError, match="registry signature does not match"):
        load_detector(version, cache=False)
    assert not marker.exists()


def _tamper_with_rewritten_checksum(version: str, marker: Path) -> None:
    """The issue's attack: swap a registered file for the eval file and rewrite its checksum next to it."""
    import hashlib

    from bms_anomaly.persistence import MODEL_NAME

    folder = ModelRegistry().locate(MODEL_NAME, version)
    evil = eval_skops(folder / "scaler.skops", marker)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["files"]["scaler.skops"] = hashlib.sha256(evil.read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("attack", ["registered", "tampered"])
def test_eval_model_is_refused_by_the_anomaly_server(workspace: Path, sample_csv: Path, attack: str) -> None:
    """Registered through the API (signature valid: the type allow-list refuses) or swapped in afterwards with
    the checksum rewritten (the signature refuses): either way nothing runs and the server keeps serving."""
    marker = workspace / "pwned-over-stdio"
    version = _register_evil_anomaly_model(marker if attack == "registered" else None)
    if attack == "tampered":
        _tamper_with_rewritten_checksum(version, marker)
    expected = "builtins.eval" if attack == "registered" else "registry signature does not match"

    async def scenario() -> None:
        async with connect("feature-one-anamoly-detection-mcp") as client:
            result = await client.call_tool("detect_anomalies", {"data_path": str(sample_csv)})
            env = envelope(result)
            assert result.is_error and env["status"] == "error"
            assert expected in env["message"] and "refused" in env["message"], env["message"]
            health = envelope(await client.call_tool("health_check", {}))
            assert health["status"] == "ok" and health["data"]["status"] == "healthy"

    anyio.run(scenario)
    assert not marker.exists()
