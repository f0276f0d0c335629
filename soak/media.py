"""Audio files that the profiles send, written from the speech fixture into a gateway's media root.

The repository commits one short speech file. Profiles also need long files
(the workers profile keeps workers busy with two-minute files, the patterns
profile sends long files before short ones) and a set of files of distinct
lengths. They are made here by repeating the fixture and cutting it, so
nothing large is committed and every run folder records exactly what was sent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile

from soak.errors import SoakError

SPEECH = "speech.wav"
# Files of these lengths (seconds) are named speech-<length>s.wav.
LONG_LENGTHS_S = (60, 120)
VARYING_FILES = 30
# Lengths of the varying files: 1.5 s, 2.05 s, ... 17.45 s, all different, so every call has its own input shape.
VARYING_FIRST_S = 1.5
VARYING_STEP_S = 0.55


class MediaError(SoakError):
    """The audio variants could not be written."""


def long_name(length_s: int) -> str:
    return f"speech-{length_s}s.wav"


def varying_names() -> list[str]:
    return [f"speech-var-{number:02d}.wav" for number in range(VARYING_FILES)]


def varying_lengths_s() -> list[float]:
    return [round(VARYING_FIRST_S + number * VARYING_STEP_S, 3) for number in range(VARYING_FILES)]


def write_media(source: Path, media_dir: Path, *, long_files: bool = True, varying_files: bool = True) -> list[str]:
    """Copy the speech file into ``media_dir`` and write the variants; return the file names written."""
    media_dir.mkdir(parents=True, exist_ok=True)
    try:
        audio, sample_rate = soundfile.read(source, dtype="int16", always_2d=False)
    except (OSError, RuntimeError) as exc:
        raise MediaError(f"could not read the speech file {source}: {exc}") from None
    if audio.ndim != 1:
        raise MediaError(f"the speech file {source} must be mono, got {audio.shape[1]} channels")

    shutil.copyfile(source, media_dir / SPEECH)
    written = [SPEECH]
    if long_files:
        for length_s in LONG_LENGTHS_S:
            write_length(audio, sample_rate, length_s, media_dir / long_name(length_s))
            written.append(long_name(length_s))
    if varying_files:
        for name, length_s in zip(varying_names(), varying_lengths_s()):
            write_length(audio, sample_rate, length_s, media_dir / name)
            written.append(name)
    return written


def write_length(audio: np.ndarray, sample_rate: int, length_s: float, target: Path) -> None:
    """Write ``audio`` repeated and cut to exactly ``length_s`` seconds as 16-bit PCM WAV."""
    frames = round(length_s * sample_rate)
    repeats = -(-frames // len(audio))
    soundfile.write(target, np.tile(audio, repeats)[:frames], sample_rate, subtype="PCM_16")
