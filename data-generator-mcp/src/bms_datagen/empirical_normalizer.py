"""RDT transformers for the default GaussianCopula: empirical marginals and a fast category encoder.

:class:`EmpiricalNormalizer` maps a numerical column to normal scores through its empirical quantiles.

GaussianCopula with parametric marginals (beta, truncnorm) cannot follow battery readings:
cell voltage is bimodal (float vs discharge), current is a spike at the float current with long
discharge/recharge tails. Replacing the marginal by the empirical distribution (summarised by
at most ``knots`` quantiles, never the rows themselves) and letting the copula model only the
dependence is the textbook Gaussian copula. Mass points (many equal values) are kept: their
forward transform spreads uniformly over their probability band, the reverse maps that band
back onto the value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
from rdt.transformers.categorical import UniformEncoder
from rdt.transformers.numerical import FloatFormatter

EPSILON = 1e-6


class EmpiricalNormalizer(FloatFormatter):
    """``x -> Phi^-1(F_n(x))`` with ``F_n`` the piecewise-linear empirical CDF over quantile knots."""

    def __init__(
        self,
        knots: int = 1000,
        learn_rounding_scheme: bool = True,
        enforce_min_max_values: bool = True,
        missing_value_generation: str | None = "from_column",
        seed: int = 0,
    ):
        super().__init__(
            missing_value_replacement="mean",
            learn_rounding_scheme=learn_rounding_scheme,
            enforce_min_max_values=enforce_min_max_values,
            missing_value_generation=missing_value_generation,
        )
        self.knots = int(knots)
        self.seed = int(seed)
        self._values: np.ndarray | None = None  # unique knot values, increasing
        self._p_low: np.ndarray | None = None  # probability where each value's band starts
        self._p_high: np.ndarray | None = None  # ... and ends
        self._present_share = 1.0

    def _fit(self, data):  # noqa: ANN001 - RDT signature
        observed = np.asarray(data, dtype=float)
        observed = observed[~np.isnan(observed)]
        super()._fit(data)
        self._present_share = observed.size / max(len(data), 1)
        if observed.size == 0:
            observed = np.array([0.0])
        probs = np.linspace(0.0, 1.0, min(self.knots, max(observed.size, 2)))
        knots = np.quantile(observed, probs, method="inverted_cdf")
        values, first, counts = np.unique(knots, return_index=True, return_counts=True)
        self._values = values
        self._p_low = probs[first]
        self._p_high = probs[first + counts - 1]

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(knot values, band starts, band ends); raises when the transformer was not fitted."""
        if self._values is None or self._p_low is None or self._p_high is None:
            raise RuntimeError("EmpiricalCDFNormalizer: call fit() before transforming")
        return self._values, self._p_low, self._p_high

    def _to_uniform(self, x: np.ndarray) -> np.ndarray:
        values, low, high = self._fitted()
        x = np.clip(x, values[0], values[-1])
        i = np.clip(np.searchsorted(values, x, side="left"), 0, len(values) - 1)
        on_knot = values[i] == x
        rng = np.random.default_rng(self.seed)
        u_knot = low[i] + rng.uniform(size=len(x)) * (high[i] - low[i])
        j = np.maximum(i - 1, 0)
        span = np.where(values[i] > values[j], values[i] - values[j], 1.0)
        frac = np.where(i > 0, (x - values[j]) / span, 0.0)
        u_between = high[j] + frac * (low[i] - high[j])
        return np.where(on_knot, u_knot, u_between)

    def _from_uniform(self, u: np.ndarray) -> np.ndarray:
        values, low, high = self._fitted()
        xp = np.column_stack([low, high]).reshape(-1)
        fp = np.repeat(values, 2)
        return np.interp(u, xp, fp)

    def _transform(self, data):  # noqa: ANN001
        transformed = super()._transform(data)
        column = transformed[:, 0] if transformed.ndim > 1 else transformed
        z = scipy.stats.norm.ppf(np.clip(self._to_uniform(np.asarray(column, dtype=float)), EPSILON, 1 - EPSILON))
        if transformed.ndim > 1:
            transformed[:, 0] = z
            # the "is null" indicator gets normal scores too: present rows fill [0, p), missing [p, 1],
            # so the copula keeps the exact missing share and which columns go missing together
            rng = np.random.default_rng(self.seed + 1)
            p = self._present_share
            missing = transformed[:, 1] > 0.5
            u = np.where(missing, p + rng.uniform(size=len(z)) * (1 - p), rng.uniform(size=len(z)) * p)
            transformed[:, 1] = scipy.stats.norm.ppf(np.clip(u, EPSILON, 1 - EPSILON))
            return transformed
        return z

    def _reverse_transform(self, data):  # noqa: ANN001
        data = np.array(data, dtype=float, copy=True)
        if data.ndim > 1:
            data[:, 0] = self._from_uniform(scipy.stats.norm.cdf(data[:, 0]))
            data[:, 1] = (scipy.stats.norm.cdf(data[:, 1]) > self._present_share).astype(float)
        else:
            data = self._from_uniform(scipy.stats.norm.cdf(data))
        return super()._reverse_transform(data)


class FastUniformEncoder(UniformEncoder):
    """RDT's UniformEncoder with a vectorised transform (the original maps row by row in Python).

    Same encoding: each category owns an interval of [0, 1] sized by its frequency and a value is
    replaced by a uniform draw inside its category's interval (NumPy's global generator, which the
    synthesis code seeds). Unseen categories fall back to the original implementation.
    """

    def _transform(self, data):  # noqa: ANN001 - RDT signature
        from rdt.transformers.utils import fill_nan_with_none

        if self.missing_value_encoding is not None:
            data = fill_nan_with_none(data)
        keys = list(self.intervals)
        codes = pd.Index(keys, dtype=object).get_indexer(data.astype(object))
        missing_ok = self.missing_value_encoding is None
        unseen = codes < 0
        if missing_ok:
            unseen &= ~pd.isna(data).to_numpy()
        if unseen.any():
            return super()._transform(data)
        bounds = np.array([self.intervals[k] for k in keys], dtype=float).reshape(-1, 2)
        known = codes >= 0
        result = np.full(len(data), np.nan)
        low, high = bounds[codes[known], 0], bounds[codes[known], 1]
        result[known] = np.random.uniform(low, high)
        return pd.Series(result, index=data.index, name=data.name, dtype=float)
