"""The census: which status gauge grew with RSS, and how many bytes per unit it accounts for."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.stats

from soak.diagnosis.retention import Holder, holder_for_type
from soak.trend import DEFAULT_MAX_POINTS, bin_medians

MIB = 1024 * 1024

SizeBasis = Literal["measured", "fitted"]

# Status gauges of the census: name, label, and the object type that the
# gateway's retention paths count for it ("buffer_bytes" counts bytes).
GAUGES = (
    ("models_cached", "cached model instances", "LoadedModel"),
    ("retained_futures", "retained futures", "Future"),
    ("sessions_open", "open sessions", "Session"),
    ("sessions_buffered_bytes", "buffered session bytes", "buffer_bytes"),
)

# Changes of RSS or of the traced heap below this count as flat. Between
# per-request samples of the fixed memory profile (paraformer-50mb) RSS moves
# by a few MiB, because each request loads and evicts a model instance.
FLAT_GROWTH_BYTES = 4 * MIB


@dataclass(frozen=True)
class GaugeGrowth:
    """One status gauge over the diagnosis window, and how much of the RSS growth it accounts for."""

    name: str
    label: str
    start: float
    end: float
    growth: float
    # Spearman rank correlation with RSS over the window, or None when either series is constant.
    correlation: float | None
    bytes_per_unit: float | None
    # Source of bytes_per_unit: the model instance size, one byte per
    # buffered byte, the arrays and buffers that the retention paths count,
    # or a Theil-Sen fit of the RSS left after the gauges of known size.
    bytes_per_unit_source: str | None
    # "measured" when bytes_per_unit is a known size or the bytes its holder keeps, "fitted" for a fit.
    size_basis: SizeBasis | None
    explained_bytes: float | None
    # explained_bytes as a fraction of the window's RSS growth, or None when RSS did not grow.
    explained_fraction: float | None


def census(rows: list[dict[str, Any]], *, model_bytes: float | None, holders: list[Holder]) -> list[GaugeGrowth]:
    """Measure each gauge's growth over ``rows`` and the share of the RSS growth it accounts for.

    Gauges of known size go first: a model instance is ``model_bytes`` and a
    buffered session byte is one byte. Retained futures and open sessions
    have no fixed size. Their bytes per unit come from the arrays and buffers
    that their holder keeps (diagnosis.json), or else from a Theil-Sen fit of
    the RSS that the gauges of known size leave unexplained.
    """
    rss = np.array([number_or_nan(row.get("rss_bytes")) for row in rows], dtype=float)
    rss_growth = fitted_growth(rows, lambda row: row.get("rss_bytes"))
    known_size: dict[str, tuple[float | None, str, SizeBasis]] = {
        "models_cached": (model_bytes, "the model's instance size, as models prepare measured it", "measured"),
        "sessions_buffered_bytes": (1.0, "one byte of RSS per buffered byte", "measured"),
    }

    series = {name: np.array([number_or_nan(status_of(row).get(name)) for row in rows], dtype=float) for name, _, _ in GAUGES}
    # RSS minus what the gauges of known size account for, for the fits of the others.
    # A failed status read leaves NaN in the gauges and so in the residual, and the fits skip those rows.
    residual = rss.copy()
    for name, (known_bytes, _, _) in known_size.items():
        if known_bytes is not None:
            residual = residual - known_bytes * series[name]

    results = []
    for name, label, held_type in GAUGES:
        values = series[name]
        finite = np.isfinite(values) & np.isfinite(rss)
        if finite.sum() < 2:
            continue
        start, end = float(values[finite][0]), float(values[finite][-1])
        growth = end - start

        unit_bytes: float | None = None
        source: str | None = None
        basis: SizeBasis | None = None
        if name in known_size:
            unit_bytes, source, basis = known_size[name]
        if unit_bytes is None and growth > 0:
            unit_bytes, source, basis = held_bytes_per_unit(held_type, holders)
        if unit_bytes is None and growth > 0:
            fit_rows = finite & np.isfinite(residual)
            unit_bytes, source, basis = fitted_bytes_per_unit(values[fit_rows], residual[fit_rows])

        explained = unit_bytes * growth if unit_bytes is not None and growth > 0 else None
        fraction = None
        if explained is not None and rss_growth is not None and rss_growth >= FLAT_GROWTH_BYTES:
            fraction = explained / rss_growth
        results.append(
            GaugeGrowth(
                name=name,
                label=label,
                start=start,
                end=end,
                growth=growth,
                correlation=spearman(values[finite], rss[finite]),
                bytes_per_unit=unit_bytes if growth > 0 else None,
                bytes_per_unit_source=source if growth > 0 else None,
                size_basis=basis if growth > 0 and unit_bytes is not None else None,
                explained_bytes=explained,
                explained_fraction=fraction,
            )
        )
    return results


def held_bytes_per_unit(held_type: str, holders: list[Holder]) -> tuple[float | None, str | None, SizeBasis | None]:
    """Return the array and buffer bytes per object of ``held_type`` in the holder with most of them."""
    holder = holder_for_type(held_type, holders)
    if holder is None or holder.bytes <= 0:
        return None, None, None
    count = holder.holds.get(held_type, 0)
    if count <= 0:
        return None, None, None
    return holder.bytes / count, f"arrays and buffers that {holder.root} holds per {held_type}", "measured"


def fitted_bytes_per_unit(values: np.ndarray, residual: np.ndarray) -> tuple[float | None, str | None, SizeBasis | None]:
    """Fit the unexplained RSS against a gauge with Theil-Sen, or return None without two distinct gauge values."""
    if len(np.unique(values)) < 2:
        return None, None, None
    # Theil-Sen takes every pair of points; bin an 8-hour series first, as the leak verdict does.
    order = np.argsort(values, kind="stable")
    values_fit, residual_fit = bin_medians(values[order], residual[order], DEFAULT_MAX_POINTS)
    slope = float(scipy.stats.theilslopes(residual_fit, values_fit).slope)
    if not math.isfinite(slope):
        return None, None, None
    return max(slope, 0.0), "Theil-Sen fit of the RSS left after the gauges of known size", "fitted"


def explaining_gauge(gauges: list[GaugeGrowth]) -> GaugeGrowth | None:
    """Pick the grown gauge that accounts for the most bytes, preferring measured sizes over fitted ones.

    A fit gives a gauge whatever RSS growth happens to rise with it (warm-up,
    allocator growth), so a fitted gauge is named only when no gauge of
    measured size grew. Without any size, the most correlated gauge is named.
    """
    grown = [gauge for gauge in gauges if gauge.growth > 0]
    if not grown:
        return None
    for basis in ("measured", "fitted"):
        sized = [gauge for gauge in grown if gauge.size_basis == basis and gauge.explained_bytes]
        if sized:
            return max(sized, key=lambda gauge: gauge.explained_bytes or 0.0)
    return max(grown, key=lambda gauge: gauge.correlation if gauge.correlation is not None else -1.0)


def holder_for(gauge: GaugeGrowth, holders: list[Holder]) -> Holder | None:
    """Return the container holding the most objects of the gauge's type."""
    held_type = next(held for name, _, held in GAUGES if name == gauge.name)
    return holder_for_type(held_type, holders)



def fitted_growth(rows: list[dict[str, Any]], value_of) -> float | None:
    """Return the Theil-Sen fitted change of a value over the rows' time span, None with under 3 values."""
    points = [(float(row["time_s"]), float(value)) for row in rows if (value := value_of(row)) is not None]
    if len(points) < 3:
        return None
    times = np.array([time_s for time_s, _ in points])
    values = np.array([value for _, value in points])
    if times[-1] <= times[0]:
        return None
    # Theil-Sen takes every pair of points, so 28,800 samples (8 hours at 1 Hz) would need about 20 GiB.
    times_fit, values_fit = bin_medians(times, values, DEFAULT_MAX_POINTS)
    slope = float(scipy.stats.theilslopes(values_fit, times_fit).slope)
    return slope * float(times[-1] - times[0])


def spearman(first: np.ndarray, second: np.ndarray) -> float | None:
    if len(first) < 3 or len(np.unique(first)) < 2 or len(np.unique(second)) < 2:
        return None
    correlation = float(scipy.stats.spearmanr(first, second).statistic)
    return correlation if math.isfinite(correlation) else None


def status_of(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("status") or {}


def number_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
