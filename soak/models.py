"""Model preparation through the gateway's own command: ``gateway models prepare --json``."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soak.errors import SoakError

logger = logging.getLogger(__name__)

# The presets that `gateway models prepare --size` builds, by model name.
PRESET_SIZES = {"paraformer-tiny": "tiny", "paraformer-50mb": "50mb", "paraformer-200mb": "200mb"}
OUTPUT_TAIL_CHARS = 3000


class ModelPrepareError(SoakError):
    """``gateway models prepare`` failed or printed something other than the expected JSON."""


@dataclass(frozen=True)
class PreparedModels:
    models_dir: Path
    # Model name -> {"path": str, "instance_bytes": int}.
    models: dict[str, dict[str, Any]]


def prepare_models(
    gateway_command: list[str],
    model: str,
    copies: int,
    models_dir: Path | None,
    timeout_s: float,
    log_path: Path,
) -> PreparedModels:
    """Prepare ``model`` and ``copies`` copies of it; fast when they are already prepared.

    The command's stderr (its log) goes to ``log_path``.
    """
    size = PRESET_SIZES.get(model)
    if size is None:
        raise ModelPrepareError(
            f"model {model!r} is not a preset that soak can prepare; use one of {', '.join(PRESET_SIZES)}"
        )
    command = [*gateway_command, "models", "prepare", "--size", size, "--copies", str(copies), "--json"]
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]

    logger.info("Preparing models: %s", " ".join(command))
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelPrepareError(f"models prepare did not finish within {timeout_s:.0f} s: {' '.join(command)}") from None
    except OSError as exc:
        raise ModelPrepareError(f"could not run {' '.join(command)}: {exc}") from None
    log_path.write_text(completed.stderr + completed.stdout, encoding="utf-8")

    if completed.returncode != 0:
        raise ModelPrepareError(
            f"models prepare exited with status {completed.returncode}; last lines of its output:\n"
            f"{(completed.stderr + completed.stdout)[-OUTPUT_TAIL_CHARS:]}"
        )
    payload = parse_prepare_output(completed.stdout)
    return PreparedModels(models_dir=Path(payload["models_dir"]), models=payload["models"])


def parse_prepare_output(stdout: str) -> dict[str, Any]:
    """Parse the JSON object that ``models prepare --json`` prints.

    Libraries imported by the gateway may print notices to stdout before it,
    so parsing starts at the first line that opens a JSON object.
    """
    lines = stdout.splitlines()
    starts = [number for number, line in enumerate(lines) if line.startswith("{")]
    for start in starts:
        try:
            payload = json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
        if isinstance(payload, dict) and isinstance(payload.get("models"), dict) and "models_dir" in payload:
            return payload
    raise ModelPrepareError(
        "models prepare --json printed no JSON object with models_dir and models; its output was:\n"
        + stdout[-OUTPUT_TAIL_CHARS:]
    )
