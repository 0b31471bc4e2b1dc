"""device=auto on a machine whose GPU torch cannot use: a warning with the reason and the fix,
once per process, and silence where there is no GPU or it is hidden on purpose.

No GPU here, so the machine is faked where it is read: torch.cuda.is_available, the device
nodes and the driver's /proc version file (paths in xfer.gpu_probe), and a stub `nvidia-smi`
on PATH that the probe really runs."""

from __future__ import annotations

import warnings

import pytest
import torch

from xfer import gpu_probe, train

PROC_535 = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  "
            "Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc version 12.3.0\n")
PROC_580 = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Tue Jul 15 00:26:36 UTC 2025\n")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with no GPU, no driver and no nvidia-smi, CUDA unavailable, torch built with
    CUDA 13.0, and the once-per-process flag reset; tests add what they need."""
    monkeypatch.setattr(train, "_gpu_checked", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(gpu_probe, "DEVICE_NODES", str(tmp_path / "dev" / "nvidia[0-9]*"))
    monkeypatch.setattr(gpu_probe, "DRIVER_VERSION_FILE", str(tmp_path / "proc_version"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # Only the stub directory: a real nvidia-smi (on a GPU machine) must not answer. The stubs
    # need nothing from PATH (/bin/sh by its path, echo and case are built in).
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    class Machine:
        def gpu_device_node(self):
            (tmp_path / "dev").mkdir(exist_ok=True)
            (tmp_path / "dev" / "nvidia0").write_text("")

        def driver(self, proc_text: str):
            (tmp_path / "proc_version").write_text(proc_text)

        def nvidia_smi(self, script: str):
            stub = bindir / "nvidia-smi"
            stub.write_text("#!/bin/sh\n" + script)
            stub.chmod(0o755)

    return Machine()


def _auto() -> tuple[torch.device, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = train.resolve_device("auto")
    return device, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_old_driver_warns_with_reason_and_fix_once(machine):
    machine.gpu_device_node()
    machine.driver(PROC_535)
    device, said = _auto()
    assert device == torch.device("cpu")
    assert len(said) == 1
    message = said[0]
    assert "device 'auto' runs on CPU" in message and "/dev/nvidia0" in message
    assert "NVIDIA driver 535.104.05 is older than 580" in message and "CUDA 13.0" in message
    assert ">= 580" in message and "infra/README.md" in message and "--device cpu" in message
    assert "\n" not in message
    # validate() and resolved() both resolve the device: the second call says nothing.
    assert _auto() == (torch.device("cpu"), [])


def test_no_gpu_no_warning(machine):
    assert _auto() == (torch.device("cpu"), [])


def test_gpus_hidden_on_purpose_no_warning(machine, monkeypatch):
    machine.gpu_device_node()
    machine.driver(PROC_535)
    for hidden in ("", "-1", "NoDevFiles"):
        monkeypatch.setattr(train, "_gpu_checked", False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert _auto() == (torch.device("cpu"), []), hidden


def test_nvidia_smi_alone_finds_the_gpu_and_the_driver(machine):
    """No device node visible (WSL2, some containers): nvidia-smi lists the GPU and the driver."""
    machine.nvidia_smi(
        'case "$1" in\n'
        '  -L) echo "GPU 0: NVIDIA A10G (UUID: GPU-5e0ad8a3-0000-0000-0000-000000000000)";;\n'
        '  --query-gpu=driver_version) echo "570.86.15";;\n'
        '  *) exit 1;;\n'
        'esac\n')
    device, said = _auto()
    assert device == torch.device("cpu") and len(said) == 1
    assert "nvidia-smi -L lists GPU 0: NVIDIA A10G" in said[0]
    assert "NVIDIA driver 570.86.15 is older than 580" in said[0]


def test_nvidia_smi_without_a_gpu_is_not_a_gpu(machine):
    """GPU machine images ship nvidia-smi on CPU instances too (the cluster's head node); there
    it fails, and that is no reason to warn."""
    machine.nvidia_smi('echo "NVIDIA-SMI has failed because it couldn\'t communicate with the '
                       'NVIDIA driver." ; exit 9\n')
    assert _auto() == (torch.device("cpu"), [])


def test_recent_driver_but_cuda_fails_says_so(machine):
    machine.gpu_device_node()
    machine.driver(PROC_580)
    _, said = _auto()
    assert len(said) == 1
    assert "CUDA did not initialise (driver 580.65.06, torch built with CUDA 13.0" in said[0]
    assert "older than" not in said[0]


def test_cpu_only_torch_build_on_a_gpu_machine(machine, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    machine.gpu_device_node()
    _, said = _auto()
    assert len(said) == 1 and "a build without CUDA" in said[0]


def test_usable_cuda_is_chosen_without_probing(machine, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def no_probe(*args):
        raise AssertionError("probed although CUDA works")

    monkeypatch.setattr(gpu_probe, "unusable_gpu_reason", no_probe)
    assert _auto() == (torch.device("cuda"), [])


def test_explicit_cpu_never_probes(machine, monkeypatch):
    machine.gpu_device_node()
    machine.driver(PROC_535)
    assert train.resolve_device("cpu") == torch.device("cpu")
    assert train._gpu_checked is False


@pytest.mark.parametrize("text, version", [(PROC_535, "535.104.05"), (PROC_580, "580.65.06"),
                                           ("garbage\n", None)])
def test_driver_version_from_proc(machine, text, version):
    machine.driver(text)
    assert gpu_probe.driver_version() == version


def test_unreadable_driver_version_still_warns(machine):
    machine.nvidia_smi('case "$1" in -L) echo "GPU 0: NVIDIA H100 (UUID: GPU-1)";; *) echo "N/A";; esac\n')
    _, said = _auto()
    assert len(said) == 1 and "driver version unknown" in said[0]
