"""One trial: ``fit(config, report)`` trains a model on a packed dataset and returns its metrics.

The torchvision references skeleton: ``train_step`` → ``train_one_epoch`` → ``evaluate``
(returns numbers) → ``fit``. Plain PyTorch: no Ray, no MLflow. ``report`` receives the
per-epoch metrics and is whatever the caller passes (``tune.report``, ``print``, a list's
``append``); ``checkpoint`` receives everything needed to continue exactly, and ``resume``
takes it back.

Data never goes through a DataLoader: each split sits on the device as uint8 and batches are
prepared there (``xfer.batches``). On CUDA, training runs in bf16 autocast with channels-last
tensors and cuDNN autotuning; on CPU it runs in fp32 with deterministic algorithms, so the same
seed gives bit-identical results (``xfer.device``). Beside it: the optimiser and lr schedules
(``xfer.optim``), the progress counters and milestones (``xfer.trial_progress``), the result
dict (``xfer.trial_result``) and checkpoints (``xfer.trial_state``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xfer import cost, gpu_probe, models
from xfer.batches import RESIZE_MODES, BatchPrep, augment_generator, batch_slices, epoch_order
from xfer.data.tensors import ImageSet, load_packed
from xfer.device import (amp_dtype_for, autocast, backend_settings, channels_last_for,
                         device_name, place_model, seed_everything, synced_clock)
from xfer.errors import UsageError, choice_error
# EPOCH_METRICS and MILESTONE_KEYS: what fit's reports and milestones hold, read here by callers
from xfer.names import EPOCH_METRICS, MILESTONE_KEYS, SWEEP_REPORT_KEYS  # noqa: F401
from xfer.optim import OPTIMIZERS, SCHEDULES, learning_rate, make_optimizer
from xfer.trial_progress import keep_milestones, milestones_reached, record_epoch, start_progress
from xfer.trial_result import TrialFacts, trial_result
from xfer.trial_state import snapshot
from xfer.weights import resolve_weights

EMBEDDING_METHODS = ("", "tsne", "umap", "tsne+umap")  # "": no embeddings; "tsne+umap": both
# Epoch milestones. A milestone m of an E-epoch run is its result as of epoch m: test metrics,
# costs and time up to then. With a schedule that ignores the budget (constant, exp_decay,
# plateau) the first m epochs of the run are exactly the m-epoch run (same seed, same batch
# order and augmentation per epoch, same early stopping), so it is that run's result, and
# epochs {10, 20, 50} cost one 50-epoch run instead of 80 epochs. A schedule whose lr at epoch
# e depends on the total budget breaks that, so milestones are refused with it:
BUDGET_DEPENDENT_SCHEDULES = ("cosine",)
AUX_LOSS_WEIGHT = 0.4  # Inception v3's auxiliary classifier (Szegedy et al., 2016, sec. 7)
# Reported once per epoch. train_loss is the training objective (with label smoothing and
# inception's aux term, averaged over the epoch's batches as the weights changed); val_loss is
# plain cross-entropy at the epoch's end. lr is the learning rate of the epoch's first step
# (cosine changes it every step; the other schedules hold it for the whole epoch).
# epoch_time_s covers training and validation; images_processed is cumulative. Their names, and
# those of the result, are xfer.names' EPOCH_METRICS, SWEEP_REPORT_KEYS and MILESTONE_KEYS.


@dataclass
class TrialConfig:
    data: str                          # dataset folder with a packed cache (xfer data pdf --out)
    model: str = "resnet18"            # xfer.models.MODEL_NAMES
    init: str = "scratch"              # scratch | pretrained
    train_layers: str = "all"          # all | head | last_block | classifier (the rest frozen)
    weights: str | None = None         # pretrained source; None -> "imagenet" when init == pretrained
    head: str = "linear"               # xfer.models.HEADS
    epochs: int = 10                   # budget; early stopping or ASHA may run fewer
    batch_size: int = 16               # images per optimiser step
    lr: float = 0.01                   # per step, at the schedule's peak
    optimizer: str = "sgd"             # sgd | adam | adamw
    momentum: float = 0.9              # sgd's momentum, in [0, 1) (Keras' SGD default is 0,
                                       # torchvision's recipes 0.9); adam/adamw ignore it
    weight_decay: float = 0.0          # L2 coefficient (sgd, adam) or decoupled decay (adamw), x lr per step
    schedule: str = "constant"         # constant | cosine | exp_decay | plateau (learning_rate)
    lr_constant_epochs: int = 10       # exp_decay: epochs at the full lr before the decay starts
    lr_decay_rate: float = 0.1         # exp_decay: lr x exp(-rate) per epoch after those
    plateau_patience: int = 2          # plateau: epochs without a val_loss improvement, then cut
    plateau_factor: float = 0.5        # plateau: lr multiplier at each cut, in (0, 1)
    early_stopping_patience: int = 0   # epochs without a val_loss improvement; 0 = off
    label_smoothing: float = 0.0       # in [0, 1), training loss only
    augment: bool = False              # random flip + shift of up to 1/16 of the side, on the device
    rotate_degrees: float = 0.0        # with augment: + a rotation uniform in ±this, in [0, 180]
    image_size: int | None = None      # px fed to the model (resized on the device); None = dataset's
    resize_mode: str = "bilinear"      # bilinear | nearest: how that resize samples (nearest:
                                       # Keras' UpSampling2D default, pixel replication)
    n: int | None = None               # first n images of the dataset (a stratified subset)
    seed: int = 0                      # init, batch order, augmentation
    device: str = "auto"               # auto (cuda if available) | cpu | cuda | cuda:N
    eval_batch_size: int = 256         # images per forward pass in evaluation
    report_test_each_epoch: bool = False  # each report carries the result so far (test metrics,
                                          # costs, confusion matrix), so a trial a scheduler stops
                                          # after any epoch has final numbers; +1 test pass/epoch
    embeddings: str = ""               # "" (off) | tsne | umap | tsne+umap: after the last epoch,
                                       # embed the test split's early/middle/late features
                                       # (xfer.embeddings; "tsne+umap": both, one forward pass);
                                       # ~5 s of t-SNE per stage per 2,000 images on 2 CPU cores
    embedding_points: int = 2000       # test images embedded at most (a stratified sample)
    epoch_milestones: tuple[int, ...] = ()  # also keep the result (test metrics, costs) as of
                                            # these epochs, each < epochs: what a run with that
                                            # budget would have given (see "Epoch
                                            # milestones" above); +1 test pass per milestone

    def validate(self) -> "TrialConfig":
        """Check every field once, at the edge; raises UsageError naming the field and the valid
        range. Needs no data: the image size is checked against the dataset later, in fit."""
        for field, value, valid in [("model", self.model, models.MODEL_NAMES),
                                    ("init", self.init, models.INITS),
                                    ("train_layers", self.train_layers, models.TRAIN_LAYERS),
                                    ("head", self.head, models.HEADS),
                                    ("optimizer", self.optimizer, OPTIMIZERS),
                                    ("schedule", self.schedule, SCHEDULES),
                                    ("resize_mode", self.resize_mode, RESIZE_MODES)]:
            if value not in valid:
                raise choice_error(field, value, valid)
        if self.embeddings not in EMBEDDING_METHODS:
            raise choice_error("embeddings", self.embeddings, EMBEDDING_METHODS)
        for field in ("epochs", "batch_size", "eval_batch_size", "embedding_points"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"{field} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise UsageError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        # Checked whatever the optimizer: adam/adamw ignore it, but a bad value is still a typo.
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise UsageError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        # The schedule and rotation fields are checked whatever the schedule and augment: a
        # field that does not apply keeps its (valid) value and is ignored.
        if not _is_int(self.lr_constant_epochs) or self.lr_constant_epochs < 0:
            raise UsageError(f"lr_constant_epochs must be an integer >= 0 (epochs at the full lr "
                             f"before exp_decay decays it), got {self.lr_constant_epochs!r}")
        if not (_is_number(self.lr_decay_rate) and 0 <= self.lr_decay_rate < math.inf):
            raise UsageError(f"lr_decay_rate must be a finite number >= 0 (per epoch), "
                             f"got {self.lr_decay_rate!r}")
        if not _is_int(self.plateau_patience) or self.plateau_patience < 1:
            raise UsageError(f"plateau_patience must be an integer >= 1 (epochs), "
                             f"got {self.plateau_patience!r}")
        if not (_is_number(self.plateau_factor) and 0 < self.plateau_factor < 1):
            raise UsageError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if not (_is_number(self.rotate_degrees) and 0 <= self.rotate_degrees <= 180):
            raise UsageError(f"rotate_degrees must be in [0, 180], got {self.rotate_degrees!r}")
        if not isinstance(self.early_stopping_patience, int) or self.early_stopping_patience < 0:
            raise UsageError(f"early_stopping_patience must be an integer >= 0 (0 = off), "
                             f"got {self.early_stopping_patience!r}")
        if self.n is not None and (not isinstance(self.n, int) or self.n <= 0):
            raise UsageError(f"n must be a positive integer or None (all images), got {self.n!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.init == "scratch" and self.weights is not None:
            raise UsageError(f"weights {self.weights!r} given with init 'scratch'; "
                             "use init 'pretrained' to start from them")
        if self.image_size is not None:
            if not isinstance(self.image_size, int) or self.image_size <= 0:
                raise UsageError(f"image_size must be a positive integer (px), got {self.image_size!r}")
            models.input_size_for(self.model, self.image_size)  # UsageError when too small
        self._check_milestones()
        resolve_device(self.device)
        if not self.data:
            raise UsageError("data must name a dataset folder")
        return self

    def _check_milestones(self) -> None:
        milestones = self.epoch_milestones
        if not isinstance(milestones, (list, tuple)) or not all(_is_int(m) for m in milestones):
            raise UsageError(f"epoch_milestones must be a list of whole epochs, got {milestones!r}")
        if not milestones:
            return
        if list(milestones) != sorted(set(milestones)) or milestones[0] < 1 or milestones[-1] >= self.epochs:
            raise UsageError(f"epoch_milestones must increase, each in 1..{self.epochs - 1} (below "
                             f"epochs {self.epochs}), got {list(milestones)}")
        if self.schedule in BUDGET_DEPENDENT_SCHEDULES:
            raise UsageError(f"epoch_milestones with schedule {self.schedule!r}: its lr at epoch "
                             f"{milestones[0]} depends on the {self.epochs}-epoch budget, so a "
                             f"milestone would not be the {milestones[0]}-epoch run; use "
                             "constant, exp_decay or plateau, or separate runs")
        if self.embeddings:
            raise UsageError("epoch_milestones with embeddings: embeddings are computed after the "
                             "last epoch only, so the milestones would lack them; run them apart")

    def resolved(self) -> "TrialConfig":
        """The config with its defaults made explicit, as recorded with the run."""
        weights = self.weights
        if self.init == "pretrained" and weights is None:
            weights = "imagenet"
        return replace(self, weights=weights, device=str(resolve_device(self.device)),
                       epoch_milestones=tuple(self.epoch_milestones))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def resolve_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``, with a warning (once per process) when
    the machine has an NVIDIA GPU that torch cannot use. UsageError for an unknown or absent one."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        _warn_if_gpu_unusable()
        return torch.device("cpu")
    valid = ("auto", "cpu", "cuda", "cuda:N")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise choice_error("device", name, valid) from None
    if device.type not in ("cpu", "cuda"):
        raise choice_error("device", name, valid)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but CUDA is not available (valid here: auto, cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


_gpu_checked = False


def _warn_if_gpu_unusable() -> None:
    """``auto`` falling back to CPU on a GPU machine (typically a driver too old for torch's
    CUDA) is a many-fold slowdown that looks like success: say so. The probe runs once per
    process (validate() and resolved() both resolve the device, and it may run nvidia-smi)."""
    global _gpu_checked
    if _gpu_checked:
        return
    _gpu_checked = True
    reason = gpu_probe.unusable_gpu_reason(torch.__version__, torch.version.cuda)
    if reason is None:
        return
    warnings.warn(f"device 'auto' runs on CPU: {reason}. To use the GPU: {gpu_probe.HOW_TO_FIX}",
                  UserWarning, stacklevel=3)


def print_report(metrics: dict) -> None:
    """The default ``report``: one readable line per epoch."""
    print(f"epoch {metrics['epoch']:3d}  train_loss {metrics['train_loss']:.4f}  "
          f"train_acc {metrics['train_accuracy']:.3f}  val_loss {metrics['val_loss']:.4f}  "
          f"val_acc {metrics['val_accuracy']:.3f}  lr {metrics['lr']:.3g}  "
          f"{metrics['epoch_time_s']:.1f} s", flush=True)


# --- the training step, one epoch, evaluation -------------------------------------------------

def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, *, amp_dtype: torch.dtype | None = None,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step. Returns the batch's summed loss and correct count as device tensors,
    without a host sync, so the caller can accumulate them and sync once per epoch."""
    with autocast(x.device, amp_dtype):
        logits, aux_logits = models.split_outputs(model(x))
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if aux_logits is not None:
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux_logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(y), (logits.argmax(dim=1) == y).sum()


