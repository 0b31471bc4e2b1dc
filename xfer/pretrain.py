"""Offline pretraining: an honest "pretrained" arm without ImageNet or a network.

Train a model with ``fit`` on a *source* task that differs from the target (by default the
``varied`` PDF preset, whose parameters are drawn per image, with a seed unlike the target's),
then save its weights with ``xfer.weights.save_weights``. The file records the model, the
normalisation the weights were trained with and the source task (dataset identity, its test
accuracy and the measured training MACs), so ``xfer train --init pretrained --weights FILE``
later records where its starting point came from, by sha256, and what it cost to produce
(``pretrain_macs``, ``xfer.cost.pretraining_macs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from xfer.errors import UsageError
from xfer.paths import check_output_path

if TYPE_CHECKING:
    from xfer.train import TrialConfig

DEFAULT_SOURCE_SEED = 1  # targets default to seed 0; the source task must not be the target


@dataclass(frozen=True)
class SourceTask:
    """A generated PDF-plot source dataset (see ``xfer.data.pdf.generate.PdfDatasetSpec``)."""
    preset: str = "varied"
    n: int = 1000                 # images
    seed: int = DEFAULT_SOURCE_SEED
    image_size: int = 64          # px, as generated


def source_dataset(source: SourceTask, cache_root: str | Path,
                   progress: Callable[[str], None] | None = None) -> Path:
    """The source dataset's folder under ``cache_root``, generated once and reused after."""
    from xfer.data.pdf.generate import PdfDatasetSpec, ensure_dataset

    spec = PdfDatasetSpec(n=source.n, preset=source.preset, seed=source.seed,
                          image_size=source.image_size).validate()
    return ensure_dataset(cache_root, spec, progress=progress)


def check_out_path(out: str | Path) -> Path:
    """UsageError unless ``out`` can name a local weights file (checked before any work)."""
    text = str(out)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise UsageError(f"--out must be a local file path, got the URI {text!r}; "
                         "write locally, then upload")
    return check_output_path(text, "--out")


def pretrain(out: str | Path, config: "TrialConfig",
             report: Callable[[dict], None] | None = None) -> dict:
    """Train ``config`` (its ``data`` is the source task) and save the weights to ``out``.

    Returns ``{"path", "sha256", "source_task", "result"}``; ``result`` is fit's result dict.
    The saved state is the model after the last epoch trained, the one whose test accuracy is
    recorded, head included (a target with another class count drops the head on load). ``report``
    defaults to ``xfer.train.print_report``.
    """
    from xfer.train import fit, print_report  # torch: imported only when pretraining runs
    from xfer.weights import save_weights

    out = check_out_path(out)
    config = config.validate()
    final: dict = {}
    result = fit(config, report or print_report, checkpoint=final.update)  # the last epoch's state wins
    source_task = {
        **result["dataset"],
        "classes": result["classes"],
        "model": config.model,
        "epochs_run": result["epochs_run"],
        # What these weights cost to produce, measured (xfer.cost.pretraining_macs reads it back
        # as the pretrain_macs of every run that starts from this file), plus, when this run
        # itself started from pretrained weights, what those cost as fit recorded it.
        "train_macs": result["train_macs"],
        "images_processed": result["images_processed"],
        "macs_per_image": result["macs_per_image"],
        "pretrain_macs": result.get("pretrain_macs"),
        "pretrain_macs_basis": result.get("pretrain_macs_basis"),
        "test_accuracy": result["test_accuracy"],
        "input_size": result["input_size"],
        "git_sha": result["git_sha"],
        "config": result["config"],
    }
    sha256 = save_weights(out, config.model, final["model"],
                          mean=result["normalization"]["mean"], std=result["normalization"]["std"],
                          source_task=source_task)
    return {"path": str(out.resolve()), "sha256": sha256, "source_task": source_task,
            "result": result}
