"""``run_study``: one sweep from options to summary. Sweep scripts call ``main(STUDY)``.

Order matters and is the point of this module: everything that can be wrong with the input
is checked, and the plan printed, before Ray or MLflow is touched; only then are the dataset
and the offline weights built (once per machine, under file locks), Ray started or joined,
the parent run opened, and the trials fanned out.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from xfer.argtypes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from xfer.errors import UsageError
from xfer.tracking import redacted_uri
from xfer.sweep.options import SweepOptions, build_parser, parse_options, visible_gpus
from xfer.sweep.plan import format_plan, make_plan
from xfer.sweep.study import OfflinePretrain, Preset, Study

_CONFIG_ONLY = ("dataset_size",)  # axes that are not TrialConfig fields


def main(study: Study, argv: list[str] | None = None) -> int:
    prog = f"sweeps/{study.name}.py"
    parser = build_parser(prog, study.report_title or f"The {study.name} study as a Ray Tune sweep.",
                          list(study.presets), study.default_preset, study.name)
    try:
        options = parse_options(parser, argv)
        return run_study(study, options)
    except (UsageError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else MLflow's own default made absolute (``sqlite:///mlflow.db`` in
    the working directory): trials and restored drivers may run from other directories."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path('mlflow.db').resolve()}"


def run_study(study: Study, options: SweepOptions) -> int:
    preset = study.preset(options.preset)
    trials = _validated_trials(preset, options)
    uri = tracking_uri()

    from xfer.sweep.storage import SweepStore

    store = SweepStore.open(options.storage)
    previous = None
    if options.resume:
        previous = store.latest_unfinished(options.experiment)
        if previous is None:
            raise UsageError(f"--resume: no interrupted sweep of experiment {options.experiment!r} "
                             f"in {options.storage}; run without --resume to start one")
    local_ray = not os.environ.get("RAY_ADDRESS")
    parallel = _parallel_trials(options)
    sweep_id = previous["sweep_id"] if previous else _new_sweep_id(options.experiment)
    max_n = max(t["dataset_size"] for t in trials)
    weights_note = _weights_note(preset, trials)
    plan = make_plan(trials, options, num_classes=preset.data.num_classes,
                     dataset_image_size=preset.data.image_size,
                     parallel_trials=parallel)
    print(format_plan(plan, options.preset, preset, options,
                      data_note=f"{preset.data.describe()}, largest size {max_n}",
                      weights_note=weights_note, tracking_uri=redacted_uri(uri),
                      storage=store.display(options.experiment, sweep_id)))
    if options.dry_run:
        return EXIT_OK

    phases = PhaseClock()
    cache = Path(options.cache_dir).expanduser()
    with phases("dataset"):
        data_dir = preset.data.prepare(cache / "datasets", max_n, progress=print)
    _print_audit(data_dir)
    with phases("weights"):
        weights = _pretrained_weights(preset, trials, cache, options)
    from xfer.sweep.tune_run import launch

    outcome = launch(study=study, preset=preset, options=options, store=store, sweep_id=sweep_id,
                     previous=previous, data_dir=data_dir, weights=weights, tracking=uri,
                     local_ray=local_ray, phases=phases)
    print(f"\nsweep {sweep_id}: {outcome['finished']} trials finished, {outcome['failed']} failed, "
          f"in {phases.total():.0f} s ({phases})")
    for line in outcome["best"]:
        print(line)
    shown = redacted_uri(uri)
    print(f"MLflow: {shown}  experiment {options.experiment!r}, parent run {outcome['parent_run_id']}"
          f"  (view: mlflow ui --backend-store-uri {shown})")
    if outcome.get("report"):
        print(f"report: {outcome['report']}")
    return EXIT_OK if outcome["finished"] else EXIT_FAILED


class PhaseClock:
    """Wall time per phase of a sweep, printed at the end so slow start-up shows up."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def timed():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return timed()

    def total(self) -> float:
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


