"""A study: what a sweep script declares. Plain data; no Ray, no MLflow, no torch."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from xfer.errors import UsageError, choice_error
from xfer.sweep.sources import DataSource, PdfData

ARM = "arm"  # the config key naming a trial's arm; the arms' values travel in ARMS_TABLE
ARMS_TABLE = "arms"
WEIGHTS_BY_MODEL = "weights_by_model"  # model -> the weights source its pretrained trials start from
SWEEP_ONLY_KEYS = ("dataset_size", ARM)  # trial keys that are not TrialConfig fields

# The axes a preset may sweep. Each maps onto a TrialConfig field; dataset_size becomes `n`.
AXES = ("model", "init", "train_layers", "head", "epochs", "batch_size", "dataset_size",
        "lr", "optimizer", "schedule", "weight_decay", "image_size", "seed", "momentum",
        "resize_mode")

# ASHA's rungs compare trials only within a group of these values (those a sweep varies): a
# trial on 100 images is not stopped for trailing one on 10,000, nor a scratch trial for
# trailing a pretrained one, nor one seed of a configuration for trailing another seed of it.
ASHA_GROUP_KEYS = ("dataset_size", "init", "seed")
ASHA_REDUCTION_FACTOR = 2  # keep the top half at each rung: gentle, since budgets are short


@dataclass(frozen=True)
class OfflinePretrain:
    """Weights for the pretrained arm that xfer makes itself, offline, on a SOURCE task that
    differs from the target: the `varied` PDF preset (parameters drawn per image) with another
    seed. Results say so: the weights source names this file, its sha256 and its source task.
    ``model`` names the architecture for the description; every model a preset trains with
    init=pretrained gets the same recipe (``for_model``)."""
    model: str
    source_preset: str = "varied"
    source_seed: int = 1
    n: int = 800
    image_size: int = 64
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05

    def describe(self) -> str:
        return (f"source-task pretraining by xfer: {self.model} trained {self.epochs} epochs on "
                f"{self.n} `{self.source_preset}` PDF plots (seed {self.source_seed}), "
                "a source task unlike the target; NOT ImageNet")

    def for_model(self, model: str) -> "OfflinePretrain":
        return replace(self, model=model)


# Every study's smoke preset pretrains the same way: a tiny ResNet on 160 `varied` plots at
# 32 px for 2 epochs (~10 s on a CPU), cached once per machine and shared by all five scripts.
SMOKE_PRETRAIN = OfflinePretrain(model="resnet10", n=160, image_size=32, epochs=2, batch_size=32, lr=0.05)


@dataclass(frozen=True)
class Preset:
    """A search space: ``space`` axes crossed with ``arms``. An arm is a named bundle of values
    that belong together and are not crossed with each other (the CIFAR-10 study's transfer arm
    is a pretrained ResNet-50 with its head for 6 epochs; its scratch arm a small CNN for 50)."""
    space: dict[str, list]  # axis -> values; categorical values are plain strings or numbers
    fixed: dict[str, object] = field(default_factory=dict)  # other TrialConfig fields
    data: DataSource = PdfData()
    pretrained: str | OfflinePretrain = "imagenet"  # what init=pretrained starts from
    description: str = ""
    arms: dict[str, dict] = field(default_factory=dict)  # arm name -> values; none: one plain grid
    scheduler: str = "asha"  # when --scheduler is not given; fifo where arms' budgets differ
    # fold the epochs axis into epoch milestones without --epoch-milestones (with_epoch_milestones)
    epoch_milestones: bool = False
    # a cheap stand-in for a larger grid: the dataset sizes of that grid, which the report's
    # data-scaling forecast (xfer.forecast) predicts from this one's smaller sizes
    forecast_at: tuple[int, ...] = ()
    score_transferability: bool = False  # as --score-transferability: score backbones first

    def validate(self, name: str) -> None:
        for axis, values in self.space.items():
            if axis not in AXES:
                raise choice_error(f"axis in preset {name}", axis, AXES)
            if not values or not all(isinstance(v, (str, int, float)) for v in values):
                raise UsageError(f"preset {name}: axis {axis} needs a list of plain values, got {values!r}")
        for arm, values in self.arms.items():
            clash = sorted(set(values) & set(self.space))
            if clash:
                raise UsageError(f"preset {name}: arm {arm} sets swept axes {clash}")

    def with_epoch_milestones(self, name: str) -> "Preset":
        """The preset with its epochs axis folded into its longest budget: each configuration
        trains once, for the longest budget, and keeps its result as of the shorter ones as
        epoch milestones (see "Epoch milestones" in ``xfer.train``), cutting the axis' compute from the
        sum of the budgets to the largest. UsageError when the preset does not sweep epochs."""
        budgets = sorted(set(self.space.get("epochs", [])))
        if len(budgets) < 2:
            raise UsageError(f"--epoch-milestones: preset {name} does not sweep epochs "
                             f"(its axes: {', '.join(self.space) or 'none'}), so there is nothing to fold")
        return replace(self, space={**self.space, "epochs": budgets[-1:]},
                       fixed={**self.fixed, "epoch_milestones": budgets[:-1]})

    def for_run(self, name: str, epoch_milestones: bool = False) -> "Preset":
        """The preset a sweep runs: folded into epoch milestones when the preset says so or
        ``--epoch-milestones`` asks; as declared otherwise."""
        if epoch_milestones or self.epoch_milestones:
            return self.with_epoch_milestones(name)
        return self

    def scheduler_plan(self, kind: str, seeds: int = 1) -> "SchedulerPlan":
        """What ``--scheduler kind`` means for this preset's trials (``seeds`` replicates of
        each, as ``trials``): for ASHA, its groups, grace period, budget and rungs."""
        if kind != "asha":
            return SchedulerPlan(kind=kind)
        trials = self.trials(seeds=seeds)
        # the epoch is ASHA's time unit; its rungs span every budget a result is reported
        # for, milestones included: folded, a 50-epoch trial also stands for the 10-epoch one
        epochs = sorted({e for t in trials for e in (t["epochs"], *t.get("epoch_milestones", ()))})
        groups = tuple(key for key in ASHA_GROUP_KEYS if len({t.get(key) for t in trials}) > 1)
        return SchedulerPlan(kind="asha", group_keys=groups, grace_period=epochs[0], max_t=epochs[-1])

    def axes(self) -> dict[str, list]:
        """The axes Ray sweeps: the space, plus ``arm`` when there are several arms."""
        return {**self.space, **({ARM: list(self.arms)} if len(self.arms) > 1 else {})}

    def grid_axes(self, seeds: int = 1) -> dict[str, list]:
        """The axes of the grid a sweep runs: ``axes``, plus a seed axis of ``seeds`` replicates
        when the preset does not sweep the seed itself. The one expansion of the grid: the
        plan's trial list (``trials``) and Ray's param_space (``tune_run._search``) both use it."""
        replicates = {"seed": list(range(seeds))} if seeds > 1 and "seed" not in self.space else {}
        return {**self.axes(), **replicates}

    def grid(self, seeds: int = 1) -> list[dict]:
        """Every combination of the grid's axes, in a stable order (Ray's grid_search order)."""
        axes = self.grid_axes(seeds)
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    def base(self) -> dict:
        """The values every trial shares (one arm's values count as shared)."""
        only_arm = next(iter(self.arms.values())) if len(self.arms) == 1 else {}
        return {"train_layers": "all", "seed": 0, **self.fixed, **only_arm}

    def trials(self, seeds: int = 1) -> list[dict]:
        """Every trial of the grid, each a full set of TrialConfig-style values, repeated
        over ``seeds`` seeds when the preset does not sweep the seed itself."""
        return [resolve_trial({**self.base(), ARMS_TABLE: self.arms, **combo})
                for combo in self.grid(seeds)]


def grid_seeds(search: str, num_samples: int | None) -> int:
    """Replicates per configuration: a grid search runs ``--num-samples`` seeds of each; a
    model-based search draws ``--num-samples`` trials instead."""
    return (num_samples or 1) if search == "grid" else 1


@dataclass(frozen=True)
class SchedulerPlan:
    """The trial scheduler a sweep runs, decided before Ray starts (xfer.sweep.schedulers
    builds it). ASHA stops a trial at a rung when its validation accuracy is below the top
    1/reduction_factor of the trials of its group that reached that rung before it; FIFO
    stops nothing."""
    kind: str  # "asha" | "fifo"
    group_keys: tuple[str, ...] = ()  # ASHA: trials compete only with equal values of these
    grace_period: int = 1  # ASHA: the first rung, in epochs
    max_t: int = 1  # ASHA: the longest budget, in epochs
    reduction_factor: float = ASHA_REDUCTION_FACTOR

    def rungs(self) -> list[int]:
        """The epochs at which ASHA compares trials, as Ray's bracket computes them; a rung at
        the longest budget compares nothing (trials end there)."""
        count = int(math.log(self.max_t / self.grace_period) / math.log(self.reduction_factor) + 1)
        return [r for r in (int(self.grace_period * self.reduction_factor ** k) for k in range(count))
                if r < self.max_t]

    def describe(self) -> str:
        """One line for the plan and the parent run's ``scheduler_detail`` param."""
        if self.kind != "asha":
            return "FIFO: every trial runs to its budget"
        pool = f"per ({', '.join(self.group_keys)})" if self.group_keys else "over all trials in one pool"
        rungs = (f"rungs {','.join(map(str, self.rungs()))}" if self.rungs()
                 else f"no rung below the budget of {self.max_t}: no trial stops early")
        return f"ASHA {pool}, grace {self.grace_period}, reduction {self.reduction_factor:g}, {rungs}"


# The preset names of every study script, in --help's order.
PRESETS = ("smoke", "quick", "study")


@dataclass(frozen=True)
class Study:
    """One published study as a sweep script's data. The five study scripts have the same three
    presets (``PRESETS``; tests/test_study_recipes.py checks it): ``smoke`` for tests, ``quick``
    for a laptop's CPU, ``study`` for the study's own setting (the default). ``aliases`` keeps other names working: pdf_grid's ``seed`` (the
    name docs/commands.md gives its study grid) and the four others' ``cpu`` (their old name
    for ``quick``)."""
    name: str  # the default MLflow experiment
    presets: dict[str, Preset]
    default_preset: str = "study"
    cost_metric: str = "train_macs"  # what nsga2 minimises and the frontier plots by default
    report_title: str = ""
    # Where xfer departs from the published study, on purpose or from necessity: one short line
    # each, at the top of the script (its DEPARTURES list), repeated by the report.
    departures: tuple[str, ...] = ()
    # The study's published numbers, as data (load_published): the report's replication card.
    published: dict | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # other name -> one of PRESETS

    def __post_init__(self):
        object.__setattr__(self, "departures", tuple(self.departures))
        if not all(isinstance(d, str) and d.strip() for d in self.departures):
            raise UsageError(f"study {self.name}: departures must be non-empty strings")
        if self.default_preset not in self.presets:
            raise UsageError(f"study {self.name}: default preset {self.default_preset!r} is not one "
                             f"of its presets ({', '.join(self.presets)})")
        if not set(self.aliases.values()) <= set(self.presets) or set(self.aliases) & set(self.presets):
            raise UsageError(f"study {self.name}: an alias must name one of its presets "
                             f"({', '.join(self.presets)}) and not be one")

    def canonical(self, name: str) -> str:
        """The preset a name (or alias) stands for; UsageError for an unknown one."""
        name = self.aliases.get(name, name)
        if name not in self.presets:
            raise choice_error("preset", name, list(self.presets))
        return name

    def preset(self, name: str) -> Preset:
        return self.presets[self.canonical(name)]


# The metrics a published card may give, named as xfer logs them (the report compares like with
# like); ``params`` is the model's parameter count, which xfer does not log as a metric.
PUBLISHED_METRICS = ("test_accuracy", "val_accuracy", "train_accuracy", "test_loss", "val_loss",
                     "train_loss", "test_precision_macro", "test_recall_macro", "test_f1_macro",
                     "train_time_s", "wall_time_s", "epochs_run", "params")
_PUBLISHED_KEYS = ("study", "title", "source_hardware", "dataset", "split", "recipe", "results", "tables")


def load_published(path: "str | Path") -> dict:
    """A study's published numbers (``sweeps/published/<study>.json``), checked lightly:

    ``{"study", "title", "source_hardware", "dataset", "split": str, "recipe": {key: value},
    "results": [{"label": str, "match": {trial key: value}, "dataset_size": int | null,
    "metrics": {PUBLISHED_METRICS name: number}, ...}], "tables": [{"title": str,
    "columns": [str], "rows": [[cell per column]]}]}``. ``match`` selects this run's trials
    for a published row by their config (arm, model, init, ...); ``dataset_size`` null means
    the study's full set. Other keys (notes) are kept as they are. UsageError naming the file
    when it is missing, is not JSON or breaks the schema."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"published numbers {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"published numbers {path}: not readable JSON ({e})") from None
    problem = _published_problem(card)
    if problem:
        raise UsageError(f"published numbers {path}: {problem}")
    return card


def _is_plain(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _published_problem(card) -> str | None:
    """The first way ``card`` breaks load_published's schema, or None."""
    if not isinstance(card, dict):
        return "must be a JSON object"
    missing = [k for k in _PUBLISHED_KEYS if k not in card]
    if missing:
        return f"missing {', '.join(missing)}"
    if not all(isinstance(card[k], str) and card[k] for k in _PUBLISHED_KEYS[:5]):
        return f"{', '.join(_PUBLISHED_KEYS[:5])} must be non-empty strings"
    if not isinstance(card["recipe"], dict):
        return "recipe must be an object"
    if not isinstance(card["results"], list) or not card["results"]:
        return "results must be a non-empty list"
    match_keys = set(AXES) | {ARM}
    for i, row in enumerate(card["results"]):
        where = f"results[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("label"), str):
            return f"{where} needs a label"
        where = f"{where} ({row['label']})"
        match = row.get("match")
        if not isinstance(match, dict) or not all(_is_plain(v) for v in match.values()):
            return f"{where}: match must be an object of plain values"
        if set(match) - match_keys:
            return f"{where}: match keys {sorted(set(match) - match_keys)} are not trial keys"
        size = row.get("dataset_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            return f"{where}: dataset_size must be a positive integer or null"
        metrics = row.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            return f"{where}: metrics must be a non-empty object"
        unknown = sorted(set(metrics) - set(PUBLISHED_METRICS))
        if unknown:
            return f"{where}: unknown metrics {unknown} (valid: {', '.join(PUBLISHED_METRICS)})"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in metrics.values()):
            return f"{where}: metric values must be finite numbers"
    if not isinstance(card["tables"], list):
        return "tables must be a list"
    for i, table in enumerate(card["tables"]):
        if not isinstance(table, dict) or not isinstance(table.get("title"), str):
            return f"tables[{i}] needs a title"
        columns, rows = table.get("columns"), table.get("rows")
        if not isinstance(columns, list) or not columns or not isinstance(rows, list) or not rows:
            return f"tables[{i}] ({table['title']}): columns and rows must be non-empty lists"
        for row in rows:
            if not isinstance(row, list) or len(row) != len(columns) or not all(map(_is_plain, row)):
                return (f"tables[{i}] ({table['title']}): each row needs {len(columns)} plain cells "
                        f"(one per column), got {row!r}")
    return None


def resolve_trial(config: dict) -> dict:
    """A trial's flat values: its arm's values merged in and, for init=pretrained, ``weights``
    picked by model. Ray hands trials the swept ``arm`` name (plain values keep every searcher,
    Optuna's included, working); everything that reads a trial's config reads it through here."""
    config = dict(config)
    arms = config.pop(ARMS_TABLE, None) or {}
    if ARM in config and config[ARM] in arms:
        config.update(arms[config[ARM]])
    by_model = config.pop(WEIGHTS_BY_MODEL, None)
    if by_model is not None:
        config["weights"] = by_model.get(config["model"]) if config.get("init") == "pretrained" else None
    return config


def trial_name(trial: dict, swept: "tuple[str, ...] | list[str]" = ()) -> str:
    """MLflow run names that read like ``resnet50-pretrained-all-n1000-bs4-ep20``; a swept
    learning rate and a non-zero seed are appended so names stay unique."""
    trial = resolve_trial(trial)
    name = (f"{trial['model']}-{trial['init']}-{trial.get('train_layers', 'all')}"
            f"-n{trial['dataset_size']}-bs{trial['batch_size']}-ep{trial['epochs']}")
    if "lr" in swept:
        name += f"-lr{trial['lr']:g}"
    if ARM in swept:  # arms may share a model and differ in what the name leaves out (the head)
        name += f"-{trial[ARM]}"
    if trial.get("seed", 0):
        name += f"-s{trial['seed']}"
    return name
