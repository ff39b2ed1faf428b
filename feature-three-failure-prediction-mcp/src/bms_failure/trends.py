"""Rules and trends an engineer acts on, computed from the same feature rows as the model.

- **IEEE 450 / IEEE 1188 rules** (:func:`rule_scores`): a continuous severity per rule, > 0 exactly
  when the rule fires, so each can be ranked (ROC-AUC) against the model at every horizon:
  ``ieee450_float_voltage`` (float voltage below 2.13 V), ``ieee450_sg`` (SG more than 0.025 below the
  string mean, flooded cells only), ``ieee1188_ohmic`` (ohmic value 50 % above the cell's own baseline).
- **Trend to threshold** (:func:`trend_to_threshold`): with no labels and no trained model, the days
  until each cell's own trend crosses a threshold, from the weeks-long slopes of the feature grid:
  ohmic rise over the cell's baseline (IEEE 1188 acts at 20-50 %), float voltage or SG drifting below
  its peers (IEEE 450), temperature rising over its peers (VRLA dry-out / thermal-runaway precursor).
- **Recommended action** (:func:`recommended_action`) in IEEE 450/1188 wording.

The thresholds are the ones the standards name where they name one (2.13 V float, 20-50 % ohmic
rise); the peer-divergence limits (0.05 V, 0.025 SG, 3 degC) are common practice and marked as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: IEEE 450: a flooded cell floating below this voltage needs corrective action (equalize).
FLOAT_VOLTAGE_MIN = 2.13
#: SG more than this below the string mean (IEEE 450 style corrective-action limit).
SG_BELOW_MEAN = 0.025
#: IEEE 1188: ohmic value rise over the cell's baseline that calls for a re-test / replacement.
OHMIC_RETEST = 0.20
OHMIC_REPLACE = 0.50
#: Practice: float voltage this far below its own baseline offset to the peers.
VOLTAGE_DRIFT = -0.05
#: Practice: SG this far below its own baseline offset to the peers.
SG_DRIFT = -0.025
#: Practice (IEEE 1188 style): a cell this much warmer than its peers, over its own baseline.
TEMP_DRIFT = 3.0

RULES: dict[str, str] = {
    "ieee450_float_voltage": f"IEEE 450: float voltage below {FLOAT_VOLTAGE_MIN} V",
    "ieee450_sg": f"IEEE 450: specific gravity more than {SG_BELOW_MEAN} below the string mean",
    "ieee1188_ohmic": f"IEEE 1188: ohmic value {OHMIC_REPLACE:.0%} above the cell's baseline",
}


def _col(table: pd.DataFrame, name: str) -> np.ndarray:
    if name not in table.columns:
        return np.full(len(table), np.nan)
    return table[name].to_numpy(dtype=np.float64)


def rule_scores(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Severity of each IEEE rule per row (> 0 when it fires; very low where its input is missing)."""
    with np.errstate(invalid="ignore"):
        scores = {
            "ieee450_float_voltage": (FLOAT_VOLTAGE_MIN - _col(table, "rule_float_voltage")) / 0.05,
            "ieee450_sg": (_col(table, "rule_sg_below_string_mean") - SG_BELOW_MEAN) / SG_BELOW_MEAN,
            "ieee1188_ohmic": (_col(table, "rule_ohmic_rise") - OHMIC_REPLACE) / OHMIC_REPLACE,
        }
    return {k: np.where(np.isnan(v), -1e6, v) for k, v in scores.items()}


@dataclass(frozen=True)
class Indicator:
    name: str
    value: str  # feature column: the cell's current drift
    slope: str  # feature column: its trend per day
    threshold: float
    text: str  # what crossing it means, in the standards' words


INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "ohmic_rise",
        "ohmic_rise",
        "ohmic_rise_slope",
        OHMIC_REPLACE,
        f"ohmic value {OHMIC_REPLACE:.0%} above the cell's baseline (IEEE 1188)",
    ),
    Indicator(
        "float_voltage",
        "voltage_float_mean_short",
        "voltage_float_slope_trend",
        FLOAT_VOLTAGE_MIN,
        f"float voltage below {FLOAT_VOLTAGE_MIN} V (IEEE 450)",
    ),
    Indicator(
        "voltage_vs_peers",
        "voltage_dev_vs_initial_long",
        "voltage_dev_slope_trend",
        VOLTAGE_DRIFT,
        f"float voltage {abs(VOLTAGE_DRIFT):g} V below its usual offset to the peers (IEEE 450 practice)",
    ),
    Indicator(
        "sg_vs_peers",
        "sg_dev_vs_initial_long",
        "sg_dev_slope_trend",
        SG_DRIFT,
        f"specific gravity {abs(SG_DRIFT):g} below its usual offset to the peers (IEEE 450 practice)",
    ),
    Indicator(
        "temperature_vs_peers",
        "temp_dev_vs_initial_long",
        "temp_dev_slope_trend",
        TEMP_DRIFT,
        f"cell {TEMP_DRIFT:g} degC warmer than its usual offset to the peers (IEEE 1188 practice)",
    ),
)
#: A trend is only extrapolated once the cell has moved this share of the way to the threshold
#: (from its baseline, or from a healthy float voltage of 2.20 V): noise alone does not fire it.
MIN_PROGRESS = 0.25
HEALTHY_FLOAT_V = 2.20
#: Longest extrapolation reported (days); beyond it the trend says "not within the horizon".
MAX_DAYS = 365.0


