"""The ``xfer`` console script: ``xfer data pdf``, ``xfer data audit``, ``xfer train``, ...

This is the edge where user input enters. Every invalid input becomes one line on stderr and
exit code 2, with no traceback and nothing written (see ``xfer.errors``). Heavy imports
(torch, scipy) happen inside the command that needs them, so ``xfer --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from xfer.argtypes import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, OneLineParser, accuracy_level,
                           check_output_path, epoch_list, non_negative_float, non_negative_int,
                           positive_float, positive_int)
from xfer.errors import PATH_ERRNOS, Unavailable, UsageError, one_line



# --- xfer data ------------------------------------------------------------------------------

def _cmd_data_pdf(args: argparse.Namespace) -> int:
    from xfer.data.pdf.generate import DEFAULT_TEST_SIZE, PdfDatasetSpec, check_test_size, write_dataset
    from xfer.data.splits import HELDOUT

    if args.split != HELDOUT and (args.test_size is not None or args.test_seed is not None):
        raise UsageError(f"--test-size and --test-seed apply to --split {HELDOUT} only, not to "
                         f"--split {args.split}")
    test_size = 0 if args.split != HELDOUT else check_test_size(
        DEFAULT_TEST_SIZE if args.test_size is None else args.test_size)
    spec = PdfDatasetSpec(n=args.n, preset=args.preset, seed=args.seed,
                          image_size=args.image_size, test_size=test_size, test_seed=args.test_seed,
                          gamma_beta=args.gamma_beta, tick_labels=not args.no_tick_labels)
    spec.validate()
    _check_pdf_bounds(spec, args.out, args.workers)
    out, reused = write_dataset(spec, args.out, workers=args.workers, progress=print)
    test = (f" + {spec.test_size} held-out test images (seed {spec.resolved_test_seed})"
            if spec.test_size else ", split 80:10:10")
    print(f"{'exists, unchanged' if reused else 'wrote'}: {out} "
          f"({spec.n} images{test}, preset {spec.preset}, seed {spec.seed}, {spec.image_size} px, "
          f"gamma beta read as a {spec.gamma_beta}{'' if spec.tick_labels else ', no tick labels'})")
    return EXIT_OK


def _check_pdf_bounds(spec, out: str, workers: int | None) -> None:
    """The machine can hold what was asked (xfer.bounds): each generator process renders one
    image on an RGBA canvas, and the packed arrays (train/val pool and test set) go to disk at
    --out, unless that dataset is already there."""
    import os
    from pathlib import Path

    from xfer.bounds import RGBA_CANVAS, check_memory, check_packed_images

    images = spec.n + spec.test_size
    processes = min(workers or os.cpu_count() or 1, images)
    check_memory(processes * spec.image_size ** 2 * RGBA_CANVAS, f"--image-size {spec.image_size}",
                 f"{processes} image(s) rendered at once, one per generator process (RGBA, "
                 f"{spec.image_size} x {spec.image_size} x 4 bytes each; fewer --workers need less)")
    if not (Path(out).expanduser() / "dataset.json").exists():
        check_packed_images(images, spec.image_size, out, f"--n {spec.n} at --image-size {spec.image_size}")


def _cmd_data_audit(args: argparse.Namespace) -> int:
    from xfer.data.pdf.audit import audit_dataset, format_audit
    from xfer.data.pdf.separability import DEFAULT_PER_CLASS, check_per_class

    if args.no_empirical and args.per_class is not None:
        raise UsageError("--per-class sets the empirical check's size; it cannot go with --no-empirical")
    per_class = 0 if args.no_empirical else check_per_class(
        DEFAULT_PER_CLASS if args.per_class is None else args.per_class)
    audit = audit_dataset(args.dir, write=True, empirical_per_class=per_class)
    print(format_audit(audit))
    return EXIT_OK


def _check_data_out(path: str):
    """--out checked before anything is read, decoded or downloaded."""
    from xfer.data.packing import reusable

    out = check_output_path(path, "--out", folder=True)
    return out, reusable(out, {})  # {}: only "is it a complete dataset"; pack_* compare identity


def _check_out_not_inside(out: str, src: str) -> None:
    """--out inside its own SRC (or SRC itself) would add the packed dataset to the images it
    was made from: every later scan of SRC then finds a class of .npy files or a changed
    fingerprint. Symlinks resolved, so a link into SRC is caught too."""
    from pathlib import Path

    source = Path(src).expanduser().resolve()
    target = Path(out).expanduser().resolve()
    if target == source or source in target.parents:
        raise UsageError(f"--out {out} is inside SRC {src}: the dataset would be written into the "
                         f"folder it is made from; choose an --out outside {src}")


def _describe_packed(out) -> str:
    import json

    meta = json.loads((out / "dataset.json").read_text())
    sizes = {name: stop - start for name, (start, stop) in meta["split_ranges"].items()}
    skipped = f", {meta['skipped_count']} files skipped" if meta.get("skipped_count") else ""
    return (f"{meta['n']} images, {len(meta['classes'])} classes, train/val/test "
            f"{sizes['train']}/{sizes['val']}/{sizes['test']}, {meta['image_size']} px, "
            f"seed {meta['seed']}{skipped}")


def _cmd_data_cifar(args: argparse.Namespace) -> int:
    from xfer.data.cifar import FORMATS, pack_cifar

    fmt = FORMATS[args.data_command]
    out, existed = _check_data_out(args.out)
    val_size = args.val_size or fmt.default_val_size
    out = pack_cifar(args.root, fmt.name, out, val_size=val_size, seed=args.seed,
                     download=not args.no_download, progress=print)
    print(f"{'exists, unchanged' if existed else 'wrote'}: {out} ({fmt.title}: {_describe_packed(out)}; "
          f"val held out of the official train set)")
    return EXIT_OK


def _cmd_data_folder(args: argparse.Namespace) -> int:
    from xfer.bounds import check_packed_images
    from xfer.data.folder import check_options, folder_summary, pack_folder

    check_options(args.image_size, args.seed)  # the options first: a scan can take a while
    _check_out_not_inside(args.out, args.src)
    out, existed = _check_data_out(args.out)
    if not existed:  # the decoded images are held in memory, then packed at --out; a scan
        # (a stat per file, no decoding) counts them: seconds for a million files
        _, count = folder_summary(args.src)
        check_packed_images(count, args.image_size, out, f"--image-size {args.image_size}",
                            in_memory=True)
    out = pack_folder(args.src, out, image_size=args.image_size, seed=args.seed, progress=print)
    print(f"{'exists, unchanged' if existed else 'wrote'}: {out} ({_describe_packed(out)})")
    return EXIT_OK


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from xfer.data.cifar import FORMATS  # light: numpy only
    from xfer.data.pdf.families import DEFAULT_GAMMA_BETA, GAMMA_BETA_READINGS, PRESETS  # light: no scipy

    data = sub.add_parser("data", help="write or audit a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=OneLineParser)

    pdf = data_sub.add_parser("pdf", help="write the PDF-plot dataset (images, metadata, packed cache, audit)")
    pdf.add_argument("--out", required=True, help="output dataset folder (created; must not hold another dataset)")
    pdf.add_argument("--n", type=positive_int, required=True,
                     help="number of images to train and validate on (a trial's --n takes the first "
                          "N of them); at least one per family (8)")
    pdf.add_argument("--preset", default="seed", choices=sorted(PRESETS),
                     help="seed: the study's fixed parameters; varied: parameters drawn per image (default: seed)")
    pdf.add_argument("--seed", type=int, default=0,
                     help="generator and split seed, 0 to 2^31 - 1 (default: 0)")
    pdf.add_argument("--split", default="heldout", choices=("heldout", "80:10:10"),
                     help="heldout: also write a test set drawn once from --test-seed, the same for "
                          "every --n, and split the first n 80:20 into train and val; 80:10:10: the "
                          "study's split of the first n, no extra images (default: heldout)")
    pdf.add_argument("--test-size", type=positive_int, default=None, metavar="N",
                     help="held-out test images, at least one per family, at most 800000 "
                          "(default: 1000)")
    pdf.add_argument("--test-seed", type=non_negative_int, default=None, metavar="S",
                     help="seed the test images are drawn with; must differ from --seed "
                          "(default: --seed + 2^31, never a dataset's --seed)")
    pdf.add_argument("--image-size", type=int, default=256, help="square image side in px, >= 32 (default: 256)")
    pdf.add_argument("--gamma-beta", default=DEFAULT_GAMMA_BETA, metavar="|".join(GAMMA_BETA_READINGS),
                     help="how gamma's beta (0.5 in the study's table) is read: rate, density "
                          "x^(alpha-1) e^(-beta x), the statistics convention; or scale "
                          f"(default: {DEFAULT_GAMMA_BETA})")
    pdf.add_argument("--no-tick-labels", action="store_true",
                     help="draw the frame and the curve only, without tick marks or labels; the "
                          "audit's scale-only pairs then look the same")
    pdf.add_argument("--workers", type=positive_int, default=None,
                     help="generator processes (default: all cores)")
    pdf.set_defaults(handler=_cmd_data_pdf)

    audit = data_sub.add_parser("audit", help="print and write the separability audit of a PDF-plot dataset")
    audit.add_argument("dir", help="dataset folder written by `xfer data pdf`")
    audit.add_argument("--per-class", type=positive_int, default=None, metavar="N",
                       help="images per family the empirical check renders, half to train a "
                            "logistic regression per pair of classes, half to score it; at least 4 "
                            "(default: 160, a few seconds on one core)")
    audit.add_argument("--no-empirical", action="store_true",
                       help="skip the empirical check: the analytic categories and ceilings only")
    audit.set_defaults(handler=_cmd_data_audit)

    for name, fmt in FORMATS.items():
        title, val_size = fmt.title, fmt.default_val_size
        cifar = data_sub.add_parser(
            name, help=f"pack {title} (python version) with fixed train/val/test splits; "
                       "--n then counts training images")
        cifar.add_argument("--root", required=True, metavar="DIR",
                           help=f"folder holding {title}'s extracted python folder or its .tar.gz "
                                "archive (downloaded there if neither is present)")
        cifar.add_argument("--out", required=True, metavar="DIR",
                           help="output dataset folder (created; must not hold another dataset)")
        cifar.add_argument("--val-size", type=positive_int, default=None, metavar="N",
                           help=f"validation images held out of the official train set, stratified; "
                                f"the official test set is the test split (default: {val_size})")
        cifar.add_argument("--seed", type=non_negative_int, default=0,
                           help="seed of the validation holdout and the training order (default: 0)")
        cifar.add_argument("--no-download", action="store_true",
                           help="never download; fail, naming the expected files, if they are missing")
        cifar.set_defaults(handler=_cmd_data_cifar)

    folder = data_sub.add_parser(
        "folder", help="pack an image folder (one sub-folder per class) with a stratified 80:10:10 split")
    folder.add_argument("src", metavar="SRC",
                        help="folder with one sub-folder of images per class (as torchvision's ImageFolder)")
    folder.add_argument("--out", required=True, metavar="DIR",
                        help="output dataset folder (created; must not hold another dataset)")
    folder.add_argument("--image-size", type=positive_int, default=224, metavar="PX",
                        help="every image is resized to PX x PX, bilinear, aspect not kept; >= 32 "
                             "(default: 224)")
    folder.add_argument("--seed", type=non_negative_int, default=0,
                        help="split seed (default: 0)")
    folder.set_defaults(handler=_cmd_data_folder)


# --- xfer train, xfer pretrain ------------------------------------------------------------

def _trial_config(args: argparse.Namespace, *, data: str, image_size: int | None, n: int | None):
    from xfer.train import TrialConfig

    return TrialConfig(
        data=data, model=args.model, init=args.init, train_layers=args.train_layers,
        weights=args.weights, head=args.head, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, lr_constant_epochs=args.lr_constant_epochs,
        lr_decay_rate=args.lr_decay_rate, plateau_patience=args.plateau_patience,
        plateau_factor=args.plateau_factor, early_stopping_patience=args.early_stopping,
        label_smoothing=args.label_smoothing, augment=args.augment,
        rotate_degrees=args.rotate_degrees, image_size=image_size, resize_mode=args.resize_mode,
        n=n, seed=args.seed,
        device=args.device, eval_batch_size=args.eval_batch_size,
        embeddings=getattr(args, "embeddings", ""),
        epoch_milestones=getattr(args, "epoch_milestones", ()))


def _check_json_out(path: str | None):
    """The --json-out path, checked before training so a finished run is never lost to it."""
    return None if path is None else check_output_path(path, "--json-out")


def _write_json(out, result: dict) -> None:
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _summary(result: dict) -> str:
    return (f"test_accuracy {result['test_accuracy']:.4f} (95% CI {result['test_accuracy_ci_low']:.3f}-"
            f"{result['test_accuracy_ci_high']:.3f}, {result['n_test']} test images)  "
            f"val_accuracy {result['val_accuracy']:.4f} ({result['n_val']} images)  "
            f"test_f1_macro {result['test_f1_macro']:.4f}  "
            f"test_auc_roc_ovr {result['test_auc_roc_ovr']:.4f}  epochs_run {result['epochs_run']}  "
            f"train_time_s {result['train_time_s']:.1f}  wall_time_s {result['wall_time_s']:.1f}  "
            f"macs_per_image {result['macs_per_image']:.3g}  train_macs {result['train_macs']:.3g}  "
            f"n_train {result['n_train']}  device {result['device']}")


def _check_batch_bounds(args: argparse.Namespace, image_size: int | None) -> None:
    """An --image-size this machine cannot hold one batch of (xfer.bounds), refused before the
    dataset is read; None: the dataset's own size, bounded when it was written."""
    if image_size is not None:
        from xfer.bounds import check_image_batch

        larger = "--batch-size" if args.batch_size >= args.eval_batch_size else "--eval-batch-size"
        check_image_batch(image_size, max(args.batch_size, args.eval_batch_size), batch_flag=larger)


