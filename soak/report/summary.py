"""``summary.json``: the verdict and per-criterion results, for CI and for later comparison.

The schema is documented in docs/soak-harness.md. The payload comes from
the result model's ``to_summary``; ``RunFolder.write_json`` writes it.
"""

from __future__ import annotations

from typing import Any

from soak.results import ComparisonResult, RunResult


def run_summary(result: RunResult) -> dict[str, Any]:
    return result.to_summary()


def comparison_summary(comparison: ComparisonResult) -> dict[str, Any]:
    return comparison.to_summary()

