"""``xfer train`` and ``xfer pretrain``: one trial, or a source-task pretraining, in pure PyTorch
(no Ray, no MLflow), with the training flags both share.

One module per group of commands, so ``xfer.cli`` stays the parser and the error contract. torch
is imported inside the commands, so ``xfer train --help`` needs only this file's imports.
"""

from __future__ import annotations

import argparse

from xfer.argtypes import epoch_list, non_negative_float, non_negative_int, positive_float, positive_int
from xfer.errors import EXIT_OK
from xfer.paths import check_output_path


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


def _cmd_transferability(args: argparse.Namespace) -> int:
    from xfer.train import TrialConfig
    from xfer.transferability import score_transferability

    config = TrialConfig(data=args.data, model=args.model, init=args.init, weights=args.weights,
                         image_size=args.image_size, resize_mode=args.resize_mode, n=args.n, seed=args.seed,
                         device=args.device, eval_batch_size=args.eval_batch_size).validate()
    _check_batch_bounds(args, args.image_size)
    json_out = _check_json_out(args.json_out)
    result = score_transferability(config, knn_k=args.knn_k)
    print(f"{result['model']} {result['init']}{' ' + result['weights'] if result['weights'] else ''}: "
          f"LogME {result['logme']:.4f} ({result['n_train']} training images, {result['feature_dim']} features)  "
          f"kNN accuracy {result['knn_accuracy']:.4f} (k={result['knn_k']}, {result['n_val']} validation "
          f"images)  embed_macs {result['embed_macs']:.3g}  embed_seconds {result['embed_seconds']:.1f}  "
          f"wall_time_s {result['wall_time_s']:.1f}  device {result['device']}")
    if json_out is not None:
        _write_json(json_out, result)
    return EXIT_OK


def _add_transferability_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "transferability", help="score a backbone's frozen features on a dataset without fine-tuning: "
                                "LogME and k-NN accuracy from one forward pass")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="dataset folder with a packed cache, e.g. from `xfer data pdf`")
    parser.add_argument("--model", required=True, metavar="NAME",
                        help="architecture, e.g. efficientnet_lite0, resnet50 (an unknown name lists them all)")
    parser.add_argument("--init", default="pretrained", metavar="pretrained|scratch",
                        help="pretrained: the features of --weights; scratch: of a random init, the "
                             "control (default: pretrained)")
    parser.add_argument("--weights", default=None, metavar="SRC",
                        help="imagenet, a file, s3://BUCKET/KEY or runs:/RUN_ID/PATH (default with "
                             "--init pretrained: imagenet)")
    parser.add_argument("--n", type=positive_int, default=None,
                        help="score on the first N images (their train split; k-NN on their "
                             "validation split), as a trial with --n N would split them (default: all)")
    parser.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                        help="side in px fed to the model (default: the dataset's)")
    parser.add_argument("--resize-mode", default="bilinear", metavar="bilinear|nearest",
                        help="how images are resized to the model's input (default: bilinear)")
    parser.add_argument("--knn-k", type=positive_int, default=10, metavar="K",
                        help="neighbours per k-NN vote (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a scratch backbone's init (default: 0)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available) | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--eval-batch-size", type=positive_int, default=256,
                        help="images per forward pass (default: 256)")
    parser.add_argument("--json-out", default=None, metavar="FILE", help="write the scores and their cost as JSON")
    parser.set_defaults(handler=_cmd_transferability, batch_size=1)


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


def add_train_commands(sub: argparse._SubParsersAction) -> None:
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
    _add_transferability_command(sub)
