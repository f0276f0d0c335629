"""The result model of a run and of a comparison.

One model feeds every output: the terminal summary, ``summary.json``,
``junit.xml`` and ``report.html``. Writers take these objects and render them;
they compute nothing of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from soak.baseline import BaselineComparison
    from soak.diagnosis import Diagnosis
    from soak.memory_trend import MemoryTrend

CriterionStatus = Literal["PASS", "FAIL", "INCONCLUSIVE", "NOT_APPLICABLE"]
Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE", "ERROR"]

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_ERROR = 2

SUMMARY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CriterionResult:
    """One exit criterion: what was measured, against which limit, and why it got its status."""

    key: str
    title: str
    status: CriterionStatus
    measured: float | None
    limit: float | None
    # "bytes", "bytes/request", "percent" or "count": how writers format measured and limit.
    unit: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    # True for an INCONCLUSIVE status that the criteria file lets pass: it
    # does not change the run's verdict, and JUnit reports it as skipped.
    tolerated: bool = False


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles over a run's completed requests, in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class RunSeries:
    """The time series that the plots draw; they stay out of summary.json.

    Times are seconds since the gateway became ready. ``request_rss_bytes``
    is the RSS of the first sample taken after each request completed.
    """

    request_index: list[int]
    request_end_s: list[float]
    request_rss_bytes: list[int]
    sample_time_s: list[float]
    sample_rss_bytes: list[int | None]
    # Status figures and process counts per sample: models_cached,
    # retained_futures, sessions_open, sessions_buffered_bytes, threads, open_files.
    gauges: dict[str, list[float | None]]
    rss_limit_bytes: float | None = None
    # Theil-Sen fit over the requests after the cache filled: (first index, intercept, slope).
    growth_fit: tuple[int, float, float] | None = None


@dataclass
class RunResult:
    """The judged outcome of one run of one profile."""

    profile: str
    leaks: str
    model: str
    run_dir: str
    verdict: Verdict
    criteria: list[CriterionResult]
    requests_planned: int
    requests_completed: int
    requests_failed: int
    latency: LatencySummary | None
    started_at: str | None
    ended_at: str | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    series: RunSeries | None = None
    trend: MemoryTrend | None = None
    diagnosis: Diagnosis | None = None
    # Set by ``soak report --baseline``: this run's figures against a stored summary.
    baseline: BaselineComparison | None = None

    @property
    def exit_code(self) -> int:
        """Map the verdict to an exit status; a regression against the baseline fails a passing run."""
        if self.verdict == "PASS" and self.baseline is not None and self.baseline.regressed:
            return EXIT_FAIL
        return exit_code_for(self.verdict)

    def criterion(self, key: str) -> CriterionResult | None:
        for result in self.criteria:
            if result.key == key:
                return result
        return None

    def to_summary(self) -> dict[str, Any]:
        """Build the ``summary.json`` payload (the manifest and series stay in their own files)."""
        return {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "kind": "run",
            "profile": self.profile,
            "leaks": self.leaks,
            "model": self.model,
            "run_dir": self.run_dir,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "error": self.error,
            "warnings": list(self.warnings),
            "requests": {
                "planned": self.requests_planned,
                "completed": self.requests_completed,
                "failed": self.requests_failed,
            },
            "latency_ms": asdict(self.latency) if self.latency else None,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "criteria": [asdict(result) for result in self.criteria],
            "trend": asdict(self.trend) if self.trend else None,
            "diagnosis": asdict(self.diagnosis) if self.diagnosis else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
        }


@dataclass
class ComparisonResult:
    """A leaky run and a fixed run of one profile, judged together.

    The comparison passes only when the fixed run passes and the leaky run
    fails: a detector that cannot see the known leak proves nothing about the fix.
    """

    profile: str
    comparison_dir: str
    leaky: RunResult
    fixed: RunResult

    @property
    def verdict(self) -> Verdict:
        if self.leaky.verdict == "ERROR" or self.fixed.verdict == "ERROR":
            return "ERROR"
        if self.fixed.verdict == "PASS" and self.leaky.verdict == "FAIL":
            return "PASS"
        return "FAIL"

    @property
    def reason(self) -> str:
        if self.verdict == "ERROR":
            return "At least one run could not be carried out, so nothing was compared."
        if self.verdict == "PASS":
            reason = "The fixed run passed every criterion and the leaky reference run failed."
            if self.fixed.baseline is not None and self.fixed.baseline.regressed:
                reason += " The fixed run regressed against the baseline, so the comparison exits 1."
            return reason
        problems = []
        if self.fixed.verdict != "PASS":
            problems.append(f"the fixed run is {self.fixed.verdict}, expected PASS")
        if self.leaky.verdict != "FAIL":
            problems.append(f"the leaky reference run is {self.leaky.verdict}, expected FAIL")
        return "Comparison failed: " + " and ".join(problems) + "."

    @property
    def exit_code(self) -> int:
        if self.verdict == "PASS":
            return self.fixed.exit_code
        return exit_code_for(self.verdict)

    def to_summary(self) -> dict[str, Any]:
        """Build the comparison's ``summary.json`` payload with both runs' summaries inside."""
        return {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "kind": "comparison",
            "profile": self.profile,
            "comparison_dir": self.comparison_dir,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "runs": {"leaky": self.leaky.to_summary(), "fixed": self.fixed.to_summary()},
        }


def combine_statuses(criteria: list[CriterionResult]) -> Verdict:
    """Derive a run's verdict: any FAIL fails it, else any INCONCLUSIVE that is not tolerated."""
    statuses = {result.status for result in criteria}
    if "FAIL" in statuses:
        return "FAIL"
    if any(result.status == "INCONCLUSIVE" and not result.tolerated for result in criteria):
        return "INCONCLUSIVE"
    return "PASS"


def exit_code_for(verdict: Verdict) -> int:
    """Map a verdict to the process exit status.

    INCONCLUSIVE exits 1 like FAIL, because a gate must not pass on evidence
    that could not decide.
    """
    if verdict == "PASS":
        return EXIT_PASS
    if verdict == "ERROR":
        return EXIT_ERROR
    return EXIT_FAIL