def _progress(ind: Indicator, value: np.ndarray) -> np.ndarray:
    """How far the cell has gone from healthy towards the threshold (0 healthy, 1 at the threshold)."""
    if ind.name == "float_voltage":
        return (HEALTHY_FLOAT_V - value) / (HEALTHY_FLOAT_V - ind.threshold)
    return value / ind.threshold


def trend_to_threshold(table: pd.DataFrame) -> pd.DataFrame:
    """Per row: days until the first indicator crosses its threshold on its current trend.

    Columns: ``TrendDaysToThreshold`` (0 when already crossed, NaN when no trend heads for a
    threshold within :data:`MAX_DAYS`), ``TrendRule`` (the indicator that fires first, with its value
    and slope), ``TrendProgress`` (the largest progress towards any threshold, 0-1+).
    """
    n = len(table)
    days = np.full((n, len(INDICATORS)), np.inf)
    progress = np.zeros((n, len(INDICATORS)))
    for j, ind in enumerate(INDICATORS):  # five indicators, vectorised over cells
        value, slope = _col(table, ind.value), _col(table, ind.slope)
        prog = _progress(ind, value)
        with np.errstate(invalid="ignore", divide="ignore"):
            towards = (ind.threshold - value) / slope  # > 0 when the trend heads for the threshold
            crossed = prog >= 1.0
            moving = (prog >= MIN_PROGRESS) & (towards > 0)
        d = np.where(crossed, 0.0, np.where(moving, towards, np.inf))
        days[:, j] = np.where(np.isnan(d), np.inf, d)
        progress[:, j] = np.nan_to_num(prog, nan=0.0)
    first = np.argmin(days, axis=1)
    best = days[np.arange(n), first]
    names = np.asarray([ind.text for ind in INDICATORS], dtype=object)
    rule = np.where(best <= MAX_DAYS, names[first], "").astype(object)
    return pd.DataFrame(
        {
            "TrendDaysToThreshold": np.where(best <= MAX_DAYS, best, np.nan),
            "TrendRule": rule,
            "TrendIndicator": np.where(
                best <= MAX_DAYS, np.asarray([i.name for i in INDICATORS], dtype=object)[first], ""
            ),
            "TrendProgress": progress.max(axis=1),
        },
        index=table.index,
    )


def trend_score(table: pd.DataFrame) -> np.ndarray:
    """A ranking score of the trend estimate (higher = sooner): crossed first, then by days left,
    then by progress towards a threshold (for ROC-AUC against the model)."""
    trend = trend_to_threshold(table)
    days = trend["TrendDaysToThreshold"].to_numpy()
    return np.where(np.isnan(days), trend["TrendProgress"].to_numpy() - 2.0, 1.0 / (1.0 + np.nan_to_num(days)))


def indicator_health(table: pd.DataFrame) -> np.ndarray:
    """State of health (%) from the indicators: 100 % healthy, 80 % (the IEEE 1188 end-of-life
    capacity) when the worst indicator reaches its threshold; floor 50 %."""
    progress = trend_to_threshold(table)["TrendProgress"].to_numpy()
    return np.clip(100.0 - 20.0 * np.clip(progress, 0.0, None), 50.0, 100.0)


def recommended_action(trigger: np.ndarray, p_week: np.ndarray, ohmic: np.ndarray) -> np.ndarray:
    """IEEE 450/1188 wording per alarmed cell: replace, equalize or re-test."""
    replace = "replace the cell (IEEE 1188: ohmic value or capacity beyond its limit / failure expected within days)"
    equalize = "equalize charge, then re-test float voltage and specific gravity (IEEE 450 corrective action)"
    retest = (
        "re-test: ohmic measurement and a capacity test of the cell (IEEE 1188), check float current and temperature"
    )
    with np.errstate(invalid="ignore"):
        urgent = (p_week >= 0.5) | (ohmic >= OHMIC_REPLACE)
    trig = np.asarray(trigger, dtype=object).astype(str)
    low_v = np.char.find(trig.astype(str), "voltage") >= 0
    low_sg = np.char.find(trig.astype(str), "specific gravity") >= 0
    out = np.where(urgent, replace, np.where(low_v | low_sg, equalize, retest))
    return out.astype(object)
