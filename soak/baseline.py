"""Compare a run with a stored baseline summary and flag regressions beyond a tolerance.

A baseline is the ``summary.json`` of a reference run (reports/baselines/
holds the tracked ones). Each criterion that both summaries measured is
compared, and so are the latency percentiles and the verdict. A figure
regresses when it is worse than the baseline by more than the tolerance.
The tolerance is a fraction of the baseline value, or of the criterion's
limit when that is larger, so that figures near zero (a flat slope, no
timeouts) do not flag on noise. reports/README.md describes both.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from soak.errors import SoakError

# Default tolerances, as fractions. NOTE: sized from ten fixed memory-profile
# runs (paraformer-50mb, 60 requests) on one shared 2-core machine, where RSS
# after the profile varied by 7 MiB (1 % of its limit), the growth slope by
# 0.20 MiB/request (38 % of its limit) and the median latency 2.7-fold.
# Another machine or profile may need other values, passed as --tolerance.
DEFAULT_TOLERANCE = 0.05
DEFAULT_FIGURE_TOLERANCES = {"rss_growth_per_request": 0.5, "latency_p50_ms": 1.0, "latency_p95_ms": 1.0}

# Criteria where a smaller measured value is worse.
LOWER_IS_WORSE = frozenset({"requests_completed"})
LATENCY_FIGURES = (("p50_ms", "latency_p50_ms", "Latency p50"), ("p95_ms", "latency_p95_ms", "Latency p95"))

FigureStatus = Literal["OK", "REGRESSED", "IMPROVED", "MISSING"]

_TOLERANCE_PATTERN = re.compile(r"(?:(?P<key>[a-z0-9_]+)=)?(?P<percent>[0-9]+(?:\.[0-9]*)?)\s*%?")


class BaselineError(SoakError):
    """The baseline file or a tolerance is invalid, so nothing can be compared (exit status 2)."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed worsening per figure, as fractions: a default and overrides by figure key."""

    default: float = DEFAULT_TOLERANCE
    by_key: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FIGURE_TOLERANCES))

    def for_key(self, key: str) -> float:
        return self.by_key.get(key, self.default)


def figure_tolerances_text() -> str:
    """List the per-figure default tolerances in percent, for help texts: "latency_p50_ms 100, ..."."""
    return ", ".join(f"{key} {fraction * 100:g}" for key, fraction in DEFAULT_FIGURE_TOLERANCES.items())


def parse_tolerances(values: list[str]) -> Tolerance:
    """Parse ``--tolerance`` values: "10%" sets the default and "latency_p95_ms=50%" one figure. The "%" is optional."""
    default = DEFAULT_TOLERANCE
    by_key = dict(DEFAULT_FIGURE_TOLERANCES)
    for text in values:
        match = _TOLERANCE_PATTERN.fullmatch(text.strip())
        if match is None:
            raise BaselineError(
                f"Invalid tolerance {text!r}: write a percentage such as 10% for every figure, "
                "or KEY=PERCENT such as latency_p95_ms=50% for one figure."
            )
        fraction = float(match["percent"]) / 100.0
        if match["key"]:
            by_key[match["key"]] = fraction
        else:
            default = fraction
    return Tolerance(default=default, by_key=by_key)


@dataclass(frozen=True)
class FigureComparison:
    """One figure of this run against the baseline's."""

    key: str
    title: str
    unit: str
    baseline: float | None
    current: float | None
    # The worst value still within the tolerance, or None where nothing is compared.
    allowed: float | None
    tolerance: float
    status: FigureStatus
    reason: str