def _cmd_train(args: argparse.Namespace) -> int:
    from xfer.train import fit

    config = _trial_config(args, data=args.data, image_size=args.image_size, n=args.n).validate()
    _check_batch_bounds(args, args.image_size)
    json_out = _check_json_out(args.json_out)
    result = fit(config)
    for epoch, entry in result["milestones"].items():
        print(f"milestone epoch {epoch}: test_accuracy {entry['test_accuracy']:.4f} (95% CI "
              f"{entry['test_accuracy_ci_low']:.3f}-{entry['test_accuracy_ci_high']:.3f})  "
              f"epochs_run {entry['epochs_run']}  train_time_s {entry['train_time_s']:.1f}  "
              f"wall_time_s {entry['wall_time_s']:.1f}")
    print(_summary(result))
    if result["weights"] is not None:
        print(f"weights {result['weights']['source']} sha256 {result['weights']['sha256']}")
    if json_out is not None:
        _write_json(json_out, result)
    return EXIT_OK


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from xfer.pretrain import SourceTask, check_out_path, pretrain, source_dataset

    out = check_out_path(args.out)
    json_out = _check_json_out(args.json_out)
    if args.data is not None:
        config = _trial_config(args, data=args.data, image_size=args.image_size, n=args.n).validate()
        _check_batch_bounds(args, args.image_size)
    else:
        source = SourceTask(preset=args.source_preset or "varied", n=args.n or SourceTask.n,
                            seed=args.seed, image_size=args.image_size or SourceTask.image_size)
        # Validate the training config at the generated size before generating anything.
        config = _trial_config(args, data="(source task)", image_size=None, n=None)
        replace(config, image_size=source.image_size).validate()
        _check_batch_bounds(args, source.image_size)
        data_dir = source_dataset(source, out.parent, progress=print)
        print(f"source task: {data_dir}")
        config = replace(config, data=str(data_dir))
    info = pretrain(out, config)
    print(_summary(info["result"]))
    print(f"wrote weights {info['path']}  sha256 {info['sha256']}  (model {config.model}, "
          f"source task {info['source_task'].get('preset')} seed {info['source_task'].get('seed')} "
          f"n {info['source_task'].get('n')}, test_accuracy {info['result']['test_accuracy']:.4f})")
    if json_out is not None:
        _write_json(json_out, info)
    return EXIT_OK


