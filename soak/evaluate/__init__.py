"""Judge a saved run against its profile's exit criteria, from the run folder alone.

``soak report`` calls this on old runs too, so nothing here needs a gateway.
Each profile has its own module; the criteria shared by several profiles
(timeout rate, requests completed, threads and open files) are in ``common``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from soak.analysis import RunData
from soak.evaluate.memory import evaluate_memory
from soak.evaluate.patterns import evaluate_patterns
from soak.evaluate.sessions import evaluate_sessions
from soak.evaluate.soak_profile import evaluate_soak
from soak.evaluate.workers import evaluate_workers
from soak.findings import add_memory_findings
from soak.results import RunResult
from soak.rundir import RunFolder, RunFolderError

Evaluator = Callable[[RunData, "Path | None"], RunResult]

EVALUATORS: dict[str, Evaluator] = {
    "memory": evaluate_memory,
    "workers": evaluate_workers,
    "sessions": evaluate_sessions,
    "soak": evaluate_soak,
    "patterns": evaluate_patterns,
}


def evaluate_run(folder: RunFolder, criteria_path: Path | None = None) -> RunResult:
    """Judge the run saved in ``folder``.

    ``criteria_path`` overrides the criteria file recorded in the manifest;
    with neither, the packaged defaults apply.
    """
    data = RunData.load(folder)
    profile = data.manifest.get("profile")
    evaluator = EVALUATORS.get(profile)
    if evaluator is None:
        raise RunFolderError(
            f"{folder.path} contains a run of profile {profile!r}, which soak cannot judge; "
            f"known profiles: {', '.join(EVALUATORS)}"
        )
    result = evaluator(data, criteria_path)
    add_memory_findings(result, data, criteria_path)
    return result
