"""Expand a preset into its trials and estimate what they cost, before anything launches.

The estimate is what ``--dry-run`` prints and every real run prints first: trials, training
MACs (exact, from ptflops via ``xfer.cost``, hardware-independent) and wall time on *this*
hardware, from a short calibration: a few of the trials' own training steps
(``xfer.train.train_step``, with their precision and memory format, on batches prepared as
theirs are) per (model, input size, batch size, trained layers) on random data, so the number
reflects this machine's launch overhead at small batches, not a peak FLOP rate. Calibration
costs ~1-3 s per combination on CPU and is capped (CALIBRATION_BUDGET_S); combinations left
over are scaled from a measured one by their training MACs (forward + backward as trained).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from xfer.sweep.options import SweepOptions
from xfer.sweep.sources import DataSource
from xfer.sweep.study import Preset

CALIBRATION_BUDGET_S = 60.0
_CALIBRATION_STEPS = 5  # timed steps after one warm-up step; their median is the estimate


@dataclass
class Plan:
    trials: list[dict]  # every trial for grid; the grid (sampled from) for tpe / nsga2
    num_trials: int  # trials that will run
    train_macs: float  # total, forward + backward, if no trial is stopped early
    seconds_serial: float  # the same, one trial after another on this hardware
    parallel_trials: int
    device: str
    # seconds of one trial on this hardware, by cost_key: the live progress line's ETA
    # (xfer.sweep.progress) weighs each trial left by its own estimate; empty uncalibrated
    trial_seconds: dict[tuple, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.seconds_serial / max(1, min(self.parallel_trials, self.num_trials))


COST_KEYS = ("model", "image_size", "head", "train_layers", "batch_size", "dataset_size", "epochs")


def cost_key(trial: dict) -> tuple:
    """What a trial's time depends on (its seed, lr or init do not change it): a plan's trial
    and the same trial's config in Ray (``xfer.sweep.study.resolve_trial``) give the same key."""
    return tuple(trial.get(key) for key in COST_KEYS)


def make_plan(trials: list[dict], options: SweepOptions, source: DataSource,
              parallel_trials: int, calibrate: bool = True) -> Plan:
    """``trials``: the preset's grid (``Preset.trials``), validated, each with its dataset_size;
    ``source`` says how many of those images train and how many are evaluated each epoch."""
    from xfer import models
    from xfer.cost import training_macs_per_image_for

    num_classes, dataset_image_size = source.num_classes(), source.image_size
    num_trials = len(trials) if options.search == "grid" else (options.num_samples or len(trials))
    step_seconds = _StepTimer(num_classes) if calibrate else None
    total_macs = total_seconds = 0.0
    trial_seconds: dict[tuple, float] = {}
    for trial in trials:
        input_size = models.input_size_for(trial["model"], trial.get("image_size") or dataset_image_size)
        # forward + backward, the backward only from the first trained layer (xfer.cost)
        macs = training_macs_per_image_for(trial["model"], num_classes, trial.get("head", "linear"),
                                           trial.get("train_layers", "all"), input_size)
        train_images = source.train_images(trial["dataset_size"])
        total_macs += train_images * trial["epochs"] * macs
        if step_seconds:
            per_step = step_seconds(trial["model"], input_size, trial["batch_size"], macs,
                                    trial.get("train_layers", "all"))
            steps = math.ceil(train_images / trial["batch_size"]) * trial["epochs"]
            # evaluation: val + test each epoch, forward only (~1/3 of a step per image)
            eval_images = source.eval_images(trial["dataset_size"]) * trial["epochs"]
            seconds = per_step * (steps + eval_images / trial["batch_size"] / 3)
            trial_seconds[cost_key(trial)] = seconds
            total_seconds += seconds
    if options.search != "grid" and trials:  # sampled: the grid's mean per trial
        total_macs *= num_trials / len(trials)
        total_seconds *= num_trials / len(trials)
    return Plan(trials=trials, num_trials=num_trials, train_macs=total_macs,
                seconds_serial=total_seconds, parallel_trials=parallel_trials,
                device=_device_name(), trial_seconds=trial_seconds)


