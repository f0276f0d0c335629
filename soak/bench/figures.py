"""The benchmark's result model: figures measured over rounds, their medians, spreads and ratios.

A :class:`Figure` holds one value per round for the thing measured and,
when it has one, for its reference measured in the same rounds. Ratios are
taken round by round (value of round i over reference of round i), so slow
rounds of a noisy machine affect both sides alike.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Better = Literal["higher", "lower", "none"]


def percentile(values: list[float], fraction: float) -> float:
    """Return the value at ``fraction`` (0 to 1) of the sorted values, interpolating linearly."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


def paired_ratios(values: list[float], reference: list[float]) -> list[float]:
    """Return value / reference for each round; NaN where the reference is 0 or missing."""
    ratios = []
    for value, base in zip(values, reference):
        ratios.append(value / base if base and math.isfinite(base) and math.isfinite(value) else math.nan)
    return ratios


@dataclass
class Figure:
    """One measured quantity over rounds, optionally against a reference from the same rounds."""

    label: str
    unit: str
    values: list[float]
    reference_label: str = ""
    reference_values: list[float] = field(default_factory=list)
    better: Better = "none"
    note: str = ""

    @property
    def median(self) -> float:
        return median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        finite = [value for value in self.values if math.isfinite(value)]
        return (min(finite), max(finite)) if finite else (math.nan, math.nan)

    @property
    def ratios(self) -> list[float]:
        return paired_ratios(self.values, self.reference_values) if self.reference_values else []

    @property
    def ratio_median(self) -> float:
        return median(self.ratios)

    @property
    def ratio_spread(self) -> tuple[float, float]:
        finite = [ratio for ratio in self.ratios if math.isfinite(ratio)]
        return (min(finite), max(finite)) if finite else (math.nan, math.nan)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["median"] = self.median
        body["min"], body["max"] = self.spread
        if self.reference_values:
            body["reference_median"] = median(self.reference_values)
            body["ratios"] = self.ratios
            body["ratio_median"] = self.ratio_median
            body["ratio_min"], body["ratio_max"] = self.ratio_spread
        return body


@dataclass
class Section:
    """One part of the benchmark page: what was measured, how, the figures and what they show."""

    key: str
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str = ""

    def figure(self, label: str) -> Figure:
        """Return the figure called ``label``; raise KeyError when there is none."""
        for candidate in self.figures:
            if candidate.label == label:
                return candidate
        raise KeyError(label)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "method": self.method,
            "figures": [figure.to_json() for figure in self.figures],
            "findings": self.findings,
            "commands": self.commands,
            "raw": self.raw,
            "duration_s": round(self.duration_s, 1),
            "error": self.error,
        }
