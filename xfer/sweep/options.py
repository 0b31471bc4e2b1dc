"""The options every sweep script shares (docs/commands.md), parsed and validated before Ray starts.

Everything a user can get wrong is checked here, so a typo costs a second, not a cluster
start-up: bad input is one line on stderr and exit 2, with nothing launched or written.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from xfer.argtypes import OneLineParser, non_negative_float, positive_float, positive_int
from xfer.bounds import check_concurrent_trials, check_trial_count
from xfer.data.pdf.families import GAMMA_BETA_READINGS
from xfer.data.splits import SPLIT_CHOICES
from xfer.errors import UsageError
from xfer.paths import check_name, check_output_path
from xfer.sweep.system_metrics import CHOICES as SYSTEM_METRICS_CHOICES
from xfer.sweep.system_metrics import wanted as system_metrics_wanted

if TYPE_CHECKING:
    from xfer.sweep.study import Preset

SEARCHES = ("grid", "tpe", "nsga2")
SCHEDULERS = ("asha", "fifo")
DEFAULT_STORAGE = "xfer_runs"  # relative to the working directory
DEFAULT_CACHE = Path.home() / ".cache" / "xfer"  # datasets and offline weights, per machine


@dataclass(frozen=True)
class SweepOptions:
    preset: str
    num_samples: int | None  # grid: seeds per configuration; tpe/nsga2: trials (None = grid size)
    search: str
    scheduler: str
    max_concurrent: int | None
    gpus_per_trial: float
    cpus_per_trial: float
    storage: str
    experiment: str
    resume: bool
    dry_run: bool
    cache_dir: Path
    max_failures: int
    report: bool
    data: str | None = None  # --data: overrides the preset's data source (xfer.sweep.sources)
    data_root: str | None = None  # where CIFAR archives are, or are downloaded to
    download: bool = True
    epoch_milestones: bool = False  # fold the epochs axis into its longest budget (Preset.with_epoch_milestones)
    # PDF plots only (xfer.sweep.sources.source_from_option): override the preset's PdfData
    test_size: int | None = None  # held-out test images
    split: str | None = None  # "heldout" | "80:10:10"
    amortize_pretraining: int | None = None  # report: pretraining spread over N uses (train_macs)
    momentum: float | None = None  # SGD momentum of every trial (None: each trial's own)
    gamma_beta: str | None = None  # PDF plots: "rate" | "scale" (None: the preset's)
    tick_labels: bool | None = None  # PDF plots: False with --no-tick-labels (None: the preset's)
    system_metrics: str = "auto"  # --system-metrics: auto | on | off (see samples_system_metrics)
    progress_interval: float = 30.0  # seconds between progress lines off a terminal; 0: none
    score_transferability: bool = False  # score each backbone before the trials (xfer.sweep.transfer_scores)

    @property
    def storage_is_s3(self) -> bool:
        return self.storage.startswith("s3://")

    @property
    def samples_system_metrics(self) -> bool:
        """Trials sample MLflow's system metrics (auto: where they hold a GPU)."""
        return system_metrics_wanted(self.system_metrics, self.gpus_per_trial)


def build_parser(prog: str, description: str, presets: list[str], default_preset: str,
                 experiment: str, aliases: dict[str, str] | None = None,
                 extra_presets: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """``extra_presets``: a script's presets beyond smoke, quick and study, name -> what it runs."""
    parser = OneLineParser(prog=prog, description=description)
    also = "".join(f"; {name}: {text}" for name, text in (extra_presets or {}).items())
    also += "".join(f"; {alias} = {name}" for alias, name in (aliases or {}).items())
    # default None, resolved in parse_options: an explicit --preset beside --smoke-test must be
    # told apart from the default to be refused (SMOKE_PRESET)
    parser.set_defaults(default_preset=default_preset, preset_aliases=dict(aliases or {}))
    parser.add_argument("--preset", choices=[*presets, *(aliases or {})], default=None,
                        metavar="{" + ",".join(presets) + "}",
                        help=f"smoke: a tiny sweep for tests; quick: minutes on a laptop's CPU; "
                             f"study: the published study's setting (default: {default_preset}{also})")
    parser.add_argument("--smoke-test", action="store_true",
                        help="the same as --preset smoke: a tiny sweep for tests (refused with "
                             "another --preset)")
    parser.add_argument("--num-samples", type=positive_int, default=None,
                        help="grid: seeds per configuration (default 1); tpe/nsga2: trials to "
                             "sample (default: the grid's size)")
    parser.add_argument("--search", choices=SEARCHES, default="grid",
                        help="grid: every combination once; tpe: Optuna TPE; nsga2: Optuna "
                             "NSGA-II, maximising val_accuracy and minimising cost (default: grid)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                        help="asha: stop poor trials early (time unit: the epoch); fifo: run all "
                             "to their budget (default: the preset's, asha unless its arms have "
                             "budgets ASHA cannot compare)")
    _add_resource_options(parser)
    _add_run_options(parser, experiment)
    _add_data_options(parser)
    _add_trial_and_report_options(parser)
    return parser


def _add_resource_options(parser: argparse.ArgumentParser) -> None:
    """What each trial holds, and how many run at once."""
    parser.add_argument("--max-concurrent", type=positive_int, default=None,
                        help="trials running at once (default: as many as resources allow)")
    parser.add_argument("--gpus-per-trial", type=non_negative_float, default=None,
                        help="GPUs per trial; fractions share a GPU between small-batch trials "
                             "(default: 1 if a GPU is visible, else 0)")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0,
                        help="CPUs per trial; also torch's thread count (default: 1)")