class _StepTimer:
    """Seconds per training step on this machine, measured once per combination."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.measured: dict[tuple, float] = {}
        self.per_mac: list[float] = []  # seconds per training MAC of measured combinations
        self.spent = 0.0

    def __call__(self, model: str, input_size: int, batch_size: int, macs: int,
                 train_layers: str) -> float:
        """``macs``: training MACs per image (``xfer.cost.training_macs_per_image_for``)."""
        key = (model, input_size, batch_size, train_layers)
        if key not in self.measured:
            if self.spent < CALIBRATION_BUDGET_S or not self.per_mac:
                started = time.perf_counter()
                self.measured[key] = _time_step(model, self.num_classes, input_size, batch_size,
                                                train_layers)
                self.spent += time.perf_counter() - started
                self.per_mac.append(self.measured[key] / (macs * batch_size))
            else:
                self.measured[key] = min(self.per_mac) * macs * batch_size
        return self.measured[key]


def _time_step(model_name: str, num_classes: int, input_size: int, batch_size: int,
               train_layers: str) -> float:
    """Seconds of one training step as a trial takes it: ``xfer.train.train_step`` under fit's
    backend settings, precision (bf16 autocast on CUDA) and memory format (channels-last on
    CUDA), its optimiser (a default TrialConfig's: SGD with momentum), on a batch gathered from
    uint8 images on the device and prepared by ``BatchPrep``, as ``train_one_epoch`` does.
    Random data, no augmentation; images are stored at ``input_size`` (a trial's resize from
    another stored size, one interpolate kernel per batch, is not timed)."""
    import torch

    from xfer import models
    from xfer.batches import BatchPrep
    from xfer.device import amp_dtype_for, backend_settings, channels_last_for, place_model, synced_clock
    from xfer.optim import make_optimizer
    from xfer.train import TrialConfig, train_step

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = TrialConfig(data="-", model=model_name, train_layers=train_layers, batch_size=batch_size)
    amp_dtype = amp_dtype_for(device)
    with backend_settings(device):
        model = place_model(models.create_model(model_name, num_classes, train_layers=train_layers),
                            device)
        models.set_train_mode(model, train_layers)
        optimizer = make_optimizer(config, models.trainable_parameters(model))
        prep = BatchPrep([0.5] * 3, [0.25] * 3, input_size, device=device,
                         channels_last=channels_last_for(device))
        images = torch.randint(0, 256, (batch_size, 3, input_size, input_size), dtype=torch.uint8,
                               device=device)
        labels = torch.randint(0, num_classes, (batch_size,), device=device)
        times = []
        for step in range(1 + _CALIBRATION_STEPS):
            started = synced_clock(device)
            index = torch.randperm(batch_size, device=device)
            train_step(model, optimizer, prep(images[index]), labels[index], amp_dtype=amp_dtype)
            if step:  # the first step pays one-off allocation and kernel selection
                times.append(synced_clock(device) - started)
    # the median: one step slowed by another process on a shared machine does not set the plan
    return statistics.median(times)


def _device_name() -> str:
    import os

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores"


def format_plan(plan: Plan, preset_name: str, preset: Preset, options: SweepOptions,
                data_note: str, weights_note: str, tracking_uri: str, storage: str) -> str:
    axes = ", ".join(f"{k} {v}" for k, v in preset.space.items())
    lines = [
        f"plan: preset {preset_name}: {plan.num_trials} trials ({options.search} search, "
        f"{options.scheduler} scheduler)",
        f"  scheduler: {preset.scheduler_plan(options.scheduler).describe()}",
        f"  axes: {axes}",
        *[f"  arm {name}: " + ", ".join(f"{k} {v}" for k, v in values.items())
          for name, values in preset.arms.items()],
        *_milestone_lines(preset, plan),
        f"  data: {data_note}",
        f"  pretrained weights: {weights_note}",
        f"  training MACs: {plan.train_macs:.3g} (forward + backward, if no trial stops early)",
    ]
    if plan.seconds_serial:
        lines.append(f"  time estimate on {plan.device}: {format_duration(plan.seconds)} with "
                     f"{min(plan.parallel_trials, plan.num_trials)} trials at once "
                     f"({format_duration(plan.seconds_serial)} of trial time"
                     f"{'; ASHA may cut it' if options.scheduler == 'asha' else ''})")
    lines += [f"  MLflow: {tracking_uri} (experiment {options.experiment})",
              f"  trial storage: {storage}"]
    return "\n".join(lines)


def _milestone_lines(preset: Preset, plan: Plan) -> list[str]:
    milestones = preset.fixed.get("epoch_milestones")
    if not milestones:
        return []
    longest = max(preset.space["epochs"])
    return [f"  epoch milestones: each trial trains {longest} epochs and is also logged as its "
            f"{', '.join(map(str, milestones))}-epoch run: {plan.num_trials * (1 + len(milestones))} "
            f"configurations from {plan.num_trials} trials"]


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
