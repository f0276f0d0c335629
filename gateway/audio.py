"""Audio input: resolving ``audio_url`` under the media roots, decoding and resampling.

Audio is decoded with soundfile (WAV, FLAC, OGG and what libsndfile offers),
down-mixed to mono and resampled to 16 kHz float32.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

from gateway.errors import ForbiddenPathError, InvalidAudioError, InvalidRequestError, NotFoundError, PayloadTooLargeError

SAMPLE_RATE = 16000
MAX_URL_CHARS = 4096
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
# Microphone arrays and ambisonic recordings stay well under this.
MAX_CHANNELS = 64
# Samples (frames x channels) decoded per block: 4 MiB of float32.
DECODE_BLOCK_SAMPLES = 1 << 20


def is_url(audio_url: str) -> bool:
    """Return whether ``audio_url`` names a URL (``scheme://...``) rather than a path under a media root."""
    return "://" in audio_url


def resolve_media_path(audio_url: str, media_roots: tuple[Path, ...]) -> Path:
    """Return the real path of ``audio_url`` if it lies under a media root.

    Relative paths are taken from the first media root. ``..`` components,
    URLs and symlinks that leave every root are rejected.
    """
    if not isinstance(audio_url, str) or not audio_url.strip():
        raise InvalidRequestError("audio_url is empty; pass a path under a media root", code="invalid_audio_url")
    if len(audio_url) > MAX_URL_CHARS:
        raise InvalidRequestError(
            f"audio_url has {len(audio_url)} characters, more than the limit of {MAX_URL_CHARS}",
            code="invalid_audio_url",
        )
    try:
        audio_url.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            "audio_url contains a lone UTF-16 surrogate, which no file name can hold; send valid Unicode",
            code="invalid_audio_url",
        ) from None
    short_url = audio_url if len(audio_url) <= 200 else audio_url[:200] + "..."
    if "\x00" in audio_url:
        raise InvalidRequestError(f"audio_url {short_url!r} contains a NUL character", code="invalid_audio_url")
    if is_url(audio_url):
        raise ForbiddenPathError(
            f"audio_url {short_url!r} is a URL, not a path; pass a plain path under a media root",
            code="url_not_allowed",
        )
    if not media_roots:
        raise ForbiddenPathError(
            f"audio_url {short_url!r} rejected: the gateway has no media root; start it with --media-root DIR",
            code="path_not_allowed",
        )

    raw = Path(audio_url)
    if ".." in raw.parts:
        raise ForbiddenPathError(f"audio_url {short_url!r} contains '..'; pass a path under a media root")
    candidate = raw if raw.is_absolute() else media_roots[0] / raw
    try:
        resolved = candidate.resolve()
        inside = any(resolved.is_relative_to(root) for root in media_roots)
        is_file = inside and resolved.is_file()
    except (OSError, RuntimeError) as error:
        # A name over the file system's limit, or a symlink loop.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise InvalidRequestError(
            f"audio_url {short_url!r} is not a usable path ({reason}); pass a path under a media root",
            code="invalid_audio_url",
        ) from None
    if not inside:
        roots = ", ".join(str(root) for root in media_roots)
        raise ForbiddenPathError(f"audio_url {short_url!r} resolves outside the media roots ({roots})")
    if not is_file:
        raise NotFoundError(f"audio file {short_url!r} not found under the media roots", code="audio_not_found")
    return resolved


def read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a file, rejecting it when it is over ``max_bytes``; a file that grows while read is cut off at the limit."""
    size = path.stat().st_size
    if size <= max_bytes:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
        size = len(data)
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"audio file {path.name!r} has {size} bytes, over the limit of {max_bytes}; "
            "split the audio or raise --max-upload-bytes"
        )
    return data


def decode(data: bytes, *, max_duration_s: float, name: str = "audio", expected_rate: int | None = None) -> np.ndarray:
    """Decode audio bytes to mono float32 at 16 kHz; raise InvalidAudioError with the reason.

    The header is checked first (sample rate, channels, duration), so over-long
    audio is rejected before any sample is decoded. Samples are then decoded,
    down-mixed, clipped to full scale [-1, 1] and resampled in blocks, so
    memory beyond the 16 kHz result stays at one block whatever the source's
    rate and channel count.
    """
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
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"{name} has sample rate {info.samplerate} Hz, outside the supported {MIN_SAMPLE_RATE} to "
            f"{MAX_SAMPLE_RATE} Hz; resample the audio to 16000 Hz",
            code="unsupported_sample_rate",
        )
    if info.channels > MAX_CHANNELS:
        raise InvalidAudioError(
            f"{name} has {info.channels} channels, more than the limit of {MAX_CHANNELS}; down-mix it before sending",
            code="too_many_channels",
        )
    duration_s = info.frames / info.samplerate
    if duration_s > max_duration_s:
        raise _too_long(name, f"lasts {duration_s:.1f} s", max_duration_s)
    if expected_rate is not None and expected_rate != info.samplerate:
        raise InvalidAudioError(
            f"{name} has sample rate {info.samplerate} Hz but the request sets sample_rate {expected_rate} Hz; "
            "omit sample_rate or send matching audio",
            code="sample_rate_mismatch",
        )

    try:
        samples = _decode_blocks(data, info.samplerate, info.channels, max_duration_s, name)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InvalidAudioError(
            f"{name} could not be decoded ({_libsndfile_reason(error)}); the file may be truncated"
        ) from None
    if samples.size == 0:
        raise InvalidAudioError(f"{name} has no audio samples; send a non-empty recording")
    return samples


def _decode_blocks(data: bytes, rate: int, channels: int, max_duration_s: float, name: str) -> np.ndarray:
    max_frames = int(max_duration_s * rate)
    frames_per_block = max(1024, DECODE_BLOCK_SAMPLES // channels)
    resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
    pieces: list[np.ndarray] = []
    decoded_frames = 0
    with soundfile.SoundFile(io.BytesIO(data)) as source:
        for block in source.blocks(blocksize=frames_per_block, dtype="float32", always_2d=True):
            decoded_frames += len(block)
            # Some formats only estimate their length in the header, so the limit is enforced while decoding too.
            if decoded_frames > max_frames:
                raise _too_long(name, f"lasts more than {max_duration_s:g} s", max_duration_s)
            if not np.isfinite(block).all():
                raise InvalidAudioError(
                    f"{name} contains NaN or infinite samples; send finite PCM or float audio", code="non_finite_audio"
                )
            mono = block.mean(axis=1, dtype=np.float64).astype(np.float32) if channels > 1 else block[:, 0].copy()
            # Float files may hold samples past full scale; FunASR's features turn huge ones into NaN energies.
            np.clip(mono, -1.0, 1.0, out=mono)
            pieces.append(resampler.resample_chunk(mono) if resampler is not None else mono)
    if resampler is not None:
        pieces.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(pieces), dtype=np.float32)


def _too_long(name: str, what: str, max_duration_s: float) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{name} {what}, over the limit of {max_duration_s:g} s; split the audio or raise --max-audio-duration-s",
        code="audio_too_long",
    )


def _libsndfile_reason(error: Exception) -> str:
    """Return libsndfile's reason without the in-memory file object's repr."""
    return str(error).rsplit(": ", 1)[-1].strip() or type(error).__name__


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float32 audio to 16 kHz with soxr."""
    if rate == SAMPLE_RATE:
        return samples
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32, copy=False)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Convert PCM16 little-endian mono bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise InvalidAudioError(f"PCM16 audio must have an even byte count, got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
