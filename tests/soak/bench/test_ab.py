"""``python -m soak.bench.ab``: the gateway at an earlier revision against the working tree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from soak.bench import ab
from soak.settings import REPO_ROOT


def worktrees() -> list[str]:
    completed = subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "list"], capture_output=True, text=True, timeout=30)
    return completed.stdout.splitlines()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--before", "no-such-revision-xyz"], "--before 'no-such-revision-xyz' names no commit"),
        (["--before", "HEAD; rm -rf /"], "--before 'HEAD; rm -rf /' names no commit"),
        (["--before", ""], "--before '' is not a revision"),
        (["--before", "x" * 5000], "names no commit"),
    ],
)
def test_ab_rejects_bad_revisions(arguments: list[str], message: str, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = ab.main([*arguments, "--models-dir", str(models_dir), "--model", "paraformer-tiny", "--work-dir", str(tmp_path)])

    assert status == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rounds", "0"], "--rounds must be from 1 to 50, got 0"),
        (["--rounds", "51"], "--rounds must be from 1 to 50, got 51"),
        (["--rounds", "many"], "invalid int value: 'many'"),
        (["--models-dir", "/nonexistent/models"], "--models-dir '/nonexistent/models' is not a folder"),
    ],
)
def test_ab_rejects_bad_options(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ab.main(["--before", "HEAD", "--models-dir", "/tmp", *arguments])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_ab_needs_copies_past_the_cache_bound(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a models folder with one identity WHEN ab runs THEN it names the count and the prepare command, before starting anything."""
    only_one = tmp_path / "models"
    only_one.mkdir()
    for name in ("paraformer-tiny", "fsmn-vad"):
        shutil.copytree(models_dir / name, only_one / name)

    status = ab.main(["--before", "HEAD", "--models-dir", str(only_one), "--model", "paraformer-tiny", "--work-dir", str(tmp_path / "work")])

    assert status == 2
    err = capsys.readouterr().err
    assert "has 1 identities of paraformer-tiny" in err
    assert "gateway models prepare --size tiny --copies 4" in err


def test_ab_compares_head_with_working_tree(models_dir: Path, tmp_path: Path) -> None:
    """GIVEN HEAD as the earlier revision WHEN one round runs THEN both gateways are measured and nothing is left behind."""
    json_path = tmp_path / "ab.json"
    trees_before = worktrees()

    status = ab.main([
        "--before", "HEAD", "--models-dir", str(models_dir), "--model", "paraformer-tiny", "--rounds", "1",
        "--json", str(json_path), "--work-dir", str(tmp_path / "work"),
    ])

    assert status == 0
    document = json.loads(json_path.read_text())
    assert len(document["before_commit"]) == 40
    assert document["duration_s"] > 0
    labels = [figure["label"] for figure in document["figures"]]
    assert "after: GET /v1/status while models load and unload: p99" in labels
    for figure in document["figures"]:
        assert len(figure["values"]) == 1, figure["label"]
        assert len(figure["reference_values"]) == 1, figure["label"]
    assert worktrees() == trees_before
    assert psutil.Process().children(recursive=True) == []
