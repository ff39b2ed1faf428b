"""Probability calibration of XGBoost margins, stored as plain JSON (no pickle).

``platt``: logistic regression on the margin (strictly monotone: keeps the model's ranking);
``isotonic``: centred isotonic regression of the margin (used when the held-out fold has at
least :data:`MIN_ISOTONIC_CLASS` of both classes); ``prior_shift``: the
raw probability corrected for ``scale_pos_weight`` (when the held-out fold has only one
class and nothing can be fitted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bms_schema import ModelError

#: Isotonic needs at least this many samples of each class in the held-out fold; below it the step
#: function is too coarse (many cells tie at 0.0) and Platt's smooth, strictly monotone map is used.
MIN_ISOTONIC_CLASS = 200


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def centred_steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots of centred isotonic regression: one knot at the middle of each constant step.

    Interpolating linearly between them keeps the calibration of the step function but is
    strictly increasing between the first and last knot, so cells do not tie on a step and the
    risk ranking of the booster is kept.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    block = np.concatenate(([0], np.cumsum(np.diff(y) > 0)))
    first = np.concatenate(([0], np.flatnonzero(np.diff(block)) + 1))
    last = np.concatenate((first[1:] - 1, [len(x) - 1]))
    return (x[first] + x[last]) / 2.0, y[first]


@dataclass
class Calibrator:
    method: str = "prior_shift"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, margin: np.ndarray, label: np.ndarray, scale_pos_weight: float = 1.0,
            method: str = "auto") -> "Calibrator":
        """Fit on held-out margins (``output_margin=True``) and 0/1 labels."""
        margin = np.asarray(margin, dtype=np.float64)
        label = np.asarray(label, dtype=np.int64)
        positives, negatives = int(label.sum()), int(len(label) - label.sum())
        if positives == 0 or negatives == 0:
            return cls("prior_shift", {"log_weight": float(np.log(max(scale_pos_weight, 1e-12)))})
        if method == "auto":
            method = "isotonic" if min(positives, negatives) >= MIN_ISOTONIC_CLASS else "platt"
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            reg = LogisticRegression(C=1e4, max_iter=1000)
            reg.fit(margin.reshape(-1, 1), label)
            return cls("platt", {"a": float(reg.coef_[0, 0]), "b": float(reg.intercept_[0])})
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(margin, label)
            x, y = centred_steps(iso.X_thresholds_, iso.y_thresholds_)
            return cls("isotonic", {"x": x.tolist(), "y": y.tolist()})
        raise ModelError(f"unknown calibration method '{method}': use auto, platt or isotonic")

    def transform(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "platt":
            return _sigmoid(self.params["a"] * margin + self.params["b"])
        if self.method == "isotonic":
            x, y = np.asarray(self.params["x"]), np.asarray(self.params["y"])
            return np.interp(margin, x, y)
        if self.method == "prior_shift":
            return _sigmoid(margin - self.params.get("log_weight", 0.0))
        raise ModelError(f"calibration method '{self.method}' is unknown: the model file is from another version")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "Calibrator":
        try:
            return cls(method=str(payload["method"]), params=dict(payload["params"]))
        except (KeyError, TypeError) as exc:
            raise ModelError(f"calibration file is not valid: {exc}") from exc
