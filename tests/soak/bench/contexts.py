"""The benchmark context the bench tests share: paraformer-tiny from the test models, the speech fixture."""

from __future__ import annotations

from pathlib import Path

from soak.bench.context import BenchContext

DATA = Path(__file__).resolve().parents[2] / "data"


def make_context(models_dir: Path, work_dir: Path, rounds: int) -> BenchContext:
    return BenchContext(
        models_dir=models_dir,
        model="paraformer-tiny",
        audio_path=DATA / "speech.wav",
        media_dir=DATA,
        work_dir=work_dir,
        rounds=rounds,
    )
