"""Statistical leak verdict over a memory series.

``leak_verdict`` decides whether a series such as RSS over time, or RSS after
each request, keeps growing faster than a configured minimum leak rate. It
cuts the warm-up, fits a Theil-Sen slope and tests the trend with
Mann-Kendall, corrected for autocorrelation (``soak.trend``). It does no I/O.
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

from soak.trend import (
    DEFAULT_MAX_POINTS,
    MannKendallResult,
    bin_medians,
    mann_kendall_from_slopes,
    pairwise_slopes,
    sen_interval,
    validate_series,
)

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]

SECONDS_PER_HOUR = 3600.0


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
    x_values, y_values = validate_series(x, y)
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

    pair_slopes = pairwise_slopes(x_fit, y_fit)
    trend = mann_kendall_from_slopes(x_fit, y_fit, pair_slopes, slope)
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


# --- input checks -----------------------------------------------------------------


def _validate_options(
    min_leak_rate: float, alpha: float, warmup: int | str, min_points: int, max_points: int
) -> None:
    if not math.isfinite(min_leak_rate) or min_leak_rate < 0:
        raise ValueError(f"min_leak_rate must be a finite number >= 0, got {min_leak_rate!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5 (exclusive), got {alpha!r}")
    if warmup != "auto" and (not _is_integer(warmup) or int(warmup) < 0):
        raise ValueError(f'warmup must be "auto" or an integer >= 0, got {warmup!r}')
    if not _is_integer(min_points) or min_points < 3:
        raise ValueError(f"min_points must be an integer >= 3, got {min_points!r}")
    if not _is_integer(max_points) or max_points < min_points:
        raise ValueError(f"max_points must be an integer >= min_points ({min_points}), got {max_points!r}")


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _format(value: float) -> str:
    return f"{value:.3g}"
