"""Mann-Kendall trend test and Sen's slope interval, corrected for autocorrelation.

The variance of the Mann-Kendall statistic S is inflated by the factor n/n*
of Hamed and Rao (1998, Journal of Hydrology 204, 182-196), estimated from
the rank autocorrelations of the detrended series. ``soak.verdict`` builds
the leak verdict on these functions; docs/leak-verdict.md explains the method.

scipy has Theil-Sen (``scipy.stats.theilslopes``) but neither the Mann-Kendall
test nor a corrected Sen interval, so those are computed here from scipy's
ranks and normal distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

# Longer series are reduced to this many points by taking medians over
# consecutive bins, because Theil-Sen and Mann-Kendall compare every pair of
# points, and 2,000 points already make about 2 million pairs.
DEFAULT_MAX_POINTS = 2000

# Hamed and Rao keep only the rank autocorrelations outside the 95 % band of
# white noise, +-1.96 / sqrt(n), whatever alpha the trend test uses.
_AUTOCORRELATION_CONFIDENCE = 0.95


@dataclass(frozen=True)
class MannKendallResult:
    """Mann-Kendall statistic with and without the Hamed-Rao correction."""

    s: int
    # Var(S) for independent samples, corrected for ties in y.
    var_s: float
    # Hamed-Rao factor n/n*, at least 1. The corrected variance is var_s * variance_factor.
    variance_factor: float
    z: float
    p_value: float
    z_uncorrected: float
    p_value_uncorrected: float



def mann_kendall(y: Any, x: Any = None) -> MannKendallResult:
    """Run the Mann-Kendall trend test with the Hamed-Rao variance correction.

    ``x`` defaults to 0, 1, 2, ... and must be strictly increasing. The series
    is detrended with its Theil-Sen slope before the rank autocorrelations are
    estimated, as Hamed and Rao prescribe.
    """
    x_values, y_values = validate_series(x, y)
    if len(y_values) < 3:
        raise ValueError(f"the Mann-Kendall test needs at least 3 points, got {len(y_values)}")

    slope = float(scipy.stats.theilslopes(y_values, x_values).slope)
    pair_slopes = pairwise_slopes(x_values, y_values)
    return mann_kendall_from_slopes(x_values, y_values, pair_slopes, slope)


# --- Theil-Sen interval and Mann-Kendall test -----------------------------------


def bin_medians(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a series to at most ``max_points`` medians of consecutive, near-equal bins."""
    n = len(y)
    if n <= max_points:
        return x, y

    bins = np.array_split(np.arange(n), max_points)
    x_binned = np.array([np.median(x[indices]) for indices in bins])
    y_binned = np.array([np.median(y[indices]) for indices in bins])
    return x_binned, y_binned


def sen_interval(sorted_slopes: np.ndarray, var_s: float, alpha: float) -> tuple[float | None, float | None]:
    """Return Sen's (1968) confidence interval of the slope from the sorted pairwise slopes.

    The ranks of the bounds are (N -+ z * sqrt(var_s)) / 2 among the N pairwise
    slopes, computed and rounded exactly as scipy.stats.theilslopes does, so
    with the uncorrected var_s the interval equals scipy's. A bound whose rank
    falls outside the slopes is None, where scipy would clip it.
    """
    count = len(sorted_slopes)
    z = float(scipy.stats.norm.ppf(alpha / 2.0))
    sigma = math.sqrt(max(var_s, 0.0))

    upper_rank = int(np.round((count - z * sigma) / 2.0))
    lower_rank = int(np.round((count + z * sigma) / 2.0)) - 1

    low = float(sorted_slopes[lower_rank]) if 0 <= lower_rank < count else None
    high = float(sorted_slopes[upper_rank]) if 0 <= upper_rank < count else None
    return low, high


