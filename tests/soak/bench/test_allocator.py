"""The allocator sections against real components: fork servers, FunASR loads of paraformer-tiny, glibc and jemalloc."""

from __future__ import annotations

import math
from pathlib import Path

import psutil
import pytest

from soak.allocator import find_jemalloc
from soak.bench import allocator
from soak.bench.context import BenchError
from soak.bench.figures import Section
from tests.soak.bench.contexts import make_context

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data"
ROUNDS = 2
PIECES = 4



def child_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def eviction(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Section:
    """Measure the eviction section once for the module: paraformer-tiny and its 4 copies, 2 rounds."""
    children_before = child_pids()
    section = allocator.measure_eviction(make_context(models_dir, tmp_path_factory.mktemp("eviction"), ROUNDS))
    assert child_pids() <= children_before, "a fork server or child outlived measure_eviction()"
    return section


@pytest.fixture(scope="module")
def onednn(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Section:
    """Measure the onednn section once for the module: paraformer-tiny, 4 pieces, 2 rounds."""
    children_before = child_pids()
    section = allocator.measure_onednn(make_context(models_dir, tmp_path_factory.mktemp("onednn"), ROUNDS), pieces=PIECES)
    assert child_pids() <= children_before, "a fork server or child outlived measure_onednn()"
    return section


def test_piece_lengths_distinct_and_seeded():
    lengths_s = allocator.piece_lengths_s(20)

    assert len(set(lengths_s)) == 20
    assert all(allocator.PIECE_MIN_S <= length <= allocator.PIECE_MAX_S for length in lengths_s)
    assert lengths_s == allocator.piece_lengths_s(20)
    assert lengths_s != sorted(lengths_s)


def test_piece_lengths_reject_zero():
    with pytest.raises(ValueError, match="piece count must be between 1 and"):
        allocator.piece_lengths_s(0)


def test_configuration_sets_and_removes_variables():
    configuration = allocator.Configuration("arena", (("MALLOC_ARENA_MAX", "2"),), ("MALLOC_CONF",))

    env = configuration.environment({"PATH": "/usr/bin", "MALLOC_CONF": "narenas:1"})

    assert env == {"PATH": "/usr/bin", "MALLOC_ARENA_MAX": "2"}
    assert configuration.command(["python", "-m", "x"]) == "env -u MALLOC_CONF MALLOC_ARENA_MAX=2 python -m x"


def test_glibc_configurations_drop_inherited_jemalloc(tmp_path):
    missing = (str(tmp_path / "nowhere" / "libjemalloc.so.2"),)

    configurations, skipped = allocator.eviction_configurations(
        {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2:/opt/other.so", "MALLOC_ARENA_MAX": "4"}, missing,
    )

    assert [configuration.name for configuration in configurations] == [allocator.GLIBC, allocator.ARENA_MAX_2]
    assert "apt-get install -y libjemalloc2" in skipped
    glibc = configurations[0].environment({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2:/opt/other.so", "MALLOC_ARENA_MAX": "4"})
    assert glibc == {"LD_PRELOAD": "/opt/other.so"}


def test_onednn_configurations_set_capacity():
    unset, gateway, small = allocator.onednn_configurations()

    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in unset.environment({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16"})
    assert gateway.environment({})["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024"
    assert small.environment({})["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(allocator.ONEDNN_SMALL_CAPACITY)
    assert all(configuration.environment({})["ONEDNN_VERBOSE"] == "profile_create" for configuration in (unset, gateway, small))


def test_eviction_figures_have_one_value_per_round(eviction):
    assert eviction.key == "eviction"
    assert eviction.figures
    for figure in eviction.figures:
        assert len(figure.values) == ROUNDS, figure.label
        assert all(math.isfinite(value) for value in figure.values), figure.label


def test_eviction_references_glibc_defaults(eviction):
    for figure in eviction.figures:
        if figure.label.startswith(allocator.GLIBC) or "arena purge" in figure.label:
            assert figure.reference_values == [], figure.label
        else:
            assert figure.reference_label == allocator.GLIBC, figure.label
            assert len(figure.ratios) == ROUNDS, figure.label

    growth = eviction.figure(f"{allocator.ARENA_MAX_2}: load growth")
    assert growth.reference_values == eviction.figure(f"{allocator.GLIBC}: load growth").values


def test_eviction_trim_returns_model_memory(eviction):
    growth = eviction.figure(f"{allocator.GLIBC}: load growth")
    trimmed = eviction.figure(f"{allocator.GLIBC}: returned after eviction and malloc_trim")
    untrimmed = eviction.figure(f"{allocator.GLIBC}: returned after eviction, no trim")

    assert all(value > 0 for value in growth.values)
    assert all(after >= before for after, before in zip(trimmed.values, untrimmed.values))
    alive = [results[name]["pipelines_alive_after_eviction"] for results in eviction.raw["rounds"] for name in results]
    assert alive == [0] * len(alive)


def test_eviction_includes_jemalloc_when_installed(eviction):
    if find_jemalloc() is None:
        pytest.skip("libjemalloc2 is not installed on this host")

    purged = eviction.figure(f"{allocator.JEMALLOC}: returned after arena purge")
    assert len(purged.values) == ROUNDS
    assert any(finding.startswith("Under jemalloc 5") for finding in eviction.findings)
    assert any("LD_PRELOAD=" in command and "libjemalloc.so.2" in command for command in eviction.commands)


def test_eviction_findings_and_commands(eviction):
    assert eviction.findings[0].startswith("Under glibc defaults, eviction with gc.collect() returns")
    assert f"medians over {ROUNDS} rounds" in eviction.findings[0]
    assert all("soak.bench.allocator_worker" in command for command in eviction.commands)
    assert all('"measurement": "eviction"' in command for command in eviction.commands)
    assert eviction.duration_s > 0


def test_eviction_skips_missing_jemalloc(models_dir, tmp_path):
    context = make_context(models_dir, tmp_path / "work", rounds=1)

    section = allocator.measure_eviction(context, jemalloc_patterns=(str(tmp_path / "nowhere" / "libjemalloc.so.2"),))

    assert not any(figure.label.startswith(f"{allocator.JEMALLOC}:") for figure in section.figures)
    assert section.findings[-1].startswith("jemalloc was skipped: --allocator jemalloc needs libjemalloc.so.2")
    assert len(section.figure(f"{allocator.ARENA_MAX_2}: returned after eviction and malloc_trim").values) == 1


def test_onednn_figures_against_unset(onednn):
    unset, gateway, small = (configuration.name for configuration in allocator.onednn_configurations())
    for figure in onednn.figures:
        assert len(figure.values) == ROUNDS, figure.label
        assert all(math.isfinite(value) for value in figure.values), figure.label
        if figure.label.startswith(unset):
            assert figure.reference_values == [], figure.label
        else:
            assert figure.reference_label == unset, figure.label

    created = onednn.figure(f"{gateway}: oneDNN primitives created")
    assert created.ratios == [1.0] * ROUNDS
    assert onednn.figure(f"{small}: oneDNN primitives created").ratio_median > 1.0


def test_onednn_findings_state_default(onednn):
    assert onednn.findings[0].startswith("oneDNN 3.")
    assert "holds at most 1024 primitives when ONEDNN_PRIMITIVE_CACHE_CAPACITY is unset" in onednn.findings[0]
    assert f"the {PIECES} pieces created" in onednn.findings[1]
    assert len(onednn.raw["lengths_s"]) == PIECES


def test_failed_child_names_configuration(models_dir, tmp_path):
    context = make_context(models_dir, tmp_path / "work", rounds=1)
    request = {"measurement": "eviction", "models": ["no-such-model"], "threads": 2}

    with pytest.raises(BenchError) as raised:
        allocator.run_rounds(context, "eviction", [allocator.Configuration("broken")], request)

    message = str(raised.value)
    assert "configuration 'broken' (round 1)" in message
    assert "exit status 1" in message
    assert "model 'no-such-model' not found" in message