def _add_trial_flags(parser: argparse.ArgumentParser, *, init_required: bool, seed_default: int,
                     seed_help: str) -> None:
    """The training flags `xfer train` and `xfer pretrain` share (see xfer.train.TrialConfig).
    Names are checked by TrialConfig.validate, which lists the valid ones; listing them here
    would import torch for `xfer --help`."""
    parser.add_argument("--model", required=True, metavar="NAME",
                        help="architecture, e.g. resnet18, resnet50, small_cnn, resnet10 "
                             "(an unknown name lists them all)")
    parser.add_argument("--init", required=init_required, metavar="scratch|pretrained", default=None if init_required else "scratch",
                        help="scratch: random init; pretrained: start from --weights"
                             + ("" if init_required else " (default: scratch)"))
    parser.add_argument("--train-layers", default="all", metavar="all|head|last_block|classifier",
                        help="all | head (linear probe) | last_block (+ head) | classifier (the "
                             "whole classifier block: vgg19/alexnet fc6-fc8); the rest is frozen "
                             "(default: all)")
    parser.add_argument("--weights", default=None, metavar="SRC",
                        help="pretrained weights: imagenet, a file (e.g. from `xfer pretrain`), "
                             "s3://BUCKET/KEY or runs:/RUN_ID/PATH (default with --init pretrained: imagenet)")
    parser.add_argument("--head", default="linear", metavar="linear|gap_mlp|mlp256|mlp3x384",
                        help="classifier head: linear (the model's own) | gap_mlp (GAP, dense "
                             "1024, 512) | mlp256 (GAP, dense 256) | mlp3x384 (GAP, 3 x dense "
                             "384) (default: linear)")
    parser.add_argument("--epochs", type=positive_int, required=True,
                        help="epoch budget; early stopping may run fewer")
    parser.add_argument("--batch-size", type=positive_int, required=True,
                        help="images per optimiser step")
    parser.add_argument("--lr", type=positive_float, default=0.01,
                        help="learning rate per step, the schedule's peak (default: 0.01)")
    parser.add_argument("--optimizer", default="sgd", metavar="sgd|adam|adamw",
                        help="sgd (with --momentum) | adam | adamw (default: sgd)")
    parser.add_argument("--momentum", type=float, default=0.9, metavar="M",
                        help="sgd's momentum, in [0, 1); Keras' SGD default is 0 (default: 0.9)")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="weight decay, >= 0 (default: 0)")
    parser.add_argument("--schedule", default="constant", metavar="constant|cosine|exp_decay|plateau",
                        help="lr schedule: constant | cosine (to 0 over --epochs) | exp_decay "
                             "(constant, then x exp(-rate) per epoch) | plateau (cut when "
                             "val_loss stalls) (default: constant)")
    parser.add_argument("--lr-constant-epochs", type=non_negative_int, default=10, metavar="EPOCHS",
                        help="exp_decay: epochs at the full --lr before the decay (default: 10)")
    parser.add_argument("--lr-decay-rate", type=non_negative_float, default=0.1, metavar="RATE",
                        help="exp_decay: lr x exp(-RATE) per epoch after those, >= 0 (default: 0.1)")
    parser.add_argument("--plateau-patience", type=positive_int, default=2, metavar="EPOCHS",
                        help="plateau: cut the lr after EPOCHS epochs without a val_loss "
                             "improvement (default: 2)")
    parser.add_argument("--plateau-factor", type=float, default=0.5,
                        help="plateau: lr multiplier at each cut, in (0, 1) (default: 0.5)")
    parser.add_argument("--early-stopping", type=non_negative_int, default=0, metavar="PATIENCE",
                        help="stop after PATIENCE epochs without a val_loss improvement; 0 = off (default: 0)")
    parser.add_argument("--label-smoothing", type=float, default=0.0,
                        help="label smoothing of the training loss, in [0, 1) (default: 0)")
    parser.add_argument("--augment", action="store_true",
                        help="random horizontal flip + small shift on the device (a flip may not "
                             "preserve the label of a plot; off by default)")
    parser.add_argument("--resize-mode", default="bilinear", metavar="bilinear|nearest",
                        help="how images are resized to the model's input on the device: "
                             "bilinear | nearest (pixel replication, Keras' UpSampling2D) "
                             "(default: bilinear)")
    parser.add_argument("--rotate-degrees", type=float, default=0.0, metavar="DEG",
                        help="with --augment: also rotate each image by a random angle in "
                             "+-DEG, in [0, 180] (default: 0)")
    parser.add_argument("--seed", type=int, default=seed_default, help=seed_help)
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available) | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--eval-batch-size", type=positive_int, default=256,
                        help="images per forward pass when evaluating (default: 256)")
    parser.add_argument("--json-out", default=None, metavar="FILE",
                        help="write the result (metrics, history, config, provenance) as JSON")


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    from xfer.data.pdf.families import PRESETS  # light: no torch import for `xfer --help`
    from xfer.pretrain import SourceTask  # light too: torch is imported when pretraining runs

    train = sub.add_parser("train", help="train and evaluate one trial (pure PyTorch, no Ray or MLflow)")
    train.add_argument("--data", required=True, metavar="DIR",
                       help="dataset folder with a packed cache, e.g. from `xfer data pdf`")
    train.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                       help="side in px fed to the model, resized on the device (default: the "
                            "dataset's; inception_v3 always gets 299)")
    train.add_argument("--embeddings", choices=("tsne", "umap", "tsne+umap"), default="",
                       help="after the last epoch, embed the test split's early/middle/late features "
                            "in 2-D (tsne+umap: both) and score their separation (silhouette); in "
                            "--json-out (default: off)")
    train.add_argument("--epoch-milestones", type=epoch_list, default=(), metavar="E1,E2",
                       help="also report the result as of these epochs (each below --epochs): with "
                            "a constant, exp_decay or plateau schedule, exactly what runs of those "
                            "budgets give, for the price of this one run; refused with cosine "
                            "(default: none)")
    train.add_argument("--n", type=positive_int, default=None,
                       help="use the first N images, a stratified subset; for CIFAR and image-folder "
                            "datasets the first N training images, val and test kept whole (default: all)")
    _add_trial_flags(train, init_required=True, seed_default=0,
                     seed_help="seed of init, batch order and augmentation (default: 0)")
    train.set_defaults(handler=_cmd_train)

    pretrain = sub.add_parser(
        "pretrain", help="train on a source task unlike the target and save the weights for --init pretrained")
    pretrain.add_argument("--out", required=True, metavar="FILE",
                          help="weights file to write; a generated source dataset is cached next to it")
    source = pretrain.add_mutually_exclusive_group()
    source.add_argument("--data", default=None, metavar="DIR",
                        help="source dataset folder (default: generate --source-preset)")
    source.add_argument("--source-preset", default=None, choices=sorted(PRESETS),
                        help="PDF-plot preset to generate as the source task (default: varied)")
    pretrain.add_argument("--n", type=positive_int, default=None,
                          help=f"source images: generated, or the first N of --data "
                               f"(default: {SourceTask.n} generated, all of --data)")
    pretrain.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                          help=f"px: generated size, or the resize of --data (default: "
                               f"{SourceTask.image_size} generated, the dataset's own)")
    _add_trial_flags(pretrain, init_required=False, seed_default=1,
                     seed_help="seed of the generated source dataset and of training; the default "
                               "differs from the target's default 0 (default: 1)")
    pretrain.set_defaults(handler=_cmd_pretrain)


