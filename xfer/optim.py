"""The optimiser a trial trains with and its learning-rate schedule. Plain PyTorch.

The lr is a pure function of the step and of the plateau state (which ``fit`` keeps in its
progress dict, checkpointed with it), so no scheduler object is saved and a resumed run
continues the schedule exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from xfer.errors import UsageError

if TYPE_CHECKING:
    from xfer.train import TrialConfig

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "exp_decay", "plateau")
# plateau: val_loss "improved" when it fell below best·(1 − 1e-4), torch ReduceLROnPlateau's
# default (threshold=1e-4, threshold_mode="rel"); a relative margin ignores float noise.
PLATEAU_THRESHOLD = 1e-4


def make_optimizer(config: TrialConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``params`` at ``config.lr`` (the schedule sets it per step)."""
    if not params:
        raise UsageError(f"model {config.model!r} with train_layers {config.train_layers!r} "
                         "has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)


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
