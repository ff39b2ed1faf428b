"""Mirror training runs and registered versions to MLflow when ``MLFLOW_TRACKING_URI`` is set.

Each registration becomes one MLflow run in the experiment ``BMS_MLFLOW_EXPERIMENT``
(default ``bms-flux``) with the parameters, the held-out metrics of the candidate (and of the
champion it was compared with, prefixed ``champion_``), the model card (``model_card.json``), the
promotion decision (``decision.json``) and the version's files (under ``model/``). The version
is registered in MLflow's model registry under the same name, tagged with the local version,
and gets the same alias (``champion`` or ``challenger``) as in the local registry.

The local registry stays the source of truth: when MLflow is not installed or the server cannot
be reached, the registration still stands, a warning is logged and the result says why.
Nothing of MLflow is imported unless ``MLFLOW_TRACKING_URI`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model_protocol import ModelCard, Registered
    from .registry import ModelRegistry

log = logging.getLogger("bms.models")

EXPERIMENT_ENV = "BMS_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "bms-flux"


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _numeric(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, Any] = {}
    _flat("", metrics, flat)
    out = {}
    for key, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            continue
        name = "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in f"{prefix}{key}")[:250]
        out[name] = float(value)
    return out


def mirror_registration(
    registry: "ModelRegistry", registered: "Registered", card: "ModelCard"
) -> dict[str, Any] | None:
    """Log ``registered`` to MLflow if ``MLFLOW_TRACKING_URI`` is set; returns what was logged (or why not)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return None
    try:
        info = _log(uri, registry, registered, card)
    except Exception as exc:  # noqa: BLE001 - MLflow is a mirror: the local registration stands
        log.warning("MLflow mirror of %s %s failed: %s", registered.name, registered.version, exc)
        info = {"status": "error", "tracking_uri": uri, "message": f"MLflow mirror failed: {exc}"}
    registered.decision["mlflow"] = info
    return info


def _log(uri: str, registry: "ModelRegistry", registered: "Registered", card: "ModelCard") -> dict[str, Any]:
    try:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise RuntimeError(
            "MLFLOW_TRACKING_URI is set but mlflow is not installed: "
            "install the 'mlflow' dependency group (uv sync --group mlflow)"
        ) from exc

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_name = os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    name, version = registered.name, registered.version
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-{version}",
        tags={"bms.model": name, "bms.version": version, "bms.alias": registered.alias, "bms.family": card.family},
    )
    run_id = run.info.run_id
    try:
        params: dict[str, Any] = {}
        _flat("", card.params, params)
        params.update(
            {
                "family": card.family,
                "features": ",".join(card.features)[:6000],
                "training_rows": card.training_rows,
                "data_fingerprint": card.data_fingerprint,
                "primary_metric": card.primary_metric,
            }
        )
        ev = registered.evaluation
        metrics = {**_numeric(ev.candidate_metrics or card.metrics), **_numeric(ev.champion_metrics, "champion_")}
        stamp = int(time.time() * 1000)
        items = list(params.items())
        for start in range(0, max(len(items), 1), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=[Param(k[:250], str(v)[:6000]) for k, v in items[start : start + 100]])
        listed = list(metrics.items())
        for start in range(0, len(listed), 1000):
            client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in listed[start : start + 1000]])
        client.log_dict(run_id, card.to_dict(), "model_card.json")
        client.log_dict(run_id, json.loads(json.dumps(registered.decision, default=str)), "decision.json")
        client.log_artifacts(run_id, str(registry.locate(name, version)), artifact_path="model")
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    try:
        client.create_registered_model(name, description=f"BMS-Flux model '{name}' (mirrored from the local registry)")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) + str(exc):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
    model_version = client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags={"bms.version": version, "bms.alias": registered.alias},
        description=str(registered.decision.get("reason", ""))[:5000],
    )
    client.set_registered_model_alias(name, registered.alias, model_version.version)
    _ = mlflow  # imported to fail early with a clear message when only part of mlflow is present
    return {
        "status": "ok",
        "tracking_uri": uri,
        "experiment": experiment_name,
        "run_id": run_id,
        "registered_version": str(model_version.version),
        "alias": registered.alias,
    }


def mirror_promotion(name: str, version: str) -> dict[str, Any] | None:
    """Move MLflow's ``champion`` alias to the model version tagged with local ``version``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = client.search_model_versions(f"name = '{name}'")
        match = [mv for mv in found if (mv.tags or {}).get("bms.version") == version]
        if not match:
            return {"status": "error", "message": f"MLflow has no version of '{name}' tagged bms.version={version}"}
        client.set_registered_model_alias(name, "champion", match[0].version)
        return {"status": "ok", "registered_version": str(match[0].version), "alias": "champion"}
    except Exception as exc:  # noqa: BLE001
        log.warning("MLflow promotion mirror of %s %s failed: %s", name, version, exc)
        return {"status": "error", "message": f"MLflow mirror failed: {exc}"}
