"""Alert rules and channels: defaults, the rules file (TOML or JSON) and the environment.

The rules file is ``$BMS_ALERT_RULES`` or, when that is unset, ``$BMS_WORKSPACE/alert_rules.toml``
/ ``alert_rules.json`` if one exists. It holds one table per rule (any subset of its fields) and a
``channels`` table; the environment wins over the file for channels::

    cooldown_seconds = 600

    [cell_temperature]
    hot_c = 38.0

    [float_current]
    enabled = false

    [channels]
    webhook_url = "https://example.org/bms-hook"
    min_severity = "warning"

Defaults reuse the project's IEEE 450/1188 constants (``bms_schema.state`` float windows and
temperature compensation, ``bms_failure.trends`` float-voltage and SG limits) rather than copies.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from bms_schema.errors import InputError

SEVERITIES = ("info", "warning", "critical")


def severity_rank(name: str) -> int:
    return SEVERITIES.index(name) if name in SEVERITIES else 1


def _trends() -> Any:
    from bms_failure import trends

    return trends


@dataclass(frozen=True)
class AnomalyRule:
    """The anomaly model flagged a reading (``AnomalyFlag = 1``)."""

    enabled: bool = True
    #: kinds another rule covers (sensor faults: ``sensor_dropout``) or that are no verdict
    exclude_kinds: tuple[str, ...] = ("sensor_fault", "out_of_range", "unknown", "normal")
    critical_kinds: tuple[str, ...] = ("dead",)
    #: no anomaly alert for a cell that a physical rule (voltage, SG, temperature, dropout) is
    #: already alerting on: one cause, one alert
    suppress_when_explained: bool = True


@dataclass(frozen=True)
class CellVoltageRule:
    """IEEE 450 (flooded) / IEEE 1188 (VRLA) float band, on strings that are floating."""

    enabled: bool = True
    flooded_band_v: tuple[float, float] = (2.17, 2.25)
    vrla_band_v: tuple[float, float] = (2.25, 2.30)
    #: fires outside the band by more than this (meter and compensation tolerance)
    tolerance_v: float = 0.03
    #: critical below this (IEEE 450 corrective action, ``bms_failure.trends.FLOAT_VOLTAGE_MIN``)
    critical_low_v: float = field(default_factory=lambda: float(_trends().FLOAT_VOLTAGE_MIN))
    critical_high_margin_v: float = 0.10
    #: shift the band by ``bms_schema.state.TEMP_COMP_V_PER_DEGC`` per degC of string temperature above 25
    temperature_compensation: bool = True
    min_consecutive: int = 2


@dataclass(frozen=True)
class SgSpreadRule:
    """Flooded cells: specific gravity below the string's mean (IEEE 450 corrective-action limit)."""

    enabled: bool = True
    below_mean: float = field(default_factory=lambda: float(_trends().SG_BELOW_MEAN))
    critical_below_mean: float = 0.050
    min_cells: int = 3
    min_consecutive: int = 2


@dataclass(frozen=True)
class CellTemperatureRule:
    """Temperature over ambient (IEEE 1188 practice) and a hot cell's absolute temperature."""

    enabled: bool = True
    over_ambient_c: float = 5.0
    over_ambient_critical_c: float = 10.0
    hot_c: float = 40.0
    hot_critical_c: float = 50.0
    min_consecutive: int = 1


@dataclass(frozen=True)
class FloatCurrentRule:
    """VRLA: float current rising over the string's own float baseline (dry-out, thermal runaway)."""

    enabled: bool = True
    chemistries: tuple[str, ...] = ("vrla",)
    rise_factor: float = 2.0
    min_rise_a: float = 0.5
    baseline_packets: int = 8
    window_packets: int = 96


@dataclass(frozen=True)
class SensorDropoutRule:
    """A cell's voltage or temperature missing (0xFFFF sentinel, impossible value, not sent) this many readings in a row."""

    enabled: bool = True
    min_consecutive: int = 6


@dataclass(frozen=True)
class FailureRiskRule:
    """From stored failure-risk predictions (``POST /v1/risk/refresh``)."""

    enabled: bool = True
    #: ``None``: the model's own alarm (its threshold or band high/dead)
    probability: float | None = None
    critical_probability: float = 0.9
    remaining_life_days: float = 30.0
    remaining_life_critical_days: float = 7.0


@dataclass(frozen=True)
class DriftRule:
    enabled: bool = True
    min_flagged_features: int = 1
    severity: str = "info"


@dataclass(frozen=True)
class ModelDegradationRule:
    """The served version's live F1 (feedback) fell clearly below its held-out F1 (``bms_live.feedback``)."""

    enabled: bool = True
    severity: str = "warning"


@dataclass(frozen=True)
class Channels:
    webhook_url: str | None = None
    slack_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "bms-flux@localhost"
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    #: alerts below this severity are not delivered (they are still stored and streamed)
    min_severity: str = "warning"
    retries: int = 5
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    timeout_seconds: float = 10.0

    def configured(self) -> list[tuple[str, str]]:
        """(channel, target) of every configured channel."""
        out = []
        if self.webhook_url:
            out.append(("webhook", self.webhook_url))
        if self.slack_url:
            out.append(("slack", self.slack_url))
        if self.smtp_host and self.smtp_to:
            out.append(("email", ",".join(self.smtp_to)))
        return out

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        if out["smtp_password"]:
            out["smtp_password"] = "***"
        return out