def train_one_epoch(model, optimizer, images: torch.Tensor, labels: torch.Tensor,
                    prep: BatchPrep, config: TrialConfig, epoch: int, first_step: int,
                    total_steps: int, amp_dtype: torch.dtype | None = None, *,
                    plateau_scale: float = 1.0) -> dict:
    """Train over one shuffled pass of the split held on the device of ``images``. One host
    sync, at the end. ``epoch``, ``first_step``, ``total_steps`` and ``plateau_scale`` place the
    epoch on the lr schedule (:func:`learning_rate`); the result's ``lr`` is its first step's."""
    device = images.device
    models.set_train_mode(model, config.train_layers)
    order = epoch_order(len(labels), config.seed, epoch, device)
    generator = augment_generator(config.seed, epoch, device) if prep.augment else None
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    step = first_step
    first_lr = learning_rate(config, first_step, total_steps, epoch, plateau_scale)
    for batch in batch_slices(len(labels), config.batch_size):
        index = order[batch]
        x, y = prep(images[index], generator), labels[index]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total_steps, epoch, plateau_scale)
        batch_loss, batch_correct = train_step(model, optimizer, x, y, amp_dtype=amp_dtype,
                                               label_smoothing=config.label_smoothing)
        loss_sum += batch_loss
        correct += batch_correct
        seen += len(y)
        step += 1
    # The epoch's one CPU-GPU sync: .item() waits for every queued step to finish.
    return {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen,
            "images": seen, "steps": step - first_step, "lr": first_lr}


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, prep: BatchPrep, *,
             batch_size: int, amp_dtype: torch.dtype | None = None, with_probs: bool = False
             ) -> dict:
    """Mean cross-entropy (no label smoothing) and accuracy over a split; with ``with_probs``
    also the class probabilities (N×C float32 numpy) for the test metrics. One host sync."""
    device = images.device
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    probs = []
    with torch.inference_mode(), autocast(device, amp_dtype):
        for batch in batch_slices(len(labels), batch_size, drop_single=False):
            x, y = prep(images[batch]), labels[batch]
            logits, _ = models.split_outputs(model(x))
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
            if with_probs:
                probs.append(torch.softmax(logits, dim=1))
    n = max(1, len(labels))
    result = {"loss": loss_sum.item() / n if len(labels) else math.nan,
              "accuracy": correct.item() / n if len(labels) else math.nan}
    if with_probs:
        result["probs"] = torch.cat(probs).cpu().numpy() if probs else np.zeros((0, 0), np.float32)  # sync
    return result


