"""Torch devices: availability checks and GPU memory figures for the status.

On a CPU-only machine nothing here imports CUDA state: ``cpu`` returns at once
and the GPU figures are ``None``.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError


class DeviceUnavailableError(GatewayError):
    code = "device_unavailable"
    http_status = 503


def cuda_index(device: str) -> int:
    """Return N for ``cuda:N`` and 0 for ``cuda``."""
    _, _, index = device.partition(":")
    return int(index) if index else 0


def check_available(device: str, torch_module: Any = None) -> None:
    """Raise DeviceUnavailableError when ``device`` cannot be used by torch here."""
    if device == "cpu":
        return
    torch = torch_module if torch_module is not None else _import_torch()
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {device!r} requested but torch {getattr(torch, '__version__', '?')} sees no CUDA device; "
            "install a CUDA build of torch (see README) or start with --device cpu"
        )
    count = torch.cuda.device_count()
    if cuda_index(device) >= count:
        raise DeviceUnavailableError(
            f"device {device!r} requested but only {count} CUDA device(s) exist (cuda:0 to cuda:{count - 1})"
        )


def gpu_memory_figures(device: str, torch_module: Any = None) -> dict[str, int | None]:
    """Return torch's allocated and reserved CUDA memory for ``device``; None values on CPU."""
    figures: dict[str, int | None] = {"gpu_memory_allocated_bytes": None, "gpu_memory_reserved_bytes": None}
    if not device.startswith("cuda"):
        return figures
    torch = torch_module if torch_module is not None else _import_torch()
    if not torch.cuda.is_available():
        return figures
    index = cuda_index(device)
    figures["gpu_memory_allocated_bytes"] = int(torch.cuda.memory_allocated(index))
    figures["gpu_memory_reserved_bytes"] = int(torch.cuda.memory_reserved(index))
    return figures


def _import_torch():
    import torch

    return torch