# --- xfer frontier ---------------------------------------------------------------------------

def _cmd_frontier(args: argparse.Namespace) -> int:
    from xfer.aggregate import build_report
    from xfer.tracking.endpoints import tracking_calls

    # the sweep's bounded retries and one line, exit 1, for a server that does not answer
    # (MLflow's defaults: ~4 minutes of silence, then a traceback)
    with tracking_calls():
        path = build_report(args.experiment, args.sweep_id, cost=args.cost,
                            target_accuracy=args.target_accuracy, out_dir=args.out,
                            log_to_parent=args.log_to_parent,
                            amortize_pretraining=args.amortize_pretraining)
    summary = path.read_text().split("## Summary", 1)[-1].split("\n## ", 1)[0]  # its first section
    print(summary.strip())
    print(f"report: {path}")
    return EXIT_OK


def _add_frontier_commands(sub: argparse._SubParsersAction) -> None:
    frontier = sub.add_parser(
        "frontier", help="read a sweep's runs from MLflow; write its cost-accuracy frontier and report")
    frontier.add_argument("--experiment", required=True, metavar="NAME",
                          help="MLflow experiment of the sweep (tracking URI: MLFLOW_TRACKING_URI, "
                               "else MLflow's default sqlite:///mlflow.db)")
    frontier.add_argument("--sweep-id", default=None, metavar="ID",
                          help="the sweep's xfer.sweep_id tag (default: the latest sweep)")
    frontier.add_argument("--cost", default="train_macs",
                          metavar="wall_time_s|train_macs|gpu_seconds|macs_epochs_per_batch",
                          help="cost axis (default: train_macs, which does not depend on the hardware)")
    frontier.add_argument("--target-accuracy", type=accuracy_level, default=None, metavar="A",
                          help="also report, per init, the cheapest configuration reaching "
                               "validation accuracy A, in (0, 1] (its test accuracy beside it, with "
                               "its 95%% interval), and the cost ratio between inits")
    frontier.add_argument("--amortize-pretraining", type=positive_int, default=None, metavar="N",
                          help="count pretraining on the cost axis, shared over N uses of the "
                               "weights: train_macs + pretrain_macs / N per pretrained run (needs "
                               "--cost train_macs; default: not counted; the report always shows "
                               "the break-even N)")
    frontier.add_argument("--out", required=True, metavar="DIR",
                          help="folder for report.md, frontier.csv, configurations.csv and the figures")
    frontier.add_argument("--log-to-parent", action="store_true",
                          help="also log the files as artifacts of the sweep's parent run "
                               "(the sweep scripts do this when a sweep ends)")
    frontier.set_defaults(handler=_cmd_frontier)


