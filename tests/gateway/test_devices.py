"""Devices: CUDA availability checks and GPU memory figures, without a GPU.

The CUDA calls go to a fake torch module (a collaborator); the real torch CPU
path and a real gateway asked for CUDA on this CPU-only machine are covered
too. The same code runs against real CUDA where a GPU is lent.
"""

from __future__ import annotations

import types

import httpx
import pytest

from gateway.devices import DeviceUnavailableError, check_available, cuda_index, gpu_memory_figures
from gateway.errors import SettingsError
from gateway.settings import Settings
from tests.gateway.test_service import wait_until


def fake_torch(available: bool, count: int = 1, allocated: int = 5, reserved: int = 7):
    cuda = types.SimpleNamespace(
        is_available=lambda: available,
        device_count=lambda: count,
        memory_allocated=lambda index: allocated * (index + 1),
        memory_reserved=lambda index: reserved * (index + 1),
    )
    return types.SimpleNamespace(cuda=cuda, __version__="fake")


def test_cuda_index_forms():
    assert cuda_index("cuda") == 0
    assert cuda_index("cuda:3") == 3


def test_cpu_needs_no_cuda():
    check_available("cpu", fake_torch(available=False))

    assert gpu_memory_figures("cpu") == {"gpu_memory_allocated_bytes": None, "gpu_memory_reserved_bytes": None}


def test_cuda_figures_from_torch():
    figures = gpu_memory_figures("cuda:1", fake_torch(available=True, count=2))

    assert figures == {"gpu_memory_allocated_bytes": 10, "gpu_memory_reserved_bytes": 14}


@pytest.mark.parametrize(("device", "torch", "fragment"), [
    ("cuda", fake_torch(available=False), "sees no CUDA device"),
    ("cuda:2", fake_torch(available=True, count=2), "only 2 CUDA device(s)"),
])
def test_unavailable_cuda_rejected(device, torch, fragment):
    with pytest.raises(DeviceUnavailableError) as caught:
        check_available(device, torch)

    assert fragment in caught.value.message


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps"])
def test_invalid_device_names(device):
    with pytest.raises(SettingsError, match="device"):
        Settings(device=device).validate()


def test_real_torch_cpu_only_gateway_reports_cuda_unavailable(start_gateway):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; this case covers CPU-only machines")
    server = start_gateway("--device", "cuda", ready=False)
    wait_until(lambda: _reasons(server), message="DEGRADED reason")

    status = server.status()
    ready = httpx.get(server.url + "/readyz", timeout=10)

    assert any("sees no CUDA device" in reason for reason in status["reasons"])
    assert status["gpu_memory_allocated_bytes"] is None
    assert ready.status_code == 503


def _reasons(server) -> list[str]:
    try:
        return server.status(timeout_s=2)["reasons"]
    except (httpx.HTTPError, AssertionError):
        return []