# --- fit ----------------------------------------------------------------------------------------

def fit(config: TrialConfig, report: Callable[[dict], None] = print_report, *,
        data: ImageSet | None = None, resume: dict | None = None,
        checkpoint: Callable[[dict], None] | None = None) -> dict:
    """Train and evaluate one trial; returns the result dict (JSON-serialisable).

    ``report(metrics)`` is called once per epoch with ``EPOCH_METRICS``. ``checkpoint(state)``,
    when given, is called at the end of every epoch *before* ``report`` (a scheduler such as
    ASHA may end the trial inside ``report``), with CPU copies of everything ``resume`` needs
    to continue bit-exactly; the copy costs one device-to-host transfer of the model and
    optimiser state per epoch. ``data`` is a preloaded ImageSet (a sweep shares one across
    trials); ``config.n`` then takes its first n images, as ``load_packed`` would. The
    plateau schedule's state lives in the progress dict, so checkpoints carry it too.
    """
    start = time.perf_counter()
    config = config.validate().resolved()
    device = torch.device(config.device)
    with backend_settings(device):
        seed_everything(config.seed)
        trial = set_up(config, device, data)
        progress = start_progress(config, trial.model, trial.optimizer, resume)
        steps_per_epoch = len(batch_slices(trial.facts.sizes["train"], config.batch_size))
        total_steps = config.epochs * steps_per_epoch
        patience = config.early_stopping_patience
        final = None
        for epoch in range(progress["epoch"] + 1, config.epochs + 1):
            if patience and progress["epochs_since_best"] >= patience:
                break  # a resumed run that had already stopped early
            t0 = synced_clock(device)
            train = train_one_epoch(trial.model, trial.optimizer, *trial.split["train"],
                                    trial.prep_train, config, epoch, (epoch - 1) * steps_per_epoch,
                                    total_steps, trial.amp_dtype,
                                    plateau_scale=progress["plateau"]["scale"])
            t1 = synced_clock(device)
            val = evaluate(trial.model, *trial.split["val"], trial.prep_eval,
                           batch_size=config.eval_batch_size, amp_dtype=trial.amp_dtype)
            t2 = synced_clock(device)
            metrics = record_epoch(progress, config, epoch, train, val, t1 - t0, t2 - t0)
            stopping = bool(patience and progress["epochs_since_best"] >= patience)
            last_epoch = stopping or epoch == config.epochs
            reached = milestones_reached(config.epoch_milestones, progress["milestones"], epoch,
                                         stopping)
            # The test split is scored at the last epoch and at milestones, and those reports
            # carry the result; every epoch only when asked (a scheduler may end the trial
            # inside any report). Nothing selects on it.
            final = None
            if config.report_test_each_epoch or reached or last_epoch:
                final = score(trial, progress, start)
                keep_milestones(progress["milestones"], reached, final)
                if config.embeddings and last_epoch:
                    final["embeddings"] = embed_test_split(trial)
            if checkpoint is not None:
                elapsed = progress["wall_time_s"] + time.perf_counter() - start
                checkpoint(snapshot(config, trial.model, trial.optimizer,
                                    {**progress, "wall_time_s": elapsed}))
            report(epoch_report(metrics, final))
            if stopping:
                break

        if final is None or final["epochs_run"] != len(progress["history"]):
            final = score(trial, progress, start)
            if config.embeddings:
                final["embeddings"] = embed_test_split(trial)
        return final