def _add_run_options(parser: argparse.ArgumentParser, experiment: str) -> None:
    """Where the sweep's state and runs go, and resuming it."""
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help="where Ray keeps trial checkpoints and sweep state: a local path or "
                             "s3://bucket/prefix (honours AWS_ENDPOINT_URL) (default: ./xfer_runs)")
    parser.add_argument("--experiment", default=experiment,
                        help=f"MLflow experiment, also the folder of its sweeps under --storage: "
                             f"one folder name, no '/', '..' or control characters, at most 100 "
                             f"bytes (default: {experiment})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest interrupted sweep of this experiment in --storage: "
                             "finished trials are not rerun; refused if the preset, data or search "
                             "options differ from the sweep's")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, print the plan and its cost estimate, then exit 0")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"per-machine cache for datasets and offline weights (default: {DEFAULT_CACHE})")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The images: another source than the preset's, and the PDF plots' settings."""
    parser.add_argument("--data", default=None, metavar="SOURCE",
                        help="the images to train on instead of the preset's: pdf, cifar10, cifar100, "
                             "an image folder (one sub-folder per class) or a folder written by "
                             "`xfer data ... --out` (default: the preset's)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="CIFAR: the folder holding cifar-10-python.tar.gz / cifar-100-python.tar.gz "
                             "or their extracted batches; downloaded there when missing "
                             "(default: <cache-dir>/downloads)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download CIFAR archives or torchvision's ImageNet weights; fail "
                             "naming the expected files instead, before anything starts")
    parser.add_argument("--epoch-milestones", action="store_true",
                        help="train each configuration once, for the longest of the preset's epoch "
                             "budgets, and log its result at the shorter ones as their own runs "
                             "(exact for the constant, exp_decay and plateau schedules; refused for "
                             "cosine); e.g. epochs 10,20,50 cost 50 epochs instead of 80")
    parser.add_argument("--test-size", type=positive_int, default=None, metavar="N",
                        help="PDF plots: held-out test images, drawn once and shared by every trial "
                             "and dataset size, at least 8, at most 800000 (default: the preset's, "
                             "1000)")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default=None,
                        help="PDF plots: heldout (train/val 80:20 of each dataset size, one fixed "
                             "test set) or 80:10:10 (the study's split of each size; its test set "
                             "shrinks with the size) (default: the preset's, heldout)")
    parser.add_argument("--gamma-beta", choices=GAMMA_BETA_READINGS, default=None,
                        help="PDF plots: read the study's gamma beta (0.5) as a rate, density ∝ "
                             "x^(α-1) e^(-βx), or as a scale (default: the preset's, rate)")
    parser.add_argument("--no-tick-labels", action="store_true",
                        help="PDF plots: draw frame and curve only, no tick marks or labels, so "
                             "densities that differ only by location or scale look alike "
                             "(default: the preset's, tick labels drawn)")


