"""The ``xfer`` console script: ``xfer data pdf``, ``xfer data audit``, ``xfer train``, ...

This is the edge where user input enters. Every invalid input becomes one line on stderr and
exit code 2, with no traceback and nothing written (see ``xfer.errors``). Heavy imports
(torch, scipy) happen inside the command that needs them, so ``xfer --help`` is instant.

The commands live in ``xfer.cli_data`` (``xfer data``), ``xfer.cli_train`` (``xfer train``,
``xfer pretrain``) and ``xfer.cli_tracking`` (``xfer frontier``, ``xfer replay``); this module
builds the parser from them and turns their errors into exit codes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from xfer.argtypes import OneLineParser
from xfer.cli_data import add_data_commands
from xfer.cli_tracking import add_forecast_commands, add_frontier_commands, add_replay_commands
from xfer.cli_train import add_train_commands
from xfer.errors import EXIT_FAILED, EXIT_USAGE, PATH_ERRNOS, Unavailable, UsageError, one_line

_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [add_data_commands,
                                                                        add_train_commands,
                                                                        add_frontier_commands,
                                                                        add_forecast_commands,
                                                                        add_replay_commands]


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
