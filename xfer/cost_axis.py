"""The cost axis of the frontier: which run metrics may be the cost, what each measures, and the
amortised axis (training plus a share of pretraining) with its break-even.

Its own module because the CLI, the sweep driver and the report check ``--cost`` and
``--amortize-pretraining`` before any runs table exists; numpy only, so those
checks load neither pandas nor torch.
"""

from __future__ import annotations

import math

import numpy as np

from xfer.errors import UsageError, choice_error
from xfer.names import COST_METRICS, GPU_SECONDS, MACS_EPOCHS_PER_BATCH, PRETRAIN_MACS, TRAIN_MACS, WALL_TIME_S

PRETRAIN = PRETRAIN_MACS
DEFAULT_COST = TRAIN_MACS  # hardware-independent, so sweeps on different clusters compare
AMORTIZED = f"{TRAIN_MACS}_amortized"  # train_macs + pretrain_macs / N: the axis with --amortize-pretraining
COST_UNITS = {
    TRAIN_MACS: "training MACs (forward + backward through the trained layers, x images processed)",
    AMORTIZED: "training MACs + pretraining MACs / N uses",
    WALL_TIME_S: "wall time per trial [s]",
    GPU_SECONDS: "GPU-seconds (wall time x GPUs held)",
    MACS_EPOCHS_PER_BATCH: "MACs x epochs / batch size (design card)",
}


def check_cost(cost: str) -> str:
    if cost not in COST_METRICS:
        raise choice_error("cost metric", cost, COST_METRICS)
    return cost


def check_axis(cost: str) -> str:
    """A user's cost metric, or the amortised axis analyse() derives from train_macs."""
    return cost if cost == AMORTIZED else check_cost(cost)


def check_amortize(uses, cost: str = DEFAULT_COST) -> int | None:
    """``None`` (pretraining not counted) or a whole number of uses >= 1, on train_macs only:
    pretraining is counted in MACs, and adding MACs to seconds would mean nothing."""
    if uses is None:
        return None
    if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 1:
        raise UsageError(f"--amortize-pretraining must be a whole number of uses >= 1, got {uses!r}")
    if cost != TRAIN_MACS:
        raise UsageError(f"--amortize-pretraining counts pretraining in MACs, so it needs --cost "
                         f"{TRAIN_MACS}, got --cost {cost}")
    return int(uses)


# Pretraining spread over N uses of the same weights. Here, not in xfer.cost, because importing
# xfer.cost loads torch and the model zoo (~5 s): the report must not need them.
def amortized_cost(train_macs, pretrain_macs, uses: int):
    """Per-use cost with pretraining shared over ``uses`` fine-tunes: train_macs + pretrain_macs /
    uses (numbers or pandas Series)."""
    return train_macs + pretrain_macs / uses


def break_even_uses(pretrain_macs: float, pretrained_cost: float, scratch_cost: float) -> float:
    """The N at which N pretrained fine-tunes plus one pretraining cost what N scratch runs
    cost: pretrain_macs / (scratch - pretrained); inf when pretrained is not cheaper per use,
    so no number of uses pays the pretraining back."""
    saving = scratch_cost - pretrained_cost
    return pretrain_macs / saving if saving > 0 else math.inf