# --- what fit sets up once, and does each epoch -------------------------------------------------

@dataclass
class TrialSetup:
    """What ``fit`` sets up once: the model and its optimiser, each split on the device as
    uint8 (copied once; batches are gathered there), how batches are prepared for training and
    for evaluation, and the facts the result reports."""
    config: TrialConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    split: dict[str, tuple[torch.Tensor, torch.Tensor]]
    prep_train: BatchPrep
    prep_eval: BatchPrep
    amp_dtype: torch.dtype | None
    facts: TrialFacts
    test_labels: np.ndarray


def set_up(config: TrialConfig, device: torch.device, data: ImageSet | None) -> TrialSetup:
    """Load the data (or take ``config.n`` images of ``data``), resolve the starting weights
    and the input normalisation, build the model and its optimiser. Initialising the model
    draws from the global RNG: call this right after seeding, as ``fit`` does."""
    data = data.take(config.n) if data is not None else load_packed(config.data, n=config.n)
    sizes = {name: len(data.splits[name]) for name in ("train", "val", "test")}
    if min(sizes.values()) == 0:
        raise UsageError(f"dataset too small to split: n={len(data.labels)} gives {sizes} "
                         "train/val/test images; use at least 5 images per class")
    input_size = models.input_size_for(config.model, config.image_size or data.image_size)
    weights = resolve_weights(config.weights, config.model) if config.init == "pretrained" else None
    if weights is not None and weights.mean is not None:
        mean, std, norm_from = list(weights.mean), list(weights.std), "weights"
    else:
        mean, std = data.channel_stats("train")  # one pass over the train split's pixels
        norm_from = "dataset"
    # UsageError when the weights are another architecture's; a head for another class count
    # is left out and trained fresh.
    model = place_model(models.create_model(config.model, data.num_classes, config.init,
                                            state_dict=weights.state_dict if weights else None,
                                            train_layers=config.train_layers, head=config.head),
                        device)
    optimizer = make_optimizer(config, models.trainable_parameters(model))
    layout = {"device": device, "channels_last": channels_last_for(device),
              "resize_mode": config.resize_mode}
    prep_train = BatchPrep(mean, std, input_size, augment=config.augment,
                           rotate_degrees=config.rotate_degrees, **layout)
    prep_eval = BatchPrep(mean, std, input_size, **layout)
    split = {name: tuple(t.to(device) for t in data.split(name)) for name in sizes}
    facts = TrialFacts(
        sizes=sizes, input_size=input_size, classes=list(data.classes), dataset=data.identity,
        test_set_sha256=data.split_sha256("test"),
        weights=None if weights is None else {"source": weights.source, "sha256": weights.sha256,
                                              "meta": weights.meta},
        normalization={"mean": mean, "std": std, "from": norm_from},
        device=device_name(device), on_gpu=device.type == "cuda",
        **cost.trial_costs(config.model, data.num_classes, config.head, config.train_layers,
                           input_size, None if weights is None else weights.meta))
    return TrialSetup(config, model, optimizer, split, prep_train, prep_eval, amp_dtype_for(device),
                      facts, test_labels=split["test"][1].cpu().numpy())


