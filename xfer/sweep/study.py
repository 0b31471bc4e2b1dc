"""A study: what a sweep script declares. Plain data; no Ray, no MLflow, no torch."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from xfer.errors import UsageError, choice_error

# The axes a preset may sweep. Each maps onto a TrialConfig field; dataset_size becomes `n`.
AXES = ("model", "init", "train_layers", "head", "epochs", "batch_size", "dataset_size",
        "lr", "optimizer", "schedule", "weight_decay", "image_size", "seed")


@dataclass(frozen=True)
class PdfData:
    """The PDF-plot dataset, built once per machine (file lock) at the largest swept size;
    every smaller size is its prefix (see xfer.data.pdf.generate)."""
    preset: str = "seed"
    seed: int = 0
    image_size: int = 256  # px, as generated

    num_classes: int = 8  # the eight density families

    def describe(self) -> str:
        return f"PDF plots, preset {self.preset}, seed {self.seed}, {self.image_size} px"

    def prepare(self, cache_root: Path, n: int, progress=None) -> Path:
        from xfer.data.pdf.generate import PdfDatasetSpec, ensure_dataset

        spec = PdfDatasetSpec(n=n, preset=self.preset, seed=self.seed, image_size=self.image_size)
        return ensure_dataset(cache_root, spec, progress=progress)


@dataclass(frozen=True)
class OfflinePretrain:
    """Weights for the pretrained arm that xfer makes itself, offline, on a SOURCE task that
    differs from the target: the `varied` PDF preset (parameters drawn per image) with another
    seed. Results say so: the weights source names this file, its sha256 and its source task."""
    model: str
    source_preset: str = "varied"
    source_seed: int = 1
    n: int = 800
    image_size: int = 64
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05

    def describe(self) -> str:
        return (f"offline-pretrained by xfer: {self.model} trained {self.epochs} epochs on "
                f"{self.n} `{self.source_preset}` PDF plots (seed {self.source_seed}), "
                "a source task unlike the target; NOT ImageNet")


@dataclass(frozen=True)
class Preset:
    space: dict[str, list]  # axis -> values; categorical values are plain strings or numbers
    fixed: dict[str, object] = field(default_factory=dict)  # other TrialConfig fields
    data: PdfData = PdfData()
    pretrained: str | OfflinePretrain = "imagenet"  # what init=pretrained starts from
    description: str = ""

    def validate(self, name: str) -> None:
        for axis, values in self.space.items():
            if axis not in AXES:
                raise choice_error(f"axis in preset {name}", axis, AXES)
            if not values or not all(isinstance(v, (str, int, float)) for v in values):
                raise UsageError(f"preset {name}: axis {axis} needs a list of plain values, got {values!r}")

    def grid(self) -> list[dict]:
        """Every combination of the axes, in a stable order."""
        axes = list(self.space)
        return [dict(zip(axes, combo)) for combo in itertools.product(*(self.space[a] for a in axes))]

    def trials(self, seeds: int = 1) -> list[dict]:
        """Every trial of the grid, each a full set of TrialConfig-style values, repeated
        over ``seeds`` seeds when the preset does not sweep the seed itself."""
        repeats = [{}] if "seed" in self.space else [{"seed": s} for s in range(seeds)]
        return [{"train_layers": "all", "seed": 0, **self.fixed, **combo, **repeat}
                for combo in self.grid() for repeat in repeats]


@dataclass(frozen=True)
class Study:
    name: str  # the default MLflow experiment
    presets: dict[str, Preset]
    default_preset: str
    cost_metric: str = "train_macs"  # what nsga2 minimises and the frontier plots by default
    report_title: str = ""

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise choice_error("preset", name, list(self.presets))
        return self.presets[name]


def trial_name(trial: dict, swept: "tuple[str, ...] | list[str]" = ()) -> str:
    """MLflow run names that read like ``resnet50-pretrained-all-n1000-bs4-ep20``; a swept
    learning rate and a non-zero seed are appended so names stay unique."""
    name = (f"{trial['model']}-{trial['init']}-{trial.get('train_layers', 'all')}"
            f"-n{trial['dataset_size']}-bs{trial['batch_size']}-ep{trial['epochs']}")
    if "lr" in swept:
        name += f"-lr{trial['lr']:g}"
    if trial.get("seed", 0):
        name += f"-s{trial['seed']}"
    return name
