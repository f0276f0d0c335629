"""``soak bench`` rejects bad arguments before it starts anything, with the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.cli import main


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["--rounds", "0"], "rounds must be from 1 to 50, got 0"),
        (["--rounds", "-3"], "rounds must be from 1 to 50, got -3"),
        (["--rounds", "51"], "rounds must be from 1 to 50, got 51"),
        (["--rounds", "9" * 400], "rounds must be from 1 to 50, got 9999999999"),
        (["--rounds", "five"], "invalid rounds 'five': use a whole number from 1 to 50"),
        (["--rounds", ""], "invalid rounds ''"),
        (["--sections", ""], "invalid section groups '': use a comma list of throughput, memory, allocator, overhead"),
        (["--sections", "throughput,disk"], "invalid section groups 'throughput,disk'"),
        (["--sections", "../../etc/passwd"], "invalid section groups '../../etc/passwd'"),
        (["--sections", "x" * 500], "invalid section groups 'xxxx"),
    ],
)
def test_bench_rejects_bad_arguments(argument: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *argument])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_rejects_folder_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")])

    assert status == 2
    err = capsys.readouterr().err
    assert f"--out {str(tmp_path)!r} is a folder" in err
    assert not (tmp_path / "work").exists()


def test_bench_rejects_same_out_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "bench.md"

    status = main(["bench", "--out", str(page), "--json", str(page), "--work-dir", str(tmp_path / "work")])

    assert status == 2
    assert "give the JSON its own file" in capsys.readouterr().err


def test_bench_rejects_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main([
        "bench", "--model", "whisper-large", "--out", str(tmp_path / "b.md"), "--work-dir", str(tmp_path / "work"),
        "--models-dir", str(tmp_path / "models"),
    ])

    assert status == 2
    assert "model 'whisper-large' is not a preset that soak can prepare; use one of paraformer-tiny" in capsys.readouterr().err
    assert not (tmp_path / "b.md").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--out", "", "argument --out: invalid path '': give a file or folder name"),
        ("--json", " ", "argument --json: invalid path '': give a file or folder name"),
        ("--out", "bench\nmd", "argument --out: invalid path 'bench\\nmd': it contains control characters"),
        ("--models-dir", "", "argument --models-dir: invalid path ''"),
        ("--work-dir", "a\x00b", "argument --work-dir: invalid path"),
    ],
)
def test_bench_rejects_bad_paths(flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", flag, value])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["n" * 300 + ".md", "missing-folder-is-a-file/x.md"])
def test_bench_rejects_unwritable_out_before_starting(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "missing-folder-is-a-file").write_text("")

    status = main(["bench", "--out", str(tmp_path / name), "--work-dir", str(tmp_path / "work")])

    assert status == 2
    assert "cannot write --out" in capsys.readouterr().err
    assert not (tmp_path / "work" / "media").exists()
