"""FunASR models: model identities, loading through ``funasr.AutoModel``, transcription.

A :class:`ModelIdentity` is what a model is loaded as: its folder, the
revision of its weights, device, dtype and companion VAD. Request options
(language, hotwords) are not part of it; they go to inference.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway import presets
from gateway.errors import InvalidAudioError, ModelLoadError, NotFoundError
from gateway.presets import quiet_stdout

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# FunASR's feature extraction divides by the frame count, so audio shorter
# than one 25 ms analysis window raises ZeroDivisionError inside FunASR.
MIN_SAMPLES = SAMPLE_RATE * 25 // 1000

# AutoModel construction sets process-wide state (torch's RNG seed and thread
# count, sys.stdout redirection here), so loads of different models run one at a time.
_AUTOMODEL_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True, order=True)
class ModelIdentity:
    """The model cache key: what is loaded, never the request options."""

    name: str
    path: str
    revision: str
    device: str = "cpu"
    dtype: str = "float32"
    vad_path: str = ""

    def describe(self) -> str:
        return f"{self.name}@{self.revision[:12]} on {self.device} ({self.dtype}, vad={Path(self.vad_path).name})"


@dataclass(frozen=True)
class RequestOptions:
    """Per-request inference options; hashable so the leaky cache can key on them."""

    language: str | None = None
    hotwords: tuple[str, ...] = ()

    def to_generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.hotwords:
            kwargs["hotword"] = " ".join(self.hotwords)
        if self.language:
            kwargs["language"] = self.language
        return kwargs


@dataclass
class Segment:
    start_ms: int
    end_ms: int
    text: str


@dataclass
class Transcript:
    text: str
    segments: list[Segment]
    duration_ms: int
    # Only the leaky worker-futures variant keeps these alive after the task.
    audio: np.ndarray | None = field(default=None, repr=False)


def resolve_identity(name: str, models_dir: Path, device: str) -> ModelIdentity:
    """Resolve a model name or folder to its identity; raise NotFoundError for unknown names."""
    name = presets.resolve_preset_name(name)
    candidate = Path(name)
    if candidate.is_absolute() or "/" in name:
        folder = candidate.expanduser().resolve()
    else:
        folder = models_dir / name
    if not (folder / "config.yaml").is_file() or not (folder / "model.pt").is_file():
        available = ", ".join(presets.available_models(models_dir)) or "none prepared"
        raise NotFoundError(
            f"model {name!r} not found under {str(models_dir)!r} (available: {available}); "
            "run `gateway models prepare` or pass a model folder with config.yaml and model.pt",
            code="model_not_found",
        )
    vad = models_dir / presets.VAD_NAME
    if not (vad / "model.pt").is_file():
        raise NotFoundError(
            f"VAD model not found under {str(vad)!r}; run `gateway models prepare`",
            code="model_not_found",
        )
    return ModelIdentity(
        name=folder.name,
        path=str(folder),
        revision=_revision(folder),
        device=device,
        vad_path=str(vad),
    )


def _revision(folder: Path) -> str:
    marker = folder / presets.PRESET_MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text(encoding="utf-8"))["model_sha256"])
        except (ValueError, KeyError):
            pass
    stat = (folder / "model.pt").stat()
    return f"size{stat.st_size}-mtime{int(stat.st_mtime)}"


def instance_bytes(identity: ModelIdentity) -> int | None:
    marker = Path(identity.path) / presets.PRESET_MARKER
    try:
        return int(json.loads(marker.read_text(encoding="utf-8"))["instance_bytes"])
    except (OSError, ValueError, KeyError):
        return None


class LoadedModel:
    """One loaded FunASR pipeline (Paraformer + fsmn-vad) for one model identity."""

    def __init__(self, identity: ModelIdentity, automodel: Any):
        self.identity = identity
        self.automodel = automodel
        # AutoModel rewrites its own kwargs during inference, so one instance
        # runs one request at a time.
        self.lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, options: RequestOptions) -> Transcript:
        """Run VAD, then the Paraformer on each speech segment."""
        if audio.size < MIN_SAMPLES:
            raise InvalidAudioError(
                f"audio lasts {audio.size * 1000 / SAMPLE_RATE:.1f} ms, shorter than the minimum of "
                f"{MIN_SAMPLES * 1000 // SAMPLE_RATE} ms; send a longer recording",
                code="audio_too_short",
            )
        with self.lock:
            vad_result = self.automodel.inference(
                audio, model=self.automodel.vad_model, kwargs=self.automodel.vad_kwargs, disable_pbar=True
            )
            spans = []
            for start_ms, end_ms in vad_result[0].get("value", []) if vad_result else []:
                start, end = int(start_ms), int(end_ms)
                piece_samples = min(end * SAMPLE_RATE // 1000, audio.size) - start * SAMPLE_RATE // 1000
                if end > start and piece_samples >= MIN_SAMPLES:
                    spans.append((start, end))
            pieces = [audio[start * SAMPLE_RATE // 1000 : end * SAMPLE_RATE // 1000] for start, end in spans]
            texts = [""] * len(spans)
            if pieces:
                results = self.automodel.inference(pieces, disable_pbar=True, **options.to_generate_kwargs())
                for index, result in enumerate(results[: len(spans)]):
                    texts[index] = str(result.get("text", ""))

        segments = [Segment(start, end, text) for (start, end), text in zip(spans, texts)]
        return Transcript(
            text=" ".join(segment.text for segment in segments if segment.text),
            segments=segments,
            duration_ms=int(round(audio.size * 1000 / SAMPLE_RATE)),
        )


def load_model(identity: ModelIdentity, torch_threads: int) -> LoadedModel:
    """Load a model identity through ``funasr.AutoModel``; raise ModelLoadError on failure."""
    try:
        with _AUTOMODEL_BUILD_LOCK, quiet_stdout():
            from funasr import AutoModel

            automodel = AutoModel(
                model=identity.path,
                model_path=identity.path,
                vad_model=identity.vad_path,
                vad_kwargs={"model_path": identity.vad_path},
                device=identity.device,
                ncpu=torch_threads,
                disable_update=True,
                disable_pbar=True,
                disable_log=True,
                log_level="WARNING",
            )
    except Exception as error:  # FunASR raises many types for a bad folder
        raise ModelLoadError(
            f"loading model {identity.name!r} from {identity.path!r} failed: {type(error).__name__}: {error}; "
            "check the folder's config.yaml and model.pt, or run `gateway models prepare` again"
        ) from error
    return LoadedModel(identity, automodel)
