"""How a trial runs on its device: precision, memory format, global backend settings, seeding
and a clock that waits for the device. Plain PyTorch.

On CUDA: bf16 autocast, channels-last tensors and cuDNN autotuning. On CPU: fp32 with
deterministic algorithms, so the same seed gives bit-identical results. ``fit`` and the sweep
plan's step timing (``xfer.sweep.plan``) both take these settings from here, so the plan times
the step the trials run.
"""

from __future__ import annotations

import contextlib
import random
import time

import numpy as np
import torch


def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (no loss scaling needed: bf16 has fp32's exponent range); fp32 on
    CPU, where bf16 matmuls are slower on most hosts and would break bit-reproducibility."""
    return torch.bfloat16 if device.type == "cuda" else None


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def channels_last_for(device: torch.device) -> bool:
    """NHWC on CUDA: what cuDNN's tensor-core convolutions want, saves layout transposes."""
    return device.type == "cuda"


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, in the memory format :func:`channels_last_for` picks there."""
    model = model.to(device)
    if channels_last_for(device):
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def backend_settings(device: torch.device):
    """CPU: deterministic algorithms (warn-only, for ops without a deterministic kernel).
    CUDA: cuDNN autotuning, which picks the fastest conv kernel per shape at the cost of a few
    slow first steps and bitwise reproducibility. The previous global settings come back after."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    try:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        else:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def synced_clock(device: torch.device) -> float:
    """perf_counter after the device has finished its queued work (a CPU-GPU sync point)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