@dataclass(frozen=True)
class BaselineComparison:
    """This run's figures against a stored baseline summary."""

    path: str
    baseline_run_dir: str | None
    baseline_verdict: str | None
    baseline_started_at: str | None
    current_verdict: str | None
    figures: list[FigureComparison]
    warnings: list[str]

    @property
    def regressed(self) -> bool:
        return any(figure.status == "REGRESSED" for figure in self.figures)

    @property
    def regressions(self) -> list[FigureComparison]:
        return [figure for figure in self.figures if figure.status == "REGRESSED"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressed"] = self.regressed
        return data


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a baseline summary.json. A comparison's summary yields its fixed run."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"Baseline {path} not found. Pass a summary.json, for example one under reports/baselines/.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"Baseline {path} could not be read as JSON ({error}). Pass a summary.json written by soak.") from None

    if not isinstance(summary, dict):
        raise BaselineError(f"Baseline {path} is not a JSON object. Pass a summary.json written by soak.")
    if summary.get("schema_version") != 1:
        raise BaselineError(
            f"Baseline {path} has schema version {summary.get('schema_version')!r}, but this soak reads version 1. "
            "Pass a summary.json written by this version of soak."
        )
    if summary.get("kind") == "comparison":
        summary = (summary.get("runs") or {}).get("fixed")
        if not isinstance(summary, dict):
            raise BaselineError(f"Baseline {path} is a comparison without a fixed run. Pass a run's summary.json.")
    if summary.get("kind") != "run" or not isinstance(summary.get("criteria"), list):
        raise BaselineError(f"Baseline {path} has no run summary with criteria. Pass a run's or a comparison's summary.json.")
    return summary


def compare_with_baseline(current: dict[str, Any], baseline: dict[str, Any], path: Path, tolerance: Tolerance) -> BaselineComparison:
    """Compare the run summary ``current`` with ``baseline`` figure by figure.

    Raises BaselineError when the two runs are of different profiles, because
    their criteria then measure different things.
    """
    if current.get("profile") != baseline.get("profile"):
        raise BaselineError(
            f"Baseline {path} is a {baseline.get('profile')!r} run but this run is {current.get('profile')!r}. "
            "Compare runs of the same profile."
        )
    warnings = []
    for key, noun in (("model", "model"), ("leaks", "leak switches")):
        if current.get(key) != baseline.get(key):
            warnings.append(f"The baseline's {noun} ({baseline.get(key)}) differ from this run's ({current.get(key)}).")
    planned = (current.get("requests") or {}).get("planned"), (baseline.get("requests") or {}).get("planned")
    if planned[0] != planned[1]:
        warnings.append(f"The baseline ran {planned[1]} requests and this run {planned[0]}, so absolute figures differ.")

    figures = [compare_verdict(current, baseline)]
    baseline_criteria = {row.get("key"): row for row in baseline["criteria"]}
    for row in current.get("criteria", []):
        reference = baseline_criteria.get(row.get("key"))
        figures.append(compare_criterion(row, reference, tolerance))
    for field_name, key, title in LATENCY_FIGURES:
        figures.append(
            compare_figure(
                key, title, "ms",
                _get(current.get("latency_ms"), field_name),
                _get(baseline.get("latency_ms"), field_name),
                limit=None, tolerance=tolerance.for_key(key), lower_is_worse=False,
            )
        )

    return BaselineComparison(
        path=str(path),
        baseline_run_dir=baseline.get("run_dir"),
        baseline_verdict=baseline.get("verdict"),
        baseline_started_at=baseline.get("started_at"),
        current_verdict=current.get("verdict"),
        figures=figures,
        warnings=warnings,
    )


def compare_verdict(current: dict[str, Any], baseline: dict[str, Any]) -> FigureComparison:
    """Flag a run that passed in the baseline and no longer passes, whatever its figures."""
    now, before = current.get("verdict"), baseline.get("verdict")
    if before == "PASS" and now != "PASS":
        status: FigureStatus = "REGRESSED"
        reason = f"The baseline passed and this run is {now}."
    elif before != "PASS" and now == "PASS":
        status, reason = "IMPROVED", f"The baseline was {before} and this run passed."
    else:
        status, reason = "OK", f"The verdict is {now}, as in the baseline."
    return FigureComparison("verdict", "Verdict", "verdict", None, None, None, 0.0, status, reason)


def compare_criterion(row: dict[str, Any], reference: dict[str, Any] | None, tolerance: Tolerance) -> FigureComparison:
    key = str(row.get("key"))
    title = str(row.get("title", key))
    unit = str(row.get("unit", ""))
    if reference is None:
        return FigureComparison(key, title, unit, None, row.get("measured"), None, tolerance.for_key(key), "MISSING",
                                "The baseline has no such criterion.")
    limit = row.get("limit") if row.get("limit") is not None else reference.get("limit")
    return compare_figure(
        key, title, unit, row.get("measured"), reference.get("measured"),
        limit=limit, tolerance=tolerance.for_key(key), lower_is_worse=key in LOWER_IS_WORSE,
    )


def compare_figure(
    key: str,
    title: str,
    unit: str,
    current: float | None,
    baseline: float | None,
    *,
    limit: float | None,
    tolerance: float,
    lower_is_worse: bool,
) -> FigureComparison:
    """Compare one figure: allowed = baseline worsened by tolerance x max(|baseline|, |limit|)."""
    if current is None or baseline is None or not _is_number(current) or not _is_number(baseline):
        missing = "this run" if not _is_number(current) else "the baseline"
        return FigureComparison(key, title, unit, baseline if _is_number(baseline) else None,
                                current if _is_number(current) else None, None, tolerance, "MISSING",
                                f"{missing.capitalize()} has no measured value, so nothing is compared.")

    scale = max(abs(baseline), abs(limit) if limit is not None and _is_number(limit) else 0.0)
    margin = tolerance * scale
    sign = -1.0 if lower_is_worse else 1.0
    allowed = baseline + sign * margin
    worse_by = sign * (current - baseline)

    share = f"{tolerance * 100:g} % of {'the limit' if scale != abs(baseline) else 'the baseline value'}"
    if worse_by > margin:
        status: FigureStatus = "REGRESSED"
        reason = f"Worse than the baseline by more than {share}."
    elif worse_by < -margin:
        status, reason = "IMPROVED", f"Better than the baseline by more than {share}."
    else:
        status, reason = "OK", f"Differs from the baseline by at most {share}."
    return FigureComparison(key, title, unit, float(baseline), float(current), allowed, tolerance, status, reason)


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
