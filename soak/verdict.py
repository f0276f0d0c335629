"""Statistical leak verdict over a memory series.

``leak_verdict`` decides whether a series such as RSS over time, or RSS after
each request, keeps growing faster than a configured minimum leak rate. It
cuts the warm-up, fits a Theil-Sen slope and tests the trend with
Mann-Kendall, corrected for autocorrelation with the variance correction of
Hamed and Rao (1998, Journal of Hydrology 204, 182-196). It does no I/O.
docs/leak-verdict.md explains the method, its defaults and its limits.

The x axis is whatever the caller passes: seconds (the slope is then per
second, see ``per_hour``) or a request index (the slope is per request).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.stats

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]

SECONDS_PER_HOUR = 3600.0

# Longer series are reduced to this many points by taking medians over
# consecutive bins, because Theil-Sen and Mann-Kendall compare every pair of
# points, and 2,000 points already make about 2 million pairs.
DEFAULT_MAX_POINTS = 2000

# Hamed and Rao keep only the rank autocorrelations outside the 95 % band of
# white noise, +-1.96 / sqrt(n), whatever alpha the trend test uses.
_AUTOCORRELATION_CONFIDENCE = 0.95


@dataclass(frozen=True)
class LeakVerdict:
    """Outcome of the leak test on one series, with the figures behind it."""

    verdict: Verdict
    # One sentence that a reviewer can act on.
    reason: str
    n_total: int
    # Points left after the warm-up cut.
    n_used: int
    # Number of leading points removed as warm-up.
    warmup_cut: int
    # Theil-Sen slope in y units per x unit, and its confidence interval
    # widened by the autocorrelation factor. A bound is None where the
    # interval runs past the range of the pairwise slopes, so the data cannot
    # bound it. The fit and test fields are all None when too few points remain.
    slope: float | None
    slope_low: float | None
    slope_high: float | None
    intercept: float | None
    # Two-sided Mann-Kendall p-value and z with the Hamed-Rao variance.
    trend_p_value: float | None
    trend_z: float | None
    # Threshold in y units per x unit.
    min_leak_rate: float
    # Points that the fit and the test used: n_used, or max_points bin medians
    # when the series is longer, and 0 when too few points remain.
    n_fit: int = 0
    # Hamed-Rao factor n/n*, at least 1, by which autocorrelation inflates Var(S).
    variance_factor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return asdict(self)


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


# --- public helpers ---------------------------------------------------------


def per_hour(slope_per_s: float) -> float:
    """Convert a slope per second into a slope per hour."""
    return slope_per_s * SECONDS_PER_HOUR


def projected_time_to_limit_s(current: float, slope_per_s: float, limit: float) -> float | None:
    """Return the seconds until a series growing at ``slope_per_s`` reaches ``limit``.

    Returns None when the slope is zero or negative, because the limit is then
    never reached, and 0.0 when ``current`` is already at or above it.
    """
    for name, value in (("current", current), ("slope_per_s", slope_per_s), ("limit", limit)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")

    if slope_per_s <= 0:
        return None
    if current >= limit:
        return 0.0
    return (limit - current) / slope_per_s


def mann_kendall(y: Any, x: Any = None) -> MannKendallResult:
    """Run the Mann-Kendall trend test with the Hamed-Rao variance correction.

    ``x`` defaults to 0, 1, 2, ... and must be strictly increasing. The series
    is detrended with its Theil-Sen slope before the rank autocorrelations are
    estimated, as Hamed and Rao prescribe.
    """
    x_values, y_values = _validate_series(x, y)
    if len(y_values) < 3:
        raise ValueError(f"the Mann-Kendall test needs at least 3 points, got {len(y_values)}")

    slope = float(scipy.stats.theilslopes(y_values, x_values).slope)
    pair_slopes = _pairwise_slopes(x_values, y_values)
    return _mann_kendall(x_values, y_values, pair_slopes, slope)


# --- the verdict --------------------------------------------------------------


def leak_verdict(
    x: Any,
    y: Any,
    *,
    min_leak_rate: float,
    alpha: float = 0.05,
    warmup: int | Literal["auto"] = "auto",
    min_points: int = 8,
    max_points: int = DEFAULT_MAX_POINTS,
    rate_unit: str = "y units per x unit",
) -> LeakVerdict:
    """Decide whether ``y`` grows faster than ``min_leak_rate`` per unit of ``x``.

    FAIL when the lower bound of the slope's (1 - alpha) interval is above
    ``min_leak_rate`` and the corrected Mann-Kendall test finds a significant
    rising trend (p < alpha, z > 0). PASS when the upper bound is below
    ``min_leak_rate``. Anything else, and any series with fewer than
    ``min_points`` points after the warm-up cut, is INCONCLUSIVE.

    ``warmup="auto"`` picks the cut with ``auto_warmup_cut``. An integer cuts
    exactly that many leading points, even more than half the series.
    ``rate_unit`` only labels the slopes in ``reason`` (for example "bytes/s").

    Raises ValueError when the arguments are invalid: x and y of different
    lengths, non-finite values, x not strictly increasing, or an option out
    of range.
    """
    x_values, y_values = _validate_series(x, y)
    _validate_options(min_leak_rate, alpha, warmup, min_points, max_points)
    n_total = len(y_values)

    def inconclusive(reason: str, n_used: int, warmup_cut: int) -> LeakVerdict:
        return LeakVerdict(
            verdict="INCONCLUSIVE",
            reason=reason,
            n_total=n_total,
            n_used=n_used,
            warmup_cut=warmup_cut,
            slope=None,
            slope_low=None,
            slope_high=None,
            intercept=None,
            trend_p_value=None,
            trend_z=None,
            min_leak_rate=float(min_leak_rate),
        )

    if n_total < min_points:
        return inconclusive(
            f"Only {n_total} samples were given but the leak verdict needs at least {min_points}, "
            "so run longer or sample more often.",
            n_used=n_total,
            warmup_cut=0,
        )

    if warmup == "auto":
        warmup_cut = auto_warmup_cut(x_values, y_values)
    else:
        warmup_cut = min(int(warmup), n_total)
    x_used = x_values[warmup_cut:]
    y_used = y_values[warmup_cut:]
    n_used = len(y_used)

    if n_used < min_points:
        return inconclusive(
            f"Only {n_used} of {n_total} samples remain after the {warmup_cut}-sample warm-up cut "
            f"but the leak verdict needs at least {min_points}, so run longer to outlast the warm-up.",
            n_used=n_used,
            warmup_cut=warmup_cut,
        )

    x_fit, y_fit = bin_medians(x_used, y_used, max_points)
    fit = scipy.stats.theilslopes(y_fit, x_fit)
    slope = float(fit.slope)
    intercept = float(fit.intercept)

    pair_slopes = _pairwise_slopes(x_fit, y_fit)
    trend = _mann_kendall(x_fit, y_fit, pair_slopes, slope)
    slope_low, slope_high = sen_interval(pair_slopes, trend.var_s * trend.variance_factor, alpha)

    verdict, reason = _decide(
        slope=slope,
        slope_low=slope_low,
        slope_high=slope_high,
        trend=trend,
        min_leak_rate=min_leak_rate,
        alpha=alpha,
        rate_unit=rate_unit,
    )
    return LeakVerdict(
        verdict=verdict,
        reason=reason,
        n_total=n_total,
        n_used=n_used,
        warmup_cut=warmup_cut,
        slope=slope,
        slope_low=slope_low,
        slope_high=slope_high,
        intercept=intercept,
        trend_p_value=trend.p_value,
        trend_z=trend.z,
        min_leak_rate=float(min_leak_rate),
        n_fit=len(y_fit),
        variance_factor=trend.variance_factor,
    )


def _decide(
    *,
    slope: float,
    slope_low: float | None,
    slope_high: float | None,
    trend: MannKendallResult,
    min_leak_rate: float,
    alpha: float,
    rate_unit: str,
) -> tuple[Verdict, str]:
    interval = _describe_interval(slope_low, slope_high, alpha, rate_unit)
    threshold = f"the minimum leak rate {_format(min_leak_rate)} {rate_unit}"
    p_text = f"p = {trend.p_value:.2g}"
    rising = trend.z > 0 and trend.p_value < alpha

    if slope_low is not None and slope_low > min_leak_rate and rising:
        return "FAIL", (
            f"The series grows at {_format(slope)} {rate_unit} ({interval}), above {threshold}, "
            f"and the Mann-Kendall trend is significant ({p_text})."
        )

    if slope_high is not None and slope_high < min_leak_rate:
        return "PASS", f"The slope {_format(slope)} {rate_unit} ({interval}) is below {threshold}."

    if slope_low is None or slope_high is None:
        return "INCONCLUSIVE", (
            f"The slope {_format(slope)} {rate_unit} cannot be bounded ({interval}) because the samples are "
            f"strongly autocorrelated (variance factor {trend.variance_factor:.3g}), so run longer to decide."
        )

    if slope_low > min_leak_rate:
        return "INCONCLUSIVE", (
            f"The slope {_format(slope)} {rate_unit} ({interval}) is above {threshold} but the "
            f"autocorrelation-corrected Mann-Kendall trend is not significant ({p_text}), so run longer to decide."
        )

    return "INCONCLUSIVE", (
        f"The series is too noisy or too short to decide whether the slope {_format(slope)} {rate_unit} "
        f"({interval}) is below {threshold}, so run longer or reduce the noise."
    )


def _describe_interval(low: float | None, high: float | None, alpha: float, rate_unit: str) -> str:
    name = f"{(1 - alpha) * 100:g} % interval"
    if low is not None and high is not None:
        return f"{name} {_format(low)} to {_format(high)} {rate_unit}"
    if high is not None:
        return f"{name} unbounded below, up to {_format(high)} {rate_unit}"
    if low is not None:
        return f"{name} from {_format(low)} {rate_unit}, unbounded above"
    return f"{name} unbounded"


# --- warm-up cut ----------------------------------------------------------------


def auto_warmup_cut(x: np.ndarray, y: np.ndarray) -> int:
    """Return the number of leading points to drop as warm-up, at most half the series.

    The rule adapts MSER, the marginal standard error rule of simulation
    output analysis: MSER truncates where the standard error of the mean of
    the remaining points is smallest. Here the remaining points are fitted
    with a least-squares line instead of a mean, so that a steady leak keeps
    its points: the cut d minimises s2(d) / m, where m = n - d and s2(d) is
    the residual variance of the line fitted to the last m points. A step or
    ramp at the start inflates s2 until it is cut, and noise alone does not
    repay the loss of points. Ties go to the smallest cut.
    """
    n = len(y)
    max_cut = min(n // 2, n - 3)
    if max_cut <= 0:
        return 0

    # Centre and scale both axes so that the running sums below do not lose
    # precision on large offsets such as wall-clock seconds or RSS bytes.
    x_scaled = _standardise(x)
    y_scaled = _standardise(y)

    def suffix_sums(values: np.ndarray) -> np.ndarray:
        return np.cumsum(values[::-1])[::-1][: max_cut + 1]

    count = (n - np.arange(max_cut + 1)).astype(float)
    sum_x = suffix_sums(x_scaled)
    sum_y = suffix_sums(y_scaled)
    sum_xx = suffix_sums(x_scaled * x_scaled)
    sum_xy = suffix_sums(x_scaled * y_scaled)
    sum_yy = suffix_sums(y_scaled * y_scaled)

    sxx = sum_xx - sum_x * sum_x / count
    sxy = sum_xy - sum_x * sum_y / count
    syy = sum_yy - sum_y * sum_y / count
    residual_ss = np.maximum(syy - sxy * sxy / sxx, 0.0)
    statistic = residual_ss / ((count - 2.0) * count)

    # Where the true residual is zero (a constant series or an exact line),
    # rounding leaves noise of about 1e-16 times the series' own scale, so
    # statistics within 1e-12 times that scale of the minimum count as ties.
    tolerance = 1e-12 * max(float(syy[0]), 0.0) / (n * n)
    return int(np.flatnonzero(statistic <= statistic.min() + tolerance)[0])


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    centred = values - float(values.mean())
    if spread == 0.0:
        return centred
    return centred / spread


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


def _pairwise_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the sorted slopes between every pair of points (x is strictly increasing)."""
    first, second = np.triu_indices(len(y), k=1)
    slopes = (y[second] - y[first]) / (x[second] - x[first])
    slopes.sort()
    return slopes


def _mann_kendall(x: np.ndarray, y: np.ndarray, sorted_slopes: np.ndarray, slope: float) -> MannKendallResult:
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


def _validate_series(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
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


def _validate_options(
    min_leak_rate: float, alpha: float, warmup: int | str, min_points: int, max_points: int
) -> None:
    if not math.isfinite(min_leak_rate) or min_leak_rate < 0:
        raise ValueError(f"min_leak_rate must be a finite number >= 0, got {min_leak_rate!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5 (exclusive), got {alpha!r}")
    if warmup != "auto" and (not _is_integer(warmup) or warmup < 0):
        raise ValueError(f'warmup must be "auto" or an integer >= 0, got {warmup!r}')
    if not _is_integer(min_points) or min_points < 3:
        raise ValueError(f"min_points must be an integer >= 3, got {min_points!r}")
    if not _is_integer(max_points) or max_points < min_points:
        raise ValueError(f"max_points must be an integer >= min_points ({min_points}), got {max_points!r}")


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _format(value: float) -> str:
    return f"{value:.3g}"
