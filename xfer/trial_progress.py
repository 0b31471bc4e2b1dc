"""A trial's progress across epochs: the counters ``fit`` keeps (epochs and images done, time,
early stopping's best val_loss, the plateau schedule's state, the history, the epoch
milestones kept) and what each epoch adds to them. They are plain types, checkpointed with
the model and optimiser (``xfer.trial_state``), so a resumed run continues exactly.
"""

from __future__ import annotations

import math

from xfer.names import MILESTONE_KEYS
from xfer.optim import plateau_start, plateau_update
from xfer.trial_result import jsonable
from xfer.trial_state import restore


def start_progress(config, model, optimizer, resume: dict | None) -> dict:
    """The counters before the first epoch to train: fresh, or restored from ``resume`` along
    with ``model``, ``optimizer`` and every global RNG."""
    if resume is None:
        return {"epoch": 0, "images_processed": 0, "train_time_s": 0.0, "wall_time_s": 0.0,
                "best_val_loss": math.inf, "epochs_since_best": 0, "history": [],
                "plateau": plateau_start(), "milestones": {}}
    progress = restore(resume, config, model, optimizer)
    progress.setdefault("plateau", plateau_start())  # a checkpoint from before plateau
    progress.setdefault("milestones", {})  # ... or from before epoch milestones
    return progress


def record_epoch(progress: dict, config, epoch: int, train: dict, val: dict,
                 train_time_s: float, epoch_time_s: float) -> dict:
    """Count ``epoch`` (``train_one_epoch``'s and ``evaluate``'s numbers) into ``progress``:
    images, time, early stopping's and the plateau schedule's state, the history. Returns the
    epoch's metrics, ``EPOCH_METRICS``."""
    progress["epoch"] = epoch
    progress["images_processed"] += train["images"]
    progress["train_time_s"] += train_time_s
    if val["loss"] < progress["best_val_loss"]:
        progress["best_val_loss"], progress["epochs_since_best"] = val["loss"], 0
    else:
        progress["epochs_since_best"] += 1
    if config.schedule == "plateau":  # decides the next epoch's lr
        progress["plateau"] = plateau_update(progress["plateau"], val["loss"],
                                             config.plateau_patience, config.plateau_factor)
    metrics = {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": train["lr"],
               "epoch_time_s": epoch_time_s, "images_processed": progress["images_processed"]}
    progress["history"].append(metrics)
    return metrics


def milestones_reached(milestones: tuple[int, ...], kept: dict, epoch: int,
                       stopping: bool) -> list[int]:
    """The milestones not yet ``kept`` that ``epoch`` reaches: its own, and on an early stop
    every later one (the shorter runs would have stopped here too)."""
    return [m for m in milestones if str(m) not in kept and (m == epoch or (stopping and m > epoch))]


def keep_milestones(kept: dict, reached: list[int], result: dict) -> None:
    """Keep ``result`` as the entry of each milestone ``reached`` in ``kept`` (the progress's
    milestones: kept before the epoch's checkpoint, so a resumed run still has them) and give
    ``result`` every milestone kept so far."""
    for m in reached:
        kept[str(m)] = milestone_entry(result)
    result["milestones"] = {k: dict(v) for k, v in kept.items()}


def milestone_entry(result: dict) -> dict:
    """The part of ``result`` a milestone keeps, in plain types (it goes into checkpoints,
    which are read back with ``torch.load(weights_only=True)``)."""
    return jsonable({key: result[key] for key in MILESTONE_KEYS if key in result})
