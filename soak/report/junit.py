"""``junit.xml``: one test case per criterion, so CI shows each criterion as a test.

Status mapping: FAIL becomes a failure, INCONCLUSIVE a failure of type
INCONCLUSIVE (a gate must not pass on evidence that could not decide), and
NOT_APPLICABLE a skipped case. An INCONCLUSIVE status that the criteria file
tolerates is skipped too, so that JUnit agrees with the run's verdict. A run that could not be carried out has one
case, ``run``, with an error. The verdict, the slope per hour, the projection
and the diagnosis are suite properties. With a baseline, a second suite has
one case per compared figure.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from soak.report.units import format_value
from soak.results import ComparisonResult, CriterionResult, RunResult


def render_run_junit(result: RunResult) -> str:
    suites = ElementTree.Element("testsuites", name=f"soak {result.profile}")
    suites.append(run_suite(result, suite_name=f"{result.profile} (leaks: {result.leaks})"))
    baseline_suite = render_baseline_suite(result)
    if baseline_suite is not None:
        suites.append(baseline_suite)
    return serialise(suites)


def render_comparison_junit(comparison: ComparisonResult) -> str:
    """Render the fixed run's criteria as they are, plus one case that the leaky run was detected.

    The leaky run's own failures are the expected outcome, so they appear only
    through that one case.
    """
    suites = ElementTree.Element("testsuites", name=f"soak {comparison.profile} comparison")
    suites.append(run_suite(comparison.fixed, suite_name=f"{comparison.profile} fixed (leaks: {comparison.fixed.leaks})"))
    baseline_suite = render_baseline_suite(comparison.fixed)
    if baseline_suite is not None:
        suites.append(baseline_suite)

    suite = ElementTree.SubElement(suites, "testsuite", name=f"{comparison.profile} leaky reference")
    case = ElementTree.SubElement(
        suite, "testcase", classname=f"soak.{comparison.profile}.leaky", name="leak detected in the leaky run"
    )
    leaky = comparison.leaky
    if leaky.verdict == "ERROR":
        element = ElementTree.SubElement(case, "error", message=leaky.error or "the run could not be carried out")
        element.text = leaky.error or ""
    elif leaky.verdict != "FAIL":
        message = f"the leaky run is {leaky.verdict}; the criteria did not detect the known leak"
        ElementTree.SubElement(case, "failure", message=message, type="NOT_DETECTED")
    set_counts(suite)
    return serialise(suites)


def render_baseline_suite(result: RunResult) -> ElementTree.Element | None:
    """Build a suite with one case per figure compared with the baseline: REGRESSED fails, MISSING is skipped."""
    baseline = result.baseline
    if baseline is None:
        return None
    suite = ElementTree.Element("testsuite", name=f"{result.profile} against the baseline {baseline.path}")
    classname = f"soak.{result.profile}.baseline"
    for figure in baseline.figures:
        case = ElementTree.SubElement(suite, "testcase", classname=classname, name=figure.title)
        text = f"{figure.status}: {figure.reason}"
        if figure.unit != "verdict":
            text = (
                f"{figure.status}: this run {format_value(figure.current, figure.unit)}, baseline "
                f"{format_value(figure.baseline, figure.unit)}, worst allowed "
                f"{format_value(figure.allowed, figure.unit)}. {figure.reason}"
            )
        if figure.status == "REGRESSED":
            element = ElementTree.SubElement(case, "failure", message=figure.reason, type="REGRESSED")
            element.text = text
        elif figure.status == "MISSING":
            ElementTree.SubElement(case, "skipped", message=figure.reason)
        else:
            output = ElementTree.SubElement(case, "system-out")
            output.text = text
    set_counts(suite)
    return suite


def run_properties(result: RunResult) -> ElementTree.Element:
    """Collect the verdict, the slope per hour, the projection and the diagnosis as suite properties."""
    values: list[tuple[str, str]] = [("verdict", result.verdict)]
    if result.trend is not None:
        values.append(("slope_per_hour", format_value(result.trend.per_hour_bytes, "bytes/hour")))
        values.append(("projection", result.trend.projection))
    if result.diagnosis is not None:
        values.append(("diagnosis", result.diagnosis.conclusion))
    properties = ElementTree.Element("properties")
    for name, value in values:
        ElementTree.SubElement(properties, "property", name=name, value=value)
    return properties


def run_suite(result: RunResult, suite_name: str) -> ElementTree.Element:
    suite = ElementTree.Element("testsuite", name=suite_name)
    suite.append(run_properties(result))
    classname = f"soak.{result.profile}.{result.leaks.replace(',', '+')}"

    if result.verdict == "ERROR":
        case = ElementTree.SubElement(suite, "testcase", classname=classname, name="run")
        element = ElementTree.SubElement(case, "error", message=result.error or "the run could not be carried out")
        element.text = result.error or ""
    for criterion in result.criteria:
        suite.append(criterion_case(criterion, classname))

    set_counts(suite)
    return suite


def criterion_case(criterion: CriterionResult, classname: str) -> ElementTree.Element:
    case = ElementTree.Element("testcase", classname=classname, name=criterion.title)
    measured = format_value(criterion.measured, criterion.unit)
    limit = format_value(criterion.limit, criterion.unit)
    text = f"{criterion.status}: measured {measured}, limit {limit}. {criterion.reason}"

    if criterion.status == "NOT_APPLICABLE" or criterion.tolerated:
        ElementTree.SubElement(case, "skipped", message=f"{criterion.status}: {criterion.reason}")
    elif criterion.status in ("FAIL", "INCONCLUSIVE"):
        element = ElementTree.SubElement(case, "failure", message=criterion.reason, type=criterion.status)
        element.text = text
    else:
        output = ElementTree.SubElement(case, "system-out")
        output.text = text
    return case


def set_counts(suite: ElementTree.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for case in cases if case.find("failure") is not None)))
    suite.set("errors", str(sum(1 for case in cases if case.find("error") is not None)))
    suite.set("skipped", str(sum(1 for case in cases if case.find("skipped") is not None)))


def serialise(root: ElementTree.Element) -> str:
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
