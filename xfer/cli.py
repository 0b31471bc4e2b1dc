"""The ``xfer`` console script: ``xfer data pdf``, ``xfer data audit``, ``xfer train``, ...

This is the edge where user input enters. Every invalid input becomes one line on stderr and
exit code 2, with no traceback and nothing written (see ``xfer.errors``). Heavy imports
(torch, scipy) happen inside the command that needs them, so ``xfer --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from xfer.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# --- xfer data ------------------------------------------------------------------------------

def _cmd_data_pdf(args: argparse.Namespace) -> int:
    from xfer.data.pdf.generate import PdfDatasetSpec, write_dataset

    spec = PdfDatasetSpec(n=args.n, preset=args.preset, seed=args.seed,
                          image_size=args.image_size)
    spec.validate()
    out, reused = write_dataset(spec, args.out, workers=args.workers, progress=print)
    print(f"{'exists, unchanged' if reused else 'wrote'}: {out} "
          f"({spec.n} images, preset {spec.preset}, seed {spec.seed}, {spec.image_size} px)")
    return EXIT_OK


def _cmd_data_audit(args: argparse.Namespace) -> int:
    from xfer.data.pdf.audit import audit_dataset, format_audit

    audit = audit_dataset(args.dir, write=True)
    print(format_audit(audit))
    return EXIT_OK


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from xfer.data.pdf.families import PRESETS  # light: no scipy import at module level

    data = sub.add_parser("data", help="write or audit a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)

    pdf = data_sub.add_parser("pdf", help="write the PDF-plot dataset (images, metadata, packed cache, audit)")
    pdf.add_argument("--out", required=True, help="output dataset folder (created; must not hold another dataset)")
    pdf.add_argument("--n", type=positive_int, required=True,
                     help="number of images; at least one per family (8)")
    pdf.add_argument("--preset", default="seed", choices=sorted(PRESETS),
                     help="seed: the study's fixed parameters; varied: parameters drawn per image (default: seed)")
    pdf.add_argument("--seed", type=int, default=0, help="generator and split seed (default: 0)")
    pdf.add_argument("--image-size", type=int, default=256, help="square image side in px, >= 32 (default: 256)")
    pdf.add_argument("--workers", type=positive_int, default=None,
                     help="generator processes (default: all cores)")
    pdf.set_defaults(handler=_cmd_data_pdf)

    audit = data_sub.add_parser("audit", help="print and write the separability audit of a PDF-plot dataset")
    audit.add_argument("dir", help="dataset folder written by `xfer data pdf`")
    audit.set_defaults(handler=_cmd_data_audit)


# --- parser and entry point ---------------------------------------------------------------

_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [_add_data_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"xfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