def _validated_trials(preset: Preset, options: SweepOptions) -> list[dict]:
    """Every trial's config, checked like `xfer train` checks its flags: an unknown model or
    an impossible value fails here, before anything starts."""
    from xfer.train import TrialConfig

    seeds = (options.num_samples or 1) if options.search == "grid" else 1
    trials = preset.trials(seeds=seeds)
    for trial in trials:
        fields = {k: v for k, v in trial.items() if k not in _CONFIG_ONLY and k != "weights"}
        TrialConfig(data="<sweep dataset>", n=trial["dataset_size"], **fields).validate()
        if not isinstance(trial["dataset_size"], int) or trial["dataset_size"] < 8 * 5:
            raise UsageError(f"dataset_size must be an integer >= 40 (5 images per class for "
                             f"the 80:10:10 split), got {trial['dataset_size']!r}")
    return trials


def _parallel_trials(options: SweepOptions) -> int:
    if options.gpus_per_trial > 0:
        by_resource = int(max(1, visible_gpus()) / options.gpus_per_trial)
    else:
        by_resource = int((os.cpu_count() or 1) / options.cpus_per_trial)
    by_resource = max(1, by_resource)
    return min(by_resource, options.max_concurrent) if options.max_concurrent else by_resource


def _new_sweep_id(experiment: str) -> str:
    return f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def _weights_note(preset: Preset, trials: list[dict]) -> str:
    if not any(t["init"] == "pretrained" for t in trials):
        return "none (no pretrained arm)"
    if isinstance(preset.pretrained, OfflinePretrain):
        return preset.pretrained.describe()
    return f"{preset.pretrained} (torchvision's ImageNet weights via the torch hub cache)"


def _print_audit(data_dir: Path) -> None:
    audit_path = data_dir / "audit.json"
    if audit_path.is_file():
        audit = json.loads(audit_path.read_text())
        pairs = ", ".join("~".join(p["classes"]) for p in audit["confusable"]) or "none"
        print(f"dataset {data_dir}: Bayes accuracy ceiling {audit['bayes_accuracy_ceiling']:.3f} "
              f"(indistinguishable: {pairs})")


def _pretrained_weights(preset: Preset, trials: list[dict], cache: Path,
                        options: SweepOptions) -> str | None:
    """The weights source for init=pretrained trials, made or checked now, not in every trial.

    ImageNet: resolved once here (downloading into the torch hub cache when online), so an
    offline machine fails now with the pre-staging instructions instead of in every trial.
    Offline recipe: trained once per machine under a file lock and cached by its recipe.
    """
    models = sorted({t["model"] for t in trials if t["init"] == "pretrained"})
    if not models:
        return None
    if not isinstance(preset.pretrained, OfflinePretrain):
        from xfer.weights import resolve_weights

        for model in models:
            resolve_weights(preset.pretrained, model)
        return preset.pretrained
    recipe = preset.pretrained
    if models != [recipe.model]:
        raise UsageError(f"the preset's offline weights are for {recipe.model}, but pretrained "
                         f"trials use {', '.join(models)}")
    return str(ensure_offline_weights(recipe, cache))


def ensure_offline_weights(recipe: OfflinePretrain, cache: Path) -> Path:
    """Train the recipe's source task once per machine (file lock) and return the weights file."""
    from filelock import FileLock

    from xfer.pretrain import SourceTask, pretrain, source_dataset
    from xfer.train import TrialConfig

    key = "-".join(f"{v}" for v in asdict(recipe).values()).replace("/", "_")
    folder = cache / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"offline-{key}.pt"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            print(f"pretrained weights: {path} (cached; {recipe.describe()})")
            return path
        print(f"pretraining offline weights: {recipe.describe()}")
        source = SourceTask(preset=recipe.source_preset, n=recipe.n, seed=recipe.source_seed,
                            image_size=recipe.image_size)
        data = source_dataset(source, cache / "datasets")
        config = TrialConfig(data=str(data), model=recipe.model, epochs=recipe.epochs,
                             batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.source_seed)
        result = pretrain(path, config, report=lambda m: print(
            f"  source epoch {m['epoch']}: val_acc {m['val_accuracy']:.3f}"))
        print(f"pretrained weights: {path} (source-task test accuracy "
              f"{result['source_task']['test_accuracy']:.3f}, sha256 {result['sha256'][:12]})")
    return path
