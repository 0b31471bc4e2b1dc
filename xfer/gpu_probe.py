"""Why a machine's NVIDIA GPU cannot be used by this torch, for ``device=auto``'s warning.

``torch.cuda.is_available()`` is False both on a machine without a GPU and on one whose driver
is too old for the CUDA that torch was built with (the locked torch 2.14.1 is built with CUDA
13.0, which needs driver >= 580). ``auto`` then trains on CPU, many times slower, and without
a warning nobody notices until the sweep's bill arrives. This module tells the two apart, from
the device nodes, the kernel module's version file and ``nvidia-smi``. Standard library only:
it runs where only torch is installed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

# Minimum Linux driver per CUDA major version: CUDA's minor-version compatibility lets any 13.x
# runtime run on a >= 580 driver and any 12.x runtime on a >= 525 one (NVIDIA's CUDA
# compatibility guide). torch's pip wheels carry their CUDA runtime; the driver is the host's.
MIN_DRIVER_FOR_CUDA = {13: 580, 12: 525, 11: 450}

# Module attributes, so that tests can point them at a temporary directory.
DEVICE_NODES = "/dev/nvidia[0-9]*"
DRIVER_VERSION_FILE = "/proc/driver/nvidia/version"

# Values of CUDA_VISIBLE_DEVICES that hide every GPU on purpose (Ray's old default for 0-GPU
# tasks was "", SLURM and Grid Engine use "NoDevFiles"): then CPU is what was asked for.
_HIDDEN = ("", "-1", "NoDevFiles")

HOW_TO_FIX = ("update the NVIDIA driver (>= 580 for the locked CUDA 13 build of torch), or "
              "install a torch build for the CUDA the driver supports (infra/README.md, "
              "'GPU driver'); --device cpu makes CPU explicit and silences this")


def unusable_gpu_reason(torch_version: str, torch_cuda: str | None) -> str | None:
    """One sentence on why the GPU this machine has is unusable, or None when there is nothing
    to say: no NVIDIA GPU, or GPUs hidden on purpose with CUDA_VISIBLE_DEVICES. Call it only
    when ``torch.cuda.is_available()`` is False. ``torch_cuda`` is ``torch.version.cuda``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.split(",")[0].strip() in _HIDDEN:
        return None
    gpu = _gpu_seen()
    if gpu is None:
        return None
    head = f"an NVIDIA GPU is present ({gpu}) but torch {torch_version} cannot use it: "
    if torch_cuda is None:
        return head + "this torch is a build without CUDA"
    driver = driver_version()
    cuda_major = int(torch_cuda.split(".")[0])
    needed = MIN_DRIVER_FOR_CUDA.get(cuda_major)
    if driver is not None and needed is not None and int(driver.split(".")[0]) < needed:
        return (head + f"NVIDIA driver {driver} is older than {needed}, the minimum for the "
                f"CUDA {torch_cuda} it was built with")
    found = f"driver {driver}" if driver else "driver version unknown"
    return (head + f"CUDA did not initialise ({found}, torch built with CUDA {torch_cuda}; "
            "torch's own warning, if any, and `nvidia-smi` say more)")


def _gpu_seen() -> str | None:
    """What shows an NVIDIA GPU here: its device node, or ``nvidia-smi -L`` listing one. The
    device node alone is not enough on hosts where it is missing (WSL2); ``nvidia-smi`` alone is
    not enough either: GPU machine images ship it on CPU instances too, where it fails."""
    nodes = sorted(glob.glob(DEVICE_NODES))
    if nodes:
        return nodes[0]
    listing = _nvidia_smi("-L")
    if listing and re.search(r"^GPU \d+:", listing, re.M):
        return "nvidia-smi -L lists " + listing.splitlines()[0].split(" (UUID")[0]
    return None


def driver_version() -> str | None:
    """The loaded kernel module's version (``580.65.06``), from /proc, else from nvidia-smi."""
    try:
        with open(DRIVER_VERSION_FILE, encoding="utf-8") as f:
            match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", f.readline())
        if match:
            return match.group(1)
    except OSError:
        pass
    out = _nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")
    match = re.match(r"\d+\.\d+(?:\.\d+)?$", out.splitlines()[0].strip()) if out else None
    return match.group(0) if match else None


def _nvidia_smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
