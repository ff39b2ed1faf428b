"""The alert engine: runs the rules on what ingest stored (inside its transaction), on stored
failure-risk predictions, and periodically on drift and model degradation; new alerts go to
the delivery worker after the commit."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pandas as pd

from . import rules as R
from .config import AlertRules, load_rules

log = logging.getLogger("bms.live.alerts")

FLEET = "fleet"  # device_id of alerts about a model rather than a string


class AlertEngine:
    def __init__(self, rules: AlertRules, rules_file: Any = None) -> None:
        self.rules = rules
        self.rules_file = rules_file
        self.streaks = R.Streaks()
        self.float_baseline = R.FloatBaseline()
        self._lock = threading.Lock()  # ingest holds the store's write lock; checks may run beside it

    @classmethod
    def from_workspace(cls, workspace: Any) -> AlertEngine:
        rules, path = load_rules(workspace)
        return cls(rules, path)

    @property
    def cooldown_us(self) -> int:
        return int(self.rules.cooldown_seconds * 1_000_000)

    # -- on ingest ----------------------------------------------------------------------------
    def evaluate(
        self, new_rows: pd.DataFrame, scored: dict[str, Any] | None, open_kinds: Any = None
    ) -> list[dict[str, Any]]:
        """Alert rows (one per cell and rule) for the readings one ingest stored. ``open_kinds(keys)``
        -> {cell_key: set of open kinds}, used to suppress anomalies a physical rule explains."""
        if new_rows.empty:
            return []
        rules = self.rules
        with self._lock:
            batch = R.Batch(new_rows)
            physical = (
                R.cell_voltage_hits(batch, rules, self.streaks)
                + R.sg_spread_hits(batch, rules, self.streaks)
                + R.cell_temperature_hits(batch, rules, self.streaks)
                + R.sensor_dropout_hits(batch, rules, self.streaks)
            )
            string_level = self.float_baseline.check(batch, rules)
        anomalies = R.anomaly_hits(batch, scored, rules)
        if anomalies and rules.anomaly.suppress_when_explained:
            explained = {h["cell_key"] for h in physical}
            if open_kinds is not None:
                candidates = sorted({h["cell_key"] for h in anomalies} - explained)
                if candidates:
                    for key, kinds in open_kinds(candidates).items():
                        if set(kinds) & set(R.PHYSICAL_KINDS):
                            explained.add(int(key))
            anomalies = [h for h in anomalies if h["cell_key"] not in explained]
        return R.collapse(physical + string_level + anomalies)

    # -- on stored risk -------------------------------------------------------------------------
    def evaluate_risk(self, results: list[dict[str, Any]], keys: dict[str, int], as_of_us: int) -> list[dict[str, Any]]:
        """Alert rows for failure-risk results (``/v1/failure`` shape): the model's alarm (or a
        probability threshold) and a short remaining life."""
        rule = self.rules.failure_risk
        if not rule.enabled:
            return []
        out = []
        for r in results:  # one per cell
            key = keys.get(r["CellID"])
            prob = r.get("FailureProbability")
            if key is None or prob is None:
                continue
            alarm = bool(r.get("alarm")) if rule.probability is None else prob >= rule.probability
            reasons = "; ".join(r.get("reasons") or [])
            if alarm:
                critical = prob >= rule.critical_probability or r.get("RiskBand") == "dead"
                out.append(
                    {
                        "cell_key": key,
                        "device_id": str(r["DeviceID"]),
                        "kind": "failure_risk",
                        "severity": "critical" if critical else "warning",
                        "message": (
                            f"{r['CellID']}: failure probability {prob:.2f} within the model's horizon "
                            f"(band {r.get('RiskBand')}){': ' + reasons if reasons else ''}"
                        ),
                        "action": r.get("extra", {}).get("RecommendedAction")
                        or "re-test: ohmic measurement and a capacity test of the cell (IEEE 1188); plan replacement",
                        "details": _json({"probability": prob, "band": r.get("RiskBand")}),
                        "first_us": as_of_us,
                        "last_us": as_of_us,
                        "prediction_id": r.get("prediction_id"),
                        "count": 1,
                    }
                )
            life = (r.get("extra") or {}).get("RemainingLifeDays")
            if life is not None and life <= rule.remaining_life_days:
                out.append(
                    {
                        "cell_key": key,
                        "device_id": str(r["DeviceID"]),
                        "kind": "remaining_life",
                        "severity": "critical" if life <= rule.remaining_life_critical_days else "warning",
                        "message": f"{r['CellID']}: expected remaining life {life:.0f} days (limit {rule.remaining_life_days:g})",
                        "action": "plan the cell's replacement before its expected end of life (IEEE 1188: 80 % capacity)",
                        "details": _json({"remaining_life_days": life}),
                        "first_us": as_of_us,
                        "last_us": as_of_us,
                        "prediction_id": r.get("prediction_id"),
                        "count": 1,
                    }
                )
        return out

    # -- periodic: drift and model degradation ------------------------------------------------------
    def evaluate_models(self, drift: dict[str, Any], feedback: dict[str, Any], now_us: int) -> list[dict[str, Any]]:
        out = []
        rule = self.rules.drift
        if rule.enabled:
            for key, report in (drift.get("models") or {}).items():
                flagged = list(report.get("flagged") or [])
                if len(flagged) >= rule.min_flagged_features:
                    out.append(
                        {
                            "cell_key": None,
                            "device_id": FLEET,
                            "kind": f"drift:{key}",
                            "severity": rule.severity,
                            "message": (
                                f"model {key} ({report.get('version')}): recent inputs drifted from its training data "
                                f"in {len(flagged)} feature(s): {', '.join(flagged[:8])}"
                            ),
                            "action": "compare recent data with the training period (GET /v1/monitoring/drift); "
                            "retrain on recent data if the shift is real (uv run agent-driver/run_full_pipeline.py)",
                            "details": _json({"flagged": flagged, "window": report.get("window")}),
                            "first_us": now_us,
                            "last_us": now_us,
                            "prediction_id": None,
                            "count": 1,
                        }
                    )
        rule_d = self.rules.model_degradation
        if rule_d.enabled:
            for key, served in (feedback.get("served") or {}).items():
                if served.get("getting_worse"):
                    out.append(
                        {
                            "cell_key": None,
                            "device_id": FLEET,
                            "kind": f"model_degradation:{key}",
                            "severity": rule_d.severity,
                            "message": f"model {key} ({served.get('version')}): {served.get('reason')}",
                            "action": "review recent feedback (GET /v1/feedback); retrain and let the registry "
                            "promote a better version, or pin the previous one (BMS_PIN_<NAME>)",
                            "details": _json({"live": served.get("live"), "holdout_f1": served.get("holdout_f1")}),
                            "first_us": now_us,
                            "last_us": now_us,
                            "prediction_id": None,
                            "count": 1,
                        }
                    )
        return out


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=float)