def _add_trial_and_report_options(parser: argparse.ArgumentParser) -> None:
    """Per-trial settings, retries, progress, system metrics and the report."""
    parser.add_argument("--momentum", type=_float, default=None, metavar="M",
                        help="SGD momentum of every trial, in [0, 1); Keras' SGD default is 0 "
                             "(default: each trial's, from the preset)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a crashed trial, each from its last epoch checkpoint (default: 2)")
    parser.add_argument("--progress-interval", type=non_negative_float, default=30.0, metavar="S",
                        help="seconds between the sweep's progress lines (trials done / running / "
                             "pending / failed, elapsed, ETA) when stdout is not a terminal, e.g. "
                             "`ray job logs`; in a terminal the line is a bar redrawn in place; 0 "
                             "turns it off (default: 30)")
    parser.add_argument("--system-metrics", choices=SYSTEM_METRICS_CHOICES, default="auto",
                        help="log MLflow's system metrics (CPU, memory, disk, network, GPU "
                             "utilisation and memory) per trial epoch, in each child run's "
                             "\"System metrics\" tab; auto: on when --gpus-per-trial > 0 "
                             "(default: auto)")
    parser.add_argument("--score-transferability", action="store_true",
                        help="before the trials, score every backbone the sweep fine-tunes (scratch "
                             "ones as the control) on every dataset size: LogME and k-NN accuracy "
                             "of its frozen features, one forward pass each, logged as child runs; "
                             "the report sets them against the fine-tuned accuracies")
    parser.add_argument("--no-report", action="store_true",
                        help="skip the frontier report at the end of the sweep")
    parser.add_argument("--amortize-pretraining", type=positive_int, default=None, metavar="N",
                        help="in the report, count each pretrained run's pretraining MACs spread "
                             "over N uses of the same weights on the train_macs axis (default: not "
                             "counted; the report always gives the break-even N)")


def parse_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> SweepOptions:
    args = parser.parse_args(argv)
    preset = _preset_asked(args)
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if visible_gpus() > 0 else 0.0
    options = SweepOptions(
        preset=preset, num_samples=args.num_samples, search=args.search, scheduler=args.scheduler,
        max_concurrent=args.max_concurrent, gpus_per_trial=gpus, cpus_per_trial=args.cpus_per_trial,
        storage=args.storage, experiment=args.experiment, resume=args.resume, dry_run=args.dry_run,
        cache_dir=args.cache_dir, max_failures=args.max_failures, report=not args.no_report,
        data=args.data, data_root=args.data_root, download=not args.no_download,
        epoch_milestones=args.epoch_milestones, test_size=args.test_size, split=args.split,
        amortize_pretraining=args.amortize_pretraining, momentum=args.momentum,
        gamma_beta=args.gamma_beta, tick_labels=False if args.no_tick_labels else None,
        system_metrics=args.system_metrics,
        progress_interval=args.progress_interval, score_transferability=args.score_transferability)
    validate(options)
    return options


SMOKE_PRESET = "smoke"


def _preset_asked(args: argparse.Namespace) -> str:
    """--smoke-test is --preset smoke: with another explicit --preset the two contradict each
    other, and silently dropping one (as before) runs what the user did not ask for."""
    if args.smoke_test:
        if args.preset is not None and args.preset != SMOKE_PRESET \
                and args.preset_aliases.get(args.preset) != SMOKE_PRESET:
            raise UsageError(f"--smoke-test is --preset {SMOKE_PRESET}; it contradicts --preset "
                             f"{args.preset}: give one of them")
        return SMOKE_PRESET
    return args.default_preset if args.preset is None else args.preset


def _float(text: str) -> float:
    """Any float (nan and inf included): its range is ``validate``'s to check (check_momentum)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def check_momentum(value: float) -> float:
    """SGD momentum: 0 (plain SGD, Keras' default) up to, not including, 1 (at 1 the update
    never decays; above, it grows without bound)."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value < 1):
        raise UsageError(f"--momentum must be in [0, 1), got {value}")
    return float(value)


def apply_overrides(preset: "Preset", options: SweepOptions) -> "Preset":
    """The preset with the options that override its trials' values applied: ``--momentum``
    replaces every trial's momentum (the fixed value, any arm's own, any swept one). The PDF
    options (``--gamma-beta``, ``--no-tick-labels``) apply to the data source instead, through
    ``xfer.sweep.sources.source_from_option`` like ``--test-size`` and ``--split``."""
    if options.momentum is None:
        return preset
    arms = {name: {k: v for k, v in values.items() if k != "momentum"}
            for name, values in preset.arms.items()}
    space = {axis: values for axis, values in preset.space.items() if axis != "momentum"}
    return replace(preset, space=space, arms=arms,
                   fixed={**preset.fixed, "momentum": check_momentum(options.momentum)})


def visible_gpus() -> int:
    """GPUs this machine has, without starting Ray (torch is already a dependency)."""
    import torch

    return torch.cuda.device_count()


