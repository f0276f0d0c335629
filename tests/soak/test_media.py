"""Audio variants written from the speech fixture into a run's media root."""

from __future__ import annotations

import soundfile

from soak.media import long_name, varying_lengths_s, varying_names, write_media
from soak.settings import DEFAULT_AUDIO


def test_variants_have_exact_lengths(tmp_path):
    written = write_media(DEFAULT_AUDIO, tmp_path)

    assert written[0] == "speech.wav"
    assert soundfile.info(tmp_path / long_name(120)).frames == 120 * 16000
    frames = [soundfile.info(tmp_path / name).frames for name in varying_names()]
    assert frames == [round(length * 16000) for length in varying_lengths_s()]
    assert len(set(frames)) == len(frames), "every varying file has its own length"


def test_only_requested_variants_written(tmp_path):
    written = write_media(DEFAULT_AUDIO, tmp_path, long_files=False, varying_files=False)

    assert written == ["speech.wav"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["speech.wav"]