def pairwise_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the sorted slopes between every pair of points (x is strictly increasing)."""
    first, second = np.triu_indices(len(y), k=1)
    slopes = (y[second] - y[first]) / (x[second] - x[first])
    slopes.sort()
    return slopes


def mann_kendall_from_slopes(x: np.ndarray, y: np.ndarray, sorted_slopes: np.ndarray, slope: float) -> MannKendallResult:
    n = len(y)

    # With x strictly increasing, sign(y_j - y_i) is the sign of the pair's slope.
    s = int(np.count_nonzero(sorted_slopes > 0)) - int(np.count_nonzero(sorted_slopes < 0))

    _, tie_counts = np.unique(y, return_counts=True)
    tie_term = float(np.sum(tie_counts * (tie_counts - 1.0) * (2.0 * tie_counts + 5.0)))
    var_s = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term) / 18.0

    # Hamed and Rao allow factors below 1, but on white noise their estimate
    # lands there about half the time, because the rank autocorrelations at
    # all lags 1 to n - 1 sum to -1/2 by construction. A factor below 1 would
    # make the test more confident than independent samples allow, so the
    # correction here only ever widens it.
    variance_factor = max(1.0, hamed_rao_factor(rank_autocorrelations(y - slope * x)))

    z_uncorrected, p_uncorrected = _z_and_p(s, var_s)
    z, p_value = _z_and_p(s, var_s * variance_factor)
    return MannKendallResult(
        s=s,
        var_s=var_s,
        variance_factor=variance_factor,
        z=z,
        p_value=p_value,
        z_uncorrected=z_uncorrected,
        p_value_uncorrected=p_uncorrected,
    )


def rank_autocorrelations(values: np.ndarray) -> np.ndarray:
    """Return the autocorrelations of the ranks of ``values`` at lags 1 to n - 1.

    Each lag's sum of products is divided by the lag-0 sum, as R's acf() does.
    A series whose ranks are all equal has no autocorrelation and gets zeros.
    """
    ranks = scipy.stats.rankdata(values)
    deviations = ranks - ranks.mean()
    lag0 = float(np.dot(deviations, deviations))
    n = len(values)
    if lag0 == 0.0:
        return np.zeros(n - 1)

    full = np.correlate(deviations, deviations, mode="full")
    return full[n:] / lag0


def hamed_rao_factor(autocorrelations: np.ndarray) -> float:
    """Estimate n/n*, the factor by which autocorrelation inflates Var(S).

    ``autocorrelations`` contains the rank autocorrelations rho_k at lags 1 to
    n - 1. Only those outside +-1.96 / sqrt(n) count, and
    n/n* = 1 + 2 / (n (n-1) (n-2)) * sum over k of (n-k) (n-k-1) (n-k-2) rho_k.
    The estimate can fall below 1, and even below 0 for an alternating series.
    """
    n = len(autocorrelations) + 1
    if n < 3:
        return 1.0

    bound = float(scipy.stats.norm.ppf(0.5 + _AUTOCORRELATION_CONFIDENCE / 2.0)) / math.sqrt(n)
    significant = np.where(np.abs(autocorrelations) > bound, autocorrelations, 0.0)
    lags = np.arange(1, n, dtype=float)
    weights = (n - lags) * (n - lags - 1.0) * (n - lags - 2.0)
    return 1.0 + 2.0 / (n * (n - 1.0) * (n - 2.0)) * float(np.dot(weights, significant))


def _z_and_p(s: int, variance: float) -> tuple[float, float]:
    """Return the continuity-corrected z score of S and its two-sided p-value."""
    if s == 0 or variance <= 0.0:
        return 0.0, 1.0

    z = (s - math.copysign(1.0, s)) / math.sqrt(variance)
    p_value = float(2.0 * scipy.stats.norm.sf(abs(z)))
    return z, p_value



# --- input checks -----------------------------------------------------------------


def validate_series(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    y_values = np.asarray(y, dtype=float)
    if y_values.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y_values.shape}")
    if x is None:
        x_values = np.arange(len(y_values), dtype=float)
    else:
        x_values = np.asarray(x, dtype=float)
    if x_values.shape != y_values.shape:
        raise ValueError(f"x and y must have the same length, got {x_values.shape} and {y_values.shape}")

    for name, values in (("x", x_values), ("y", y_values)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(
                f"{name} contains {bad.size} non-finite values (the first at index {bad[0]}), "
                "so drop those samples before calling"
            )

    not_increasing = np.flatnonzero(np.diff(x_values) <= 0)
    if not_increasing.size:
        index = int(not_increasing[0]) + 1
        raise ValueError(
            f"x must be strictly increasing, but x[{index}] = {float(x_values[index])!r} follows "
            f"{float(x_values[index - 1])!r}, so sort the samples and merge those with equal x"
        )
    return x_values, y_values
