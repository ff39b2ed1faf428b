"""Settings and names shared by the failure-prediction modules (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MODEL_NAME = "failure_classifier"
MODEL_FILE = "model.ubj"
#: The survival curve's hazard intervals and calibration as JSON.
DISTRIBUTION_FILE = "survival.json"
#: Horizons every prediction reports (days) besides the requested one.
REPORT_HORIZONS: tuple[float, ...] = (7.0, 14.0, 30.0)
#: Alarms look this far ahead ...
ALARM_HORIZON_DAYS = 30.0
#: ... and at most this share of the cells that survive are alarmed in a month (the budget the alarm
#: threshold is chosen for on held-out cells; the operator's limit is 10 %).
ALARM_BUDGET = 0.06
#: An alarm needs the probability above the threshold for this long (the lowest value over the window
#: counts): a one-day blip of a noisy feature does not page anyone.
ALARM_SUSTAIN_HOURS = 48.0
DEAD_STATE_FILE = "dead_state.ubj"
REFERENCE_FILE = "reference_features.parquet"
#: Training samples kept with a registered model as the drift-monitoring reference.
REFERENCE_ROWS = 2000
LOGGER = "bms.failure"


@dataclass(frozen=True)
class FeatureConfig:
    """How readings become per-cell trailing-window features.

    Readings are averaged into ``step_hours`` buckets per cell; features at a bucket use
    only readings up to the end of that bucket (trailing windows, never the future).
    """

    step_hours: float = 1.0
    short_window_hours: float = 24.0
    long_window_hours: float = 168.0
    #: Weeks-long trends (slopes, ohmic rise) use this trailing window ...
    trend_window_hours: float = 336.0
    #: Slow trends (a month) use this trailing window ...
    month_window_hours: float = 720.0
    #: ... and compare with the cell's own baseline: the mean over its first ``baseline_hours``.
    baseline_hours: float = 336.0
    #: Training samples are taken every ``sample_every_hours`` (aligned across cells).
    sample_every_hours: float = 6.0
    #: A cell needs this much history before it is scored.
    min_history_hours: float = 24.0
    #: Current below ``-discharge_current_a`` is a discharge; anything else counts as float/charge.
    discharge_current_a: float = 1.0
    #: Without ``IsDead``, a cell whose recent mean voltage is below this is reported dead.
    dead_voltage: float = 1.5
    #: Refuse grids larger than this many (cell, bucket) rows: use a coarser step instead.
    max_grid_rows: int = 60_000_000

    def __post_init__(self) -> None:
        from bms_schema import InputError

        if self.step_hours <= 0:
            raise InputError(f"step_hours must be positive, got {self.step_hours}")
        for name in (
            "short_window_hours",
            "long_window_hours",
            "sample_every_hours",
            "trend_window_hours",
            "month_window_hours",
            "baseline_hours",
        ):
            if getattr(self, name) < self.step_hours:
                raise InputError(f"{name} ({getattr(self, name)}) must be at least step_hours ({self.step_hours})")
        if self.long_window_hours < self.short_window_hours:
            raise InputError("long_window_hours must be at least short_window_hours")
        if self.min_history_hours < 0:
            raise InputError(f"min_history_hours must be >= 0, got {self.min_history_hours}")

    def buckets(self, hours: float) -> int:
        return max(1, int(round(hours / self.step_hours)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


#: Model inputs, in order. Units in READABLE.
FEATURES: tuple[str, ...] = (
    "voltage_mean_short",
    "voltage_float_mean_short",
    "voltage_std_short",
    "voltage_trend_long",
    "voltage_dev_string_short",
    "voltage_dev_string_long",
    "voltage_dev_trend_long",
    "voltage_min_dev_string_short",
    "sg_mean_short",
    "sg_std_short",
    "sg_trend_long",
    "sg_dev_string_short",
    "sg_dev_string_long",
    "sg_dev_trend_long",
    "temp_over_ambient_short",
    "temp_over_ambient_long",
    "temp_dev_string_short",
    "temp_dev_trend_long",
    "voltage_dev_vs_baseline_short",
    "sg_dev_vs_baseline_short",
    "temp_dev_vs_baseline_short",
    "resistance_proxy_long",
    "missing_rate_short",
    "anomaly_rate_short",
    "anomaly_rate_long",
    "data_age_hours",
    "voltage_dev_slope_trend",
    "sg_dev_slope_trend",
    "temp_dev_slope_trend",
    "voltage_dev_vs_initial_long",
    "sg_dev_vs_initial_long",
    "temp_dev_vs_initial_long",
    "voltage_float_slope_trend",
    "ohmic_rise",
    "trend_log_days_to_threshold",
    "trend_progress",
    "voltage_dev_slope_month",
    "sg_dev_slope_month",
    "temp_dev_slope_month",
    "ohmic_rise_slope",
    "ohmic_rise_slope_month",
    "ohmic_rise_month",
)

#: Readable name and unit of every feature (used for TopReasons and plots).
READABLE: dict[str, tuple[str, str]] = {
    "voltage_mean_short": ("cell voltage, {short} mean", "V"),
    "voltage_float_mean_short": ("float voltage, {short} mean", "V"),
    "voltage_std_short": ("voltage variability, {short} std", "V"),
    "voltage_trend_long": ("voltage trend over {long}", "V/day"),
    "voltage_dev_string_short": ("voltage vs string peers, {short}", "V"),
    "voltage_dev_string_long": ("voltage vs string peers, {long}", "V"),
    "voltage_dev_trend_long": ("drift of voltage vs string peers, {long}", "V/day"),
    "voltage_min_dev_string_short": ("lowest {step} voltage vs string peers, {short}", "V"),
    "sg_mean_short": ("specific gravity, {short} mean", ""),
    "sg_std_short": ("specific gravity variability, {short} std", ""),
    "sg_trend_long": ("specific gravity trend over {long}", "/day"),
    "sg_dev_string_short": ("specific gravity vs string peers, {short}", ""),
    "sg_dev_string_long": ("specific gravity vs string peers, {long}", ""),
    "sg_dev_trend_long": ("drift of specific gravity vs string peers, {long}", "/day"),
    "temp_over_ambient_short": ("temperature over ambient, {short}", "degC"),
    "temp_over_ambient_long": ("temperature over ambient, {long}", "degC"),
    "temp_dev_string_short": ("temperature vs string peers, {short}", "degC"),
    "temp_dev_trend_long": ("drift of temperature vs string peers, {long}", "degC/day"),
    "voltage_dev_vs_baseline_short": ("voltage vs peers, {short}, relative to the cell's usual offset", "V"),
    "sg_dev_vs_baseline_short": ("specific gravity vs peers, {short}, relative to the cell's usual offset", ""),
    "temp_dev_vs_baseline_short": ("temperature vs peers, {short}, relative to the cell's usual offset", "degC"),
    "resistance_proxy_long": ("resistance proxy under discharge, {long}", "ohm"),
    "missing_rate_short": ("share of missing/faulty readings, {short}", ""),
    "anomaly_rate_short": ("share of anomalous readings, {short}", ""),
    "anomaly_rate_long": ("share of anomalous readings, {long}", ""),
    "data_age_hours": ("hours since the last valid reading", "h"),
    "voltage_dev_slope_trend": ("drift of voltage vs string peers, {trend}", "V/day"),
    "sg_dev_slope_trend": ("drift of specific gravity vs string peers, {trend}", "/day"),
    "temp_dev_slope_trend": ("drift of temperature vs string peers, {trend}", "degC/day"),
    "voltage_dev_vs_initial_long": ("voltage vs peers, {long}, relative to the cell's first {baseline}", "V"),
    "sg_dev_vs_initial_long": ("specific gravity vs peers, {long}, relative to the cell's first {baseline}", ""),
    "temp_dev_vs_initial_long": ("temperature vs peers, {long}, relative to the cell's first {baseline}", "degC"),
    "voltage_float_slope_trend": ("float voltage trend over {trend}", "V/day"),
    "ohmic_rise": ("ohmic resistance rise over the cell's baseline, {trend}", ""),
    "trend_log_days_to_threshold": ("log(1 + days until a trend crosses an IEEE threshold)", ""),
    "trend_progress": ("progress towards the nearest IEEE threshold (1 = reached)", ""),
    "voltage_dev_slope_month": ("drift of voltage vs string peers, {month}", "V/day"),
    "sg_dev_slope_month": ("drift of specific gravity vs string peers, {month}", "/day"),
    "temp_dev_slope_month": ("drift of temperature vs string peers, {month}", "degC/day"),
    "ohmic_rise_slope": ("trend of the ohmic rise over the baseline, {trend}", "/day"),
    "ohmic_rise_slope_month": ("trend of the ohmic rise over the baseline, {month}", "/day"),
    "ohmic_rise_month": ("ohmic resistance rise over the cell's baseline, {month}", ""),
}

RISK_BANDS = ("dead", "high", "medium", "low", "insufficient_history")


def _hours_text(hours: float) -> str:
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} h"


def readable(feature: str, config: FeatureConfig | None = None) -> str:
    """Readable name of a feature with the window lengths of ``config`` filled in."""
    config = config or FeatureConfig()
    template = READABLE.get(feature, (feature, ""))[0]
    return template.format(
        short=_hours_text(config.short_window_hours),
        long=_hours_text(config.long_window_hours),
        trend=_hours_text(config.trend_window_hours),
        month=_hours_text(config.month_window_hours),
        baseline=_hours_text(config.baseline_hours),
        step=_hours_text(config.step_hours) + " mean",
    )


def format_reason(
    feature: str, value: float, contribution: float, config: FeatureConfig | None = None, effect: str | None = None
) -> str:
    """``"specific gravity vs string peers, 7 days = -0.031 (+1.20)"`` (``effect`` replaces the bracket text)."""
    import math

    name, unit = readable(feature, config), READABLE.get(feature, (feature, ""))[1]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        shown = "n/a"
    else:
        magnitude = abs(value)
        shown = f"{value:.4g}" if magnitude >= 1e-3 or magnitude == 0 else f"{value:.2e}"
        if unit:
            shown = f"{shown} {unit}"
    return f"{name} = {shown} ({effect if effect is not None else f'{contribution:+.2f}'})"