def validate(options: SweepOptions) -> None:
    if not options.experiment.strip():
        raise UsageError("--experiment must not be empty")
    check_name(options.experiment, "--experiment")  # <storage>/<experiment>/<sweep id>
    if options.data_root and Path(options.data_root).exists() and not Path(options.data_root).is_dir():
        raise UsageError(f"--data-root {options.data_root} is not a folder")
    if options.test_size is not None:  # the generator's bounds; PDF-only is checked with the data
        from xfer.data.pdf.generate import check_test_size

        check_test_size(options.test_size)
    if options.momentum is not None:
        check_momentum(options.momentum)
    if options.num_samples is not None:  # the grid's product is checked with the preset
        check_trial_count(options.num_samples, f"--num-samples {options.num_samples}")
    if options.max_failures < 0:
        raise UsageError(f"--max-failures must be >= 0, got {options.max_failures}")
    if options.gpus_per_trial > 1 and options.gpus_per_trial != int(options.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial above 1 must be a whole number, got {options.gpus_per_trial:g}")
    # On a cluster (RAY_ADDRESS) GPUs and CPUs are counted once Ray is joined; here, before
    # anything starts (else a trial no node can hold is found after the dataset, the offline
    # weights and Ray itself were built and started).
    if not os.environ.get("RAY_ADDRESS"):
        if options.gpus_per_trial > visible_gpus():
            raise UsageError(f"--gpus-per-trial {options.gpus_per_trial:g} but this machine has "
                             f"{visible_gpus()} GPU(s); use 0 on a CPU machine or a fraction <= 1")
        cpus = os.cpu_count() or 1
        if options.cpus_per_trial > cpus:
            raise UsageError(f"--cpus-per-trial {options.cpus_per_trial:g} but this machine has "
                             f"{cpus} CPU(s); use at most {cpus}")
        if options.max_concurrent is not None:
            check_concurrent_trials(options.max_concurrent)
    if options.storage_is_s3:
        bucket, _, _ = options.storage[len("s3://"):].partition("/")
        if not bucket:
            raise UsageError(f"--storage {options.storage}: an s3:// URI needs a bucket, e.g. s3://bucket/prefix")
    else:
        check_output_path(options.storage, "--storage", folder=True)
    check_output_path(options.cache_dir, "--cache-dir", folder=True)


# The options that decide which trials a sweep runs and on what: --resume with any of them
# changed would continue the recorded sweep's trials under a parent run (and a report) that
# describes other ones. The rest (--max-concurrent, --max-failures, resources, --no-report,
# --progress-interval, ...) may change between the interrupted run and its resumption.
RESUME_MUST_MATCH = ("preset", "data", "data_root", "search", "num_samples", "scheduler",
                     "epoch_milestones", "test_size", "split", "gamma_beta", "tick_labels",
                     "momentum")


def check_resume(previous: dict, options: SweepOptions) -> None:
    """--resume continues ``previous`` (its xfer_sweep.json) only with the options it was
    started with (RESUME_MUST_MATCH); UsageError naming every difference otherwise. Also checks
    that the recorded sweep id is one folder name (it is joined to --storage)."""
    check_name(str(previous.get("sweep_id", "")), "--resume: the recorded sweep id")
    recorded = previous.get("options") or {}
    differences = [_difference(name, recorded[name], str(getattr(options, name)))
                   for name in RESUME_MUST_MATCH
                   if name in recorded and recorded[name] != str(getattr(options, name))]
    if differences:
        raise UsageError(f"--resume: sweep {previous.get('sweep_id')} was started with "
                         f"{'; '.join(differences)}; resume it with the same options, or run "
                         f"without --resume to start a new sweep")


def _difference(name: str, then: str, now: str) -> str:
    """e.g. "--preset smoke (now quick)", "--no-tick-labels given (now not)"; values as
    xfer_sweep.json records them (str of the option; "None": not given)."""
    if name in ("tick_labels", "epoch_milestones"):  # switches
        flag = "--no-tick-labels" if name == "tick_labels" else "--epoch-milestones"
        given = (lambda v: v == "False") if name == "tick_labels" else (lambda v: v == "True")  # noqa: E731
        return f"{flag} {'given' if given(then) else 'not given'} (now {'given' if given(now) else 'not'})"
    shown = lambda v: "(not given)" if v == "None" else v  # noqa: E731
    return f"--{name.replace('_', '-')} {shown(then)} (now {shown(now)})"