def score(trial: TrialSetup, progress: dict, start: float) -> dict:
    """The result as of the last epoch trained (``xfer.trial_result``), ``start`` being fit's
    perf_counter at its start. Costs one forward pass over the test split."""
    test = evaluate(trial.model, *trial.split["test"], trial.prep_eval,
                    batch_size=trial.config.eval_batch_size, amp_dtype=trial.amp_dtype,
                    with_probs=True)
    wall_time_s = progress["wall_time_s"] + time.perf_counter() - start
    return trial_result(trial.config, trial.facts, progress, test, trial.test_labels, wall_time_s)


def embed_test_split(trial: TrialSetup) -> dict | None:
    """Test-split features of three stages, embedded in 2-D with silhouette scores; None
    when the split is too small to embed."""
    from xfer.embeddings import MIN_EMBED_POINTS, embed_stages

    config = trial.config
    images, labels = trial.split["test"]
    if len(labels) < MIN_EMBED_POINTS:
        return None
    return embed_stages(trial.model, config.model, images, labels.cpu().numpy(),
                        list(trial.facts.classes), trial.prep_eval, method=config.embeddings,
                        seed=config.seed, max_points=config.embedding_points,
                        batch_size=config.eval_batch_size)


def epoch_report(metrics: dict, result: dict | None) -> dict:
    """An epoch's report: its metrics, and what a sweep keeps of the result when the test
    split was scored this epoch."""
    if result is None:
        return dict(metrics)
    return {**metrics, **{k: v for k, v in result.items() if k in _SWEEP_REPORT_KEYS}}


# What a sweep's report carries of the result (xfer.names says why); the private name is
# the one fit and tests/test_train.py read.
_SWEEP_REPORT_KEYS = SWEEP_REPORT_KEYS
