"""Audio input: resolving ``audio_url`` under the media roots, decoding and resampling.

Audio is decoded with soundfile (WAV, FLAC, OGG and what libsndfile offers),
down-mixed to mono and resampled to 16 kHz float32.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile

from gateway.errors import ForbiddenPathError, InvalidAudioError, InvalidRequestError, NotFoundError, PayloadTooLargeError

SAMPLE_RATE = 16000
MAX_URL_CHARS = 4096


def resolve_media_path(audio_url: str, media_roots: tuple[Path, ...]) -> Path:
    """Return the real path of ``audio_url`` if it lies under a media root.

    Relative paths are taken from the first media root. ``..`` components,
    ``file://`` URLs and symlinks that leave every root are rejected.
    """
    if not isinstance(audio_url, str) or not audio_url.strip():
        raise InvalidRequestError("audio_url is empty; pass a path under a media root", code="invalid_audio_url")
    if len(audio_url) > MAX_URL_CHARS:
        raise InvalidRequestError(
            f"audio_url has {len(audio_url)} characters, more than the limit of {MAX_URL_CHARS}",
            code="invalid_audio_url",
        )
    if "\x00" in audio_url:
        raise InvalidRequestError("audio_url contains a NUL character", code="invalid_audio_url")
    lowered = audio_url.strip().lower()
    if "://" in lowered:
        scheme = lowered.split("://", 1)[0]
        raise ForbiddenPathError(
            f"audio_url scheme {scheme!r} is not allowed in {audio_url!r}; pass a plain path under a media root "
            "(downloads are disabled while the URL allowlist is empty)",
            code="url_not_allowed",
        )
    if not media_roots:
        raise ForbiddenPathError(
            f"audio_url {audio_url!r} rejected: the gateway has no media root; start it with --media-root DIR",
            code="path_not_allowed",
        )

    raw = Path(audio_url)
    if ".." in raw.parts:
        raise ForbiddenPathError(f"audio_url {audio_url!r} contains '..'; pass a path under a media root")
    candidate = raw if raw.is_absolute() else media_roots[0] / raw
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(root) for root in media_roots):
        roots = ", ".join(str(root) for root in media_roots)
        raise ForbiddenPathError(f"audio_url {audio_url!r} resolves outside the media roots ({roots})")
    if not resolved.is_file():
        raise NotFoundError(f"audio file {audio_url!r} not found under the media roots", code="audio_not_found")
    return resolved


def read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a file, rejecting it before reading when it is over ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"audio file {path.name!r} has {size} bytes, over the limit of {max_bytes}; "
            "split the audio or raise --max-upload-bytes"
        )
    return path.read_bytes()


def decode(data: bytes, *, max_duration_s: float, name: str = "audio", expected_rate: int | None = None) -> np.ndarray:
    """Decode audio bytes to mono float32 at 16 kHz; raise InvalidAudioError with the reason."""
    if not data:
        raise InvalidAudioError(f"{name} is empty (0 bytes); send a WAV, FLAC or OGG file")
    try:
        info = soundfile.info(io.BytesIO(data))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InvalidAudioError(
            f"{name} is not decodable audio ({_libsndfile_reason(error)}); send a WAV, FLAC or OGG file"
        ) from None

    if info.samplerate <= 0 or info.frames <= 0:
        raise InvalidAudioError(f"{name} has no audio samples; send a non-empty recording")
    duration_s = info.frames / info.samplerate
    if duration_s > max_duration_s:
        raise PayloadTooLargeError(
            f"{name} lasts {duration_s:.1f} s, over the limit of {max_duration_s:g} s; "
            "split the audio or raise --max-audio-duration-s",
            code="audio_too_long",
        )
    if expected_rate is not None and expected_rate != info.samplerate:
        raise InvalidAudioError(
            f"{name} has sample rate {info.samplerate} Hz but the request sets sample_rate {expected_rate} Hz; "
            "omit sample_rate or send matching audio",
            code="sample_rate_mismatch",
        )

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InvalidAudioError(
            f"{name} could not be decoded ({_libsndfile_reason(error)}); the file may be truncated"
        ) from None
    if samples.size == 0:
        raise InvalidAudioError(f"{name} has no audio samples; send a non-empty recording")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise InvalidAudioError(f"{name} contains NaN or infinite samples; send finite PCM or float audio")
    return resample(np.ascontiguousarray(mono, dtype=np.float32), rate)


def _libsndfile_reason(error: Exception) -> str:
    """Return libsndfile's reason without the in-memory file object's repr."""
    return str(error).rsplit(": ", 1)[-1].strip() or type(error).__name__


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float32 audio to 16 kHz with a polyphase filter."""
    if rate == SAMPLE_RATE:
        return samples
    from scipy.signal import resample_poly

    divisor = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Convert PCM16 little-endian mono bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise InvalidAudioError(f"PCM16 audio must have an even byte count, got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
