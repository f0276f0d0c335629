"""Tests of the statistical leak verdict on synthetic series whose verdict is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from soak.trend import hamed_rao_factor, mann_kendall, rank_autocorrelations, sen_interval
from soak.verdict import auto_warmup_cut, leak_verdict, per_hour, projected_time_to_limit_s

MIB = 1024 * 1024
BASE_BYTES = 500 * MIB
# 10 MiB per hour, the default minimum leak rate, per second.
MIN_RATE_PER_S = 10 * MIB / 3600


def seconds(count: int) -> np.ndarray:
    return np.arange(count, dtype=float)


def ar1_noise(rng: np.random.Generator, count: int, phi: float, sigma: float) -> np.ndarray:
    noise = np.zeros(count)
    for i in range(1, count):
        noise[i] = phi * noise[i - 1] + rng.normal(0.0, sigma)
    return noise


# --- verdicts on synthetic series -------------------------------------------------


def test_flat_noise_passes():
    rng = np.random.default_rng(1)
    x = seconds(600)
    y = BASE_BYTES + rng.normal(0.0, 2 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S)

    assert result.verdict == "PASS", result.reason
    assert result.slope_high is not None
    assert result.slope_high < MIN_RATE_PER_S
    assert result.n_total == 600
    assert result.n_used == 600 - result.warmup_cut


def test_linear_leak_fails_with_true_slope_in_interval():
    rng = np.random.default_rng(2)
    true_slope = 20_000.0  # bytes per second, about 69 MiB per hour
    x = seconds(600)
    y = BASE_BYTES + true_slope * x + rng.normal(0.0, 2 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S, rate_unit="bytes/s")

    assert result.verdict == "FAIL", result.reason
    assert result.slope_low is not None and result.slope_high is not None
    assert result.slope_low <= true_slope <= result.slope_high
    assert result.slope_low > MIN_RATE_PER_S
    assert result.trend_p_value is not None and result.trend_p_value < 0.05
    assert result.trend_z is not None and result.trend_z > 0
    assert "bytes/s" in result.reason


def test_step_then_plateau_passes_after_cut():
    # A model load of 200 MiB at 60 s, then a flat plateau: warm-up, not a leak.
    rng = np.random.default_rng(3)
    x = seconds(600)
    y = BASE_BYTES + np.where(x < 60, 0.0, 200 * MIB) + rng.normal(0.0, 2 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S)

    assert result.verdict == "PASS", result.reason
    assert result.warmup_cut >= 60
    assert result.warmup_cut <= 300


def test_step_without_cut_is_not_pass():
    rng = np.random.default_rng(3)
    x = seconds(600)
    y = BASE_BYTES + np.where(x < 60, 0.0, 200 * MIB) + rng.normal(0.0, 2 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S, warmup=0)

    assert result.warmup_cut == 0
    assert result.verdict != "PASS", result.reason


def test_sawtooth_cleanup_does_not_fail():
    # Buffers pile up for one 60 s sweep interval and are freed, 20 times.
    rng = np.random.default_rng(4)
    x = seconds(1200)
    y = BASE_BYTES + 20 * MIB * ((x % 60) / 60) + rng.normal(0.0, 0.5 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S)

    assert result.verdict != "FAIL", result.reason


def test_heavy_noise_small_slope_is_inconclusive():
    rng = np.random.default_rng(5)
    x = seconds(600)
    y = BASE_BYTES + 2 * MIN_RATE_PER_S * x + rng.normal(0.0, 100 * MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S)

    assert result.verdict == "INCONCLUSIVE", result.reason
    assert result.slope_low is not None and result.slope_high is not None
    assert result.slope_low < MIN_RATE_PER_S < result.slope_high
    assert "too noisy" in result.reason


def test_too_short_series_is_inconclusive():
    result = leak_verdict([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], min_leak_rate=0.1)

    assert result.verdict == "INCONCLUSIVE"
    assert result.slope is None
    assert result.trend_p_value is None
    assert result.n_used == 5
    assert "at least 8" in result.reason


def test_too_few_points_after_cut_is_inconclusive():
    x = seconds(12)

    result = leak_verdict(x, 2.0 * x, min_leak_rate=0.1, warmup=6)

    assert result.verdict == "INCONCLUSIVE"
    assert result.warmup_cut == 6
    assert result.n_used == 6
    assert "warm-up" in result.reason


def test_ar1_noise_does_not_fail():
    # Strongly autocorrelated noise without a trend wanders far enough for the
    # uncorrected Mann-Kendall test to call a trend.
    rng = np.random.default_rng(11)
    x = seconds(600)
    y = BASE_BYTES + ar1_noise(rng, x.size, phi=0.9, sigma=MIB)

    result = leak_verdict(x, y, min_leak_rate=0.0)
    used = mann_kendall(y[result.warmup_cut :], x[result.warmup_cut :])

    assert used.p_value_uncorrected < 0.05
    assert used.variance_factor > 2
    assert result.trend_p_value is not None and result.trend_p_value >= 0.05
    assert result.verdict != "FAIL", result.reason


def test_constant_series_passes():
    x = seconds(50)

    result = leak_verdict(x, np.full(x.size, 1000.0), min_leak_rate=1.0)

    assert result.verdict == "PASS", result.reason
    assert result.slope == 0.0
    assert result.warmup_cut == 0
    assert result.trend_p_value == 1.0


def test_falling_series_passes():
    rng = np.random.default_rng(6)
    x = seconds(200)
    y = BASE_BYTES - 10_000.0 * x + rng.normal(0.0, MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=MIN_RATE_PER_S)

    assert result.verdict == "PASS", result.reason


def test_per_request_axis_fails_on_growth():
    # The x axis is a request index: the leaky model cache adds 50 MiB per request.
    rng = np.random.default_rng(7)
    requests = np.arange(3, 30, dtype=float)
    y = BASE_BYTES + 50 * MIB * requests + rng.normal(0.0, 5 * MIB, requests.size)

    result = leak_verdict(requests, y, min_leak_rate=0.01 * 50 * MIB, rate_unit="bytes/request")

    assert result.verdict == "FAIL", result.reason
    assert result.slope is not None
    assert abs(result.slope - 50 * MIB) < 5 * MIB


def test_long_series_is_binned():
    rng = np.random.default_rng(8)
    x = seconds(10_000)
    y = BASE_BYTES + 1000.0 * x + rng.normal(0.0, MIB, x.size)

    result = leak_verdict(x, y, min_leak_rate=100.0)

    assert result.n_fit == 2000
    assert result.n_used == 10_000 - result.warmup_cut
    assert result.verdict == "FAIL", result.reason
    assert result.slope_low is not None and result.slope_high is not None
    assert result.slope_low <= 1000.0 <= result.slope_high


def test_explicit_warmup_is_used():
    x = seconds(40)

    result = leak_verdict(x, np.sin(x), min_leak_rate=1.0, warmup=25)

    assert result.warmup_cut == 25
    assert result.n_used == 15


def test_verdict_to_dict_is_json():
    rng = np.random.default_rng(9)
    x = seconds(100)
    result = leak_verdict(x, rng.normal(0.0, 1.0, x.size), min_leak_rate=1.0)

    data = json.loads(json.dumps(result.to_dict()))

    assert data["verdict"] == result.verdict
    assert data["n_fit"] == 100
    assert set(data) >= {"slope", "slope_low", "slope_high", "trend_p_value", "warmup_cut", "min_leak_rate"}


# --- warm-up cut ------------------------------------------------------------------


def test_warmup_cut_never_exceeds_half():
    rng = np.random.default_rng(10)
    x = seconds(100)
    # A step at 80 % of the series would need a cut of 80 points to remove.
    y = np.where(x < 80, 0.0, 100.0) + rng.normal(0.0, 1.0, x.size)

    assert auto_warmup_cut(x, y) <= 50


def test_warmup_cut_keeps_linear_leak():
    x = seconds(300)

    assert auto_warmup_cut(x, 5.0 * x + 7.0) == 0


def test_warmup_cut_of_short_series_is_zero():
    assert auto_warmup_cut(seconds(3), np.array([5.0, 1.0, 1.0])) == 0


# --- Mann-Kendall and Sen's interval -----------------------------------------------


def test_mann_kendall_hand_computed_case():
    # Pairs of [1, 3, 2, 5, 4]: 8 rising, 2 falling, so S = 6.
    # Var(S) = 5 * 4 * 15 / 18 = 50 / 3, z = (S - 1) / sqrt(Var(S)).
    result = mann_kendall([1, 3, 2, 5, 4])

    assert result.s == 6
    assert result.var_s == pytest.approx(50 / 3)
    assert result.z_uncorrected == pytest.approx(5 / math.sqrt(50 / 3))
    assert result.p_value_uncorrected == pytest.approx(0.220671, abs=1e-6)
    # The largest rank autocorrelation, -0.8 at lag 1, is inside
    # +-1.96 / sqrt(5) = +-0.877, so nothing is corrected.
    assert result.variance_factor == 1.0
    assert result.p_value == pytest.approx(result.p_value_uncorrected)


def test_rank_autocorrelations_hand_computed_case():
    # The Theil-Sen slope of [1, 3, 2, 5, 4] is 0.875. The detrended values
    # [1, 2.125, 0.25, 2.375, 0.5] have ranks [3, 4, 1, 5, 2], deviations
    # [0, 1, -2, 2, -1] and a lag-0 sum of 10.
    detrended = np.array([1, 3, 2, 5, 4], dtype=float) - 0.875 * np.arange(5)

    correlations = rank_autocorrelations(detrended)

    assert correlations == pytest.approx([-0.8, 0.4, -0.1, 0.0])


def test_mann_kendall_ties_reduce_variance():
    # [1, 2, 2, 3]: five rising pairs and one tie, so S = 5.
    # Var(S) = (4 * 3 * 13 - 2 * 1 * 9) / 18 = 138 / 18.
    result = mann_kendall([1, 2, 2, 3])

    assert result.s == 5
    assert result.var_s == pytest.approx(138 / 18)


def test_hamed_rao_factor_hand_computed_case():
    # n = 10: only lags beyond +-1.96 / sqrt(10) = +-0.620 count.
    # With rho_1 = 0.7: 1 + 2 / (10 * 9 * 8) * (9 * 8 * 7) * 0.7 = 1.98.
    correlations = np.zeros(9)
    correlations[0] = 0.7
    correlations[1] = 0.5

    assert hamed_rao_factor(correlations) == pytest.approx(1.98)

    # rho_2 = -0.7 counts too: 1.98 - 2 / 720 * (8 * 7 * 6) * 0.7 = 1.3266...
    correlations[1] = -0.7
    assert hamed_rao_factor(correlations) == pytest.approx(1.0 + 2.0 * (352.8 - 235.2) / 720.0)


def test_sen_interval_matches_scipy_when_uncorrected():
    rng = np.random.default_rng(12)
    x = seconds(40)
    # Rounding makes ties in y, which both Var(S) and scipy correct for.
    y = np.round(0.3 * x + rng.normal(0.0, 2.0, x.size))
    expected = scipy.stats.theilslopes(y, x)
    trend = mann_kendall(y, x)
    first, second = np.triu_indices(x.size, k=1)
    slopes = np.sort((y[second] - y[first]) / (x[second] - x[first]))

    low, high = sen_interval(slopes, trend.var_s, 0.05)

    assert low == expected.low_slope
    assert high == expected.high_slope


def test_sen_interval_unbounded_when_variance_huge():
    slopes = np.arange(10, dtype=float)

    assert sen_interval(slopes, 1e6, 0.05) == (None, None)


# --- input checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "options", "message"),
    [
        ([0, 1, 2], [1, 2], {}, "same length"),
        ([0, 2, 1], [1, 2, 3], {}, "strictly increasing"),
        ([0, 1, 1], [1, 2, 3], {}, "strictly increasing"),
        ([0, 1, 2], [1, float("nan"), 3], {}, "non-finite"),
        ([0, 1, 2], [[1, 2, 3]], {}, "one-dimensional"),
        ([0, 1, 2], [1, 2, 3], {"alpha": 0.7}, "alpha"),
        ([0, 1, 2], [1, 2, 3], {"min_leak_rate": -1.0}, "min_leak_rate"),
        ([0, 1, 2], [1, 2, 3], {"min_leak_rate": float("inf")}, "min_leak_rate"),
        ([0, 1, 2], [1, 2, 3], {"warmup": -1}, "warmup"),
        ([0, 1, 2], [1, 2, 3], {"warmup": "some"}, "warmup"),
        ([0, 1, 2], [1, 2, 3], {"min_points": 2}, "min_points"),
        ([0, 1, 2], [1, 2, 3], {"max_points": 4}, "max_points"),
    ],
)
def test_leak_verdict_rejects_invalid_input(x, y, options, message):
    arguments = {"min_leak_rate": 1.0, **options}

    with pytest.raises(ValueError, match=message):
        leak_verdict(x, y, **arguments)


# --- helpers ----------------------------------------------------------------------


def test_per_hour_converts_seconds():
    assert per_hour(1.0) == 3600.0
    assert per_hour(-0.5) == -1800.0


def test_projected_time_to_limit():
    assert projected_time_to_limit_s(100.0, 2.0, 300.0) == 100.0
    assert projected_time_to_limit_s(100.0, 0.0, 300.0) is None
    assert projected_time_to_limit_s(100.0, -1.0, 300.0) is None
    assert projected_time_to_limit_s(400.0, 2.0, 300.0) == 0.0


def test_projected_time_rejects_non_finite():
    with pytest.raises(ValueError, match="limit"):
        projected_time_to_limit_s(1.0, 1.0, float("nan"))
