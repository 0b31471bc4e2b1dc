"""One trial: ``fit(config, report)`` trains a model on a packed dataset and returns its metrics.

The torchvision references skeleton: ``train_step`` → ``train_one_epoch`` → ``evaluate``
(returns numbers) → ``fit``. Plain PyTorch: no Ray, no MLflow. ``report`` receives the
per-epoch metrics and is whatever the caller passes (``tune.report``, ``print``, a list's
``append``); ``checkpoint`` receives everything needed to continue exactly, and ``resume``
takes it back.

Data never goes through a DataLoader: each split sits on the device as uint8 and batches are
prepared there (``xfer.batches``). On CUDA, training runs in bf16 autocast with channels-last
tensors and cuDNN autotuning; on CPU it runs in fp32 with deterministic algorithms, so the same
seed gives bit-identical results.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xfer import cost, gpu_probe, models
from xfer.batches import RESIZE_MODES, BatchPrep, augment_generator, batch_slices, epoch_order
from xfer.data.tensors import ImageSet, load_packed
from xfer.errors import UsageError, choice_error
from xfer.metrics import classification_metrics
from xfer.stats import wilson_interval
from xfer.provenance import git_sha, package_versions
from xfer.trial_state import restore, snapshot
from xfer.weights import resolve_weights

OPTIMIZERS = ("sgd", "adam", "adamw")
EMBEDDING_METHODS = ("", "tsne", "umap", "tsne+umap")  # "": no embeddings; "tsne+umap": both
SCHEDULES = ("constant", "cosine", "exp_decay", "plateau")
# Epoch milestones. A milestone m of an E-epoch run is its result as of epoch m: test metrics,
# costs and time up to then. With a schedule that ignores the budget (constant, exp_decay,
# plateau) the first m epochs of the run are exactly the m-epoch run (same seed, same batch
# order and augmentation per epoch, same early stopping), so it is that run's result, and
# epochs {10, 20, 50} cost one 50-epoch run instead of 80 epochs. A schedule whose lr at epoch
# e depends on the total budget breaks that, so milestones are refused with it:
BUDGET_DEPENDENT_SCHEDULES = ("cosine",)
# plateau: val_loss "improved" when it fell below best·(1 − 1e-4), torch ReduceLROnPlateau's
# default (threshold=1e-4, threshold_mode="rel"); a relative margin ignores float noise.
PLATEAU_THRESHOLD = 1e-4
AUX_LOSS_WEIGHT = 0.4  # Inception v3's auxiliary classifier (Szegedy et al., 2016, sec. 7)
# Reported once per epoch. train_loss is the training objective (with label smoothing and
# inception's aux term, averaged over the epoch's batches as the weights changed); val_loss is
# plain cross-entropy at the epoch's end. lr is the learning rate of the epoch's first step
# (cosine changes it every step; the other schedules hold it for the whole epoch).
# epoch_time_s covers training and validation; images_processed is cumulative.
EPOCH_METRICS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "epoch_time_s", "images_processed")


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

def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (no loss scaling needed: bf16 has fp32's exponent range); fp32 on
    CPU, where bf16 matmuls are slower on most hosts and would break bit-reproducibility."""
    return torch.bfloat16 if device.type == "cuda" else None


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, *, amp_dtype: torch.dtype | None = None,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step. Returns the batch's summed loss and correct count as device tensors,
    without a host sync, so the caller can accumulate them and sync once per epoch."""
    with _autocast(x.device, amp_dtype):
        logits, aux_logits = models.split_outputs(model(x))
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if aux_logits is not None:
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux_logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(y), (logits.argmax(dim=1) == y).sum()


def learning_rate(config: TrialConfig, step: int, total_steps: int, epoch: int,
                  plateau_scale: float = 1.0) -> float:
    """The lr of optimiser step ``step`` (0-based) in ``epoch`` (1-based): a pure function of
    the step and of ``plateau_scale``, which is itself restored on resume, so a resumed run
    continues the schedule exactly (nanoGPT's ``get_lr``).

    - constant: ``lr``.
    - cosine: decays per step to 0 at the end of the full ``epochs`` budget (Loshchilov &
      Hutter, 2017, without restarts). It depends on the budget, so under ASHA a trial stopped
      at a rung trained at higher lrs than a shorter-budget run would have.
    - exp_decay: ``lr`` for the first ``lr_constant_epochs`` epochs, then
      ``lr·exp(−lr_decay_rate·(epoch − lr_constant_epochs))``: Keras' classic
      ``LearningRateScheduler`` example (constant for 10 epochs, then ×exp(−0.1) per epoch, the
      defaults here). Per epoch, and independent of the budget.
    - plateau: ``lr·plateau_scale``, the scale :func:`plateau_update` keeps from past
      validation losses (Keras/torch ``ReduceLROnPlateau``). Independent of the budget too.

    exp_decay and plateau depend only on the epoch index and on epochs already run, so the
    first k epochs of a trial are the same whatever its budget: fair under ASHA, whose early
    rungs compare trials after a few epochs of the very run that continues.
    """
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if config.schedule == "exp_decay":
        return config.lr * math.exp(-config.lr_decay_rate * max(0, epoch - config.lr_constant_epochs))
    if config.schedule == "plateau":
        return config.lr * plateau_scale
    return config.lr


def plateau_start() -> dict:
    """The plateau schedule's state before the first epoch (kept in fit's progress dict, so it
    is checkpointed and restored with it)."""
    return {"best_val_loss": math.inf, "bad_epochs": 0, "scale": 1.0}


def plateau_update(state: dict, val_loss: float, patience: int, factor: float) -> dict:
    """The plateau state after an epoch that ended with ``val_loss`` (a new dict).

    An improvement is ``val_loss < best·(1 − PLATEAU_THRESHOLD)``; after ``patience`` epochs in
    a row without one, the lr scale is multiplied by ``factor`` and the count restarts, so the
    next cut needs another ``patience`` bad epochs. Patience counts as in Keras'
    ``ReduceLROnPlateau`` (cut on the patience-th bad epoch; torch's cuts one epoch later, so
    torch patience p equals ours p + 1). No cooldown and no minimum lr. NaN never improves.
    """
    if val_loss < state["best_val_loss"] * (1 - PLATEAU_THRESHOLD):
        return {**state, "best_val_loss": val_loss, "bad_epochs": 0}
    if state["bad_epochs"] + 1 >= patience:
        return {**state, "bad_epochs": 0, "scale": state["scale"] * factor}
    return {**state, "bad_epochs": state["bad_epochs"] + 1}


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
    with torch.inference_mode(), _autocast(device, amp_dtype):
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
    with _backend_settings(device):
        _seed_everything(config.seed)
        data = data.take(config.n) if data is not None else load_packed(config.data, n=config.n)
        sizes = {name: len(data.splits[name]) for name in ("train", "val", "test")}
        if min(sizes.values()) == 0:
            raise UsageError(f"dataset too small to split: n={len(data.labels)} gives {sizes} "
                             "train/val/test images; use at least 5 images per class")
        input_size = models.input_size_for(config.model, config.image_size or data.image_size)

        weights = None
        if config.init == "pretrained":
            weights = resolve_weights(config.weights, config.model)
        if weights is not None and weights.mean is not None:
            mean, std, norm_from = list(weights.mean), list(weights.std), "weights"
        else:
            mean, std = data.channel_stats("train")  # one pass over the train split's pixels
            norm_from = "dataset"
        # UsageError when the weights are another architecture's; a head for another class
        # count is left out and trained fresh.
        model = models.create_model(config.model, data.num_classes, config.init,
                                    state_dict=weights.state_dict if weights else None,
                                    train_layers=config.train_layers, head=config.head)
        cuda = device.type == "cuda"
        amp_dtype = amp_dtype_for(device)
        model = model.to(device)
        if cuda:  # NHWC: what cuDNN's tensor-core convolutions want, saves layout transposes
            model = model.to(memory_format=torch.channels_last)
        optimizer = _make_optimizer(config, models.trainable_parameters(model))
        prep_train = BatchPrep(mean, std, input_size, device=device, channels_last=cuda,
                               augment=config.augment, rotate_degrees=config.rotate_degrees,
                               resize_mode=config.resize_mode)
        prep_eval = BatchPrep(mean, std, input_size, device=device, channels_last=cuda,
                              resize_mode=config.resize_mode)
        # Each split is copied to the device once, as uint8; batches are gathered there.
        split = {name: tuple(t.to(device) for t in data.split(name)) for name in sizes}

        progress = {"epoch": 0, "images_processed": 0, "train_time_s": 0.0, "wall_time_s": 0.0,
                    "best_val_loss": math.inf, "epochs_since_best": 0, "history": [],
                    "plateau": plateau_start(), "milestones": {}}
        if resume is not None:
            progress = restore(resume, config, model, optimizer)
            progress.setdefault("plateau", plateau_start())  # a checkpoint from before plateau
            progress.setdefault("milestones", {})  # ... or from before epoch milestones
        history = progress["history"]

        macs = cost.macs_per_image_for(config.model, data.num_classes, config.head, input_size)
        backward_macs = cost.backward_macs_per_image_for(config.model, data.num_classes, config.head,
                                                         config.train_layers, input_size)
        # What producing the starting weights cost (0 from scratch): measured for xfer's own
        # source-task pretraining, a recipe estimate for ImageNet (xfer.cost).
        pretrain_macs, pretrain_basis = ((0, "none: trained from scratch") if weights is None
                                         else cost.pretraining_macs(weights.meta, config.model))
        test_labels = split["test"][1].cpu().numpy()
        test_sha256 = data.split_sha256("test")  # pairs runs scored on the same test images

        def result_now() -> dict:
            """The trial's result as of the last epoch trained: test metrics, costs, identity.
            Costs one forward pass over the test split."""
            test = evaluate(model, *split["test"], prep_eval, batch_size=config.eval_batch_size,
                            amp_dtype=amp_dtype, with_probs=True)
            test_metrics = classification_metrics(test_labels, test["probs"], data.num_classes)
            predicted = test["probs"].argmax(axis=1)
            ci_low, ci_high = wilson_interval(int((predicted == test_labels).sum()), len(test_labels))
            wall_time_s = progress["wall_time_s"] + time.perf_counter() - start
            epochs_run = len(history)
            last = history[-1] if history else {}
            return {
                "test_accuracy": test_metrics["accuracy"],
                "test_accuracy_ci_low": ci_low, "test_accuracy_ci_high": ci_high,  # Wilson 95%
                "test_precision_macro": test_metrics["precision_macro"],
                "test_recall_macro": test_metrics["recall_macro"],
                "test_f1_macro": test_metrics["f1_macro"],
                "test_auc_roc_ovr": test_metrics["auc_roc_ovr"],
                "test_loss": test["loss"],
                "epochs_run": epochs_run,
                "wall_time_s": wall_time_s,
                "train_time_s": progress["train_time_s"],
                "macs_per_image": macs,
                "train_macs": cost.train_macs(macs, progress["images_processed"],
                                              backward_macs_per_image=backward_macs),
                "backward_macs_per_image": backward_macs,
                "pretrain_macs": pretrain_macs, "pretrain_macs_basis": pretrain_basis,
                "macs_epochs_per_batch": cost.macs_epochs_per_batch(macs, epochs_run, config.batch_size),
                "gpu_seconds": wall_time_s * (1 if device.type == "cuda" else 0),
                "n_train": sizes["train"], "n_val": sizes["val"], "n_test": sizes["test"],
                "split": data.identity.get("split") or "80:10:10",
                "test_set_sha256": test_sha256,
                # per test image, in the split's fixed order: what paired comparisons of two
                # runs on the same test images need (a few bytes per image)
                "test_predictions": {"test_set_sha256": test_sha256,
                                     "labels": test_labels.tolist(),
                                     "predicted": predicted.tolist()},
                "images_processed": progress["images_processed"],
                "input_size": input_size,
                **{key: last.get(key, math.nan) for key in ("train_loss", "train_accuracy",
                                                             "val_loss", "val_accuracy")},
                "history": [dict(h) for h in history],
                "confusion_matrix": test_metrics["confusion_matrix"],
                "roc_curve": test_metrics["roc_macro"],  # macro-average one-vs-rest, 101 points
                "classes": list(data.classes),
                "config": asdict(config),
                "weights": None if weights is None else {
                    "source": weights.source, "sha256": weights.sha256, "meta": _jsonable(weights.meta)},
                "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
                                  "from": norm_from},
                "dataset": _jsonable(data.identity),
                "milestones": {epoch: dict(entry) for epoch, entry in progress["milestones"].items()},
                "device": _device_name(device),
                "git_sha": git_sha(),
                "packages": package_versions(),
            }

        def embed_now() -> dict | None:
            """Test-split features of three stages, embedded in 2-D with silhouette scores; None
            when the split is too small to embed."""
            from xfer.embeddings import MIN_EMBED_POINTS, embed_stages

            images, labels = split["test"]
            if len(labels) < MIN_EMBED_POINTS:
                return None
            return embed_stages(model, config.model, images, labels.cpu().numpy(), list(data.classes),
                                prep_eval, method=config.embeddings, seed=config.seed,
                                max_points=config.embedding_points, batch_size=config.eval_batch_size)

        final = None
        steps_per_epoch = len(batch_slices(sizes["train"], config.batch_size))
        total_steps = config.epochs * steps_per_epoch
        patience = config.early_stopping_patience
        for epoch in range(progress["epoch"] + 1, config.epochs + 1):
            if patience and progress["epochs_since_best"] >= patience:
                break  # a resumed run that had already stopped early
            t0 = _synced_clock(device)
            train = train_one_epoch(model, optimizer, *split["train"], prep_train, config, epoch,
                                    (epoch - 1) * steps_per_epoch, total_steps, amp_dtype,
                                    plateau_scale=progress["plateau"]["scale"])
            t1 = _synced_clock(device)
            val = evaluate(model, *split["val"], prep_eval, batch_size=config.eval_batch_size,
                           amp_dtype=amp_dtype)
            t2 = _synced_clock(device)

            progress["epoch"] = epoch
            progress["images_processed"] += train["images"]
            progress["train_time_s"] += t1 - t0
            if val["loss"] < progress["best_val_loss"]:
                progress["best_val_loss"], progress["epochs_since_best"] = val["loss"], 0
            else:
                progress["epochs_since_best"] += 1
            if config.schedule == "plateau":  # decides the next epoch's lr
                progress["plateau"] = plateau_update(progress["plateau"], val["loss"],
                                                     config.plateau_patience, config.plateau_factor)
            metrics = {"epoch": epoch, "train_loss": train["loss"],
                       "train_accuracy": train["accuracy"], "val_loss": val["loss"],
                       "val_accuracy": val["accuracy"], "lr": train["lr"], "epoch_time_s": t2 - t0,
                       "images_processed": progress["images_processed"]}
            history.append(metrics)
            stopping = bool(patience and progress["epochs_since_best"] >= patience)
            # Milestones reached now: this epoch's, and on an early stop every later one (the
            # shorter runs would have stopped here too). Kept before the checkpoint, so a
            # resumed run still has them.
            reached = [m for m in config.epoch_milestones if str(m) not in progress["milestones"]
                       and (m == epoch or (stopping and m > epoch))]
            # The test split is scored at the last epoch and at milestones, and those reports carry
            # the result; every epoch only when asked (a scheduler may end the trial inside any
            # report). Nothing selects on it.
            last_epoch = stopping or epoch == config.epochs
            final = None
            if config.report_test_each_epoch or reached or last_epoch:
                final = result_now()
                for m in reached:
                    progress["milestones"][str(m)] = milestone_entry(final)
                final["milestones"] = {k: dict(v) for k, v in progress["milestones"].items()}
                if config.embeddings and last_epoch:
                    final["embeddings"] = embed_now()
            if checkpoint is not None:
                elapsed = progress["wall_time_s"] + time.perf_counter() - start
                checkpoint(snapshot(config, model, optimizer, {**progress, "wall_time_s": elapsed}))
            if final is not None:  # scored this epoch: the report carries the result
                report({**metrics, **{k: v for k, v in final.items() if k in _SWEEP_REPORT_KEYS}})
            else:
                report(dict(metrics))
            if stopping:
                break

        if final is None or final["epochs_run"] != len(history):
            final = result_now()
            if config.embeddings:
                final["embeddings"] = embed_now()
        return final


_SWEEP_REPORT_KEYS = ("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high",
                      "test_precision_macro", "test_recall_macro", "test_f1_macro",
                      "test_auc_roc_ovr", "test_loss", "epochs_run", "wall_time_s", "train_time_s",
                      "macs_per_image", "train_macs", "macs_epochs_per_batch", "gpu_seconds",
                      "n_train", "n_val", "n_test", "input_size", "history", "confusion_matrix",
                      "roc_curve", "classes", "weights", "embeddings", "milestones",
                      "backward_macs_per_image", "pretrain_macs", "pretrain_macs_basis", "split",
                      "test_set_sha256", "test_predictions")
# What a milestone keeps of the result as of its epoch: the numbers a run with that budget
# reports, without the history (the full run's holds it) or the provenance (the same).
MILESTONE_KEYS = ("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high",
                  "test_precision_macro", "test_recall_macro", "test_f1_macro",
                  "test_auc_roc_ovr", "test_loss", "epochs_run", "wall_time_s", "train_time_s",
                  "macs_per_image", "train_macs", "macs_epochs_per_batch", "gpu_seconds",
                  "images_processed", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                  "confusion_matrix", "roc_curve", "test_predictions", "pretrain_macs")


def milestone_entry(result: dict) -> dict:
    """The part of ``result`` a milestone keeps, in plain types (it goes into checkpoints,
    which are read back with ``torch.load(weights_only=True)``)."""
    return _jsonable({key: result[key] for key in MILESTONE_KEYS if key in result})


# --- helpers ----------------------------------------------------------------------------------

def _make_optimizer(config: TrialConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise UsageError(f"model {config.model!r} with train_layers {config.train_layers!r} "
                         "has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)


@contextlib.contextmanager
def _backend_settings(device: torch.device):
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _synced_clock(device: torch.device) -> float:
    """perf_counter after the device has finished its queued work (a CPU-GPU sync point)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _jsonable(obj):
    """Paths, numpy scalars and tuples as JSON types; unknown objects as their repr."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return str(obj)
