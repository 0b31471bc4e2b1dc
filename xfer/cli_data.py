"""``xfer data pdf|audit|cifar10|cifar100|folder``: write a dataset, or audit a PDF-plot one.

One module per group of commands, so ``xfer.cli`` stays the parser and the error contract; each
command checks its inputs (paths, sizes, what this machine can hold) before it reads or writes.
"""

from __future__ import annotations

import argparse

from xfer.argtypes import OneLineParser, non_negative_int, positive_int
from xfer.errors import EXIT_OK, UsageError
from xfer.paths import check_output_path


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


def add_data_commands(sub: argparse._SubParsersAction) -> None:
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
    _add_packing_commands(data_sub)


def _add_packing_commands(data_sub: argparse._SubParsersAction) -> None:
    """`xfer data cifar10|cifar100|folder`: pack a dataset that exists elsewhere."""
    from xfer.data.cifar import FORMATS  # light: numpy only

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
