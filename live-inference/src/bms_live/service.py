"""The service's logic, independent of HTTP: scoring, feedback, drift, model status.

:class:`LiveService` owns the model hub (the served versions), the per-cell reading
history, the prediction store, the feedback tracker, the drift windows and the metrics.
The FastAPI routes in :mod:`bms_live.app` only parse requests and call these methods;
tests call them directly too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from bms_anomaly.features import HISTORY_REACH, OWN_HISTORY_REACH, PEER_FEATURES
from bms_schema import columns as C
from bms_schema.errors import InputError
from bms_schema.models import Reading
from bms_schema.normalize import load_limits
from bms_schema.registry import ModelRegistry

from .adapters import model_specs
from .context import ReadingHistory, history_columns, live_features
from .drift import DriftMonitor
from .errors import UnknownPrediction
from .feedback import FeedbackTracker, PredictionStore, StoredPrediction
from .holder import LoadedModel, Loader, ModelHolder, ModelHub, RegistryWatcher
from .metrics import ServiceMetrics
from .readings import NUMERIC, readings_to_frame
from .settings import Settings

log = logging.getLogger("bms.live")

DEFAULT_WINDOW = 12
#: Failure probability at or above which a cell counts as a positive call for feedback,
#: when the model does not say (``alarm_threshold`` in its metadata).
DEFAULT_ALARM = 0.5
ALARM_BANDS = ("high", "dead")
#: Measurements the anomaly model cannot answer without (sent, or filled from the cell's history).
ANOMALY_REQUIRED = (C.VOLTAGE, C.TEMPERATURE)
#: Measurements the failure model needs at least some values of, per cell.
FAILURE_REQUIRED = (C.VOLTAGE, C.TEMPERATURE)
NUMERIC_INDEX = {name: j for j, name in enumerate(NUMERIC)}


def missing_measurements(frame: pd.DataFrame) -> np.ndarray:
    """Bool [rows, len(NUMERIC)]: the measurement was not sent at all (not a sentinel, not out of range)."""
    out = np.ones((len(frame), len(NUMERIC)), dtype=bool)
    for j, name in enumerate(NUMERIC):
        quality = C.quality_column(name)
        if quality in frame.columns:
            out[:, j] = (frame[quality] == C.QUALITY_MISSING).to_numpy()
        elif name in frame.columns:
            out[:, j] = frame[name].isna().to_numpy()
    return out


def _floats(values: Any) -> list[float | None]:
    """A float array as a JSON-ready list (NaN/inf -> None)."""
    arr = np.asarray(values, dtype=np.float64)
    out = arr.tolist()
    bad = ~np.isfinite(arr)
    if bad.any():
        for i in np.flatnonzero(bad):
            out[i] = None
    return out


def _texts(values: Any) -> list[str | None]:
    return [
        None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)
        for v in (values.tolist() if hasattr(values, "tolist") else list(values))
    ]


def _iso(ts: pd.Series | pd.DatetimeIndex) -> list[str]:
    """ISO 8601 UTC strings ending in ``Z`` (whole seconds unless some time has a fraction)."""
    index = pd.DatetimeIndex(ts)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    ns = index.asi8
    unit: Literal["s", "us"] = "s" if (ns % 1_000_000_000 == 0).all() else "us"
    out = [text + "Z" for text in np.datetime_as_string(index.to_numpy(dtype="datetime64[ns]"), unit=unit).tolist()]
    if index.hasnans:
        out = [None if missing else value for value, missing in zip(out, index.isna())]
    return out


class LiveService:
    def __init__(
        self, settings: Settings, loaders: dict[str, Loader] | None = None, registry: ModelRegistry | None = None
    ):
        self.settings = settings
        self.metrics = ServiceMetrics()
        if registry is None:
            root = settings.workspace / "models" if settings.workspace else None
            registry = ModelRegistry(root)
        self.registry = registry
        self.hub = ModelHub(
            {
                spec.key: ModelHolder(spec, registry, on_change=self._on_model_change)
                for spec in model_specs(settings.models, loaders)
            }
        )
        per_cell = max(settings.history_per_cell, DEFAULT_WINDOW + 1, HISTORY_REACH)
        self.history = ReadingHistory(
            per_cell=per_cell,
            columns=history_columns(PEER_FEATURES),
            max_rows=settings.history_rows,
            max_bytes=settings.history_bytes,
            # a string of 1-2 cells is scored on its own history, which reaches back OWN_HISTORY_REACH readings
            per_cell_alone=max(per_cell, OWN_HISTORY_REACH),
        )
        self.predictions = PredictionStore(settings.prediction_capacity)
        self.feedback_tracker = FeedbackTracker(settings.feedback_window)
        self.drift = DriftMonitor(settings.drift_window, settings.drift)
        #: Cells whose anomaly episode is open at their newest scored reading: the detector's
        #: causal episode rule carries over from one request to the next as it does in batch.
        self.open_episodes: set[str] = set()
        self.limits = load_limits()
        self.watcher = RegistryWatcher(self.hub, settings.poll_seconds)
        self.started = time.time()
        self.store: Any = None
        if settings.store:
            from .store import Store

            self.store = Store(url=settings.database_url, workspace=settings.workspace)
            # the rolling feedback survives a restart: replay the stored items, oldest first
            for model, prediction_id, predicted, actual, version in self.store.feedback_pairs(settings.feedback_window):
                self.feedback_tracker.record(StoredPrediction(prediction_id, model, version, predicted, 0.0), actual)
        self._hydrated: set[str] = set()
        from .events import EventBus

        self.events = EventBus()  # what ingest committed, for live consumers (stream, alerts)
        self._init_alerts()

    # -- lifecycle ----------------------------------------------------------------------
    def _init_alerts(self) -> None:
        """Alert rules (defaults, the rules file, the environment), delivery and model checks."""
        from .alerts import AlertEngine, DeliveryWorker
        from .alerts.checker import PeriodicCheck

        workspace = self.settings.workspace
        if workspace is None and self.store is not None and self.store.url.startswith("sqlite:///"):
            from bms_schema.paths import workspace as default_workspace

            workspace = default_workspace()
        self.alert_engine = AlertEngine.from_workspace(workspace)
        self.delivery: DeliveryWorker | None = None
        if self.store is not None:
            self.store.alert_cooldown_us = self.alert_engine.cooldown_us
            self.delivery = DeliveryWorker(self.store, self.alert_engine.rules.channels)
        self.alert_checks = PeriodicCheck(self.alert_engine.rules.check_seconds, self.check_models)

    def deliver(self, alert_ids: list[int]) -> None:
        """Hand new alerts to the delivery worker (a queue put: never blocks the caller)."""
        if self.delivery is not None:
            self.delivery.enqueue(alert_ids)

    def check_models(self) -> list[dict[str, Any]]:
        """Drift and model-degradation rules now; new alerts are stored, streamed and delivered."""
        if self.store is None:
            return []
        from .store import now_us
        from .stored import publish_alerts

        rows = self.alert_engine.evaluate_models(self.drift_report(), self.feedback_metrics(), now_us())
        raised = self.store.raise_alerts(rows)
        opened = [a["alert_id"] for a in raised if a.get("new")]
        if opened:
            publish_alerts(self, opened, "opened")
            self.deliver(opened)
        return raised

    def start(self) -> None:
        results = self.hub.refresh()
        for r in results:
            if r.status == "absent":
                log.warning("no '%s' model registered yet: /v1/%s answers 503 until one is trained", r.name, r.key)
        self.watcher.start()
        if self.delivery is not None:
            self.delivery.start()
        self.alert_checks.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.alert_checks.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self.store is not None:
            self.store.close()

    def reload(self, force: bool = False) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.hub.refresh(force=force)]

    def _on_model_change(self, loaded: LoadedModel) -> None:
        m = self.metrics
        for key in m.model_info.label_sets():  # one version per model in the info gauge
            if key[0] == loaded.name:
                m.model_info.remove(model=key[0], version=key[1])
        m.model_info.set(1, model=loaded.name, version=loaded.version)
        m.model_loaded.set(loaded.loaded_at.timestamp(), model=loaded.name)
        m.model_reloads.inc(model=loaded.name, result="loaded")
        if self.store is not None:
            try:
                self.store.record_decision(
                    loaded.name,
                    loaded.version,
                    "served",
                    detail=f"loaded by the live service in {loaded.load_seconds:.2f}s",
                )
            except Exception:  # recording the decision must never stop a model from being served
                log.exception("could not record the served version of %s", loaded.name)

    # -- status -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        models = {key: holder.current() is not None for key, holder in self.hub.holders.items()}
        return {
            "status": "ok",
            "uptime_seconds": round(time.time() - self.started, 3),
            "models_loaded": models,
            "history_rows": len(self.history),
            "history_bytes": self.history.nbytes,
            "predictions_held": len(self.predictions),
        }

    def models(self) -> dict[str, Any]:
        served = {key: holder.describe() for key, holder in self.hub.holders.items()}
        return {"served": served, "registry": self.registry.summary(), "registry_path": str(self.registry.root)}

    # -- anomaly ------------------------------------------------------------------------
    def check_size(self, readings: Sequence[Reading]) -> None:
        if len(readings) > self.settings.max_readings:
            raise InputError(
                f"readings: {len(readings)} readings in one request, the limit is "
                f"{self.settings.max_readings}; split the batch"
            )

    def anomaly(self, readings: Sequence[Reading]) -> dict[str, Any]:
        self.check_size(readings)
        loaded = self.hub["anomaly"].require()  # one reference for the whole request
        frame = readings_to_frame(readings, self.limits)
        return self.score_anomalies(frame, loaded)

    def score_anomalies(self, frame: pd.DataFrame, loaded: LoadedModel | None = None) -> dict[str, Any]:
        """Anomaly answers for a canonical frame (request order). A reading that carries no
        measurement, or lacks one the model needs and has no remembered value to fill it
        (:data:`ANOMALY_REQUIRED`), is answered ``unknown`` with the missing inputs named."""
        loaded = loaded or self.hub["anomaly"].require()
        model = loaded.model
        window = int(loaded.metadata.get("window") or DEFAULT_WINDOW)
        n = len(frame)
        missing = missing_measurements(frame)
        sent: np.ndarray = ~np.asarray(missing.all(axis=1), dtype=bool)  # no measurement at all: not scored
        score = np.full(n, np.nan)
        flag = np.zeros(n, dtype=np.int64)
        kinds: list[str | None] = ["unknown"] * n
        reasons: list[str | None] = [None] * n
        imputed = np.zeros(n, dtype=bool)
        score_cols: list[str] = []
        per_detector: dict[str, list[float | None]] = {}
        features = list(getattr(model, "features", []) or [])
        known = sent.copy()
        if sent.any():
            part = frame.loc[sent] if not sent.all() else frame
            self._hydrate(part[C.DEVICE_ID].to_numpy(dtype=object), window, features)
            live = live_features(part, self.history, window, peer_features=PEER_FEATURES, history_features=features)
            rows = np.flatnonzero(sent)
            # Required inputs neither sent nor filled from the cell's remembered readings.
            unfilled = np.zeros(len(rows), dtype=bool)
            for name in ANOMALY_REQUIRED:
                unfilled |= live.frame[name].isna().to_numpy() & missing[rows, NUMERIC_INDEX[name]]
            scored = model.score(live.frame, open_cells=self.open_episodes)
            self._track_episodes(live.frame, scored)
            score[rows] = scored["AnomalyScore"].to_numpy(dtype=np.float64)
            flag[rows] = scored["AnomalyFlag"].to_numpy().astype(np.int64)
            imputed[rows] = live.imputed
            score_cols = [c for c in scored.columns if c.endswith("Score") and c != "AnomalyScore"]
            for c in score_cols:
                values: list[float | None] = [None] * n
                for i, v in zip(rows.tolist(), _floats(scored[c])):
                    values[i] = v
                per_detector[c] = values
            part_kinds = _texts(scored["AnomalyKind"]) if "AnomalyKind" in scored else [None] * len(rows)
            part_reasons = _texts(scored["AnomalyReason"]) if "AnomalyReason" in scored else [None] * len(rows)
            for j, i in enumerate(rows.tolist()):
                kinds[i], reasons[i] = part_kinds[j], part_reasons[j]
            known[rows[unfilled]] = False
            ok = ~unfilled
            if features and ok.any():
                self.drift.add("anomaly", features, live.frame.loc[ok] if not ok.all() else live.frame)
        names = np.asarray(NUMERIC, dtype=object)
        for i in np.flatnonzero(~known).tolist():
            lacking = (
                ", ".join(names[missing[i]])
                if not sent[i]
                else ", ".join(name for name in ANOMALY_REQUIRED if missing[i, NUMERIC_INDEX[name]])
            )
            what = (
                "the reading carries no measurement"
                if not sent[i]
                else "required measurement missing and no earlier reading of the cell to fill it"
            )
            kinds[i], reasons[i] = "unknown", f"unknown: {what} ({lacking})"
            score[i] = np.nan
            flag[i] = 0
        batch = self.predictions.add("anomaly", loaded.version, (flag > 0) & known, np.nan_to_num(score, nan=0.0))
        m = self.metrics
        m.readings.inc(n, model="anomaly")
        n_flagged = int(((flag > 0) & known).sum())
        n_unknown = int((~known).sum())
        if n_flagged:
            m.predictions.inc(n_flagged, model="anomaly", outcome="flagged")
        if n - n_flagged - n_unknown:
            m.predictions.inc(n - n_flagged - n_unknown, model="anomaly", outcome="normal")
        if n_unknown:
            m.predictions.inc(n_unknown, model="anomaly", outcome="unknown")
        # AnomalyScore is a surprise (-log10 tail probability); 1 - 10**-s is its training percentile.
        good = score[known & np.isfinite(score)]
        m.anomaly_score.observe_many(1.0 - np.power(10.0, -np.clip(good, 0, None)), version=loaded.version)

        ids = batch.ids()
        cells = frame[C.CELL_ID].tolist()
        stamps = _iso(frame[C.TIMESTAMP])
        scores = _floats(score)
        flags: list[int | None] = [f if k else None for f, k in zip(flag.tolist(), known.tolist())]
        imputed_list = imputed.tolist()
        missing_names = [names[row].tolist() for row in missing]
        results = [
            {
                "prediction_id": ids[i],
                "CellID": cells[i],
                "Timestamp": stamps[i],
                "AnomalyScore": scores[i],
                "AnomalyFlag": flags[i],
                "AnomalyKind": kinds[i],
                "reason": reasons[i],
                "scores": {c: per_detector[c][i] for c in score_cols},
                "imputed": imputed_list[i],
                "missing": missing_names[i],
            }
            for i in range(n)
        ]
        return {
            "model": {"name": loaded.name, "version": loaded.version},
            "count": len(results),
            "flagged": n_flagged,
            "unknown": n_unknown,
            "results": results,
        }

    def _track_episodes(self, frame: pd.DataFrame, scored: pd.DataFrame) -> None:
        """Remember which cells end this request inside a statistical anomaly episode."""
        if "AnomalyKind" not in scored.columns or not len(frame):
            return
        last = frame[[C.CELL_ID, C.TIMESTAMP]].assign(_open=(scored["AnomalyKind"] == "statistical").to_numpy())
        last = last.sort_values(C.TIMESTAMP, kind="stable").drop_duplicates(C.CELL_ID, keep="last")
        cells = last[C.CELL_ID].to_numpy(dtype=object)
        is_open = last["_open"].to_numpy(dtype=bool)
        self.open_episodes.difference_update(cells[~is_open].tolist())
        self.open_episodes.update(cells[is_open].tolist())

    def _hydrate(self, devices: np.ndarray, window: int, features: list[str]) -> None:
        """Rebuild the remembered readings of devices the service has not seen since it started
        from the store, so a restart changes no answer (one query per such device)."""
        if self.store is None:
            return
        for device in pd.unique(devices).tolist():  # a loop over devices, not rows
            if device in self._hydrated:
                continue
            if len(self._hydrated) > 1_000_000:
                self._hydrated.clear()
            self._hydrated.add(device)
            stored = self.store.recent_readings(device, self.history.per_cell)
            if len(stored) and self.history.reach(int(stored[C.CELL_ID].nunique())) > self.history.per_cell:
                # a string without peers: its own-history features reach further back
                stored = self.store.recent_readings(device, self.history.per_cell_alone)
            if len(stored):
                live_features(stored, self.history, window, peer_features=PEER_FEATURES, history_features=features)

    # -- failure ------------------------------------------------------------------------
    def failure(self, readings: Sequence[Reading], horizon_days: float | None = None) -> dict[str, Any]:
        self.check_size(readings)
        self.hub["failure"].require()
        return self.failure_frame(readings_to_frame(readings, self.limits), horizon_days)

    def failure_frame(self, frame: pd.DataFrame, horizon_days: float | None = None) -> dict[str, Any]:
        """Failure risk per cell of a canonical frame (see :meth:`failure`)."""
        loaded = self.hub["failure"].require()
        model = loaded.model
        model_horizon = getattr(model, "horizon_days", None) or loaded.metadata.get("horizon_days")
        if horizon_days is not None:
            # one survival curve answers every horizon up to the longest time to death seen in training
            check = getattr(model, "check_horizon", None)
            if check is not None:
                try:
                    check(float(horizon_days))
                except InputError as exc:
                    raise InputError(f"horizon_days: {exc}") from exc
            elif model_horizon is not None and abs(float(model_horizon) - horizon_days) > 1e-9:
                raise InputError(
                    f"horizon_days: the served failure model ({loaded.name}/{loaded.version}) predicts a "
                    f"{float(model_horizon):g}-day horizon only, not {horizon_days:g} days; leave horizon_days out"
                )
            model_horizon = float(horizon_days)
        refused = failure_inputs_missing(frame, _min_history_hours(model, loaded.metadata))
        if len(refused) == frame[C.CELL_ID].nunique():
            shown = "; ".join(f"{cell}: {why}" for cell, why in list(refused.items())[:5])
            more = f" (+{len(refused) - 5} more cells)" if len(refused) > 5 else ""
            raise InputError(f"readings: no cell can be scored for failure risk, its inputs are missing: {shown}{more}")
        usable = frame if not refused else frame.loc[~frame[C.CELL_ID].isin(list(refused))].reset_index(drop=True)
        grid = _failure_grid(model, usable)
        asked = {} if horizon_days is None else {"horizon_days": float(horizon_days)}
        table = model.predict(usable, grid=grid, **asked) if grid is not None else model.predict(usable, **asked)
        if refused:
            if "CellID" not in table and len(table):
                table = table.assign(CellID=table["DeviceID"].astype(str) + "-" + table["CellNumber"].astype(str))
            table = pd.concat([table, _unknown_failure_rows(frame, refused)], ignore_index=True)
        table = table.reset_index(drop=True)
        prob = table["FailureProbability"].to_numpy(dtype=np.float64)
        band = _texts(table["RiskBand"]) if "RiskBand" in table else ["unknown"] * len(table)
        threshold = float(
            loaded.metadata.get("alarm_threshold") or getattr(model, "alarm_threshold", None) or DEFAULT_ALARM
        )
        if "Alarm" in table:  # the model's own alarm (its calibrated threshold on its alarm horizon)
            alarm = table["Alarm"].fillna(False).astype(bool).to_numpy()
        else:
            alarm = np.nan_to_num(prob, nan=0.0) >= threshold
        alarm |= np.isin(np.asarray(band, dtype=object), ALARM_BANDS)
        batch = self.predictions.add("failure", loaded.version, alarm, np.nan_to_num(prob, nan=0.0))
        features = list(getattr(model, "features", []) or [])
        if features and grid is not None:
            self.drift.add("failure", features, grid.last_rows())
        m = self.metrics
        m.readings.inc(len(frame), model="failure")
        for name, count in pd.Series(band, dtype=object).fillna("unknown").value_counts().items():
            m.predictions.inc(int(count), model="failure", outcome=str(name))
        m.failure_probability.observe_many(prob, version=loaded.version)

        if "CellID" in table:
            cell_ids = table["CellID"].astype(str).tolist()
        else:
            cell_ids = (table["DeviceID"].astype(str) + "-" + table["CellNumber"].astype(str)).tolist()
        if "DeviceID" in table:
            devices = table["DeviceID"].astype(str).tolist()
        else:
            devices = [c.rpartition("-")[0] for c in cell_ids]
        if "CellNumber" in table:
            numbers = table["CellNumber"].astype(int).tolist()
        else:
            numbers = [int(c.rpartition("-")[2]) for c in cell_ids]
        reasons = _reason_lists(table)
        known = {"CellID", "DeviceID", "CellNumber", "FailureProbability", "RiskBand", "TopReasons"}
        extra_cols = [c for c in table.columns if c not in known and not c.startswith("Reason")]
        extra = (
            table[extra_cols].astype(object).where(table[extra_cols].notna(), None).to_dict("records")
            if extra_cols
            else [{} for _ in range(len(table))]
        )
        ids = batch.ids()
        probs = _floats(prob)
        alarms = alarm.tolist()
        results = [
            {
                "prediction_id": ids[i],
                "CellID": cell_ids[i],
                "DeviceID": devices[i],
                "CellNumber": numbers[i],
                "FailureProbability": probs[i],
                "RiskBand": band[i] or "unknown",
                "alarm": alarms[i],
                "reasons": reasons[i],
                "extra": _jsonable(extra[i]),
            }
            for i in range(len(table))
        ]
        return {
            "model": {"name": loaded.name, "version": loaded.version},
            "horizon_days": float(model_horizon) if model_horizon is not None else None,
            "results": results,
        }

    # -- forecast -----------------------------------------------------------------------
    def forecast(self, readings: Sequence[Reading], cell_id: str | int, steps: int, coverage: float) -> dict[str, Any]:
        self.check_size(readings)
        self.hub["forecast"].require()
        return self.forecast_frame(readings_to_frame(readings, self.limits), cell_id, steps, coverage)

    def forecast_frame(self, frame: pd.DataFrame, cell_id: str | int, steps: int, coverage: float) -> dict[str, Any]:
        """The forecast of one cell from a canonical frame of its string's history."""
        loaded = self.hub["forecast"].require()
        table = loaded.model.forecast(frame, cell_id, steps, coverage)
        forecast = table["Forecast"].to_numpy(dtype=np.float64)
        width = table["Upper"].to_numpy(dtype=np.float64) - table["Lower"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = width / np.abs(forecast)
        for target in pd.unique(table["Target"]):
            mask = (table["Target"] == target).to_numpy()
            self.metrics.forecast_interval.observe_many(relative[mask & np.isfinite(relative)], target=str(target))
        self.metrics.readings.inc(len(frame), model="forecast")
        self.metrics.predictions.inc(len(table), model="forecast", outcome="forecast_step")
        from bms_schema.cells import resolve_cell_id

        cell = resolve_cell_id(cell_id, frame[C.CELL_ID].unique())
        rows = {
            "Timestamp": _iso(table["Timestamp"]),
            "Target": table["Target"].astype(str).tolist(),
            "Step": table["Step"].astype(int).tolist(),
            "Forecast": _floats(forecast),
            "Lower": _floats(table["Lower"]),
            "Upper": _floats(table["Upper"]),
        }
        keys = list(rows)
        records = [dict(zip(keys, values)) for values in zip(*rows.values())]
        # targets the model forecasts but this cell's history cannot: unknown, with the reason
        served = set(rows["Target"])
        mine = frame[frame[C.CELL_ID] == cell]
        unknown = {}
        for target in list(getattr(loaded.model, "targets", []) or []):
            if target not in served:
                have = int(mine[target].notna().sum()) if target in mine else 0
                unknown[target] = f"unknown: {have} valid {target} value(s) in the {len(mine)} readings of {cell}"
        return {
            "model": {"name": loaded.name, "version": loaded.version},
            "cell_id": cell,
            "steps": steps,
            "coverage": coverage,
            "forecast": records,
            "unknown_targets": unknown,
        }

    # -- feedback -----------------------------------------------------------------------
    def feedback(self, items: Sequence[tuple[str, bool]]) -> dict[str, Any]:
        unknown: list[str] = []
        accepted = 0
        touched: set[str] = set()
        to_store: list[dict[str, Any]] = []
        for prediction_id, actual in items:  # a loop over feedback items, each a dict lookup
            stored = self.predictions.get(prediction_id)
            if stored is None and self.store is not None:
                row = self.store.prediction(prediction_id)
                if row is not None and row["flag"] is not None:
                    stored = StoredPrediction(
                        prediction_id, row["kind"], row["model_version"], bool(row["flag"]), float(row["score"] or 0.0)
                    )
            if stored is None:
                unknown.append(prediction_id)
                continue
            to_store.append(
                {
                    "prediction_id": prediction_id,
                    "model": stored.model,
                    "model_version": stored.version,
                    "predicted": stored.predicted,
                    "actual": bool(actual),
                    "score": stored.score,
                }
            )
            self.feedback_tracker.record(stored, actual)
            self.metrics.feedback_items.inc(model=stored.model)
            touched.add(stored.model)
            accepted += 1
        if accepted == 0:
            raise UnknownPrediction(
                f"none of the {len(unknown)} prediction ids is known: ids come from /v1/anomaly or /v1/failure "
                f"answers and are kept for the last {self.settings.prediction_capacity} predictions "
                f"(first unknown: {unknown[0]!r})"
            )
        if self.store is not None:
            self.store.record_feedback(to_store)
        metrics = self.feedback_tracker.metrics()
        for model, values in metrics.items():
            if model in touched:
                for gauge, key in (
                    (self.metrics.feedback_precision, "precision"),
                    (self.metrics.feedback_recall, "recall"),
                ):
                    if values[key] is not None:
                        gauge.set(values[key], model=model)
        return {"accepted": accepted, "unknown_ids": unknown, "metrics": metrics}

    def feedback_metrics(self) -> dict[str, Any]:
        """Rolling feedback figures per model and per version, and whether each served version is
        getting worse than its held-out figures said."""
        from .feedback import served_health

        served: dict[str, Any] = {}
        for key, holder in self.hub.holders.items():
            loaded = holder.current()
            if loaded is None or key == "forecast":
                continue
            card_value = loaded.metadata.get("card")
            card: dict[str, Any] = card_value if isinstance(card_value, dict) else {}
            served[key] = {
                "version": loaded.version,
                **served_health(
                    self.feedback_tracker.version_metrics(key, loaded.version),
                    card.get("metrics") or loaded.metadata.get("metrics"),
                ),
            }
        return {"metrics": self.feedback_tracker.metrics(), "window": self.settings.feedback_window, "served": served}

    # -- drift --------------------------------------------------------------------------
    def drift_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, holder in self.hub.holders.items():
            loaded = holder.current()
            if loaded is None:
                out[key] = {"status": "no_model", "flagged": [], "features": {}, "window": 0}
                continue
            model = loaded.model
            features = list(getattr(model, "features", []) or [])
            reference = getattr(model, "reference", None)
            if not features:
                out[key] = {
                    "status": "no_reference",
                    "flagged": [],
                    "features": {},
                    "window": 0,
                    "message": "this model does not expose its input features, so drift is not tracked",
                }
                continue
            report = self.drift.report(key, features, reference)
            report["version"] = loaded.version
            out[key] = report
            self.metrics.drift_flagged.set(len(report["flagged"]), model=loaded.name)
        t = self.settings.drift
        return {
            "models": out,
            "flagged": {k: v["flagged"] for k, v in out.items() if v.get("flagged")},
            "thresholds": {
                "ks_max_window": t.ks_max_window,
                "ks_pvalue": t.ks_pvalue,
                "ks_statistic": t.ks_statistic,
                "psi": t.psi,
                "psi_bins": t.psi_bins,
                "min_window": t.min_window,
            },
        }


def _min_history_hours(model: Any, metadata: dict[str, Any]) -> float | None:
    """How much history per cell the failure model needs (its config, or its metadata)."""
    for value in (
        getattr(getattr(model, "config", None), "min_history_hours", None),
        getattr(model, "min_history_hours", None),
        metadata.get("min_history_hours"),
        (metadata.get("config") or {}).get("min_history_hours") if isinstance(metadata.get("config"), dict) else None,
    ):
        if value is not None:
            return float(value)
    return None


def failure_inputs_missing(frame: pd.DataFrame, min_hours: float | None) -> dict[str, str]:
    """Cells the failure model must not score, each with why: a required measurement with no
    value at all (:data:`FAILURE_REQUIRED`), or less history than the model needs."""
    cells = frame[C.CELL_ID]
    valid = pd.DataFrame({name: frame[name].notna() if name in frame else False for name in FAILURE_REQUIRED})
    valid[C.CELL_ID] = cells.to_numpy()
    counts = valid.groupby(C.CELL_ID, sort=False).sum()
    ts = frame[C.TIMESTAMP]
    span = ts.groupby(cells, sort=False).agg(["min", "max", "size"])
    hours = (span["max"] - span["min"]).dt.total_seconds() / 3600.0
    out: dict[str, str] = {}
    names = np.asarray(FAILURE_REQUIRED, dtype=object)
    lacking = counts[list(FAILURE_REQUIRED)].to_numpy() == 0
    for k in np.flatnonzero(lacking.any(axis=1)).tolist():  # a loop over refused cells only
        cell = counts.index[k]
        out[str(cell)] = (
            f"unknown: no valid {', '.join(names[lacking[k]])} in its {int(span.loc[cell, 'size'])} reading(s)"
        )
    if min_hours is not None:
        short = hours.index[(hours < min_hours).to_numpy()]
        for cell in short.tolist():
            if str(cell) not in out:
                out[str(cell)] = (
                    f"unknown: too little history, {hours[cell]:.3g} h in {int(span.loc[cell, 'size'])} "
                    f"reading(s), the model needs at least {min_hours:g} h"
                )
    return out


def _unknown_failure_rows(frame: pd.DataFrame, refused: dict[str, str]) -> pd.DataFrame:
    first = frame.drop_duplicates(C.CELL_ID).set_index(C.CELL_ID).reindex(list(refused))
    return pd.DataFrame(
        {
            C.DEVICE_ID: first[C.DEVICE_ID].to_numpy(),
            C.CELL_NUMBER: first[C.CELL_NUMBER].to_numpy(),
            C.CELL_ID: list(refused),
            "FailureProbability": np.nan,
            "RiskBand": "unknown",
            "TopReasons": list(refused.values()),
        }
    )


def _failure_grid(model: Any, frame: pd.DataFrame) -> Any:
    """The failure model's per-cell feature grid, built here (and handed to ``predict``) only when
    the model carries a training reference to measure drift against."""
    if getattr(model, "reference", None) is None or not hasattr(model, "config"):
        return None
    try:
        from bms_failure.features import build_feature_grid
    except ImportError:
        return None
    return build_feature_grid(frame, model.config)


def _reason_lists(table: pd.DataFrame) -> list[list[str]]:
    """TopReasons as a list of strings per row (the model may give a list or '; '-joined text)."""
    if "TopReasons" in table:
        out = []
        for value in table["TopReasons"].tolist():
            if isinstance(value, (list, tuple, np.ndarray)):
                out.append([str(v) for v in value])
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                out.append([])
            else:
                out.append([part.strip() for part in str(value).split(";") if part.strip()])
        return out
    cols = sorted(c for c in table.columns if c.startswith("Reason"))
    if cols:
        values = table[cols].astype(object).where(table[cols].notna(), None).to_numpy()
        return [[str(v) for v in row if v is not None] for row in values]
    return [[] for _ in range(len(table))]


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, (np.bool_, bool)):
            out[key] = bool(value)
        elif isinstance(value, (np.integer,)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value) if math.isfinite(value) else None
        elif isinstance(value, pd.Timestamp):
            out[key] = value.isoformat()
        elif value is None or isinstance(value, (int, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out