@dataclass(frozen=True)
class AlertRules:
    anomaly: AnomalyRule = field(default_factory=AnomalyRule)
    cell_voltage: CellVoltageRule = field(default_factory=CellVoltageRule)
    sg_spread: SgSpreadRule = field(default_factory=SgSpreadRule)
    cell_temperature: CellTemperatureRule = field(default_factory=CellTemperatureRule)
    float_current: FloatCurrentRule = field(default_factory=FloatCurrentRule)
    sensor_dropout: SensorDropoutRule = field(default_factory=SensorDropoutRule)
    failure_risk: FailureRiskRule = field(default_factory=FailureRiskRule)
    drift: DriftRule = field(default_factory=DriftRule)
    model_degradation: ModelDegradationRule = field(default_factory=ModelDegradationRule)
    channels: Channels = field(default_factory=Channels)
    #: after an alert is resolved, the same (cell, rule) opens no new alert for this long (wall clock)
    cooldown_seconds: float = 900.0
    #: how often drift and model degradation are checked (0 = only on POST /v1/alerts/check)
    check_seconds: float = 60.0

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = self.channels.public()
        return out


def _coerce(current: Any, value: Any, where: str) -> Any:
    if isinstance(current, bool) or (current is None and isinstance(value, bool)):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {value!r} must be true or false")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, list | tuple):
            raise InputError(f"{where}: {value!r} must be a list")
        if where.endswith("_v"):  # a band: [low, high] in volts
            if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                raise InputError(f"{where}: {value!r} must be [low, high] in volts")
            if not value[0] < value[1]:
                raise InputError(f"{where}: {value!r}: low must be below high")
            return (float(value[0]), float(value[1]))
        if not all(isinstance(v, str) for v in value):
            raise InputError(f"{where}: {value!r} must be a list of text")
        return tuple(value)
    if isinstance(current, float) or (current is None and isinstance(value, int | float)):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InputError(f"{where}: {value!r} must be a number")
        return float(value)
    if isinstance(current, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{where}: {value!r} must be a whole number")
        return value
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: {value!r} must be text")
    return value


def apply_overrides(base: Any, overrides: dict[str, Any], where: str = "rules") -> Any:
    """``base`` (a dataclass) with ``overrides`` applied; unknown names and wrong types are errors."""
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: expected a table of settings, got {type(overrides).__name__}")
    names = {f.name: f for f in fields(base)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise InputError(f"{where}.{key}: unknown setting; known: {', '.join(sorted(names))}")
        current = getattr(base, key)
        if is_dataclass(current):
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(current, value, f"{where}.{key}")
        if key in ("severity", "min_severity") and changes[key] not in SEVERITIES:
            raise InputError(f"{where}.{key}: {changes[key]!r} is not one of {', '.join(SEVERITIES)}")
    return replace(base, **changes)


def rules_path(workspace: Path | None) -> Path | None:
    explicit = os.environ.get("BMS_ALERT_RULES")
    if explicit:
        return Path(explicit).expanduser()
    if workspace is None:
        return None
    for name in ("alert_rules.toml", "alert_rules.json"):
        if (workspace / name).exists():
            return workspace / name
    return workspace / "alert_rules.json"


def read_rules_file(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        data = json.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a table of rules at the top level")
    return data


def _env_channels(base: Channels) -> Channels:
    env = os.environ
    changes: dict[str, Any] = {}
    for name, key in (
        ("BMS_ALERT_WEBHOOK_URL", "webhook_url"),
        ("BMS_ALERT_SLACK_URL", "slack_url"),
        ("BMS_SMTP_HOST", "smtp_host"),
        ("BMS_SMTP_FROM", "smtp_from"),
        ("BMS_SMTP_USER", "smtp_user"),
        ("BMS_SMTP_PASSWORD", "smtp_password"),
        ("BMS_ALERT_MIN_SEVERITY", "min_severity"),
    ):
        if env.get(name):
            changes[key] = env[name]
    if env.get("BMS_SMTP_TO"):
        changes["smtp_to"] = tuple(a.strip() for a in env["BMS_SMTP_TO"].split(",") if a.strip())
    for name, key, kind in (
        ("BMS_SMTP_PORT", "smtp_port", int),
        ("BMS_ALERT_RETRIES", "retries", int),
        ("BMS_ALERT_BACKOFF_SECONDS", "backoff_seconds", float),
        ("BMS_ALERT_TIMEOUT_SECONDS", "timeout_seconds", float),
    ):
        if env.get(name):
            try:
                changes[key] = kind(env[name])
            except ValueError as exc:
                raise InputError(f"{name}={env[name]!r} is not a number") from exc
    for name, key in (("BMS_SMTP_STARTTLS", "smtp_starttls"), ("BMS_SMTP_SSL", "smtp_ssl")):
        if env.get(name):
            changes[key] = env[name].strip().lower() in ("1", "true", "yes", "on")
    if changes.get("min_severity", base.min_severity) not in SEVERITIES:
        raise InputError(f"BMS_ALERT_MIN_SEVERITY={changes['min_severity']!r} is not one of {', '.join(SEVERITIES)}")
    return replace(base, **changes)


def load_rules(workspace: Path | None, overrides: dict[str, Any] | None = None) -> tuple[AlertRules, Path | None]:
    """Defaults, then the rules file, then ``overrides``; channels from the environment win."""
    path = rules_path(workspace)
    rules = apply_overrides(AlertRules(), read_rules_file(path), str(path) if path else "rules")
    if overrides:
        rules = apply_overrides(rules, overrides)
    return replace(rules, channels=_env_channels(rules.channels)), path
