"""The diagnosis: census, retention paths, tracemalloc sites and the heap reading, on fixed inputs."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from soak.diagnosis import DIAGNOSIS, SNAPSHOTS_DIR, Holder, describe_holder, diagnose
from soak.diagnosis.census import census, explaining_gauge, fitted_bytes_per_unit, fitted_growth
from soak.diagnosis.heap import growing_sites, heap_reading
from soak.diagnosis.retention import parse_holders, read_memory_report
from soak.evaluate import evaluate_run
from tests.soak.builders import MIB, MODEL_BYTES, fixed_rss, leaky_rss, write_run_folder

BASE = 700 * MIB
FUTURE_BYTES = 715_200

# GET /v1/debug/memory of a real gateway with every leak on, after 4 requests and 3 abandoned sessions.
MEMORY_REPORT = {
    "schema_version": 1,
    "census": {"rss_bytes": 589029376, "models_cached": 5, "retained_futures": 4, "sessions_open": 3,
               "sessions_buffered_bytes": 192000},
    "live_objects": {"LoadedModel": 5, "Future": 4, "Transcript": 4, "Session": 3},
    "retention_paths": [
        {"root": "gateway.leaky.workers._FUTURES", "holds": {"Future": 4, "Transcript": 4, "ndarray_bytes": 2860800},
         "bytes": 2860800},
        {"root": "gateway.leaky.sessions._BUFFERS", "holds": {"buffer_bytes": 192000}, "bytes": 192000},
        {"root": "gateway.leaky.model_cache._MODELS", "holds": {"LoadedModel": 5}, "bytes": 0},
        {"root": "gateway.leaky.sessions._SESSIONS", "holds": {"Session": 3}, "bytes": 0},
    ],
    "tracemalloc": {"tracing": False},
}


def rows_of(rss: list[float], **gauges: list[float]) -> list[dict]:
    """Build sample rows one second apart, with the given status gauges (0 where not given)."""
    rows = []
    for index, rss_bytes in enumerate(rss):
        status = {"models_cached": 3, "retained_futures": 0, "sessions_open": 0, "sessions_buffered_bytes": 0}
        status.update({name: values[index] for name, values in gauges.items()})
        rows.append({"time_s": 1000.0 + index, "rss_bytes": rss_bytes, "status": status})
    return rows


def gauge(gauges, name):
    return next(item for item in gauges if item.name == name)


# --- (1) the census ---------------------------------------------------------------------


def test_census_names_cached_models():
    models = [3 + index for index in range(20)]
    rows = rows_of([BASE + count * MODEL_BYTES for count in models], models_cached=models)

    gauges = census(rows, model_bytes=MODEL_BYTES, holders=[])

    models_cached = gauge(gauges, "models_cached")
    assert models_cached.growth == 19
    assert models_cached.bytes_per_unit == MODEL_BYTES
    assert models_cached.explained_fraction == pytest.approx(1.0)
    assert models_cached.correlation == pytest.approx(1.0)
    assert explaining_gauge(gauges).name == "models_cached"


def test_census_sizes_futures_from_holder():
    futures = list(range(4, 24))
    rows = rows_of([BASE + count * FUTURE_BYTES for count in futures], retained_futures=futures)
    holders = [Holder("gateway.leaky.workers._FUTURES", "gateway.leaky.workers", "_FUTURES",
                      {"Future": 23, "ndarray_bytes": 23 * FUTURE_BYTES}, 23 * FUTURE_BYTES)]

    gauges = census(rows, model_bytes=MODEL_BYTES, holders=holders)

    retained = gauge(gauges, "retained_futures")
    assert retained.bytes_per_unit == pytest.approx(FUTURE_BYTES)
    assert "gateway.leaky.workers._FUTURES" in retained.bytes_per_unit_source
    assert retained.explained_fraction == pytest.approx(1.0)
    assert explaining_gauge(gauges).name == "retained_futures"


def test_census_fits_futures_without_holder():
    futures = list(range(4, 24))
    rows = rows_of([BASE + count * 2 * MIB for count in futures], retained_futures=futures)

    retained = gauge(census(rows, model_bytes=MODEL_BYTES, holders=[]), "retained_futures")

    assert retained.bytes_per_unit == pytest.approx(2 * MIB)
    assert retained.bytes_per_unit_source.startswith("Theil-Sen fit")


def test_census_prefers_models_over_collinear_futures():
    # Every leak on: one model instance and one future per request, so both gauges rise together.
    steps = list(range(20))
    rows = rows_of(
        [BASE + (3 + step) * MODEL_BYTES + (4 + step) * FUTURE_BYTES for step in steps],
        models_cached=[3 + step for step in steps],
        retained_futures=[4 + step for step in steps],
    )

    gauges = census(rows, model_bytes=MODEL_BYTES, holders=[])

    assert explaining_gauge(gauges).name == "models_cached"
    assert gauge(gauges, "retained_futures").bytes_per_unit == pytest.approx(FUTURE_BYTES)


def test_census_names_buffered_session_bytes():
    buffered = [index * 360_000 for index in range(20)]
    rows = rows_of([BASE + value for value in buffered], sessions_buffered_bytes=buffered,
                   sessions_open=list(range(20)))

    gauges = census(rows, model_bytes=MODEL_BYTES, holders=parse_holders(MEMORY_REPORT))

    assert explaining_gauge(gauges).name == "sessions_buffered_bytes"
    assert gauge(gauges, "sessions_buffered_bytes").bytes_per_unit == 1.0


def test_census_prefers_measured_size_over_fit():
    # Abandoned sessions: RSS also rises for other reasons, which a fit would give to the session count.
    buffered = [index * 192_000 for index in range(20)]
    rows = rows_of([BASE + value * 3 for value in buffered], sessions_buffered_bytes=buffered,
                   sessions_open=list(range(20)))
    holders = [Holder("gateway.leaky.sessions._SESSIONS", "gateway.leaky.sessions", "_SESSIONS", {"Session": 19}, 0)]

    gauges = census(rows, model_bytes=MODEL_BYTES, holders=holders)

    assert gauge(gauges, "sessions_open").size_basis == "fitted"
    assert gauge(gauges, "sessions_buffered_bytes").size_basis == "measured"
    assert explaining_gauge(gauges).name == "sessions_buffered_bytes"


def test_census_without_growth_names_nothing():
    rows = rows_of([BASE + (index % 3) * MIB for index in range(20)])

    assert explaining_gauge(census(rows, model_bytes=MODEL_BYTES, holders=[])) is None


def test_census_skips_failed_status_reads():
    futures = list(range(4, 24))
    rows = rows_of([BASE + count * FUTURE_BYTES for count in futures], retained_futures=futures)
    rows[5]["status"] = None
    rows[9]["status"] = None

    retained = gauge(census(rows, model_bytes=MODEL_BYTES, holders=[]), "retained_futures")

    assert retained.growth == 19
    assert retained.bytes_per_unit == pytest.approx(FUTURE_BYTES)


# --- (2) retention paths ------------------------------------------------------------------


def test_holders_name_module_and_attribute():
    holders = parse_holders(MEMORY_REPORT)

    assert [holder.root for holder in holders][0] == "gateway.leaky.workers._FUTURES"
    assert holders[0].owner == "gateway.leaky.workers"
    assert holders[0].attribute == "_FUTURES"
    assert describe_holder(holders[2]) == "_MODELS in module gateway.leaky.model_cache (5 LoadedModel)"


def test_holder_of_class_attribute_is_class():
    holder = Holder("gateway.model_cache.ModelCache._entries", "gateway.model_cache.ModelCache", "_entries",
                    {"LoadedModel": 3}, 0)

    assert describe_holder(holder) == "_entries in class gateway.model_cache.ModelCache (3 LoadedModel)"


def test_missing_memory_report_says_why(tmp_path):
    report, note = read_memory_report(tmp_path, {"file": None, "error": "GET /v1/debug/memory failed: timed out"})

    assert report is None
    assert note == "The gateway's memory report is missing: GET /v1/debug/memory failed: timed out."


def test_invalid_memory_report_says_why(tmp_path):
    (tmp_path / DIAGNOSIS).write_text("{not json", encoding="utf-8")

    report, note = read_memory_report(tmp_path, None)

    assert report is None
    assert note.startswith("diagnosis.json could not be read (JSONDecodeError")


# --- (3) tracemalloc snapshots ----------------------------------------------------------


def allocate_blocks(count: int) -> list[bytearray]:
    return [bytearray(64 * 1024) for _ in range(count)]


def test_growing_sites_name_the_allocating_line(tmp_path):
    tracemalloc.start(1)
    try:
        first = tracemalloc.take_snapshot()
        kept = allocate_blocks(64)
        last = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    first.dump(str(tmp_path / "1.tracemalloc"))
    last.dump(str(tmp_path / "2.tracemalloc"))

    sites = growing_sites(tmp_path / "1.tracemalloc", tmp_path / "2.tracemalloc")

    assert len(kept) == 64
    assert sites[0].site.endswith("test_diagnosis.py:" + str(allocate_blocks.__code__.co_firstlineno + 1))
    assert sites[0].size_diff_bytes >= 64 * 64 * 1024
    assert sites[0].count_diff >= 64


# --- (4) RSS against the traced heap ---------------------------------------------------------


@pytest.mark.parametrize(
    ("heap_share", "kind"),
    [(0.0, "native"), (0.1, "native"), (0.35, "mixed"), (0.9, "python")],
)
def test_heap_reading_splits_python_and_native(heap_share, kind):
    rows = rows_of([BASE + index * MIB for index in range(30)])
    for index, row in enumerate(rows):
        row["status"]["tracemalloc_traced_bytes"] = 200 * MIB + heap_share * index * MIB

    reading = heap_reading(rows)

    assert reading.kind == kind
    assert reading.rss_growth_bytes == pytest.approx(29 * MIB)


def test_heap_reading_flat_and_untraced():
    rows = rows_of([BASE] * 30)

    assert heap_reading(rows).kind == "not_traced"
    for row in rows:
        row["status"]["tracemalloc_traced_bytes"] = 200 * MIB
    assert heap_reading(rows).kind == "flat"


# --- the whole diagnosis of a run folder -------------------------------------------------------


def test_diagnose_leaky_folder_names_container(tmp_path):
    count = 20
    folder = write_run_folder(tmp_path / "run", leaky_rss(count), leaks="all",
                              models_cached=[index + 2 for index in range(count)])
    report = json.loads(json.dumps(MEMORY_REPORT))
    report["retention_paths"][2]["holds"]["LoadedModel"] = count + 1
    folder.write_json(DIAGNOSIS, report)

    result = evaluate_run(folder)

    diagnosis = result.diagnosis
    assert diagnosis.grown_gauge == "models_cached"
    assert diagnosis.holder.root == "gateway.leaky.model_cache._MODELS"
    assert "held by _MODELS in module gateway.leaky.model_cache (21 LoadedModel)" in diagnosis.conclusion
    assert result.to_summary()["diagnosis"]["holder"]["attribute"] == "_MODELS"


def test_diagnose_fixed_folder_blames_nothing(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))

    result = evaluate_run(folder)

    assert result.diagnosis.holder is None
    assert result.diagnosis.conclusion.startswith("The growth verdict is PASS, so there is no leak to attribute.")
    assert "no diagnosis.json" in result.diagnosis.retention_note


def test_diagnose_reads_snapshots(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))
    snapshots = folder.path / SNAPSHOTS_DIR
    snapshots.mkdir()
    tracemalloc.start(1)
    try:
        tracemalloc.take_snapshot().dump(str(snapshots / "0001.tracemalloc"))
        kept = allocate_blocks(16)
        tracemalloc.take_snapshot().dump(str(snapshots / "0002.tracemalloc"))
    finally:
        tracemalloc.stop()

    diagnosis = diagnose(folder.path, [], model_bytes=MODEL_BYTES, window="all", leak_verdict="FAIL")

    assert len(kept) == 16
    assert diagnosis.snapshots == ["0001.tracemalloc", "0002.tracemalloc"]
    assert diagnosis.allocation_sites[0].site.startswith("tests/soak/test_diagnosis.py:")
    assert diagnosis.allocation_note is None


def test_fitted_growth_long_series_bounded_memory():
    """GIVEN 8,000 samples WHEN the growth is fitted THEN the fit is binned: memory stays small and the slope is right.

    Theil-Sen over every pair of 28,800 samples (8 hours at 1 Hz) took about 20 GiB.
    """
    rows = [{"time_s": float(second), "rss_bytes": 500 * MIB + second * 1024 + (second % 7) * 4096} for second in range(8000)]

    tracemalloc.start()
    try:
        growth = fitted_growth(rows, lambda row: row["rss_bytes"])
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert growth == pytest.approx(7999 * 1024, rel=0.01)
    assert peak_bytes < 400 * MIB


def test_fitted_bytes_per_unit_long_series():
    """GIVEN 8,000 gauge readings out of order WHEN bytes per unit are fitted THEN the binned fit finds the true size."""
    values = np.array([(index * 37) % 8000 for index in range(8000)], dtype=float)
    residual = values * 2 * MIB

    tracemalloc.start()
    try:
        unit_bytes, _, basis = fitted_bytes_per_unit(values, residual)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert unit_bytes == pytest.approx(2 * MIB, rel=0.01)
    assert basis == "fitted"
    assert peak_bytes < 400 * MIB
