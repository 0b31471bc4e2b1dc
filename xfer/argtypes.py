"""argparse pieces every xfer command line shares: the `xfer` CLI and the sweep scripts.

A usage error is one line on stderr and exit code 2 (SPEC), so the parser class overrides
argparse's error (which prints the whole usage block), and the value types below reject bad
numbers with a message naming the valid range.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # SPEC: ok, anything else, bad input


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def epoch_list(text: str) -> tuple[int, ...]:
    """``10,20``: whole epochs, comma-separated (their order and range are TrialConfig's to check)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be whole epochs separated by commas, e.g. 10,20, "
                                         f"got {text!r}") from None


def accuracy_level(text: str) -> float:
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def check_output_path(path, flag: str, *, folder: bool = False):
    """The path an output will be written to, checked before any work is done: not a folder
    when a file is wanted, and its nearest existing ancestor a writable folder (so a run is
    never lost at the end to a typo in where it goes). Raises UsageError naming the flag."""
    import os
    from pathlib import Path

    from xfer.errors import UsageError

    path = Path(path).expanduser()
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name the file to write")
    for parent in ([path] if folder else []) + list(path.parents):
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise UsageError(f"{flag} {path}: {parent} is not a writable folder")
            break
    return path