# --- xfer replay ----------------------------------------------------------------------------

def _cmd_replay(args: argparse.Namespace) -> int:
    from xfer.argtypes import EXIT_FAILED
    from xfer.tracking.spool import replay_spool

    outcome = replay_spool(args.spool, tracking_uri=args.tracking_uri, echo=print)
    runs = f" ({outcome.runs_created} runs created, {outcome.runs_found} found)" if outcome.applied else ""
    skipped = f", {outcome.skipped} of them already in MLflow (their run was FINISHED)" if outcome.skipped else ""
    print(f"replayed {outcome.applied} records{runs}{skipped}"
          + (f", {outcome.rejected} refused by MLflow (see rejected.jsonl)" if outcome.rejected else "")
          + (f"; {outcome.left} still waiting: MLflow is unavailable ({outcome.unavailable}); "
             "run this again when it answers" if outcome.left else "; nothing is left to replay"))
    if outcome.report_missing:
        sweep_id = outcome.header.get("sweep_id")
        print(f"the sweep ended while MLflow was unavailable and wrote no report; write it with: xfer "
              f"frontier --experiment {outcome.header.get('experiment')} --sweep-id {sweep_id} "
              f"--out xfer_reports/{sweep_id} --log-to-parent")
    return EXIT_FAILED if outcome.left or outcome.rejected else EXIT_OK


def _add_replay_commands(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay", help="write to MLflow what a sweep spooled while its tracking server was "
                       "unavailable; safe to run twice")
    replay.add_argument("spool", metavar="SPOOL_PATH",
                        help="the spool folder the sweep printed (<storage>/<experiment>/<sweep id>/"
                             "mlflow_spool, or ./xfer_spool/<sweep id> for s3:// storage)")
    replay.add_argument("--tracking-uri", default=None, metavar="URI",
                        help="MLflow to replay into: the server the sweep logged to (default: "
                             "MLFLOW_TRACKING_URI, else the URI recorded in the spool)")
    replay.set_defaults(handler=_cmd_replay)


# --- parser and entry point ---------------------------------------------------------------

_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [_add_data_commands,
                                                                        _add_train_commands,
                                                                        _add_frontier_commands,
                                                                        _add_replay_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="xfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in _COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"xfer {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as exc:  # a service that does not answer: the input may be fine
        print(f"xfer {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a path no file can have (too long, ...): 2; the disk failing: 1
        print(f"xfer {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE if exc.errno in PATH_ERRNOS else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
