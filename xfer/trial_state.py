"""A trial's resumable state: what ``fit`` hands to its ``checkpoint`` callback each epoch and
takes back as ``resume``. Model, optimiser, every global RNG (torch, CUDA, numpy, python) and the
progress counters, as CPU copies in plain types, so ``torch.load(weights_only=True)`` reads a
saved checkpoint back. The learning rate is a function of the step and of the plateau
schedule's state (best val_loss, bad epochs, lr scale), which is part of the progress dict, so
no scheduler object is saved. Cost: one device-to-host copy of the model and optimiser state
per epoch.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict

import numpy as np
import torch

STATE_FORMAT = "xfer-trial-state/1"
# Resuming with a different value of these is fine (a longer budget, another GPU); anything
# else would silently make a different trial.
RESUMABLE_CHANGES = ("data", "epochs", "device", "eval_batch_size", "report_test_each_epoch")
# Fields added after checkpoints were first written, with the value that older checkpoints
# were trained with (momentum was a constant 0.9; resizing was always bilinear).
ADDED_FIELDS = {"momentum": 0.9, "resize_mode": "bilinear"}


def _rng_state(device: torch.device) -> dict:
    """Global RNG states (dropout, ...) in plain types, so ``torch.load(weights_only=True)``
    reads a saved checkpoint back."""
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "numpy": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                      "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
            "python": [version, list(internal), gauss]}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np.array(numpy_state["key"], dtype=np.uint32),
                                   "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _to_cpu(obj):
    """A deep copy with every tensor on the CPU: the state must not change as training goes on."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return obj


def snapshot(config, model, optimizer, progress: dict) -> dict:
    """Everything ``restore`` needs to continue bit-exactly, as CPU copies in plain types."""
    return _to_cpu({"format": STATE_FORMAT, "config": asdict(config),
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(torch.device(config.device)),
                    "progress": {**progress, "history": [dict(h) for h in progress["history"]]}})


# What ``restore`` reads from a state, with its type: a checkpoint that torch.load read back
# (its bytes are whole: xfer.weights checks the zip's CRCs) can still be foreign or cut short
# by an older writer; naming the missing part beats a KeyError deep inside load_state_dict.
_STATE_PARTS = {"config": dict, "model": dict, "optimizer": dict, "rng": dict, "progress": dict}
_RNG_PARTS = ("torch", "cuda", "numpy", "python")


def check_state(state) -> None:
    """ValueError "corrupt checkpoint: why" unless ``state`` is what ``snapshot`` wrote."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"corrupt checkpoint: not a trial state of format {STATE_FORMAT} "
                         f"(found {found!r}); resume expects a state passed to fit's checkpoint callback")
    for part, kind in _STATE_PARTS.items():
        if not isinstance(state.get(part), kind):
            raise ValueError(f"corrupt checkpoint: its {part!r} is missing or not a {kind.__name__}")
    missing = [part for part in _RNG_PARTS if part not in state["rng"]]
    if missing:
        raise ValueError(f"corrupt checkpoint: its RNG state lacks {missing}")
    if not isinstance(state["progress"].get("history"), list):
        raise ValueError("corrupt checkpoint: its progress has no epoch history")


def restore(state: dict, config, model, optimizer) -> dict:
    """Load ``state`` into the model and optimiser, reset the RNGs; returns the progress."""
    check_state(state)
    saved = {k: v for k, v in {**ADDED_FIELDS, **state["config"]}.items() if k not in RESUMABLE_CHANGES}
    now = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if changed:
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {changed}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"], torch.device(config.device))
    # A deep copy (plain types only): fit updates progress in place, the caller's state must
    # stay as it was (a retry may resume from it again).
    return copy.deepcopy(state["progress"])
